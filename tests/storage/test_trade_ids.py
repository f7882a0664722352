"""One truth per trade id, whatever the path (load, the trade writer, history) — real PostgreSQL.

A trade already stored is not stored again when it comes back with its time cut to the
millisecond (or the other way round); a file that contradicts what is stored under the
same ids is refused, named, and stores nothing; ids that live in the archive (a day
archived and dropped) are never stored a second time, and the loader says so.
"""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.cli import main as cli
from cryptolab.errors import TradeConflict
from cryptolab.history.load import load_files
from cryptolab.model import Trade
from cryptolab.storage import db
from cryptolab.storage.writer import TradeWriter

DAY = date(2025, 1, 1)  # make_dumps' trades are on this UTC day


def _counts(dsn: str, symbol: str = "BTCUSDT") -> tuple[int, int, Any, Any]:
    """(rows, distinct ids, Σ bars_1s trade_count, Σ bars_1s volume) of a symbol."""
    with psycopg.connect(dsn) as c:
        rows, ids = c.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades WHERE symbol = %s",
                              (symbol,)).fetchone() or (0, 0)
        n, vol = c.execute("SELECT sum(trade_count), sum(volume) FROM bars_1s WHERE symbol = %s",
                           (symbol,)).fetchone() or (None, None)
    return int(rows), int(ids), n, vol


def _ms(t: Trade) -> Trade:
    """The trade as a live capture stores it from Binance's default stream: times cut to the ms."""
    return t._replace(trade_time_us=t.trade_time_us // 1000 * 1000,
                      event_time_us=None if t.event_time_us is None else t.event_time_us // 1000 * 1000,
                      source="live")


def _csv(path: Path, trades: list[Trade], *, ms: bool = False) -> Path:
    lines = [f"{t.trade_id},{t.price:f},{t.qty:f},{t.price * t.qty:f},"
             f"{t.trade_time_us // 1000 if ms else t.trade_time_us},{t.is_buyer_maker},True" for t in trades]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- the ms/µs cut


def test_live_rows_in_ms_over_a_loaded_us_day_are_already_stored(dsn: str, make_dumps: Any) -> None:
    files, trades = make_dumps(n=400)
    load_files([files["trades_us_zip"]], progress=False)
    before = _counts(dsn)
    with db.connect(dsn) as conn:
        res = TradeWriter(conn).write([_ms(t) for t in trades])
        conn.commit()
    assert (res.offered, res.inserted, res.duplicates) == (400, 0, 400)
    assert _counts(dsn) == before == (400, 400, 400, sum(t.qty for t in trades))


def test_a_ms_recording_over_a_us_dump_and_back_stores_each_trade_once(
        dsn: str, make_dumps: Any, capsys: pytest.CaptureFixture[str]) -> None:
    files, trades = make_dumps(n=300)
    assert cli.main(["load", str(files["trades_us_zip"]), "--no-progress"]) == 0
    assert cli.main(["load", str(files["stream_ms_txt"]), "--no-progress"]) == 0
    assert "loaded 300 trades from 1 file(s): 0 new, 300 already stored" in capsys.readouterr().out
    assert _counts(dsn) == (300, 300, 300, sum(t.qty for t in trades))
    # the other way round on a second symbol: ms rows first, then the µs dump
    files, trades = make_dumps(n=300, symbol="ETHUSDT", seed=5)
    assert cli.main(["load", str(files["stream_ms_txt"]), "--no-progress"]) == 0
    assert cli.main(["load", str(files["trades_us_zip"]), "--no-progress"]) == 0
    assert "loaded 300 trades from 1 file(s): 0 new, 300 already stored" in capsys.readouterr().out
    assert _counts(dsn, "ETHUSDT") == (300, 300, 300, sum(t.qty for t in trades))


