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

Here: the market (`UsdmMarket`: ticks, seconds, the past, faults, exchangeInfo). Beside it:
`usdm_perp` (a perp's state and pure rules), `usdm_streams` (the futures messages and routed
connections), `usdm_rest` (`/fapi/v1/…`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from aiohttp import web

from ..markets import AggTrade, FundingRate, Liquidation, MarkPrice, OpenInterest
from ..model import now_us
from . import faults as F
from .bookfeed import Named
from .injector import FaultInjector
from .streams import StreamSettings
from .tradelog import UNIT, SymbolLog, fmt8, fmt8b
from .usdm_perp import (
    FUNDING_HOURS,
    FUNDING_PAST_DAYS,
    HOUR_MS,
    LIQ_MOVE_BPS,
    P_LIQ_QUIET,
    P_TRADE_ID_SKIP,
    Perp,
    funding_rate_of,
    next_funding_ms,
)
from .usdm_rest import FapiApi
from .usdm_streams import FuturesFeed, RoutedHub

__all__ = ["UsdmMarket", "usdm_market"]


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
        self.perps = {s: Perp(log.spec, seed, id_base) for s, log in spot_logs.items()}
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
        self.feed = FuturesFeed(self.logs, seed=seed ^ 0xF, id_base=id_base, rate_of=rate_of)
        self.agg_base = self.feed.agg_base = id_base - 1
        """Aggregate ids are `agg_base` + their index: from 0 with a seed, else from the start time in µs."""
        self.hub = RoutedHub(self.logs, self.faults, settings, self.stats, activate=self.feed.activate)
        self.rest = FapiApi(self, self.faults, self.stats, describe)
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
        step = FUNDING_HOURS * HOUR_MS
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

    def _liquidate(self, p: Perp, move: float, price: int, ms: int) -> bytes | None:
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
