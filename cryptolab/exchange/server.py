"""The local exchange's server: Binance spot's WebSocket streams and REST API on one port.

One aiohttp application on 127.0.0.1, composed of one room each:

* the market source (`market`: synthetic, or `replay`) printing into per-symbol trade logs
  (`tradelog`), with an optional past served by the dump tree (`dumptree`);
* the stream hub (`streams`): WebSocket raw and combined streams, methods, pings, limits;
* the REST API (`rest_api`): `/api/v3/…` with Binance's weights and errors;
* the fault injector (`injector`): the faults of a `FaultPlan` on streams, REST and dumps;
* the control API (`control`): `/_cryptolab/…`, used by `LocalExchange` across processes.

This module owns the lifecycle (start, stop), the market loop that hands each tick's
trades to the stream hub, and the market controls (pause, resume, stop, rate).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from ..binance.dumps import detect_kind
from ..errors import ConfigError
from ..model import now_us
from . import faults as F
from .book import DEFAULT_HISTORY
from .bookfeed import BookFeed, agg_messages
from .calibration import BOOK_TRADES_PER_S
from .control import ControlApi
from .dumptree import DumpTree, day_start_us
from .injector import FaultInjector
from .market import DEFAULT_SYMBOLS, SyntheticMarket, print_history, symbol_spec
from .recording import Recorder, RecordingReplay, Run, has_book_lines
from .replay import ReplaySource, replay_logs
from .rest_api import ApiError, RestApi
from .streams import MAX_INCOMING_PER_S, MAX_STREAMS, StreamHub, StreamSettings
from .tradelog import SymbolLog

__all__ = ["ExchangeServer", "MAX_STREAMS", "MAX_INCOMING_PER_S"]

logger = logging.getLogger("cryptolab.exchange")

REPLAY_THROTTLE = 4 * 1024 * 1024  # replay at speed 0 waits while a client is this far behind


def _paced(pace: Sequence[str], pace_x: float, replay: bool) -> tuple[list[str], float]:
    """(symbols, total trades/s) of `pace` at `pace_x` times BTCUSDT's real rate."""
    if replay:
        raise ConfigError("pace sets a synthetic market's rates: it does not go with a replay")
    if not 0 < pace_x < 1e5:
        raise ConfigError(f"pace_x must be a number > 0 (got {pace_x:g})")
    symbols = [s.lower() for s in pace]
    return symbols, BOOK_TRADES_PER_S * pace_x * len(symbols)


def _with_aggs(runs: list[Run], wanted: Mapping[str, int]) -> list[Run]:
    """A replayed recording's runs with `@aggTrade` messages after each run of trades."""
    out: list[Run] = []
    for kind, items in runs:
        out.append((kind, items))
        if kind == "trades":
            aggs = agg_messages(items, wanted)
            if aggs:
                out.append(("named", aggs))
    return out


