"""The local exchange's dump tree: data.binance.vision's files, made from the trade logs.

Paths and names as on the real site (spot):

    /data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-05.zip          (+ .CHECKSUM)
    /data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-05.zip
    /data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-05.zip
    /data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2025-01.zip

A daily file exists for every whole UTC day of the log before today (the day the
exchange's history starts included; today is never published, as on Binance); a monthly
file for every whole month of it. `.CHECKSUM` holds `<sha256>  <file name>` as Binance's
do. The CSVs have no header (spot dumps), times in µs from 2025-01-01 (ms before), as the
real dumps switched then. `/?prefix=data/spot/daily/trades/BTCUSDT/&delimiter=/` answers
the S3 bucket listing (ListBucketResult XML) the real site's index page reads. Files are
built on first request and kept (bounded cache); `Range: bytes=N-` is answered with 206.

A USD-M futures tree beside it, `/data/futures/um/…`, serves a synthetic perpetual per symbol
tied to the synthetic spot (`Perp`): the same trades (ids, quantities, times, sides) at the spot
price plus a basis that moves every hour (−100 … +500 ppm), so perp and spot differ by a known,
exact amount. Kinds and periods as on the real site: daily and monthly `trades`, `aggTrades`,
`klines/<iv>`, `markPriceKlines/<iv>` (the perp's OHLC, volumes 0); monthly `fundingRate`
(settlements at 00:00, 08:00, 16:00 UTC, rate = basis × 100 / 3 in units of 1e-8); daily `metrics`
(open interest every 5 minutes, its value at the perp's last price, long/short ratios). Futures
CSVs have a header line and keep millisecond times (spot dumps are µs from 2025). A monthly
futures file exists for every month that ends before today and overlaps the history (a
contract listed mid-month has a short first month, as on Binance).

Dump faults (armed by `inject`, see `faults`): `dump_404`, `dump_500`, `dump_truncate`
(Content-Length of the whole file, half the body, then the connection drops),
`dump_checksum` (a wrong sha256 in the next `.CHECKSUM`), `dump_slow` (the next file is
sent slowly, in small pieces over `seconds`).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import re
import zipfile
from collections import OrderedDict
from datetime import date, datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from ..model import now_us
from .tradelog import KLINE_INTERVALS_MS, SymbolLog, fmt8, fmt_scaled

__all__ = ["DumpTree", "Perp", "day_start_us", "MICROS_FROM", "basis_ppm", "perp_units", "funding_units",
           "open_interest_units"]

MICROS_FROM = date(2025, 1, 1)
"""Spot dumps hold µs times from this day on (ms before), as on data.binance.vision."""
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_CACHE_FILES = 64

_PATH = re.compile(
    r"^data/spot/(?P<period>daily|monthly)/(?P<kind>trades|aggTrades|klines)/(?P<symbol>[A-Z0-9]{2,20})/"
    r"(?:(?P<interval>[0-9]+[smhdwM])/)?"
    r"(?P<name>(?P=symbol)-(?:(?P<kname>trades|aggTrades)|(?P<iname>[0-9]+[smhdwM]))-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip)(?P<checksum>\.CHECKSUM)?$"
)


_FUT_PATH = re.compile(
    r"^data/futures/um/(?P<period>daily|monthly)/(?P<kind>trades|aggTrades|klines|markPriceKlines|fundingRate|metrics)/"
    r"(?P<symbol>[A-Z0-9]{2,20})/(?:(?P<interval>[0-9]+[smhdwM])/)?"
    r"(?P<name>(?P=symbol)-(?:(?P<kname>trades|aggTrades|fundingRate|metrics)|(?P<iname>[0-9]+[smhdwM]))-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip)(?P<checksum>\.CHECKSUM)?$"
)
_FUT_HEADERS = {
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
    "klines": "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore",
    "fundingRate": "calc_time,funding_interval_hours,last_funding_rate",
    "metrics": "create_time,symbol,sum_open_interest,sum_open_interest_value,"
    "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,"
    "sum_taker_long_short_vol_ratio",
}
_FUT_PERIODS = {"fundingRate": ("monthly",), "metrics": ("daily",)}
_HOUR_US = 3_600_000_000
_FUNDING_US = 8 * _HOUR_US


def basis_ppm(t_us: int) -> int:
    """The synthetic perp's basis over spot at time t, in millionths (moves every hour, −100 … +500)."""
    h = t_us // _HOUR_US
    return 200 + ((h * 37) % 13 - 6) * 50


