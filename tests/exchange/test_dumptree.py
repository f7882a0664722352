"""The local exchange's past: deterministic history, its REST and its data.binance.vision dump tree."""

from __future__ import annotations

import hashlib
import http.client
import io
import urllib.error
import urllib.request
import zipfile
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from cryptolab.errors import ConfigError


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _rows(zbytes: bytes) -> list[list[str]]:
    z = zipfile.ZipFile(io.BytesIO(zbytes))
    return [line.split(",") for line in z.read(z.namelist()[0]).decode().splitlines()]


def _today() -> date:
    return datetime.now(timezone.utc).date()


def test_history_runs_on_into_the_live_stream_and_is_deterministic(exchange: Any) -> None:
    a = exchange(symbols=["btcusdt"], rate=50.0, history_days=1, history_rate=2.0)
    b = exchange(symbols=["btcusdt"], rate=50.0, history_days=1, history_rate=2.0)
    la, lb = a.trade_log("BTCUSDT", "MICROSECOND"), b.trade_log("BTCUSDT", "MICROSECOND")
    start = (
        int(datetime.combine(_today() - timedelta(days=1), datetime.min.time(), timezone.utc).timestamp())
        * 10**6
    )
    cut = start + 86_400 * 10**6
    pa, pb = [t for t in la if t.trade_time_us < cut], [t for t in lb if t.trade_time_us < cut]
    assert len(pa) > 100_000  # a whole day at 2 trades/s
    assert pa == pb  # same seed, same past
    assert la[0].trade_time_us >= start and la[0].trade_id == 1
    ids = [t.trade_id for t in la]
    assert ids == list(range(1, len(ids) + 1))  # the live stream numbers on from the past


def test_dump_tree_files_checksums_ranges_listing(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=1.0)
    day = _today() - timedelta(days=1)
    base = f"{ex.http_url}/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{day}.zip"
    st, body, hdr = _get(base)
    assert st == 200 and hdr["Content-Type"] == "application/zip"
    st, sums, _ = _get(base + ".CHECKSUM")
    assert sums.decode() == f"{hashlib.sha256(body).hexdigest()}  BTCUSDT-trades-{day}.zip\n"
    rows = _rows(body)
    lo = int(datetime.combine(day, datetime.min.time(), timezone.utc).timestamp()) * 10**6
    log = [t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if lo <= t.trade_time_us < lo + 86_400 * 10**6]
    assert [int(r[0]) for r in rows] == [t.trade_id for t in log]
    assert [(r[1], r[2], int(r[4]), r[5]) for r in rows[:50]] == [
        (f"{t.price:.8f}", f"{t.qty:.8f}", t.trade_time_us, "True" if t.is_buyer_maker else "False")
        for t in log[:50]
    ]
    # Range: the rest of the file, 206
    st, tail, hdr = _get(base, {"Range": "bytes=100-"})
    assert (
        st == 206 and tail == body[100:] and hdr["Content-Range"] == f"bytes 100-{len(body) - 1}/{len(body)}"
    )
    # today is never published; an unknown symbol or day is 404
    for url in (
        base.replace(str(day), str(_today())),
        base.replace(str(day), str(day - timedelta(days=1))),
        base.replace("BTCUSDT", "ETHUSDT"),
    ):
        assert _get(url)[0] == 404
    # aggTrades and klines beside
    st, agg, _ = _get(f"{ex.http_url}/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip")
    arows = _rows(agg)
    assert st == 200 and sum(int(r[4]) - int(r[3]) + 1 for r in arows) == len(rows)
    st, kl, _ = _get(f"{ex.http_url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")
    assert st == 200 and sum(int(r[8]) for r in _rows(kl)) == len(rows)
    # the bucket listing the real site's index page reads
    st, xml, _ = _get(f"{ex.http_url}/?prefix=data/spot/daily/trades/BTCUSDT/&delimiter=/")
    assert st == 200 and f"<Key>data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{day}.zip</Key>".encode() in xml


