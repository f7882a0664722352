"""The local exchange's USD-M futures market: a synthetic perpetual per symbol, tied to the spot.

`ExchangeServer(markets=("spot", "usdm"))` adds it; it is served on its own port (announced as
`fws=ws://127.0.0.1:P fhttp=http://127.0.0.1:P`), as Binance serves futures apart from spot:

* **Trades.** Every spot trade the synthetic market prints is printed on the perp too, at
  `spot × (1 + basis)` rounded to the tick, with the same time, side and size; the basis is a
  mean-reverting walk of a few bps (so the perp leads and lags spot a little). Trade ids are
  the perp's own and, like Binance's, sometimes skip between aggregates (insurance-fund and
  ADL trades are not aggregated): `f`/`l` jumps are not a loss. Aggregate ids (`a`) count
  from 0 and never skip.
* **Mark price** each second (`<sym>@markPrice@1s`; `<sym>@markPrice` every 3 s): mark = the
  perp's last price, index = spot's, the estimated settle price, the funding rate (interest
  0.01 % plus a share of the premium, clamped to ±0.75 %) and the next funding time. Funding
  settles every 8 h (00:00, 08:00, 16:00 UTC) at the rate then in effect; a past of
  `FUNDING_PAST_DAYS` days of settlements is made up at start (`/fapi/v1/fundingRate`).
* **Liquidations.** A second in which the perp moves more than `LIQ_MOVE_BPS` liquidates a
  burst of positions on the losing side (shorts on a rise: side BUY), others come now and
  then; Binance sends at most one `forceOrder` per symbol per second (the latest), and so does
  this market: the log keeps what was sent.
* **Open interest** moves each second (builds up, unwinds, liquidations take from it):
  `GET /fapi/v1/openInterest`.
* **Book.** A `SyntheticBook` per perp (the spot book machinery), with futures messages:
  `@depth@100ms` / `@depth` diffs carry `T` and `pu` (the previous diff's `u`), `@bookTicker`
  carries `e`, `E`, `T`; `GET /fapi/v1/depth` adds `E` and `T`.

Streams: the routed paths of Binance's 2026 futures streams — `/market/stream?streams=…` and
`/market/ws/…` carry aggTrade, markPrice and forceOrder; `/public/…` depth and bookTicker;
unrouted `/stream`, `/ws` get the public ones only (a market stream asked there is ignored).
REST: `/fapi/v1/{ping,time,exchangeInfo,aggTrades,depth,fundingRate,openInterest,klines}`.

Faults (the spot kinds where they apply, `inject(kind, market="usdm")` or the plan):
`gap` drops the next n aggTrade messages of a symbol (REST keeps them), `reset`/`close`/`stall`/
`burst_reset`/`malformed` act on the futures connections, `depth_*` on its diffs, `snapshot_*`
on `/fapi/v1/depth`, `rest_*` on its REST calls.

Logs for tests (`LocalExchange.usdm_log(what, symbol)`): `agg` (every aggregate), `mark`
(every markPrice@1s sent), `liquidation` (every forceOrder sent), `funding`, `open_interest`
(each second's value), `depth` (every 100 ms diff).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import zlib
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from ..binance.usdm import STREAM_KINDS
from ..markets import AggTrade, FundingRate, Liquidation, MarkPrice, OpenInterest
from ..model import now_us
from . import faults as F
from .book import BookDiff, Top
from .bookfeed import BookFeed, Named
from .injector import FaultInjector
from .rest_api import ApiError, Query, RestApi, _int_param, _time_param, json_response
from .streams import StreamHub, StreamSettings
from .tradelog import UNIT, SymbolLog, SymbolSpec, fmt8, fmt8b

__all__ = [
    "UsdmMarket",
    "FUNDING_HOURS",
    "LIQ_MOVE_BPS",
    "P_TRADE_ID_SKIP",
    "funding_rate_of",
    "next_funding_ms",
]

FUNDING_HOURS = 8
FUNDING_PAST_DAYS = 30
LIQ_MOVE_BPS = 3.0
"""A one-second move of the perp above this many bps liquidates a burst of positions."""
P_LIQ_QUIET = 0.15
"""Chance a second without a big move still sees a liquidation."""
P_TRADE_ID_SKIP = 0.03
"""Chance that trade ids skip before an aggregate (insurance-fund / ADL trades not aggregated)."""
_H_MS = 3_600_000
_ROUTE: contextvars.ContextVar[str] = contextvars.ContextVar("usdm_route", default="")


def next_funding_ms(t_ms: int) -> int:
    """The next funding settlement after `t_ms` (every 8 h from 00:00 UTC)."""
    step = FUNDING_HOURS * _H_MS
    return (t_ms // step + 1) * step


def funding_rate_of(basis: float) -> Decimal:
    """The funding rate of a premium `basis` (a fraction): 0.01 % interest plus a tenth of the
    premium, clamped to ±0.75 %, at 8 decimals (pure)."""
    r = max(-0.0075, min(0.0075, 0.0001 + basis * 0.1))
    return Decimal(round(r * 1e8)) / Decimal(10**8)


class _Perp:
    """One perp's state beside its spot log."""

    def __init__(self, spec: SymbolSpec, seed: int, first_id: int) -> None:
        self.spec = spec
        self.log = SymbolLog(spec, source="simulator")
        self.rng = random.Random(seed * 7_919 + zlib.crc32(b"usdm:" + spec.symbol.encode()))
        self.next_id = first_id
        self.basis = 0.0003  # a fraction (3 bps)
        self.index = spec.price
        self.oi = 1_000 * UNIT * max(1, (61_800 * UNIT) // max(1, spec.price))  # contracts, units
        self.sec_price: int | None = None
        self.marks: list[MarkPrice] = []
        self.liqs: list[Liquidation] = []
        self.fundings: list[FundingRate] = []
        self.ois: list[OpenInterest] = []
        self.rate: Decimal = funding_rate_of(self.basis)

    def price_of(self, spot: int) -> int:
        tick = self.spec.tick
        return max(tick, round(spot * (1.0 + self.basis) / tick) * tick)


class _FuturesFeed(BookFeed):
    """The spot book feed with futures messages (diffs with `T` and `pu`, bookTicker with e/E/T)."""

    agg_base = 0
    """Added to every aggregate's index (its `a`): exchanges started apart never share aggregate ids."""

    def _diff_msg(self, sym: str, name: str, kind: str, d: BookDiff) -> Named:
        ms = d.event_us // 1000
        body = b'{"e":"depthUpdate","E":%d,"T":%d,"s":"%s","U":%d,"u":%d,"pu":%d,"b":%s,"a":%s}' % (
            ms,
            ms,
            sym.encode(),
            d.first_id,
            d.last_id,
            d.first_id - 1,
            _levels(d.bids),
            _levels(d.asks),
        )
        return Named(name, kind, body, body)

    def _quotes(self, sym: str, tops: list[Top], wanted: Mapping[str, int], out: list[Named]) -> None:
        log = self.quotes[sym]
        for t in tops:
            log.append(t)
        name = f"{sym.lower()}@bookTicker"
        if wanted.get(name):
            ms = (self._last_us or now_us()) // 1000
            for t in tops:
                pl = (
                    b'{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}'
                    % (
                        t.update_id,
                        sym.encode(),
                        fmt8b(t.bid),
                        fmt8b(t.bid_qty),
                        fmt8b(t.ask),
                        fmt8b(t.ask_qty),
                        ms,
                        ms,
                    )
                )
                out.append(Named(name, "quote", pl, pl))


def _levels(levels: Iterable[tuple[int, int]]) -> bytes:
    return b"[" + b",".join(b'["%s","%s"]' % (fmt8b(p), fmt8b(q)) for p, q in levels) + b"]"


class _RoutedHub(StreamHub):
    """The futures connections: routed paths, futures stream names (see the module doc)."""

    def __init__(self, *args: Any, activate: Callable[[str], Any], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.activate = activate

    async def routed(self, request: web.Request) -> web.StreamResponse:
        _ROUTE.set(request.match_info.get("route", ""))
        if request.path.endswith("/stream"):
            request = request.clone(rel_url="/stream?" + request.query_string)
        return await self.handle(request)

    def _resubscribe(self, c: Any) -> None:
        route = _ROUTE.get() or "public"  # unrouted: the public streams only (Binance, 2026)
        named = set()
        for name in c.streams:
            sym, _, kind = name.partition("@")
            if sym.upper() in self.logs and sym == sym.lower() and STREAM_KINDS.get(kind) == route:
                named.add(name)
        c.symbols = frozenset()
        books = {
            n.partition("@")[0].upper()
            for n in named - c.named
            if STREAM_KINDS.get(n.partition("@")[2]) == "public"
        }
        self._set_named(c, frozenset(named))
        for sym in books:
            self.activate(sym)


class _FapiApi(RestApi):
    """`/fapi/v1/…` over the perps (Binance's futures answers; ms times)."""

    def __init__(
        self,
        market: UsdmMarket,
        faults: FaultInjector,
        stats: dict[str, int],
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(market.logs, faults, stats, describe)
        self.market = market

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        m = self.market
        handler: Callable[[Query], object] | None = {
            "/fapi/v1/ping": lambda q: {},
            "/fapi/v1/time": lambda q: {"serverTime": now_us() // 1000},
            "/fapi/v1/exchangeInfo": lambda q: m.exchange_info(),
            "/fapi/v1/aggTrades": self._aggs,
            "/fapi/v1/depth": self._depth,
            "/fapi/v1/fundingRate": self._funding,
            "/fapi/v1/openInterest": self._oi,
            "/fapi/v1/klines": lambda q: self._api_klines(q, False),
        }.get(path)
        self.stats["rest_requests"] += 1
        if handler is None:
            return json_response(
                {"code": -1000, "msg": f"Unknown endpoint {request.method} {request.path}."}, 404
            )
        fault = self.faults.next_rest_fault()
        if fault is not None:
            kind, p = fault
            self.faults.count(kind)
            if kind == "rest_429":
                return json_response({"code": -1003, "msg": "Too many requests."}, 429, {"Retry-After": "1"})
            if kind == "rest_500":
                return json_response(
                    {"code": -1001, "msg": "Internal error; unable to process your request."}, 500
                )
            await asyncio.sleep(p["seconds"])
            return json_response(
                {"code": -1007, "msg": "Timeout waiting for response from backend server."}, 504
            )
        if path == "/fapi/v1/depth":
            early = self._depth_fault()
            if early is not None:
                return early
        try:
            return json_response(handler(request.query))
        except ApiError as exc:
            return json_response({"code": exc.code, "msg": exc.msg}, exc.status)

    def _aggs(self, q: Query) -> list[dict[str, Any]]:
        self._check_params(q, ("symbol", "fromId", "startTime", "endTime", "limit"))
        log = self._symbol(q)
        limit = self._limit(q)
        from_id = _int_param(q, "fromId")
        start_ms, end_ms = _int_param(q, "startTime"), _int_param(q, "endTime")
        if start_ms is not None and end_ms is not None and end_ms - start_ms >= _H_MS:
            raise ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
        n = len(log.agg_starts)
        base = self.market.agg_base
        if from_id is not None:
            a = max(0, from_id - base)
        elif start_ms is not None:
            a = log.agg_index_of_time(start_ms * 1000)
        elif end_ms is not None:
            a = max(0, log.agg_index_of_time(end_ms * 1000 + 1000) - limit)
        else:
            a = max(0, n - limit)
        out: list[dict[str, Any]] = []
        while a < n and len(out) < limit:
            row: dict[str, Any] = dict(log.rest_agg(a, False))
            row.pop("M", None)
            row["a"] = a + base
            if end_ms is not None and int(row["T"]) > end_ms:
                break
            out.append(row)
            a += 1
        return out

    def _depth(self, q: Query) -> dict[str, Any]:
        self._check_params(q, ("symbol", "limit"))
        log = self._symbol(q)
        limit = self._limit(q, 500, 1000)
        snap = self.market.feed.snapshot(log.spec.symbol, limit, stale=self._stale)
        t = now_us() // 1000
        return {
            "lastUpdateId": snap["lastUpdateId"],
            "E": t,
            "T": t,
            "bids": snap["bids"],
            "asks": snap["asks"],
        }

    def _funding(self, q: Query) -> list[dict[str, Any]]:
        self._check_params(q, ("symbol", "startTime", "endTime", "limit"))
        perp = self.market.perps[self._symbol(q).spec.symbol]
        limit = self._limit(q, 100, 1000)
        start_us, end_us = _time_param(q, "startTime"), _time_param(q, "endTime")
        rows = [
            f
            for f in perp.fundings
            if (start_us is None or f.funding_time_us >= start_us)
            and (end_us is None or f.funding_time_us <= end_us)
        ]
        rows = rows[:limit] if start_us is not None else rows[-limit:]
        return [
            {
                "symbol": f.symbol,
                "fundingTime": f.funding_time_us // 1000,
                "fundingRate": format(f.funding_rate, "f"),
                "markPrice": format(f.mark_price, "f") if f.mark_price is not None else "",
            }
            for f in rows
        ]

    def _oi(self, q: Query) -> dict[str, Any]:
        self._check_params(q, ("symbol",))
        perp = self.market.perps[self._symbol(q).spec.symbol]
        last = perp.ois[-1]
        return {
            "symbol": perp.spec.symbol,
            "openInterest": format(last.open_interest, "f"),
            "time": last.time_us // 1000,
        }


class UsdmMarket:
    """The perps of every spot symbol, their streams and REST (see the module doc)."""

    def __init__(
        self,
        spot_logs: dict[str, SymbolLog],
        *,
        seed: int,
        id_base: int,
        plan: F.FaultPlan,
        settings: StreamSettings,
        dumps: Any,
        describe: Callable[[], dict[str, Any]],
        rate_of: Callable[[str], float],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.spot = spot_logs
        self.perps = {s: _Perp(log.spec, seed, id_base) for s, log in spot_logs.items()}
        self.logs = {s: p.log for s, p in self.perps.items()}
        self.host, self.port = host, port
        self.stats: dict[str, int] = {
            "connections": 0,
            "stale_drops": 0,
            "rate_limit_drops": 0,
            "max_age_closes": 0,
            "slow_client_drops": 0,
            "rest_requests": 0,
            "rest_429_budget": 0,
        }
        self.faults = FaultInjector(plan, random.Random(seed ^ 0xF07), self.logs, dumps)
        self.feed = _FuturesFeed(self.logs, seed=seed ^ 0xF, id_base=id_base, rate_of=rate_of)
        self.agg_base = self.feed.agg_base = id_base - 1
        """Aggregate ids are `agg_base` + their index: from 0 with a seed, else from the start time in µs."""
        self.hub = _RoutedHub(self.logs, self.faults, settings, self.stats, activate=self.feed.activate)
        self.rest = _FapiApi(self, self.faults, self.stats, describe)
        self._agg_gap: dict[str, int] = {}
        self.delisted: dict[str, str] = {}
        """Contracts no longer trading (symbol → exchangeInfo status, e.g. SETTLING): `delist()`."""
        self._second: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._made_past(now_us())
        self._seed_past(dumps)
        for p in self.perps.values():
            p.ois.append(
                OpenInterest(
                    "simulator-usdm",
                    p.spec.symbol,
                    now_us() // 1000 * 1000,
                    Decimal(fmt8(p.oi)),
                    None,
                    "live",
                )
            )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        app = web.Application()
        for path in (
            "/ws",
            "/ws/{streams:.*}",
            "/stream",
            "/{route:public|market}/stream",
            "/{route:public|market}/ws",
            "/{route:public|market}/ws/{streams:.*}",
        ):
            app.router.add_get(path, self.hub.routed)
        app.router.add_route("*", "/fapi/{path:.*}", self.rest.handle)
        if self.faults.dumps is not None:  # the futures/um dump tree on the futures port too
            app.router.add_get("/data/{path:.*}", self.faults.dumps.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        for item in self.faults.plan.timed:
            self._tasks.append(asyncio.create_task(self.faults.scheduled(item, self.inject)))
        if self.faults.has_per_second():
            self._tasks.append(asyncio.create_task(self.faults.per_second(self.inject)))
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.hub.close_all(1001, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()

    def inject(self, kind: str, **params: Any) -> int:
        """One fault on the futures market now (`gap`: the next n aggTrade messages of a symbol)."""
        if kind == "gap":
            p = F.check_fault(kind, params)
            targets = [p["symbol"]] if p.get("symbol") else list(self.logs)
            for s in targets:
                self._agg_gap[s] = self._agg_gap.get(s, 0) + int(p["n"])
                self.faults.count("gap")
            return len(targets)
        return self.faults.inject(self.hub, kind, **params)

    # ------------------------------------------------------------------ the past (funding settlements)
    def _made_past(self, now: int) -> None:
        step = FUNDING_HOURS * _H_MS
        first = (now // 1000 - FUNDING_PAST_DAYS * 86_400_000) // step * step
        for p in self.perps.values():
            rng = random.Random(p.rng.random())
            t = first
            while t + step <= now // 1000:
                t += step
                rate = funding_rate_of(0.0003 + rng.gauss(0, 0.0004))
                p.fundings.append(
                    FundingRate(
                        "simulator-usdm",
                        p.spec.symbol,
                        t * 1000,
                        rate,
                        Decimal(fmt8(p.spec.price)),
                        FUNDING_HOURS,
                        "backfill",
                    )
                )

    def _seed_past(self, dumps: Any) -> None:
        """A spot past printed before start (`history_days`) is the perps' past too: each spot trade
        at `perp_units` of its price, as the `futures/um` dump tree derives it, so the dumps, `/fapi`
        aggregates and the live stream share one aggregate id sequence (history joins live with no
        gap). The dump tree then serves its futures files from these logs."""
        from .dumptree import perp_units

        seeded = False
        for sym, p in self.perps.items():
            spot = self.spot[sym]
            if not len(spot):
                continue
            seeded = True
            for i in range(len(spot)):
                t = spot.times[i]
                p.log.append(
                    spot.ids[i],
                    perp_units(spot.prices[i], t),
                    spot.qtys[i],
                    t,
                    spot.events[i],
                    bool(spot.makers[i]),
                )
            p.next_id = spot.ids[len(spot) - 1] + 1
        if seeded and dumps is not None:
            dumps.usdm_logs, dumps.usdm_agg_base = self.logs, self.agg_base

    # ------------------------------------------------------------------ one tick
    def publish(self, now: int, batch: list[tuple[SymbolLog, int]], flow: bool) -> None:
        """The spot tick's trades printed on the perps, the books moved, seconds closed, messages sent."""
        perp_batch = self._print(batch)
        named: list[Named] = []
        feed, hub = self.feed, self.hub
        if feed.books or hub.wanted:
            named = feed.advance(now, perp_batch, hub.wanted, flow=flow)
            named = self._drop_aggs(named)
        sec = now // 1_000_000
        if self._second is None:
            self._second = sec
        elif sec != self._second:
            self._second = sec
            named.extend(self._close_second(now))
        if named:
            hub.dispatch_named(named)

    def _print(self, batch: list[tuple[SymbolLog, int]]) -> list[tuple[SymbolLog, int]]:
        out: list[tuple[SymbolLog, int]] = []
        fresh: set[str] = set()
        for log, i in batch:
            sym = log.spec.symbol
            p = self.perps.get(sym)
            if p is None:
                continue
            first = sym not in fresh
            if first:  # a new tick: the basis moves a little
                fresh.add(sym)
                p.basis += -0.02 * (p.basis - 0.0003) + p.rng.gauss(0, 0.00003)
            pl = p.log
            price, t, m = p.price_of(log.prices[i]), log.times[i], bool(log.makers[i])
            n = len(pl.ids)
            joins = bool(n) and pl.times[n - 1] == t and pl.prices[n - 1] == price and pl.makers[n - 1] == m
            if joins and first:
                t += 1  # an aggregate sent in an earlier tick is closed: this trade starts the next one
                joins = False
            if not joins and n and p.rng.random() < P_TRADE_ID_SKIP:
                p.next_id += p.rng.randint(1, 3)  # insurance-fund / ADL trades: not aggregated
            out.append((pl, pl.append(p.next_id, price, log.qtys[i], t, log.events[i], m)))
            p.next_id += 1
            p.index = log.prices[i]
        return out

    def _drop_aggs(self, named: list[Named]) -> list[Named]:
        p_gap = self.faults.plan.probabilistic("gap")
        if not self._agg_gap and not p_gap:
            return named
        out = []
        for msg in named:
            if msg.kind == "agg":
                sym = msg.stream.partition("@")[0].upper()
                for pi in p_gap:
                    if self.faults.rng.random() < (pi.p or 0):
                        self._agg_gap[sym] = self._agg_gap.get(sym, 0) + int(pi.params["n"])
                        self.faults.count("gap")
                left = self._agg_gap.get(sym, 0)
                if left:
                    self._agg_gap[sym] = left - 1
                    self.faults.count("gap_trades")
                    continue
            out.append(msg)
        return out

    def _close_second(self, now: int) -> list[Named]:
        """Mark price, funding, liquidations and open interest of the second that ended."""
        out: list[Named] = []
        ms = now // 1000
        wanted = self.hub.wanted
        for sym, p in self.perps.items():
            pl = p.log
            last = pl.prices[-1] if len(pl.ids) else p.price_of(p.index)
            move = 0.0 if p.sec_price is None else (last - p.sec_price) / max(1, p.sec_price) * 1e4
            p.sec_price = last
            s = sym.lower()
            nxt = next_funding_ms(ms)
            if p.marks and next_funding_ms(p.marks[-1].event_time_us // 1000) != nxt:
                prev = p.marks[-1]
                p.fundings.append(
                    FundingRate(
                        "simulator-usdm",
                        sym,
                        next_funding_ms(prev.event_time_us // 1000) * 1000,
                        p.rate,
                        prev.mark_price,
                        FUNDING_HOURS,
                        "backfill",
                    )
                )
            premium = (last - p.index) / max(1, p.index)
            p.rate = funding_rate_of(premium)
            mark, index = fmt8(last), fmt8(p.index)
            mp = MarkPrice(
                "simulator-usdm",
                sym,
                ms * 1000,
                Decimal(mark),
                Decimal(index),
                Decimal(index),
                p.rate,
                nxt * 1000,
            )
            p.marks.append(mp)
            body = b'{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%s","P":"%s","i":"%s","r":"%s","T":%d}' % (
                ms,
                sym.encode(),
                mark.encode(),
                index.encode(),
                index.encode(),
                format(p.rate, "f").encode(),
                nxt,
            )
            if wanted.get(f"{s}@markPrice@1s"):
                out.append(Named(f"{s}@markPrice@1s", "mark", body, body))
            if ms // 1000 % 3 == 0 and wanted.get(f"{s}@markPrice"):
                out.append(Named(f"{s}@markPrice", "mark", body, body))
            liq = self._liquidate(p, move, last, ms)
            if liq is not None and wanted.get(f"{s}@forceOrder"):
                out.append(Named(f"{s}@forceOrder", "liq", liq, liq))
            p.oi = max(
                p.spec.lot, round(p.oi * math.exp(p.rng.gauss(0.00002, 0.0008)) / p.spec.lot) * p.spec.lot
            )
            p.ois.append(OpenInterest("simulator-usdm", sym, ms * 1000, Decimal(fmt8(p.oi)), None, "live"))
            if len(p.ois) > 100_000:
                del p.ois[:50_000]
        return out

    def _liquidate(self, p: _Perp, move: float, price: int, ms: int) -> bytes | None:
        """This second's liquidations (a burst on a big move): the latest one is sent, as Binance does."""
        big = abs(move) > LIQ_MOVE_BPS
        n = (
            (1 + int(p.rng.expovariate(1.0) * abs(move) / LIQ_MOVE_BPS))
            if big
            else int(p.rng.random() < P_LIQ_QUIET)
        )
        if not n:
            return None
        side = ("BUY" if move > 0 else "SELL") if big else p.rng.choice(("BUY", "SELL"))
        size = max(1, 20 * UNIT * UNIT // max(1, p.spec.price) // p.spec.lot)  # lots worth ~20 USDT
        total = 0
        for _ in range(n):
            total += max(1, round(p.rng.expovariate(1.0) * size * 50)) * p.spec.lot
        p.oi = max(p.spec.lot, p.oi - total)
        qty = max(1, round(p.rng.expovariate(1.0) * size * 50)) * p.spec.lot
        tick = p.spec.tick
        limit = price + (tick * 5 if side == "BUY" else -tick * 5)
        limit = max(tick, limit)
        t = ms - p.rng.randrange(0, 900)
        liq = Liquidation(
            "simulator-usdm",
            p.spec.symbol,
            t * 1000,
            side,
            "LIMIT",
            "IOC",
            Decimal(fmt8(limit)),
            Decimal(fmt8(price)),
            Decimal(fmt8(qty)),
            Decimal(fmt8(qty)),
            Decimal(fmt8(qty)),
            "FILLED",
            ms * 1000,
        )
        p.liqs.append(liq)
        return (
            b'{"e":"forceOrder","E":%d,"o":{"s":"%s","S":"%s","o":"LIMIT","f":"IOC","q":"%s","p":"%s","ap":"%s",'
            b'"X":"FILLED","l":"%s","z":"%s","T":%d}}'
        ) % (
            ms,
            p.spec.symbol.encode(),
            side.encode(),
            fmt8b(qty),
            fmt8b(limit),
            fmt8b(price),
            fmt8b(qty),
            fmt8b(qty),
            t,
        )

    # ------------------------------------------------------------------ what it says
    def exchange_info(self) -> dict[str, Any]:
        t = now_us() // 1000
        syms = []
        for sym, p in self.perps.items():
            spec = p.spec
            syms.append(
                {
                    "symbol": sym,
                    "pair": sym,
                    "contractType": "PERPETUAL",
                    "status": self.delisted.get(sym, "TRADING"),
                    "baseAsset": spec.base,
                    "quoteAsset": spec.quote,
                    "marginAsset": spec.quote,
                    "pricePrecision": 8,
                    "quantityPrecision": 8,
                    "underlyingType": "COIN",
                    "filters": [
                        {"filterType": "PRICE_FILTER", "tickSize": fmt8(spec.tick)},
                        {"filterType": "LOT_SIZE", "stepSize": fmt8(spec.lot)},
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": t,
            "rateLimits": [],
            "symbols": syms,
            "cryptolab": {**self.rest.describe(), "market": "usdm"},
        }

    def delist(self, symbol: str, status: str = "SETTLING") -> None:
        """Say in exchangeInfo that a contract no longer trades (a delisting, for tests)."""
        self.delisted[symbol.upper()] = status

    def log_rows(self, what: str, symbol: str) -> list[Any]:
        """What the futures market printed or sent (`agg`, `mark`, `liquidation`, `funding`,
        `open_interest`, `depth`), as rows (for tests)."""
        sym = symbol.upper()
        p = self.perps[sym]
        if what == "agg":
            log = p.log
            return [_agg_row(log, a)._replace(agg_id=a + self.agg_base) for a in range(len(log.agg_starts))]
        if what == "mark":
            return list(p.marks)
        if what == "liquidation":
            return list(p.liqs)
        if what == "funding":
            return list(p.fundings)
        if what == "open_interest":
            return list(p.ois)
        if what == "depth":
            self.feed.activate(sym)
            return list(self.feed.diffs[sym].items)
        raise ValueError(
            f"unknown futures log {what!r}: agg, mark, liquidation, funding, open_interest or depth"
        )


def _agg_row(log: SymbolLog, a: int) -> AggTrade:
    first, last = log.agg_bounds(a)
    return AggTrade(
        "simulator-usdm",
        log.spec.symbol,
        a,
        Decimal(fmt8(log.prices[first])),
        Decimal(fmt8(sum(log.qtys[first : last + 1]))),
        log.ids[first],
        log.ids[last],
        log.times[first] // 1000 * 1000,
        bool(log.makers[first]),
    )


def usdm_market(server: Any, markets: Iterable[str], settings: StreamSettings) -> UsdmMarket | None:
    """The futures market of `server` when `markets` has "usdm" (synthetic market only), else None."""
    from ..errors import ConfigError
    from ..markets import check_market
    from .market import SyntheticMarket

    wanted = {check_market(m) for m in markets}
    if "usdm" not in wanted:
        return None
    src = server.source
    if not isinstance(src, SyntheticMarket):
        raise ConfigError(
            "the futures market follows the synthetic spot market: it does not go with a replay"
        )
    n = max(1, len(server.logs))
    return UsdmMarket(
        server.logs,
        seed=server.seed,
        id_base=server.id_base,
        plan=server.plan,
        settings=settings,
        dumps=server.dumps,
        describe=server.describe,
        rate_of=lambda sym: src.rate / n,
        host=server.host,
    )