def perp_units(spot_units: int, t_us: int) -> int:
    """The perp's price (units of 1e-8) for a spot price at time t: spot × (1 + basis), rounded down."""
    return spot_units + spot_units * basis_ppm(t_us) // 1_000_000


def funding_units(funding_us: int) -> int:
    """The rate settled at `funding_us` in units of 1e-8: the basis of the hour before, × 100 / 3."""
    return basis_ppm(funding_us - 1) * 100 // 3


def open_interest_units(t_us: int) -> int:
    """Open interest (units of 1e-8 contracts) at a 5-minute mark: builds up and unwinds over a
    day (100,000 … 101,440 contracts) with a little noise."""
    k = t_us // 300_000_000
    return (100_000 + 10 * abs(k % 288 - 144)) * 100_000_000 + (k * 7919 % 1000) * 1_000_000


class Perp:
    """The synthetic perpetual of one spot log: its trades at the perp's price, derived as needed."""

    def __init__(self, spot: SymbolLog) -> None:
        self.spot = spot
        self.log = SymbolLog(spot.spec, source=spot.source)

    def synced(self) -> SymbolLog:
        spot, log = self.spot, self.log
        for i in range(len(log), len(spot)):
            t = spot.times[i]
            log.append(
                spot.ids[i],
                perp_units(spot.prices[i], t),
                spot.qtys[i],
                t,
                spot.events[i],
                bool(spot.makers[i]),
            )
        return log


def day_start_us(day: date) -> int:
    return (day - _EPOCH).days * _US_PER_DAY


