"""The notebooks: committed clean, parameters papermill can read, and every one executed
under papermill against a database filled by a real capture from the local exchange —
their recorded key figures checked against the analysis API and independent sums."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest

import cryptolab.analysis as an
from cryptolab.notebook.records import read_records
from cryptolab.report.runner import run_reports

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COMMON = {"dsn", "exchange", "live"}


def committed(path: Path) -> str:
    """The notebook as git holds it (the index: what is committed or about to be), not
    whatever an editor left in the working tree; the file itself outside a git checkout."""
    import subprocess

    rel = path.relative_to(ROOT).as_posix()
    try:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), "show", f":{rel}"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return path.read_text()
    return proc.stdout if proc.returncode == 0 else path.read_text()


def test_notebooks_are_committed_clean_with_parameters_first(tmp_path: Path) -> None:
    import papermill as pm

    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "00_live_dashboard",
        "01_price_analysis",
        "02_traffic_analysis",
        "03_quality_check",
        "04_volume",
        "05_latency",
        "06_book",
        "07_futures",
    ]
    for path in NOTEBOOKS:
        text = committed(path)
        nb = json.loads(text)
        path = tmp_path / path.name
        path.write_text(text)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
            f"{path.name} has outputs"
        )
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{path.name}: first code cell not tagged"
        declared = dict(pm.inspect_notebook(str(path)))  # every line parses (no '=' in comments…)
        source = "".join(code[0]["source"])
        assignments = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(declared) == len(assignments), path.name  # a long comment may go on below its line
        assert set(declared) >= COMMON, path.name
        assert len(code) <= 12, f"{path.name}: notebooks stay thin"


@pytest.fixture
def captured(dsn: str, conn: psycopg.Connection) -> Any:
    """~6 s of BTCUSDT (trades and the book) captured from the local exchange over real sockets; one
    trade then deleted (a gap). Yields (exchange, trades, deleted id) with the exchange still up."""
    from cryptolab import Capture
    from cryptolab.exchange.local import LocalExchange

    with LocalExchange(symbols=["btcusdt"], rate=250, seed=11) as ex:
        cap = Capture(["btcusdt"], source=ex.ws_url, dsn=dsn, streams=("trade", "depth", "bookTicker"))
        cap.start()
        try:
            time.sleep(6)
            ex.stop_market()
            log = ex.trade_log("btcusdt")
            end = time.monotonic() + 30
            while cap.status().rows_stored < len(log) and time.monotonic() < end:
                time.sleep(0.1)
        finally:
            final = cap.stop()
        # trades printed before the capture subscribed are not in the stream: compare from
        # the first stored id on (the exchange numbers its trades from 1)
        first_id = conn.execute("SELECT min(trade_id) FROM trades").fetchone()[0]
        log = [t for t in log if t.trade_id >= first_id]
        assert final.rows_stored == len(log) > 500
        ids = sorted(t.trade_id for t in log)
        gone = ids[len(ids) // 2]
        # as if the trade had never arrived: gone from trades, and its 1 s bar rebuilt without it
        (sec,) = conn.execute(
            "DELETE FROM trades WHERE symbol = 'BTCUSDT' AND trade_id = %s "
            "RETURNING date_trunc('second', trade_time)",
            (gone,),
        ).fetchone()
        conn.execute(
            """
            UPDATE bars_1s b SET open = a.open, high = a.high, low = a.low, close = a.close,
                   volume = a.volume, quote_volume = a.quote_volume, taker_buy_volume = a.tbv,
                   taker_buy_quote = a.tbq,
                   trade_count = a.n, first_trade_id = a.lo, last_trade_id = a.hi, price_sq_volume = a.pq2
            FROM (SELECT (array_agg(price ORDER BY trade_id))[1] AS open, max(price) AS high,
                         min(price) AS low,
                         (array_agg(price ORDER BY trade_id DESC))[1] AS close, sum(qty) AS volume,
                         sum(price * qty) AS quote_volume,
                         coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0) AS tbv,
                         coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0) AS tbq,
                         count(*) AS n, min(trade_id) AS lo, max(trade_id) AS hi,
                         sum(qty * price * price) AS pq2
                  FROM trades WHERE symbol = 'BTCUSDT' AND date_trunc('second', trade_time) = %(s)s) a
            WHERE b.symbol = 'BTCUSDT' AND b.ts = %(s)s""",
            {"s": sec},
        )
        conn.commit()
        yield ex, [t for t in log if t.trade_id != gone], gone


def test_every_notebook_runs_and_records_match_the_api(
    captured: Any, dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ex, trades, gone = captured
    first, last = conn.execute("SELECT min(trade_time), max(trade_time) FROM trades").fetchone()
    start = first.replace(microsecond=0)
    end = last.replace(microsecond=0) + timedelta(seconds=1)
    params = {
        "symbol": "BTCUSDT",
        "symbols": ["BTCUSDT"],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "interval": "5s",
        "klines_url": ex.http_url,
        "window": "1h",
        "dsn": dsn,
    }
    # the book notebook reads the book captured beside the trades
    assert conn.execute("SELECT count(*) FROM book_diffs WHERE symbol = 'BTCUSDT'").fetchone()[0] > 10
    lines: list[str] = []
    index = run_reports(tmp_path / "report", params, [p.stem for p in NOTEBOOKS], progress=lines.append)
    assert sum(" ok in " in s for s in lines) == len(NOTEBOOKS), lines
    rec = {p.stem: read_records(tmp_path / "report" / p.name) for p in NOTEBOOKS}
    for p in NOTEBOOKS:
        assert (tmp_path / "report" / f"{p.stem}.html").stat().st_size > 10_000
    assert f"{len(NOTEBOOKS)}/{len(NOTEBOOKS)} notebooks ok" in index.read_text()

    kw: dict[str, Any] = {"conn": conn}
    span = ("BTCUSDT", start, end)
    with localcontext() as ctx:
        ctx.prec = 60
        vol = sum((t.qty for t in trades), Decimal(0))
        quote = sum((t.price * t.qty for t in trades), Decimal(0))
        cvd = sum(((-t.qty if t.is_buyer_maker else t.qty) for t in trades), Decimal(0))
    newest = max(trades, key=lambda t: t.trade_id)

    # 00: the dashboard's static snapshot shows the newest trade and the exact session figures
    d = rec["00_live_dashboard"]
    assert d["last_trade_id"] == newest.trade_id and Decimal(d["last_price"]) == newest.price
    assert Decimal(d["session_cvd"]) == cvd

    # 01: price
    p = rec["01_price_analysis"]
    bars = an.ohlcv(*span, "5s", **kw)
    assert p["bars"] == bars.height and p["trades"] == len(trades)
    assert Decimal(p["volume"]) == vol
    assert Decimal(p["last_close"]) == newest.price
    vw = an.vwap(*span, "5s", bands=True, **kw)
    assert Decimal(p["session_vwap"]) == vw["vwap"][-1]
    with localcontext() as ctx:
        ctx.prec = 60
        assert abs(Decimal(p["session_vwap"]) - quote / vol) < Decimal("1e-15")
    levels = an.support_resistance(*span, "5s", **kw)
    assert Decimal(p["poc"]) == levels.filter(levels["kind"] == "poc")["price"][0]

    # 02: traffic
    t = rec["02_traffic_analysis"]
    stats = an.tps_stats(*span, **kw)
    assert t["trades"] == len(trades) and t["seconds"] == int(stats["seconds"][0])
    assert t["tps_percentiles"] == {k: int(stats[k][0]) for k in ("p50", "p90", "p95", "p99", "max_tps")}
    assert t["bursts"] == an.bursts(*span, **kw).height

    # 03: quality — the deleted trade is one gap of one id, not a halt
    q = rec["03_quality_check"]
    gaps = an.gaps(*span, **kw)
    assert q["gaps"] == 1 == gaps.height and q["missing_ids"] == 1
    assert gaps["first_missing_id"][0] == gone
    assert q["halts"] == an.halts(*span, **kw).height == 0
    report = an.quality_report(*span, **kw)
    assert q["status_counts"] == {
        s: int((report["status"] == s).sum()) for s in ("ok", "warn", "fail", "info")
    }
    assert q["failed_checks"] == ["id gaps"] or "gap" in " ".join(q["failed_checks"]), q["failed_checks"]

    # 04: volume — stored totals, aggressor CVD, and klines reconciliation against the exchange
    v = rec["04_volume"]
    assert Decimal(v["volume_all_days"]) == vol and v["days"] >= 1
    assert Decimal(v["cvd"]) == cvd
    recon = an.reconcile_klines(*span, **kw)
    assert v["reconciliation"] == {
        s: int((recon["status"] == s).sum()) for s in ("match", "mismatch", "incomplete")
    }
    # the minute that lost a trade is a mismatch, or incomplete while that minute is still open
    assert v["reconciliation"]["mismatch"] + v["reconciliation"]["incomplete"] >= 1
    assert sum(v["reconciliation"].values()) == recon.height >= 1

    # 05: latency
    lat = rec["05_latency"]
    ls = an.latency_stats(*span, "5s", **kw)
    assert lat["trades"] == int(ls["trades"].sum()) == len(trades)
    assert lat["worst_total_p99_ms"] == round(ls["total_p99"].max().total_seconds() * 1000, 3)

    # 06: the order book — its figures are those of the analysis API over the same range
    b = rec["06_book"]
    bs = an.book_stats(*span, "5s", depth_bps=[10, 25], **kw)
    assert b["intervals"] == bs.height > 0 and b["book_updates"] == int(bs["updates"].sum())
    assert b["last_update_id"] == bs["update_id"][-1] and Decimal(b["last_mid"]) == bs["mid"][-1]
    es = an.effective_spread(*span, "5s", **kw)
    assert b["trades_costed"] == int(es["trades"].sum()) > 0


def test_the_lab_works_on_a_copy_so_tracked_notebooks_stay_clean(tmp_path: Path) -> None:
    from cryptolab.cli.lab import jupyter_command, working_copy

    home = tmp_path / "home"
    copy = working_copy(ROOT / "notebooks", home)
    assert copy == home / "notebooks" and sorted(p.name for p in copy.glob("*.ipynb")) == [
        p.name for p in NOTEBOOKS
    ]
    edited = copy / "01_price_analysis.ipynb"
    edited.write_text(
        edited.read_text().replace("# Price analysis", "# My price analysis")
    )  # the user's edit
    working_copy(ROOT / "notebooks", home)
    assert "# My price analysis" in edited.read_text()  # kept: never overwritten behind the user's back
    working_copy(ROOT / "notebooks", home, refresh=True)  # --refresh: the tracked version again
    assert edited.read_text() == (ROOT / "notebooks" / "01_price_analysis.ipynb").read_text()
    cmd = jupyter_command(copy, 8888, False)
    assert f"--ServerApp.root_dir={copy}" in cmd and str(ROOT / "notebooks") not in " ".join(cmd)
