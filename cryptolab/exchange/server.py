"""The local exchange's server: Binance spot's WebSocket streams and REST API on one port.

One aiohttp application on 127.0.0.1 serves

* WebSocket raw streams `/ws/<symbol>@trade[/…]`, `/ws`, and combined streams
  `/stream?streams=a@trade/b@trade`, with `timeUnit=MICROSECOND`, the `SUBSCRIBE` /
  `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` / `SET_PROPERTY` / `GET_PROPERTY` methods, a ping
  every `ping_interval` (a client that does not answer with the same payload within
  `ping_timeout` is dropped), `serverShutdown` then a close at `max_connection_age`,
  at most 1024 streams and 5 incoming messages per second per connection (past that
  the connection is closed, as Binance does);
* REST `/api/v3/…` (the handlers live in `rest_api`);
* a small control API under `/_cryptolab/` (not Binance's) that `LocalExchange` uses
  when the exchange runs in another process.

Speed: a trade's payload is formatted once per wire format, framed once (server frames
are unmasked, so a frame is a fixed header + payload), and every connection gets all the
frames due at one tick in one `transport.write`. aiohttp's own writer is used for
everything else (control frames, replies), both write to the same transport in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import ConfigError
from ..model import now_us
from . import faults as F
from .dumptree import DumpTree, day_start_us
from .market import DEFAULT_SYMBOLS, SyntheticMarket, print_history, symbol_spec
from .replay import ReplaySource, replay_logs
from .rest_api import RestApi
from .tradelog import SymbolLog, encode_trade, fmt8

__all__ = ["ExchangeServer", "MAX_STREAMS", "MAX_INCOMING_PER_S"]

logger = logging.getLogger("cryptolab.exchange")

MAX_STREAMS = 1024
MAX_INCOMING_PER_S = 5
MAX_SEND_BUFFER = 64 * 1024 * 1024  # a client this far behind is dropped (slow consumer)
REPLAY_THROTTLE = 4 * 1024 * 1024  # replay at speed 0 waits while a client is this far behind



def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 §5.2)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def _close_frame(code: int, reason: str = "") -> bytes:
    return _frame(struct.pack("!H", code) + reason.encode()[:120], 0x8)


@dataclass(eq=False)
class Conn:
    """One WebSocket client connection."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport
    combined: bool
    micro: bool
    streams: list[str]
    opened: float = field(default_factory=time.monotonic)
    symbols: frozenset[str] = frozenset()
    ping_payload: bytes | None = None
    ping_sent: float = 0.0
    stalled_until: float = 0.0
    dup_left: int = 0
    reorder_n: int = 0
    reorder_buf: list[bytes] = field(default_factory=list)
    incoming: deque[float] = field(default_factory=deque)
    shutdown_sent: bool = False
    closed: bool = False
    frames_sent: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fast(self) -> bool:
        return not (self.dup_left or self.reorder_n or self.reorder_buf or self.stalled_until)