def _day_of(us: int) -> date:
    return _EPOCH + timedelta(days=us // _US_PER_DAY)


class DumpTree:
    """Serves dumps of `logs` for whole UTC days from `first_day` on (before today)."""

    def __init__(self, logs: dict[str, SymbolLog], first_day: date | None) -> None:
        self.logs = logs
        self.first_day = first_day
        self.faults: list[tuple[str, dict[str, float]]] = []
        self.counts: dict[str, int] = {}
        self.requests = 0
        self._cache: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._perps: dict[str, Perp] = {}
        self.usdm_logs: dict[str, SymbolLog] | None = None
        """The live futures market's perp logs when it runs with a past (their past is `Perp`'s, with
        the aggregate ids it streams: `usdm_agg_base` + index); else each `Perp` is derived here."""
        self.usdm_agg_base = 0

    # ------------------------------------------------------------------ what exists
    def today(self) -> date:
        return _day_of(now_us())

    def published_days(self) -> list[date]:
        if self.first_day is None:
            return []
        out, d, today = [], self.first_day, self.today()
        while d < today:
            out.append(d)
            d += timedelta(days=1)
        return out

    def _span(self, period: str, stamp: str) -> tuple[date, date] | None:
        """First and last day of a file, or None when the site would not have it."""
        try:
            if period == "daily":
                first = last = date.fromisoformat(stamp)
            else:
                y, m = (int(x) for x in stamp.split("-"))
                first = date(y, m, 1)
                last = date(y, m, calendar.monthrange(y, m)[1])
        except ValueError:
            return None
        if self.first_day is None or first < self.first_day or last >= self.today():
            return None
        return first, last

    # ------------------------------------------------------------------ file bodies
    def _csv(self, log: SymbolLog, kind: str, interval: str, first: date, last: date) -> bytes:
        lo, hi = day_start_us(first), day_start_us(last + timedelta(days=1))
        micro = first >= MICROS_FROM
        out = io.StringIO()
        w = out.write
        if kind == "trades":
            i, j = log.index_of_time(lo), log.index_of_time(hi)
            ids, prices, qtys, times, makers = log.ids, log.prices, log.qtys, log.times, log.makers
            for k in range(i, j):
                p, q = prices[k], qtys[k]
                t = times[k] if micro else times[k] // 1000
                w(
                    f"{ids[k]},{fmt8(p)},{fmt8(q)},{fmt_scaled(p * q, 16)},{t},"
                    f"{'True' if makers[k] else 'False'},True\n"
                )
        elif kind == "aggTrades":
            a, b = log.agg_index_of_time(lo), log.agg_index_of_time(hi)
            for n in range(a, b):
                g = log.rest_agg(n, micro)
                w(
                    f"{g['a']},{g['p']},{g['q']},{g['f']},{g['l']},{g['T']},{'True' if g['m'] else 'False'},"
                    "True\n"
                )
        else:
            step = KLINE_INTERVALS_MS[interval]
            for kl in log.klines(step, lo // 1000, hi // 1000 - 1, 10**9, micro):
                w(",".join(str(x) for x in kl) + "\n")
        return out.getvalue().encode()

    # ------------------------------------------------------------------ the futures tree
    def _span_um(self, period: str, stamp: str) -> tuple[date, date] | None:
        """Days of a futures file: a monthly one may start after the 1st (listed mid-month)."""
        if period == "daily" or self.first_day is None:
            return self._span(period, stamp)
        try:
            y, mo = (int(x) for x in stamp.split("-"))
            first, last = date(y, mo, 1), date(y, mo, calendar.monthrange(y, mo)[1])
        except ValueError:
            return None
        if last < self.first_day or last >= self.today():
            return None
        return max(first, self.first_day), last

    def _csv_um(self, sym: str, kind: str, interval: str, first: date, last: date) -> bytes:
        if self.usdm_logs is not None and sym in self.usdm_logs:
            perp, base = self.usdm_logs[sym], self.usdm_agg_base
        else:
            perp, base = self._perps.setdefault(sym, Perp(self.logs[sym])).synced(), 0
        lo, hi = day_start_us(first), day_start_us(last + timedelta(days=1))
        head = _FUT_HEADERS["klines" if kind == "markPriceKlines" else kind]
        out = io.StringIO()
        w = out.write
        w(head + "\n")
        if kind == "trades":
            for k in range(perp.index_of_time(lo), perp.index_of_time(hi)):
                p, q = perp.prices[k], perp.qtys[k]
                w(
                    f"{perp.ids[k]},{fmt8(p)},{fmt8(q)},{fmt_scaled(p * q, 16)},{perp.times[k] // 1000},"
                    f"{'true' if perp.makers[k] else 'false'}\n"
                )
        elif kind == "aggTrades":
            for n in range(perp.agg_index_of_time(lo), perp.agg_index_of_time(hi)):
                g = perp.rest_agg(n, False)
                w(
                    f"{g['a'] + base},{g['p']},{g['q']},{g['f']},{g['l']},{g['T']},"
                    f"{'true' if g['m'] else 'false'}\n"
                )
        elif kind in ("klines", "markPriceKlines"):
            for kl in perp.klines(KLINE_INTERVALS_MS[interval], lo // 1000, hi // 1000 - 1, 10**9, False):
                if kind == "markPriceKlines":
                    kl = [*kl[:5], "0", kl[6], "0", 0, "0", "0", "0"]
                w(",".join(str(x) for x in kl) + "\n")
        elif kind == "fundingRate":
            t = -(-lo // _FUNDING_US) * _FUNDING_US
            while t < hi:
                w(f"{t // 1000},8,{fmt8(funding_units(t))}\n")
                t += _FUNDING_US
        else:
            self._metrics(w, sym, perp, lo, hi)
        return out.getvalue().encode()

    @staticmethod
    def _metrics(w: Any, sym: str, perp: SymbolLog, lo: int, hi: int) -> None:
        for t in range(lo, hi, 300_000_000):
            oi = open_interest_units(t)
            i = perp.index_of_time(t + 1)
            price = perp.prices[i - 1] if i > 0 else 0
            stamp = (datetime(1970, 1, 1) + timedelta(microseconds=t)).strftime("%Y-%m-%d %H:%M:%S")
            k = t // 300_000_000
            w(
                f"{stamp},{sym},{fmt8(oi)},{fmt_scaled(oi * price, 16)},"
                f"{fmt8(100_000_000 + k % 50 * 1_000_000)},{fmt8(110_000_000 + k % 30 * 1_000_000)},"
                f"{fmt8(90_000_000 + k % 40 * 1_000_000)},{fmt8(95_000_000 + k % 20 * 1_000_000)}\n"
            )

    def _file_um(self, m: re.Match[str]) -> tuple[bytes, str] | None:
        kind, period, sym = m.group("kind"), m.group("period"), m.group("symbol")
        interval = m.group("interval") or ""
        if kind in ("klines", "markPriceKlines"):
            if (
                not interval
                or m.group("iname") != interval
                or interval not in KLINE_INTERVALS_MS
                or interval == "1s"
            ):
                return None
        elif interval or m.group("kname") != kind:
            return None
        if (period == "daily") != (len(m.group("date")) == 10) or period not in _FUT_PERIODS.get(
            kind, (period,)
        ):
            return None
        span = self._span_um(period, m.group("date"))
        if sym not in self.logs or span is None:
            return None
        return self._zip(
            f"um/{period}/{kind}/{interval}/{m.group('name')}",
            m.group("name"),
            lambda: self._csv_um(sym, kind, interval, *span),
        )

    def _zip(self, key: str, name: str, body: Any) -> tuple[bytes, str]:
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name[:-4] + ".csv", body())
        data = buf.getvalue()
        entry = (data, hashlib.sha256(data).hexdigest())
        self._cache[key] = entry
        while len(self._cache) > _CACHE_FILES:
            self._cache.popitem(last=False)
        return entry

    def _file(self, m: re.Match[str]) -> tuple[bytes, str] | None:
        """(zip bytes, sha256 hex) of a file of the tree, or None (404)."""
        if m.re is _FUT_PATH:
            return self._file_um(m)
        key = m.group("name") if m.group("kind") != "klines" else f"{m.group('interval')}/{m.group('name')}"
        key = f"{m.group('period')}/{m.group('kind')}/{key}"
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        kind, period, sym = m.group("kind"), m.group("period"), m.group("symbol")
        interval = m.group("interval") or ""
        if kind == "klines":
            if not interval or m.group("iname") != interval or interval not in KLINE_INTERVALS_MS:
                return None
        elif interval or m.group("kname") != kind:
            return None
        if (period == "daily") != (len(m.group("date")) == 10):
            return None
        log = self.logs.get(sym)
        span = self._span(period, m.group("date"))
        if log is None or span is None:
            return None
        body = self._csv(log, kind, interval, *span)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(m.group("name")[:-4] + ".csv", body)
        data = buf.getvalue()
        entry = (data, hashlib.sha256(data).hexdigest())
        self._cache[key] = entry
        while len(self._cache) > _CACHE_FILES:
            self._cache.popitem(last=False)
        return entry

    # ------------------------------------------------------------------ faults
    def arm(self, kind: str, params: dict[str, float]) -> None:
        self.faults.append((kind, params))

    def _take(self, kinds: tuple[str, ...]) -> tuple[str, dict[str, float]] | None:
        for n, (kind, p) in enumerate(self.faults):
            if kind in kinds:
                left = int(p.get("n", 1)) - 1
                if left <= 0:
                    del self.faults[n]
                else:
                    self.faults[n] = (kind, {**p, "n": left})
                self.counts[kind] = self.counts.get(kind, 0) + 1
                return kind, p
        return None

    # ------------------------------------------------------------------ HTTP
    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        path = request.match_info.get("path", "")
        m = _PATH.match("data/" + path) or _FUT_PATH.match("data/" + path)
        if m is None:
            return web.Response(status=404, text="404 Not Found")
        if m.group("checksum"):
            fault = self._take(("dump_checksum",))
            entry = self._file(m)
            if entry is None:
                return web.Response(status=404, text="404 Not Found")
            digest = entry[1]
            if fault is not None:
                digest = hashlib.sha256(digest.encode()).hexdigest()
            return web.Response(body=f"{digest}  {m.group('name')}\n".encode(), content_type="text/plain")
        fault = self._take(("dump_404", "dump_500", "dump_truncate", "dump_slow"))
        if fault is not None and fault[0] == "dump_404":
            return web.Response(status=404, text="404 Not Found")
        if fault is not None and fault[0] == "dump_500":
            return web.Response(status=500, text="500 Internal Server Error")
        entry = self._file(m)
        if entry is None:
            return web.Response(status=404, text="404 Not Found")
        data = entry[0]
        start = 0
        rng = request.headers.get("Range", "")
        rm = re.match(r"^bytes=(\d+)-$", rng.strip())
        if rm:
            start = int(rm.group(1))
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        resp = web.StreamResponse(status=206 if rm else 200)
        resp.content_type = "application/zip"
        resp.content_length = len(body)
        resp.headers["Accept-Ranges"] = "bytes"
        if rm:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        if fault is not None and fault[0] == "dump_truncate":
            await resp.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        if fault is not None and fault[0] == "dump_slow":
            seconds = float(fault[1].get("seconds", 2.0))
            pieces = 20
            size = max(1, -(-len(body) // pieces))
            for k in range(0, len(body), size):
                await resp.write(body[k : k + size])
                await asyncio.sleep(seconds / pieces)
        else:
            await resp.write(body)
        await resp.write_eof()
        return resp

    async def listing(self, request: web.Request) -> web.Response:
        """S3's ListBucketResult for `?prefix=…&delimiter=/` (what the site's index page reads)."""
        prefix = request.query.get("prefix", "")
        keys: list[tuple[str, int]] = []
        dirs: set[str] = set()
        for name in self._keys(prefix):
            rest = name[len(prefix) :]
            if request.query.get("delimiter") == "/" and "/" in rest:
                dirs.add(prefix + rest.split("/", 1)[0] + "/")
            else:
                keys.append((name, 0))
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            "<Name>data.binance.vision</Name>",
            f"<Prefix>{escape(prefix)}</Prefix>",
            "<Marker></Marker><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated>",
        ]
        for k, size in sorted(keys):
            parts.append(
                f"<Contents><Key>{escape(k)}</Key><LastModified>{stamp}</LastModified>"
                f"<Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            )
        for d in sorted(dirs):
            parts.append(f"<CommonPrefixes><Prefix>{escape(d)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return web.Response(text="".join(parts), content_type="application/xml")

    def _keys(self, prefix: str) -> list[str]:
        days = self.published_days()
        months = sorted({(d.year, d.month) for d in days})
        whole = [(y, m) for y, m in months if self._span("monthly", f"{y:04d}-{m:02d}") is not None]
        out: list[str] = []
        for sym in self.logs:
            for kind in ("trades", "aggTrades", "klines"):
                ivs = ["1m", "1h", "1d"] if kind == "klines" else [""]
                for iv in ivs:
                    for period, stamps in (
                        ("daily", [d.isoformat() for d in days]),
                        ("monthly", [f"{y:04d}-{m:02d}" for y, m in whole]),
                    ):
                        base = f"data/spot/{period}/{kind}/{sym}/" + (f"{iv}/" if iv else "")
                        if not (base.startswith(prefix) or prefix.startswith(base)):
                            continue
                        for s in stamps:
                            name = f"{sym}-{iv or kind}-{s}.zip"
                            for n in (base + name, base + name + ".CHECKSUM"):
                                if n.startswith(prefix):
                                    out.append(n)
        return out + self._keys_um(prefix, days)

    def _keys_um(self, prefix: str, days: list[date]) -> list[str]:
        """The futures/um tree's keys under `prefix` (monthly files of months the history overlaps)."""
        months = sorted({(d.year, d.month) for d in days})
        monthly = [
            f"{y:04d}-{m:02d}" for y, m in months if self._span_um("monthly", f"{y:04d}-{m:02d}") is not None
        ]
        out: list[str] = []
        for sym in self.logs:
            for kind in ("trades", "aggTrades", "klines", "markPriceKlines", "fundingRate", "metrics"):
                for iv in ["1m", "1h", "1d"] if kind in ("klines", "markPriceKlines") else [""]:
                    for period, stamps in (("daily", [d.isoformat() for d in days]), ("monthly", monthly)):
                        if period not in _FUT_PERIODS.get(kind, (period,)):
                            continue
                        base = f"data/futures/um/{period}/{kind}/{sym}/" + (f"{iv}/" if iv else "")
                        if not (base.startswith(prefix) or prefix.startswith(base)):
                            continue
                        for stamp in stamps:
                            name = f"{base}{sym}-{iv or kind}-{stamp}.zip"
                            out.extend(n for n in (name, name + ".CHECKSUM") if n.startswith(prefix))
        return out
