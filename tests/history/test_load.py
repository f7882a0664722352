"""`cryptolab load`: dumps and recordings into PostgreSQL, exactly (real database)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, localcontext
from typing import Any

import psycopg
import pytest

from cryptolab.cli import main as cli
from cryptolab.history.load import load_files


def stored(dsn: str, symbol: str) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT trade_id, price, qty, is_buyer_maker, (extract(epoch FROM trade_time) * "
            "1000000)::bigint, source, (extract(epoch FROM event_time) * 1000000)::bigint FROM trades WHERE "
            "symbol = %s ORDER BY trade_id",
            (symbol,),
        ).fetchall()


def test_load_dump_exactly_and_idempotently(
    dsn: str, make_dumps: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    files, trades = make_dumps(n=400)
    assert cli.main(["load", str(files["trades_us_zip"]), "--batch", "150", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "loaded 400 trades from 1 file(s): 400 new, 0 already stored" in out
    rows = stored(dsn, "BTCUSDT")
    assert rows == [
        (t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us, "replay", None) for t in trades
    ]
    assert [str(r[1]) for r in rows] == [f"{t.price:f}" for t in trades]  # the dump's exact text
    # bars_1s folded in the same transactions equal an independent aggregation
    with psycopg.connect(dsn) as c, localcontext() as ctx:
        ctx.prec = 60
        bars = c.execute(
            "SELECT extract(epoch FROM ts)::bigint, open, high, low, close, volume, quote_volume, "
            "taker_buy_volume, trade_count FROM bars_1s WHERE symbol = 'BTCUSDT' ORDER BY ts"
        ).fetchall()
        by_s: dict[int, list] = defaultdict(list)
        for t in trades:
            by_s[t.trade_time_us // 1_000_000].append(t)
        want = [
            (
                s,
                g[0].price,
                max(x.price for x in g),
                min(x.price for x in g),
                g[-1].price,
                sum(x.qty for x in g),
                sum(x.price * x.qty for x in g),
                sum((x.qty for x in g if not x.is_buyer_maker), Decimal(0)),
                len(g),
            )
            for s, g in sorted(by_s.items())
        ]
        assert bars == want
    # again, plus the ms dump of the same trades (other times: new rows) and the recording (same µs times)
    assert cli.main(["load", str(files["trades_us_csv"]), str(files["stream_gz"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        "loaded 801 trades from 2 file(s): 0 new, 801 already stored" in out
    )  # 400 + 400 + 1 duplicated line
    assert "lines skipped (nothing to store)" in out
    assert len(stored(dsn, "BTCUSDT")) == 400


def test_load_recording_keeps_event_and_receive_times(dsn: str, make_dumps: Any) -> None:
    files, trades = make_dumps(n=100, symbol="ETHUSDT", seed=9)
    res = load_files([files["stream_gz"]], progress=False)
    assert (res.files, res.rows, res.inserted) == (1, 101, 100)
    rows = stored(dsn, "ETHUSDT")
    assert [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in rows] == [
        (t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us, t.event_time_us) for t in trades
    ]
    with psycopg.connect(dsn) as c:
        (lag,) = c.execute(
            "SELECT DISTINCT received_at - event_time FROM trades WHERE symbol = 'ETHUSDT'"
        ).fetchone()
    assert lag.total_seconds() == 0.00025


def test_load_errors_are_one_clear_line(
    dsn: str, make_dumps: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    files, _ = make_dumps(n=10)
    unnamed = tmp_path / "day1.csv"
    unnamed.write_bytes(files["trades_us_csv"].read_bytes())
    assert cli.main(["load", str(unnamed), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "does not say the symbol" in err and "pass the symbol" in err
    assert cli.main(["load", str(unnamed), "--symbol", "solusdt", "--no-progress"]) == 0
    assert len(stored(dsn, "SOLUSDT")) == 10
    assert cli.main(["load", str(tmp_path / "nope.zip")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_load_aggtrades_dump_into_agg_trades(
    dsn: str, make_dumps: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    files, trades = make_dumps(n=300, symbol="ETHUSDT", seed=5)
    assert cli.main(["load", str(files["agg_ms_csv"]), "--no-progress"]) == 0
    assert "aggregate trades into agg_trades" in capsys.readouterr().out
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)  # an aggregate is not a trade
        total, first, last, qty = c.execute(
            "SELECT sum(trade_count), min(first_trade_id), max(last_trade_id), sum(qty) FROM agg_trades"
        ).fetchone()
    assert (total, first, last) == (len(trades), trades[0].trade_id, trades[-1].trade_id)
    assert qty == sum(t.qty for t in trades)
    assert cli.main(["load", str(files["agg_ms_csv"]), "--no-progress"]) == 0
    assert ": 0 new" in capsys.readouterr().out


def test_load_bad_dumps_store_nothing(
    dsn: str, make_dumps: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    files, _ = make_dumps(n=50)
    wrong = tmp_path / "BTCUSDT-trades-2025-01-02.csv"
    wrong.write_text(
        "".join(line.rsplit(",", 1)[0] + ",x,y\n" for line in files["trades_us_csv"].read_text().splitlines())
    )
    assert cli.main(["load", str(wrong), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert "8 columns where a spot trades dump has 7" in err and len(err.splitlines()) == 1
    cut = tmp_path / "BTCUSDT-trades-2025-01-03.zip"
    cut.write_bytes(files["trades_us_zip"].read_bytes()[:-40])
    assert cli.main(["load", str(files["trades_ms_zip"]), str(cut), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert cut.name in err and "nothing of this file was stored" in err and len(err.splitlines()) == 1
    assert len(stored(dsn, "BTCUSDT")) == 50  # the good file before it stays loaded
    with zipfile.ZipFile(tmp_path / "BTCUSDT-trades-2025-01-04.zip", "w") as zf:
        zf.writestr("BTCUSDT-trades-2025-01-04.csv", "1,abc,0.1,1,1735948800000000,True,True\n")
    assert cli.main(["load", str(tmp_path / "BTCUSDT-trades-2025-01-04.zip"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "not a valid trades dump" in err and "abc" in err and len(err.strip().splitlines()) == 1
