"""Readers of data.binance.vision dumps and stream recordings (files made by the test)."""

from __future__ import annotations

import gzip
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cryptolab.binance.dumps import DumpReader, detect_kind, read_dump_trades, symbol_from_name, time_to_us
from cryptolab.errors import DataError


def key(t: Any, ms: bool = False) -> tuple:
    tt = t.trade_time_us // 1000 * 1000 if ms else t.trade_time_us
    return (t.exchange, t.symbol, t.trade_id, t.price, t.qty, t.is_buyer_maker, tt, t.source)


def test_time_unit_is_detected_per_value() -> None:
    assert time_to_us(1_723_161_255_342) == 1_723_161_255_342_000  # ms (2024)
    assert time_to_us(1_735_689_600_010_866) == 1_735_689_600_010_866  # µs (2025 dumps)
    assert time_to_us(1_723_161_253_937_085_768) == 1_723_161_253_937_085  # ns (recorder clock)
    assert time_to_us(99_999_999_999_999) == 99_999_999_999_999_000  # still ms (year 5138)


def test_symbol_and_kind_from_names(tmp_path: Path) -> None:
    assert symbol_from_name("BTCUSDT-trades-2025-01-01.zip") == "BTCUSDT"
    assert symbol_from_name("/x/ethusdt-aggTrades-2024-12-31.csv") == "ETHUSDT"
    assert symbol_from_name("recording.gz") is None
    p = tmp_path / "unnamed.csv"
    p.write_text("1,2.5,0.1,0.25,1735689600010866,True,True\n")
    assert detect_kind(p) == "trades"
    p.write_text("7,2.5,0.1,11,12,1735689600010,True,True\n")
    assert detect_kind(p) == "aggTrades"
    p.write_text("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n7,2.5,0.1,11,12,1,true\n")
    assert detect_kind(p) == "aggTrades"
    p.write_text('123 {"e":"trade"}\n')
    assert detect_kind(p) == "stream"
    p.write_text("hello,world\n")
    with pytest.raises(DataError, match="not a Binance"):
        detect_kind(p)
    p.write_text("1,2.5,0.1,0.25,1735689600010866,True,True\n")
    with pytest.raises(DataError, match="the file name does not say the symbol"):
        DumpReader(p)
    assert next(read_dump_trades(p, symbol="solusdt")).symbol == "SOLUSDT"
    with pytest.raises(DataError, match="no such file"):
        DumpReader(tmp_path / "missing.zip")


def test_trades_dumps_us_and_ms_zip_and_plain(make_dumps: Any) -> None:
    files, trades = make_dumps(n=150)
    want = [key(t) for t in trades]
    for name in ("trades_us_zip", "trades_us_csv"):
        got = list(read_dump_trades(files[name]))
        assert [key(t) for t in got] == want, name
        assert all(t.event_time_us is None and t.received_at_us is None for t in got)
    want_ms = [key(t, ms=True) for t in trades]
    for name in ("trades_ms_zip", "trades_ms_csv"):
        assert [key(t) for t in read_dump_trades(files[name])] == want_ms, name
    # the exact text is kept
    assert str(next(read_dump_trades(files["trades_us_zip"])).price) == str(trades[0].price)


def test_agg_trades_dump(make_dumps: Any) -> None:
    files, trades = make_dumps(n=150)
    got = list(read_dump_trades(files["agg_ms_csv"]))
    assert DumpReader(files["agg_ms_csv"]).kind == "aggTrades"
    assert len(got) < len(trades)
    assert sum(t.qty for t in got) == sum(t.qty for t in trades)
    by_id = {t.trade_id: t for t in trades}
    for g in got:
        first = by_id[g.trade_id]  # an aggregate carries its first trade's id
        assert (g.price, g.is_buyer_maker, g.trade_time_us) == (
            first.price,
            first.is_buyer_maker,
            first.trade_time_us // 1000 * 1000,
        )


def test_stream_recordings(make_dumps: Any) -> None:
    files, trades = make_dumps(n=120)
    reader = DumpReader(files["stream_gz"])
    got = list(reader)
    assert reader.kind == "stream" and reader.symbol is None
    # the duplicated line is read twice (the writer dedupes), the cut line is skipped
    assert [t.trade_id for t in got] == sorted([t.trade_id for t in trades] + [trades[3].trade_id])
    assert reader.skipped >= 1 + 120 // 7 + 1  # snapshot, bookTicker lines, cut line
    exact = {t.trade_id: t for t in trades}
    for g in got:
        w = exact[g.trade_id]
        assert (g.price, g.qty, g.is_buyer_maker, g.trade_time_us, g.event_time_us) == (
            w.price,
            w.qty,
            w.is_buyer_maker,
            w.trade_time_us,
            w.event_time_us,
        )
        assert g.received_at_us == w.event_time_us + 250  # the recorder's ns stamp, as µs
    ms = list(read_dump_trades(files["stream_ms_txt"]))
    assert [key(t) for t in ms] == [key(t, ms=True) for t in trades]
    assert list(read_dump_trades(files["stream_gz"], symbol="ethusdt")) == []


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "BTCUSDT-trades-2025-01-02.csv"
    p.write_text("1,100.5,0.1,10.05,1735776000000000,True,True\n2,abc,0.1,1,1735776000000001,True,True\n")
    with pytest.raises(DataError, match=r"BTCUSDT-trades-2025-01-02.csv line 2: price 'abc'"):
        list(read_dump_trades(p))
    p.write_text("1,100.5,-0.1,10.05,1735776000000000,True,True\n")
    with pytest.raises(DataError, match="not a positive number"):
        list(read_dump_trades(p))
    p.write_text("1,100.5,0.1,10.05,1735776000000000,maybe,True\n")
    with pytest.raises(DataError, match="is_buyer_maker"):
        list(read_dump_trades(p))
    p.write_text("1,100.5\n")
    with pytest.raises(DataError):
        list(read_dump_trades(p))
    # a header line (futures-style dumps) is skipped
    p.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n5,1.25,2,2.5,1735776000000,false\n")
    (t,) = list(read_dump_trades(p))
    assert (t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us) == (
        5,
        Decimal("1.25"),
        Decimal("2"),
        False,
        1735776000000000,
    )
    z = tmp_path / "BTCUSDT-trades-2025-01-03.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("BTCUSDT-trades-2025-01-03.csv", "9,1.5,1,1.5,1735862400000000,True,True\n")
    assert [t.trade_id for t in read_dump_trades(z)] == [9]
    g = tmp_path / "rec.txt.gz"
    with gzip.open(g, "wt") as fh:
        fh.write('17 {"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.0","T":1723161255342,"m":true}\n')
    with pytest.raises(DataError, match="malformed trade event"):
        list(read_dump_trades(g))