def test_monthly_files_for_whole_months(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=62, history_rate=0.004)
    today = _today()
    m_last = today.replace(day=1) - timedelta(days=1)  # last day of the previous month
    if (today - timedelta(days=62)) > m_last.replace(day=1):
        m_last = m_last.replace(day=1) - timedelta(days=1)
    month = f"{m_last:%Y-%m}"
    st, body, _ = _get(f"{ex.http_url}/data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-{month}.zip")
    assert st == 200
    monthly = _rows(body)
    daily: list[list[str]] = []
    d = m_last.replace(day=1)
    while d <= m_last:
        s, b, _ = _get(f"{ex.http_url}/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{d}.zip")
        assert s == 200
        daily += _rows(b)
        d += timedelta(days=1)
    assert monthly == daily and len(monthly) > 100
    # the current month is not whole: no monthly file
    assert _get(f"{ex.http_url}/data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-{today:%Y-%m}.zip")[0] == 404


def test_dump_faults(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=1.0)
    day = _today() - timedelta(days=1)
    url = f"{ex.http_url}/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{day}.zip"
    good = _get(url)[1]
    ex.inject("dump_404")
    assert _get(url)[0] == 404
    ex.inject("dump_500")
    assert _get(url)[0] == 500
    ex.inject("dump_checksum")
    assert _get(url + ".CHECKSUM")[1].split()[0].decode() != hashlib.sha256(good).hexdigest()
    ex.inject("dump_truncate")
    with pytest.raises(
        http.client.IncompleteRead
    ):  # Content-Length of the whole file, half the body, then the connection drops
        _get(url)
    assert _get(url)[1] == good
    assert {k: ex.fault_counts[k] for k in ("dump_404", "dump_500", "dump_checksum", "dump_truncate")} == {
        "dump_404": 1,
        "dump_500": 1,
        "dump_checksum": 1,
        "dump_truncate": 1,
    }


def test_history_options_checked(exchange: Any) -> None:
    from cryptolab.exchange.faults import parse_faults

    with pytest.raises(ConfigError):
        exchange(history_days=-1)
    with pytest.raises(ConfigError):
        exchange(history_days=1, history_rate=0.0)
    plan = parse_faults("dump_404@p=0.1,dump_slow=1s@every=10s")
    assert [i.kind for i in plan.items] == ["dump_404", "dump_slow"]


def test_futures_um_tree_files_periods_and_listing(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=40, history_rate=0.01)
    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    month = day.replace(day=1) - timedelta(days=1)
    base = f"{ex.http_url}/data/futures/um"
    status, body, _ = _get(f"{base}/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip")
    assert status == 200
    rows = _rows(body)
    assert rows[0] == [
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
    ]
    assert all(
        len(r[5]) == 13 and r[6] in ("true", "false") for r in rows[1:]
    )  # ms times, as Binance's futures
    status, sums, _ = _get(f"{base}/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip.CHECKSUM")
    assert status == 200 and sums.decode().split()[0] == hashlib.sha256(body).hexdigest()
    # fundingRate is monthly only, metrics daily only (as on data.binance.vision)
    assert _get(f"{base}/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-{month:%Y-%m}.zip")[0] == 200
    assert _get(f"{base}/daily/fundingRate/BTCUSDT/BTCUSDT-fundingRate-{day}.zip")[0] == 404
    assert _get(f"{base}/daily/metrics/BTCUSDT/BTCUSDT-metrics-{day}.zip")[0] == 200
    assert _get(f"{base}/monthly/metrics/BTCUSDT/BTCUSDT-metrics-{month:%Y-%m}.zip")[0] == 404
    assert _get(f"{base}/daily/klines/BTCUSDT/1s/BTCUSDT-1s-{day}.zip")[0] == 404  # futures have no 1s klines
    status, listing, _ = _get(f"{ex.http_url}/?prefix=data/futures/um/daily/metrics/BTCUSDT/&delimiter=/")
    assert status == 200 and f"BTCUSDT-metrics-{day}.zip" in listing.decode()