class ExchangeServer(RestApi):
    """The exchange: market source, trade logs, connections, faults; runs in one event loop."""

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
        if replay:
            self.logs = replay_logs(replay, symbols)
            self.source: SyntheticMarket | ReplaySource = ReplaySource(
                replay, self.logs, speed=speed, max_trades=max_trades
            )
        else:
            names = [s.upper() for s in (symbols or DEFAULT_SYMBOLS)]
            self.logs = {s: SymbolLog(symbol_spec(s)) for s in dict.fromkeys(names)}
            explicit = {k.upper(): int(v) for k, v in (first_ids or {}).items()}
            self.source = SyntheticMarket(list(self.logs.values()), rate=rate, seed=self.seed, max_trades=max_trades,
                                          first_ids={s: explicit.get(s, self.id_base) for s in self.logs})
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
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_connection_age = max_connection_age
        self.shutdown_notice = (
            shutdown_notice if shutdown_notice is not None else min(600.0, max_connection_age / 10)
        )
        self.weight_budget = weight_budget
        self.tick = tick
        self.conns: set[Conn] = set()
        self.fault_counts: dict[str, int] = {}
        self.stats: dict[str, int] = {
            "connections": 0,
            "stale_drops": 0,
            "rate_limit_drops": 0,
            "max_age_closes": 0,
            "slow_client_drops": 0,
            "rest_requests": 0,
            "rest_429_budget": 0,
        }
        self.paused = False
        self.stopped = False
        self.error: str | None = None
        self._pause_started: int | None = None
        self._gap_left: dict[str, int] = {}
        self._rest_faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._weights: dict[str, tuple[int, int]] = {}  # ip -> (minute, used)
        self._rng = random.Random(self.seed ^ 0x5EED)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()
        self._sym_bytes = {s: s.encode() for s in self.logs}
        self._stream_prefix = {s: b'{"stream":"%s@trade","data":' % s.lower().encode() for s in self.logs}

    # ------------------------------------------------------------------ lifecycle
    def _count(self, key: str, n: int = 1) -> None:
        self.fault_counts[key] = self.fault_counts.get(key, 0) + n

    async def start(self) -> int:
        """Bind and start serving; return the port."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/ws/{streams:.*}", self._ws)
        app.router.add_get("/stream", self._ws)
        app.router.add_route("*", "/api/{path:.*}", self._rest)
        app.router.add_get("/data/{path:.*}", self._dump)
        app.router.add_get("/", self.dumps.listing)
        app.router.add_get("/_cryptolab/state", self._admin_state)
        app.router.add_get("/_cryptolab/trades", self._admin_trades)
        app.router.add_post("/_cryptolab/control", self._admin_control)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, max_line_size=131072, max_field_size=131072
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
        if not isinstance(self.source, ReplaySource):
            self.source.start(now_us())  # a replay starts with its first subscriber
        self._tasks.append(asyncio.create_task(self._market_loop(), name="exchange-market"))
        for item in self.plan.timed:
            self._tasks.append(asyncio.create_task(self._scheduled(item), name=f"fault-{item.kind}"))
        if any(i.kind in F.CONNECTION_KINDS for i in self.plan.items if i.p is not None):
            self._tasks.append(asyncio.create_task(self._per_second_faults(), name="fault-p"))
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
        for c in list(self.conns):
            self._hard_close(c, 1001, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()

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
        """Fire one fault now; return how many connections/calls/symbols it affects."""
        p = F.check_fault(kind, params)
        now = time.monotonic()
        conns = [c for c in self.conns if not c.closed]
        if kind == "reset":
            for c in conns:
                self._reset(c)
                self._count("reset")
            return len(conns)
        if kind == "close":
            for c in conns:
                c.closed = True
                self._count("close")
                task = asyncio.ensure_future(self._clean_close(c, 1000, "closed by fault injection"))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return len(conns)
        if kind == "stall":
            for c in conns:
                c.stalled_until = now + p["seconds"]
                c.ping_payload = None
                self._count("stall")
            return len(conns)
        if kind == "duplicate":
            for c in conns:
                c.dup_left += p["n"]
            return len(conns)
        if kind == "reorder":
            for c in conns:
                c.reorder_n = p["n"]
            return len(conns)
        if kind == "malformed":
            for c in conns:
                frame = self._malformed_frame(c, p["variant"], p["size"])
                self._send(c, frame)
                self._count("malformed")
                self._count(f"malformed_{p['variant']}")
            return len(conns)
        if kind == "gap":
            targets = [p["symbol"]] if p.get("symbol") else list(self.logs)
            unknown = [s for s in targets if s not in self.logs]
            if unknown:
                raise ConfigError(f"gap: the exchange does not list {', '.join(unknown)} (it lists {', '.join(self.logs)})")
            for s in targets:
                self._gap_left[s] = self._gap_left.get(s, 0) + p["n"]
                self._count("gap")
            return len(targets)
        if kind in F.DUMP_KINDS:
            self.dumps.arm(kind, p)
            return int(p["n"])
        # REST faults: the next n calls
        n = int(p["n"])
        for _ in range(n):
            self._rest_faults.append((kind, p))
        return n

    async def _scheduled(self, item: F.FaultItem) -> None:
        if item.at is not None:
            await asyncio.sleep(item.at)
            self.inject(item.kind, **item.params)
            return
        assert item.every is not None
        while True:
            await asyncio.sleep(item.every)
            self.inject(item.kind, **item.params)

    async def _per_second_faults(self) -> None:
        items = [i for i in self.plan.items if i.p is not None and i.kind in F.CONNECTION_KINDS]
        while True:
            await asyncio.sleep(1.0)
            for i in items:
                if self._rng.random() < (i.p or 0):
                    self.inject(i.kind, **i.params)

    # ------------------------------------------------------------------ market → streams
    async def _market_loop(self) -> None:
        src = self.source
        while not self._closing:
            now = now_us()
            try:
                if not self.paused and not self.stopped:
                    if isinstance(src, ReplaySource):
                        if not src.started and any(c.symbols for c in self.conns):
                            src.start(now)
                        src.throttled = any(
                            c.transport.get_write_buffer_size() > REPLAY_THROTTLE for c in self.conns if not c.closed
                        )
                    if src.started:
                        src.generate(now)
                batch = src.release(now)
                if batch:
                    self._dispatch(batch)
            except Exception as exc:  # e.g. a broken line in a replayed file: stop printing, keep serving
                self.error = f"{type(exc).__name__}: {exc}"
                self.stopped = True
                logger.error("local exchange: market stopped: %s", self.error)
            await asyncio.sleep(self.tick)

    def _apply_gaps(self, batch: list[tuple[SymbolLog, int]]) -> list[tuple[SymbolLog, int]]:
        p_gap = self.plan.probabilistic("gap")
        if not self._gap_left and not p_gap:
            return batch
        out: list[tuple[SymbolLog, int]] = []
        for item in batch:
            sym = item[0].spec.symbol
            for pi in p_gap:
                if self._rng.random() < (pi.p or 0) and (pi.params.get("symbol") in (None, sym)):
                    self._gap_left[sym] = self._gap_left.get(sym, 0) + pi.params["n"]
                    self._count("gap")
            left = self._gap_left.get(sym, 0)
            if left:
                self._gap_left[sym] = left - 1
                self._count("gap_trades")
                continue
            out.append(item)
        return out

    def _payloads(self, batch: list[tuple[SymbolLog, int]], micro: bool) -> list[bytes]:
        out = []
        k = 1 if micro else 1000
        for log, i in batch:
            out.append(
                encode_trade(
                    self._sym_bytes[log.spec.symbol],
                    log.ids[i],
                    log.prices[i],
                    log.qtys[i],
                    log.times[i] // k,
                    log.events[i] // k,
                    bool(log.makers[i]),
                )
            )
        return out

    def _dispatch(self, batch: list[tuple[SymbolLog, int]]) -> None:
        batch = self._apply_gaps(batch)
        if not batch or not self.conns:
            return
        syms = [log.spec.symbol for log, _ in batch]
        all_syms = frozenset(syms)
        payloads: dict[bool, list[bytes]] = {}
        frames: dict[tuple[bool, bool], list[bytes]] = {}
        blobs: dict[tuple[bool, bool, frozenset[str]], tuple[bytes, int]] = {}
        frame_faults = self.plan.frame_faults
        now = time.monotonic()

        def frames_for(combined: bool, micro: bool) -> list[bytes]:
            key = (combined, micro)
            fr = frames.get(key)
            if fr is None:
                pl = payloads.get(micro)
                if pl is None:
                    pl = payloads[micro] = self._payloads(batch, micro)
                if combined:
                    prefix = self._stream_prefix
                    fr = [_frame(prefix[s] + p + b"}") for s, p in zip(syms, pl)]
                else:
                    fr = [_frame(p) for p in pl]
                frames[key] = fr
            return fr

        for c in list(self.conns):
            if c.closed or not c.symbols:
                continue
            wanted = c.symbols & all_syms
            if not wanted:
                continue
            if c.stalled_until:
                if now < c.stalled_until:
                    continue
                c.stalled_until = 0.0
                c.wake.set()
            if c.fast and not frame_faults:
                bkey = (c.combined, c.micro, wanted)
                blob = blobs.get(bkey)
                if blob is None:
                    fr = frames_for(c.combined, c.micro)
                    if wanted == all_syms:
                        blob = (b"".join(fr), len(fr))
                    else:
                        sel = [f for f, s in zip(fr, syms) if s in wanted]
                        blob = (b"".join(sel), len(sel))
                    blobs[bkey] = blob
                self._send(c, blob[0], blob[1])
            else:
                fr = frames_for(c.combined, c.micro)
                sel = [f for f, s in zip(fr, syms) if s in wanted]
                self._send_slow(c, sel)

    def _send_slow(self, c: Conn, frames: list[bytes]) -> None:
        """Per-connection path: duplicates, reordering, probabilistic faults."""
        out: list[bytes] = []
        p_dup = self.plan.probability("duplicate")
        p_reo = self.plan.probability("reorder")
        p_mal = self.plan.probabilistic("malformed")
        rng = self._rng
        for f in frames:
            if p_reo and not c.reorder_n and rng.random() < p_reo:
                c.reorder_n = 2
            if c.reorder_n:
                c.reorder_buf.append(f)
                if len(c.reorder_buf) >= c.reorder_n:
                    out.extend(reversed(c.reorder_buf))
                    c.reorder_buf = []
                    c.reorder_n = 0
                    self._count("reorder")
                continue
            out.append(f)
            if c.dup_left or (p_dup and rng.random() < p_dup):
                out.append(f)
                if c.dup_left:
                    c.dup_left -= 1
                self._count("duplicate")
            for mi in p_mal:
                if rng.random() < (mi.p or 0):
                    out.append(self._malformed_frame(c, mi.params["variant"], mi.params["size"]))
                    self._count("malformed")
                    self._count(f"malformed_{mi.params['variant']}")
        if out:
            self._send(c, b"".join(out), len(out))

    def _send(self, c: Conn, data: bytes, nframes: int = 1) -> None:
        t = c.transport
        if c.closed or t.is_closing():
            return
        t.write(data)
        c.frames_sent += nframes
        if t.get_write_buffer_size() > MAX_SEND_BUFFER:
            self.stats["slow_client_drops"] += 1
            self._hard_close(c, 1008, "client too slow")

    def _last_trade(self, c: Conn) -> tuple[SymbolLog, int]:
        for s in sorted(c.symbols):
            log = self.logs[s]
            if len(log.makers):
                return log, len(log.makers) - 1
        log = self.logs[sorted(c.symbols)[0]] if c.symbols else next(iter(self.logs.values()))
        return log, -1

    def _malformed_frame(self, c: Conn, variant: str, size: int) -> bytes:
        """One extra, broken frame for this connection (never replaces a real trade)."""
        log, i = self._last_trade(c)
        k = 1 if c.micro else 1000
        sym = log.spec.symbol
        if i >= 0:
            tid, p, q, t, e, m = (
                log.ids[i], log.prices[i], log.qtys[i], log.times[i] // k, log.events[i] // k, bool(log.makers[i])
            )
        else:
            tid, p, q, t, e, m = 1, log.spec.price, log.spec.lot, now_us() // k, now_us() // k, False
        mb = b"true" if m else b"false"
        ps, qs, sb = fmt8(p).encode(), fmt8(q).encode(), sym.encode()
        if variant == "bad_json":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":' % (e, sb, tid, ps)
        elif variant == "missing_field":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","T":%d,"m":%s,"M":true}' % (e, sb, tid, ps, t, mb)
        elif variant == "wrong_type":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":%s,"q":"%s","T":%d,"m":%s,"M":true}' % (
                e, sb, tid, ps, qs, t, mb
            )
        elif variant == "huge":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
                e, sb, tid, b"9" * max(16, size), qs, t, mb
            )
        elif variant == "unknown_event":
            payload = b'{"e":"mysteryEvent","E":%d,"s":"%s","x":"surprise"}' % (e, sb)
        else:  # absurd_value
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"-%s","T":%d,"m":%s,"M":true}' % (
                e, sb, tid, ps, qs, t, mb
            )
        if c.combined and variant != "bad_json":
            payload = self._stream_prefix[sym] + payload + b"}"
        return _frame(payload)

    # ------------------------------------------------------------------ connection ends
    def _reset(self, c: Conn) -> None:
        """TCP reset: SO_LINGER 0 then abort, so the peer sees RST, not FIN."""
        c.closed = True
        sock = c.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        c.transport.abort()
        c.wake.set()

    def _hard_close(self, c: Conn, code: int, reason: str) -> None:
        """Close frame then close the socket, without waiting for the client's answer."""
        c.closed = True
        t = c.transport
        if not t.is_closing():
            try:
                t.write(_close_frame(code, reason))
            except Exception:
                pass
            t.close()
        c.wake.set()

    async def _clean_close(self, c: Conn, code: int, reason: str) -> None:
        c.closed = True
        try:
            await asyncio.wait_for(c.ws.close(code=code, message=reason.encode()), 2.0)
        except Exception:
            c.transport.abort()
        c.wake.set()

    # ------------------------------------------------------------------ WebSocket
    def _parse_streams(self, names: list[str]) -> list[str]:
        return [n for n in (x.strip() for x in names) if n]

    def _resubscribe(self, c: Conn) -> None:
        syms = set()
        for name in c.streams:
            sym, _, kind = name.partition("@")
            if kind == "trade" and sym.upper() in self.logs and sym == sym.lower():
                syms.add(sym.upper())
        c.symbols = frozenset(syms)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        q = request.query
        if path.startswith("/stream"):
            combined = True
            streams = self._parse_streams(q.get("streams", "").split("/"))
        else:
            combined = False
            rest = request.match_info.get("streams", "")
            streams = self._parse_streams(rest.split("/"))
        unit = q.get("timeUnit", "MILLISECOND").upper()
        if unit not in ("MILLISECOND", "MICROSECOND"):
            return self._json({"code": -1100, "msg": f"Invalid timeUnit '{q.get('timeUnit')}'."}, 400)
        if len(streams) > MAX_STREAMS:
            return self._json(
                {"code": -1102, "msg": f"Too many streams: {len(streams)} (at most {MAX_STREAMS} per connection)."}, 400
            )
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small frames go out now, not after the peer's delayed ACK (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=65536, timeout=2.0)
        await ws.prepare(request)
        c = Conn(ws=ws, transport=transport, combined=combined, micro=unit == "MICROSECOND", streams=streams)
        self._resubscribe(c)
        self.conns.add(c)
        self.stats["connections"] += 1
        timer = asyncio.create_task(self._conn_timer(c))
        try:
            async for msg in ws:
                if c.closed:
                    break
                now = time.monotonic()
                c.incoming.append(now)
                while c.incoming and now - c.incoming[0] > 1.0:
                    c.incoming.popleft()
                if len(c.incoming) > MAX_INCOMING_PER_S:
                    self.stats["rate_limit_drops"] += 1
                    self._hard_close(c, 1008, "Too many requests")
                    break
                if msg.type == WSMsgType.PING:
                    if now >= c.stalled_until:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    if c.ping_payload is not None and msg.data == c.ping_payload:
                        c.ping_payload = None
                elif msg.type == WSMsgType.TEXT:
                    reply = self._method(c, msg.data)
                    if reply is not None and not c.closed:
                        await ws.send_str(json.dumps(reply, separators=(",", ":")))
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            c.closed = True
            self.conns.discard(c)
            timer.cancel()
        return ws

    def _method(self, c: Conn, text: str) -> dict[str, Any] | None:
        try:
            req = json.loads(text)
        except ValueError as exc:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}
        if not isinstance(req, dict):
            return {"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None}
        rid = req.get("id")
        if rid is not None and not (isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0)):
            return {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": None}
        method = req.get("method")
        params = req.get("params", [])
        if method is None:
            return {"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": rid}
        if not isinstance(params, list):
            return {"error": {"code": 2, "msg": "Invalid request: params must be an array"}, "id": rid}
        if method == "SUBSCRIBE":
            if not all(isinstance(p, str) for p in params):
                return {"error": {"code": 2, "msg": "Invalid request: stream names must be strings"}, "id": rid}
            new = [p for p in params if p not in c.streams]
            if len(c.streams) + len(new) > MAX_STREAMS:
                return {
                    "error": {"code": 2, "msg": f"Invalid request: at most {MAX_STREAMS} streams per connection"},
                    "id": rid,
                }
            c.streams.extend(new)
            self._resubscribe(c)
            return {"result": None, "id": rid}
        if method == "UNSUBSCRIBE":
            c.streams = [s for s in c.streams if s not in params]
            self._resubscribe(c)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(c.streams), "id": rid}
        if method == "SET_PROPERTY":
            if len(params) != 2 or params[0] != "combined":
                return {"error": {"code": 0, "msg": "Unknown property"}, "id": rid}
            if not isinstance(params[1], bool):
                return {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": rid}
            c.combined = params[1]
            return {"result": None, "id": rid}
        if method == "GET_PROPERTY":
            if params != ["combined"]:
                return {"error": {"code": 0, "msg": "Unknown property"}, "id": rid}
            return {"result": c.combined, "id": rid}
        return {
            "error": {
                "code": 2,
                "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
            },
            "id": rid,
        }

    async def _conn_timer(self, c: Conn) -> None:
        """Pings, stale-client drop, serverShutdown and the max-age close of one connection."""
        next_ping = c.opened + self.ping_interval
        shutdown_at = c.opened + max(0.0, self.max_connection_age - self.shutdown_notice)
        close_at = c.opened + self.max_connection_age
        seq = 0
        try:
            while not c.closed:
                now = time.monotonic()
                stalled = now < c.stalled_until
                if stalled:
                    next_ping = max(next_ping, c.stalled_until)
                elif c.ping_payload is not None and now - c.ping_sent > self.ping_timeout:
                    self.stats["stale_drops"] += 1
                    self._hard_close(c, 1008, "pong timeout")
                    return
                if now >= close_at:
                    self.stats["max_age_closes"] += 1
                    await self._clean_close(c, 1000, "max connection age")
                    return
                if now >= shutdown_at and not c.shutdown_sent and not stalled:
                    c.shutdown_sent = True
                    self._send(c, _frame(b'{"e":"serverShutdown","E":%d}' % (now_us() // (1 if c.micro else 1000))))
                if now >= next_ping and not stalled:
                    seq += 1
                    payload = b"%d" % seq
                    if c.ping_payload is None:
                        c.ping_payload = payload
                        c.ping_sent = now
                    else:  # still waiting for the earlier pong: ask again, same payload
                        payload = c.ping_payload
                    self._send(c, _frame(payload, 0x9))
                    next_ping = now + self.ping_interval
                deadline = min(next_ping, close_at, shutdown_at if not c.shutdown_sent else close_at)
                if c.ping_payload is not None:
                    deadline = min(deadline, c.ping_sent + self.ping_timeout + 0.001)
                if stalled:
                    deadline = min(deadline, c.stalled_until)
                c.wake.clear()
                try:
                    await asyncio.wait_for(c.wake.wait(), max(0.001, min(deadline - now, 1.0)))
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            pass

    async def _dump(self, request: web.Request) -> web.StreamResponse:
        """A file of the dump tree (see `dumptree`); dump faults scheduled with p= are drawn here."""
        for kind in F.DUMP_KINDS:
            for item in self.plan.probabilistic(kind):
                if self._rng.random() < (item.p or 0):
                    self.dumps.arm(kind, {**item.params, "n": 1})
        before = dict(self.dumps.counts)
        resp = await self.dumps.handle(request)
        for k, v in self.dumps.counts.items():
            if v != before.get(k, 0):
                self._count(k, v - before.get(k, 0))
        return resp

    # ------------------------------------------------------------------ control API
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
            "connections": len(self.conns),
            "paused": self.paused,
            "stopped": self.stopped,
            "finished": self.source.finished,
            "error": self.error,
            "pending": self.source.pending_count(),
        }

    async def _admin_state(self, request: web.Request) -> web.Response:
        return self._json(self.state())

    async def _admin_trades(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "").upper()
        log = self.logs.get(sym)
        if log is None:
            return self._json({"error": f"unknown symbol {sym}"}, 404)
        start = int(request.query.get("start", "0"))
        n = len(log.makers)
        return self._json(
            {
                "symbol": sym,
                "source": log.source,
                "start": start,
                "ids": list(log.ids[start:n]),
                "prices": list(log.prices[start:n]),
                "qtys": list(log.qtys[start:n]),
                "times": list(log.times[start:n]),
                "events": list(log.events[start:n]),
                "makers": list(log.makers[start:n]),
            }
        )

    async def _admin_control(self, request: web.Request) -> web.Response:
        body = await request.json()
        action = body.get("action")
        try:
            if action == "pause":
                self.pause_market()
            elif action == "resume":
                self.resume_market()
            elif action == "stop":
                self.stop_market()
            elif action == "set_rate":
                self.set_rate(float(body["rate"]))
            elif action == "inject":
                n = self.inject(body["kind"], **body.get("params", {}))
                return self._json({"ok": True, "affected": n})
            else:
                return self._json({"error": f"unknown action {action!r}"}, 400)
        except Exception as exc:  # reported to the controlling process
            return self._json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return self._json({"ok": True})