class ExchangeServer:
    """The exchange: a market source and its trade logs, with streams, REST, faults and a
    control API composed around them; runs in one event loop."""

    def __init__(
        self,
        *,
        symbols: Sequence[str] | None = None,
        rate: float = 200.0,
        seed: int | None = None,
        faults: F.FaultPlan | str | None = None,
        replay: Sequence[str] | None = None,
        speed: float = 1.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        max_connection_age: float = 86400.0,
        shutdown_notice: float | None = None,
        weight_budget: int = 6000,
        max_trades: int | None = None,
        first_ids: Mapping[str, int] | None = None,
        first_id: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tick: float = 0.002,
        history_days: int = 0,
        history_rate: float = 1.0,
        record: str | None = None,
        pace: Sequence[str] | None = None,
        pace_x: float = 1.0,
        book_history: int = DEFAULT_HISTORY,
        markets: Sequence[str] = ("spot",),
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the local exchange binds to the loopback interface only")
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is not a TCP port: use 1-65535, or 0 for any free port")
        self.host, self.port = host, port
        self.plan = faults if isinstance(faults, F.FaultPlan) else F.parse_faults(faults)
        self.synthetic = not replay
        """True: the synthetic market (made-up trades); False: a replay of real data."""
        if first_id is not None and first_id < 1:
            raise ConfigError(f"first_id must be >= 1 (got {first_id})")
        # Ids: an explicit first id, or 1 with an explicit seed (reproducible runs), or else
        # the start time in µs, so that exchanges started independently never print the
        # same ids (one would have to print > 1M trades/s on average to reach the next one's).
        self.id_base = first_id if first_id is not None else (1 if seed is not None else now_us())
        self.seed = seed if seed is not None else self.id_base
        if pace:  # a real symbol's mix: its trade rate, and its book from the start
            symbols, rate = _paced(pace, pace_x, bool(replay))
        if replay:
            self.logs = replay_logs(replay, symbols)
            # recordings with the book replay every stream; mixed with trade dumps, trades only (merged by
            # time)
            if any(has_book_lines(p) for p in replay) and all(detect_kind(p) == "stream" for p in replay):
                self.source: SyntheticMarket | ReplaySource | RecordingReplay = RecordingReplay(
                    replay, self.logs, speed=speed, max_trades=max_trades
                )
            else:
                self.source = ReplaySource(replay, self.logs, speed=speed, max_trades=max_trades)
        else:
            names = [s.upper() for s in (symbols or DEFAULT_SYMBOLS)]
            self.logs = {s: SymbolLog(symbol_spec(s)) for s in dict.fromkeys(names)}
            explicit = {k.upper(): int(v) for k, v in (first_ids or {}).items()}
            self.source = SyntheticMarket(
                list(self.logs.values()),
                rate=rate,
                seed=self.seed,
                max_trades=max_trades,
                first_ids={s: explicit.get(s, self.id_base) for s in self.logs},
            )
        # A past of N whole UTC days before today (plus today so far), printed before the
        # server starts; its ids run on into the live stream. Served by REST and the dump tree.
        if history_days < 0 or history_days > 3660:
            raise ConfigError(f"history_days must be 0-3660 (got {history_days})")
        if not (history_rate > 0 and history_rate < 1e7):
            raise ConfigError(f"history_rate must be a number > 0 trades/s (got {history_rate:g})")
        self.history_days = history_days
        self.history_first_day: date | None = None
        if history_days:
            if not isinstance(self.source, SyntheticMarket):
                raise ConfigError("history_days works with the synthetic market only (not with a replay)")
            now = now_us()
            today = date(1970, 1, 1) + timedelta(days=now // 86_400_000_000)
            self.history_first_day = today - timedelta(days=history_days)
            print_history(self.source, day_start_us(self.history_first_day), now, history_rate)
        self.dumps = DumpTree(self.logs, self.history_first_day)
        self.stats: dict[str, int] = {
            "connections": 0,
            "stale_drops": 0,
            "rate_limit_drops": 0,
            "max_age_closes": 0,
            "slow_client_drops": 0,
            "rest_requests": 0,
            "rest_429_budget": 0,
        }
        self.tick = tick
        self.paused = False
        self.stopped = False
        self.error: str | None = None
        self._pause_started: int | None = None
        self.faults = FaultInjector(self.plan, random.Random(self.seed ^ 0x5EED), self.logs, self.dumps)
        notice = shutdown_notice if shutdown_notice is not None else min(600.0, max_connection_age / 10)
        self.feed = self._book_feed(book_history)
        """The synthetic books (lazy: see `bookfeed`); None for a replay."""
        self.streams = StreamHub(
            self.logs,
            self.faults,
            StreamSettings(ping_interval, ping_timeout, max_connection_age, notice),
            self.stats,
            self._books_wanted,
        )
        self.rest = RestApi(self.logs, self.faults, self.stats, self.describe, weight_budget)
        if self.feed is not None or isinstance(self.source, RecordingReplay):
            self.rest.depth = self.depth_snapshot
        self.recorder = self._recorder(record)
        if (pace or record) and self.feed is not None:
            for sym in self.logs:
                self.feed.activate(sym)
        self.control = ControlApi(self)
        self.usdm = self._usdm(markets, notice, ping_interval, ping_timeout, max_connection_age)
        """The futures market (`markets` has "usdm"): its own port, see `exchange.usdm`."""
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False

    def _usdm(
        self, markets: Sequence[str], notice: float, ping_interval: float, ping_timeout: float, max_age: float
    ) -> Any:
        from .usdm import usdm_market

        return usdm_market(self, markets, StreamSettings(ping_interval, ping_timeout, max_age, notice))

    def _book_feed(self, history: int) -> BookFeed | None:
        if not isinstance(self.source, SyntheticMarket):
            return None
        n = max(1, len(self.logs))
        market = self.source
        return BookFeed(
            self.logs,
            seed=self.seed,
            id_base=self.id_base,
            rate_of=lambda sym: market.rate / n,
            history=history,
        )

    def _recorder(self, record: str | None) -> Recorder | None:
        if not record:
            return None
        if self.feed is None:
            raise ConfigError("record writes the synthetic market's streams: it does not go with a replay")
        self.feed.record = True
        return Recorder(record)

    @property
    def fault_counts(self) -> dict[str, int]:
        """Every fault fired so far, by kind."""
        return self.faults.counts

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        """Bind and start serving; return the port."""
        app = web.Application(client_max_size=1024 * 1024)
        for path in ("/ws", "/ws/{streams:.*}", "/stream"):
            app.router.add_get(path, self.streams.handle)
        app.router.add_route("*", "/api/{path:.*}", self.rest.handle)
        app.router.add_get("/data/{path:.*}", self._dump)
        app.router.add_get("/", self.dumps.listing)
        self.control.add_routes(app)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            max_line_size=131072,
            max_field_size=131072,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        if self.usdm is not None:
            await self.usdm.start()
        if not isinstance(self.source, (ReplaySource, RecordingReplay)):
            self.source.start(now_us())  # a replay starts with its first subscriber
        self._tasks.append(asyncio.create_task(self._market_loop(), name="exchange-market"))
        for item in self.plan.timed:
            self._tasks.append(
                asyncio.create_task(self.faults.scheduled(item, self.inject), name=f"fault-{item.kind}")
            )
        if self.faults.has_per_second():
            self._tasks.append(asyncio.create_task(self.faults.per_second(self.inject), name="fault-p"))
        return self.port

    async def stop(self) -> None:
        """Close every connection (going away) and stop serving."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.streams.close_all(1001, "server stopping")
        if self.usdm is not None:
            await self.usdm.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    # ------------------------------------------------------------------ controls
    def pause_market(self) -> None:
        """Stop printing trades until resume_market()."""
        if not self.paused:
            self.paused = True
            self._pause_started = now_us()

    def resume_market(self) -> None:
        if self.paused:
            self.paused = False
            if self._pause_started is not None:
                self.source.shift(now_us() - self._pause_started)
            self._pause_started = None

    def stop_market(self) -> None:
        """No more trades, ever (what is already printed is still delivered)."""
        self.stopped = True

    def set_rate(self, rate: float) -> None:
        self.source.set_rate(rate)

    def printed(self, symbol: str) -> int:
        return len(self.logs[symbol.upper()].makers)

    def inject(self, kind: str, **params: Any) -> int:
        """Fire one fault now; return how many connections/calls/symbols it affects
        (`market="usdm"`: on the futures market)."""
        if params.pop("market", "spot") == "usdm":
            if self.usdm is None:
                raise ConfigError(
                    "this exchange has no futures market: start it with markets=('spot', 'usdm')"
                )
            return int(self.usdm.inject(kind, **params))
        return self.faults.inject(self.streams, kind, **params)

    # ------------------------------------------------------------------ market → streams
    async def _market_loop(self) -> None:
        src = self.source
        while not self._closing:
            now = now_us()
            try:
                if not self.paused and not self.stopped:
                    if isinstance(src, (ReplaySource, RecordingReplay)):
                        if not src.started and self.streams.subscribed():
                            src.start(now)
                        src.throttled = self.streams.behind(REPLAY_THROTTLE)
                    if src.started:
                        src.generate(now)
                self._publish(now, src)
            except Exception as exc:  # e.g. a broken line in a replayed file: stop printing, keep serving
                self.error = f"{type(exc).__name__}: {exc}"
                self.stopped = True
                logger.error("local exchange: market stopped: %s", self.error)
            await asyncio.sleep(self.tick)

    def _publish(self, now: int, src: SyntheticMarket | ReplaySource | RecordingReplay) -> None:
        """Send one tick: book messages (window diffs, then the tick's bookTickers) before trades."""
        runs: list[Run]
        if isinstance(src, RecordingReplay):
            runs = src.release_runs(now)
            if self.streams.wanted:
                runs = _with_aggs(runs, self.streams.wanted)
        else:
            batch = src.release(now)
            feed = self.feed
            named = []
            if feed is not None and (feed.books or self.streams.wanted):
                named = feed.advance(now, batch, self.streams.wanted, flow=not (self.paused or self.stopped))
            elif self.streams.wanted and batch:  # a replay of trades: aggTrade only
                named = agg_messages(batch, self.streams.wanted)
            runs = ([("named", named)] if named else []) + ([("trades", batch)] if batch else [])
            if self.usdm is not None:
                self.usdm.publish(now, batch, not (self.paused or self.stopped))
        for kind, items in runs:
            if kind == "trades":
                self.streams.dispatch(items)
            else:
                self.streams.dispatch_named(items)
        if self.recorder is not None and runs and self.feed is not None:
            feed = self.feed
            self.recorder.write_runs(runs, lambda sym: feed.snapshot(sym, 1000))

    def _books_wanted(self, symbols: set[str]) -> None:
        if self.feed is not None:
            for sym in symbols:
                self.feed.activate(sym)

    # ------------------------------------------------------------------ the book
    def depth_snapshot(self, symbol: str, limit: int, stale: bool) -> dict[str, Any]:
        """`GET /api/v3/depth` (see `RestApi.depth`)."""
        if isinstance(self.source, RecordingReplay):
            try:
                return self.source.snapshot(symbol, limit)
            except LookupError as exc:
                raise ApiError(400, -1121, str(exc)) from None
        assert self.feed is not None
        return self.feed.snapshot(symbol, limit, stale=stale)

    def _need_feed(self, symbol: str) -> BookFeed:
        if self.feed is None:
            raise ConfigError(
                "a replay relays its recording's book: the exchange keeps no book of its own to say"
            )
        if symbol.upper() not in self.logs:
            raise ConfigError(
                f"the exchange does not list {symbol.upper()} (it lists {', '.join(self.logs)})"
            )
        return self.feed

    def book_json(self, symbol: str, update_id: int | None = None) -> dict[str, Any]:
        """The exchange's whole book of a symbol at an update id (default: now)."""
        try:
            return self._need_feed(symbol).book_json(symbol, update_id)
        except LookupError as exc:
            raise ConfigError(str(exc)) from None

    def books_json(self, symbol: str, update_ids: list[int]) -> dict[str, Any]:
        """The exchange's whole book at each of several update ids (one pass)."""
        try:
            return self._need_feed(symbol).books_json(symbol, update_ids)
        except LookupError as exc:
            raise ConfigError(str(exc)) from None

    def diff_log_json(self, symbol: str, start: int = 0) -> dict[str, Any]:
        """Every 100 ms diff the book published, from number `start`."""
        return self._need_feed(symbol).diff_log_json(symbol, start)

    def quote_log_json(self, symbol: str, start: int = 0) -> dict[str, Any]:
        """Every bookTicker the book published, from number `start`."""
        return self._need_feed(symbol).quote_log_json(symbol, start)

    async def _dump(self, request: web.Request) -> web.StreamResponse:
        """A file of the dump tree (see `dumptree`); dump faults planned with p= are drawn here."""
        self.faults.draw_dump_faults()
        before = dict(self.dumps.counts)
        resp = await self.dumps.handle(request)
        for k, v in self.dumps.counts.items():
            if v != before.get(k, 0):
                self.faults.count(k, v - before.get(k, 0))
        return resp

    # ------------------------------------------------------------------ what it serves
    def describe(self) -> dict[str, Any]:
        """What this exchange serves (exchangeInfo's `cryptolab` object; not Binance's)."""
        if self.synthetic:
            return {"synthetic": True, "source": "simulator", "seed": self.seed}
        return {"synthetic": False, "source": "replay"}

    def state(self) -> dict[str, Any]:
        return {
            "port": self.port,
            **self.describe(),
            "symbols": list(self.logs),
            "printed": {s: len(log.makers) for s, log in self.logs.items()},
            "fault_counts": dict(self.fault_counts),
            "stats": dict(self.stats),
            "connections": len(self.streams.conns),
            "paused": self.paused,
            "stopped": self.stopped,
            "finished": self.source.finished,
            "error": self.error,
            "pending": self.source.pending_count(),
            "books": {s: b.update_id for s, b in self.feed.books.items()} if self.feed is not None else {},
            "rate": self.source.rate if isinstance(self.source, SyntheticMarket) else None,
            **({"fport": self.usdm.port} if self.usdm is not None else {}),
        }