def test_a_capture_asks_for_microseconds_and_stores_the_exchanges_times(dsn: str, exchange: Any) -> None:
    from cryptolab.capture import Capture

    ex = exchange(symbols=["btcusdt"], rate=100.0)
    with Capture(["btcusdt"], source=ex.ws_url, dsn=dsn):
        time.sleep(2.0)
    us = {t.trade_id: t.trade_time_us for t in ex.trade_log("BTCUSDT", "MICROSECOND")}
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT trade_id, (extract(epoch FROM trade_time) * 1000000)::bigint, "
            "(extract(epoch FROM event_time) * 1000000)::bigint FROM trades ORDER BY trade_id"
        ).fetchall()
    assert len(rows) > 50
    assert [(r[0], r[1]) for r in rows] == [(r[0], us[r[0]]) for r in rows]
    assert any(r[1] % 1000 for r in rows)  # not cut to the millisecond


# ---------------------------------------------------------------- a file that lies


def test_another_symbols_trades_under_this_name_are_a_conflict_and_store_nothing(
    dsn: str, make_dumps: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, btc = make_dumps(n=400)
    assert cli.main(["load", str(files["trades_us_zip"]), "--no-progress"]) == 0
    before = _counts(dsn)
    # ETH's trades (overlapping ids, other prices and times) in a file named as BTCUSDT's
    eth = [
        t._replace(
            trade_id=t.trade_id + 150,
            price=(t.price / 27).quantize(Decimal("0.01")),
            trade_time_us=t.trade_time_us + 3_600_000_000,
        )
        for t in btc
    ]
    lying = _csv(tmp_path / "BTCUSDT-trades-2025-01-01.csv", eth)
    capsys.readouterr()
    assert cli.main(["load", str(lying), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        "BTCUSDT-trades-2025-01-01.csv" in err and f"BTCUSDT trade id {eth[0].trade_id} (and 249 more)" in err
    )
    assert "conflict" in err and "nothing of this file was stored" in err
    assert _counts(dsn) == before


def test_the_same_ids_with_changed_prices_are_a_conflict_not_already_stored(
    dsn: str, make_dumps: Any, tmp_path: Path
) -> None:
    files, btc = make_dumps(n=200)
    load_files([files["trades_us_zip"]], progress=False)
    before = _counts(dsn)
    edited = list(btc)
    edited[57] = edited[57]._replace(price=edited[57].price + Decimal("0.01"))
    with pytest.raises(
        TradeConflict,
        match=rf"trade id {btc[57].trade_id} is stored as .*{btc[57].price}.* but "
        rf"offered as .*{edited[57].price}",
    ):
        load_files([_csv(tmp_path / "BTCUSDT-trades-2025-01-01.csv", edited)], progress=False)
    # the same through a recording (the trade writer's path), and as a capture's batch
    with db.connect(dsn) as conn, pytest.raises(TradeConflict, match="nothing of this batch"):
        TradeWriter(conn).write([_ms(t) for t in edited[50:60]])
    assert _counts(dsn) == before


def test_a_file_whose_ids_are_stored_on_other_days_is_refused_not_bulk_loaded(
    dsn: str, make_dumps: Any, tmp_path: Path
) -> None:
    files, btc = make_dumps(n=200)
    load_files([files["trades_us_zip"]], progress=False)
    before = _counts(dsn)
    moved = [
        t._replace(trade_time_us=t.trade_time_us + 3 * 86_400_000_000) for t in btc
    ]  # days with no trade yet
    with pytest.raises(TradeConflict, match="BTCUSDT-trades-2025-01-04.csv"):
        load_files([_csv(tmp_path / "BTCUSDT-trades-2025-01-04.csv", moved)], progress=False)
    assert _counts(dsn) == before


def test_a_conflicting_live_row_becomes_a_dead_letter_and_the_rest_is_stored(
    dsn: str, make_dumps: Any
) -> None:
    from cryptolab.capture.options import CaptureOptions, Counters
    from cryptolab.capture.sink import DbLink, Sink

    files, btc = make_dumps(n=100)
    load_files([files["trades_us_zip"]], progress=False)
    new = [
        t._replace(trade_id=t.trade_id + 100, trade_time_us=t.trade_time_us + 60_000_000) for t in btc[:20]
    ]
    bad = _ms(btc[5])._replace(qty=btc[5].qty * 2)
    link = DbLink(dsn, retry_seconds=0.1)
    link.attach(db.connect(dsn, ensure_schema=False))
    counters = Counters()
    sink = Sink(CaptureOptions(), counters, None, link, None, lambda why: None)  # type: ignore[arg-type]
    sink._store([_ms(t) for t in btc[:5]] + [bad] + [_ms(t) for t in new], [])
    link.close()
    assert (counters.stored, counters.rejected_rows) == (20, 1)
    assert _counts(dsn)[:2] == (120, 120)
    with psycopg.connect(dsn) as c:
        (reason,) = c.execute("SELECT reason FROM dead_letters").fetchone() or ("",)
    assert f"trade id {btc[5].trade_id} is stored as" in reason and "conflict" in reason


# ---------------------------------------------------------------- ids that live in the archive


def _archive_and_drop(dsn: str, root: Path) -> None:
    from cryptolab.archive import archive

    with db.connect(dsn, autocommit=True) as c:
        rep = archive(c, to=str(root), today=date(2025, 1, 3), drop=True)
    assert rep.dropped == [DAY]


def test_reloading_a_day_after_its_archive_drop_stores_nothing_and_says_so(
    dsn: str, make_dumps: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, trades = make_dumps(n=400)
    assert cli.main(["load", str(files["trades_us_zip"]), "--no-progress"]) == 0
    with psycopg.connect(dsn) as c:
        bars = c.execute("SELECT * FROM bars_1s ORDER BY ts").fetchall()
    _archive_and_drop(dsn, tmp_path / "archive")
    capsys.readouterr()
    assert cli.main(["load", str(files["trades_us_zip"]), str(files["stream_gz"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "loaded 801 trades from 2 file(s): 0 new, 801 already stored (800 of them in the archive" in out
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
        assert c.execute("SELECT * FROM bars_1s ORDER BY ts").fetchall() == bars  # not folded a second time
    from cryptolab import analysis as an

    assert an.load_trades("BTCUSDT", DAY, date(2025, 1, 2)).height == 400
    assert an.duplicates("BTCUSDT", DAY, date(2025, 1, 2)).height == 0
    from cryptolab.archive import archive

    rep = archive(to=str(tmp_path / "archive"), today=date(2025, 1, 3), drop=True)
    assert not rep.plan.conflicts and not rep.exported


def test_a_capture_or_backfill_batch_of_archived_ids_stores_nothing_new(
    dsn: str, make_dumps: Any, tmp_path: Path
) -> None:
    files, trades = make_dumps(n=200)
    load_files([files["trades_us_zip"]], progress=False)
    _archive_and_drop(dsn, tmp_path / "archive")
    later = trades[-1]._replace(
        trade_id=trades[-1].trade_id + 1, trade_time_us=trades[-1].trade_time_us + 86_400_000_000
    )
    with db.connect(dsn) as conn:
        res = TradeWriter(conn).write([_ms(t)._replace(source="backfill") for t in trades[:50]] + [later])
        conn.commit()
    assert (res.inserted, res.archived, res.duplicates) == (1, 50, 50)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT trade_id FROM trades").fetchall() == [(later.trade_id,)]


@pytest.mark.usefixtures("not_at_midnight")
def test_history_over_a_captured_day_archived_and_dropped_stores_nothing_again(
    dsn: str, exchange: Any, tmp_path: Path
) -> None:
    from datetime import datetime, timedelta, timezone

    from cryptolab.archive import archive
    from cryptolab.history import fetch_history

    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=0.5)
    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    lo = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    captured = [
        _ms(t)._replace(exchange="simulator")
        for t in ex.trade_log("BTCUSDT", "MICROSECOND")
        if lo <= t.trade_time_us < lo + 86_400_000_000
    ]
    with db.connect(dsn) as conn:
        TradeWriter(conn).write(captured)  # as a live capture stored the day (ms times)
        conn.commit()
    with db.connect(dsn, autocommit=True) as c:
        assert archive(c, to=str(tmp_path / "archive"), drop=True).dropped == [day]
    res = fetch_history(
        "BTCUSDT", day, day, dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path / "c"
    )
    assert (res.files_loaded, res.stored, res.archived) == (1, 0, len(captured))
    assert "not stored again: their ids live in the archive" in res.summary()
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
