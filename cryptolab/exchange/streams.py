"""The stream hub: the local exchange's WebSocket streams, as Binance spot serves them.

Raw streams `/ws/<symbol>@trade[/…]`, `/ws`, and combined streams
`/stream?streams=a@trade/b@trade`, with `timeUnit=MICROSECOND`, the `SUBSCRIBE` /
`UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` / `SET_PROPERTY` / `GET_PROPERTY` methods, a ping
every `ping_interval` (a client that does not answer with the same payload within
`ping_timeout` is dropped), `serverShutdown` then a close at `max_connection_age`, at
most 1024 streams and 5 incoming messages per second per connection (past that the
connection is closed, as Binance does).

Speed: a trade's payload is formatted once per wire format, framed once, and every
connection gets all the frames due at one tick in one `transport.write`. aiohttp's own
writer is used for everything else (control frames, replies); both write to the same
transport in order. A connection with a fault armed (duplicate, reorder, malformed)
takes the per-connection path.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from ..model import now_us
from .bookfeed import Named, book_stream_kind
from .connection import Conn, clean_close, frame, hard_close, reset
from .injector import FaultInjector
from .rest_api import json_response
from .tradelog import SymbolLog, encode_trade, fmt8

__all__ = ["MAX_INCOMING_PER_S", "MAX_STREAMS", "StreamHub", "StreamSettings", "answer_method"]

MAX_STREAMS = 1024
MAX_INCOMING_PER_S = 5
MAX_SEND_BUFFER = 64 * 1024 * 1024  # a client this far behind is dropped (slow consumer)
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


@dataclass(frozen=True)
class StreamSettings:
    """Connection timers of the streams (seconds)."""

    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    max_connection_age: float = 86400.0
    shutdown_notice: float = 600.0


def _error(code: int, msg: str, rid: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": rid}


def answer_method(c: Conn, text: str) -> tuple[dict[str, Any], bool]:
    """Binance's answer to one WebSocket method call; True when the subscriptions changed (pure)."""
    try:
        req = json.loads(text)
    except ValueError as exc:
        return _error(3, f"Invalid JSON: {exc}", None), False
    if not isinstance(req, dict):
        return _error(3, "Invalid JSON: expected an object", None), False
    rid = req.get("id")
    if rid is not None and not (
        isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0)
    ):
        return _error(2, "Invalid request: request ID must be an unsigned integer", None), False
    method = req.get("method")
    params = req.get("params", [])
    if method is None:
        return _error(2, "Invalid request: missing field `method`", rid), False
    if not isinstance(params, list):
        return _error(2, "Invalid request: params must be an array", rid), False
    if method == "SUBSCRIBE":
        if not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: stream names must be strings", rid), False
        new = [p for p in params if p not in c.streams]
        if len(c.streams) + len(new) > MAX_STREAMS:
            return _error(2, f"Invalid request: at most {MAX_STREAMS} streams per connection", rid), False
        c.streams.extend(new)
        return {"result": None, "id": rid}, True
    if method == "UNSUBSCRIBE":
        c.streams = [s for s in c.streams if s not in params]
        return {"result": None, "id": rid}, True
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(c.streams), "id": rid}, False
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return _property(c, method, params, rid), False
    expected = ", ".join(f"`{m}`" for m in METHODS)
    return _error(2, f"Invalid request: unknown variant `{method}`, expected one of {expected}", rid), False


def _property(c: Conn, method: str, params: list[Any], rid: Any) -> dict[str, Any]:
    if method == "GET_PROPERTY":
        if params != ["combined"]:
            return _error(0, "Unknown property", rid)
        return {"result": c.combined, "id": rid}
    if len(params) != 2 or params[0] != "combined":
        return _error(0, "Unknown property", rid)
    if not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", rid)
    c.combined = params[1]
    return {"result": None, "id": rid}


class StreamHub:
    """Every WebSocket connection of the exchange: subscriptions, timers, fan-out of trades."""

    def __init__(
        self,
        logs: dict[str, SymbolLog],
        faults: FaultInjector,
        settings: StreamSettings,
        stats: dict[str, int],
        on_named: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.logs = logs
        self.on_named = on_named
        """Told the symbols whose book streams a client just subscribed to (the books are lazy)."""
        self.wanted: dict[str, int] = {}
        """Connections per named stream (book streams, aggTrade) subscribed now."""
        self.faults = faults
        self.settings = settings
        self.stats = stats
        self.conns: set[Conn] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._sym_bytes = {s: s.encode() for s in logs}
        self._stream_prefix = {s: b'{"stream":"%s@trade","data":' % s.lower().encode() for s in logs}

    # ------------------------------------------------------------------ faults on connections
    def fault(self, kind: str, p: dict[str, Any]) -> int:
        """A connection fault on every open connection; returns how many it hit."""
        conns = [c for c in self.conns if not c.closed]
        for c in conns:
            if kind == "reset":
                reset(c)
            elif kind == "close":
                c.closed = True
                task = asyncio.ensure_future(clean_close(c, 1000, "closed by fault injection"))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            elif kind == "stall":
                c.stalled_until = time.monotonic() + p["seconds"]
                c.ping_payload = None
            elif kind == "duplicate":
                c.dup_left += p["n"]
            elif kind == "reorder":
                c.reorder_n = p["n"]
            elif kind == "burst_reset":
                c.burst_reset = True
            else:  # malformed
                self.send(c, self.malformed_frame(c, p["variant"], p["size"]))
                self.faults.count(f"malformed_{p['variant']}")
            if kind not in ("duplicate", "reorder", "burst_reset"):  # those count when they happen
                self.faults.count(kind)
        return len(conns)

    def close_all(self, code: int, reason: str) -> None:
        for c in list(self.conns):
            hard_close(c, code, reason)

    def behind(self, limit: int) -> bool:
        """Some client has more than `limit` bytes waiting (a replay at speed 0 waits)."""
        return any(c.transport.get_write_buffer_size() > limit for c in self.conns if not c.closed)

    def subscribed(self) -> bool:
        return any(c.symbols or c.named for c in self.conns)

    # ------------------------------------------------------------------ market → streams
    def _payloads(self, batch: list[tuple[SymbolLog, int]], micro: bool) -> list[bytes]:
        k = 1 if micro else 1000
        return [
            encode_trade(
                self._sym_bytes[log.spec.symbol],
                log.ids[i],
                log.prices[i],
                log.qtys[i],
                log.times[i] // k,
                log.events[i] // k,
                bool(log.makers[i]),
            )
            for log, i in batch
        ]

    def dispatch(self, batch: list[tuple[SymbolLog, int]]) -> None:
        """Send the trades printed at one tick to every connection that subscribed to them."""
        batch = self.faults.apply_gaps(batch)
        if not batch or not self.conns:
            return
        syms = [log.spec.symbol for log, _ in batch]
        all_syms = frozenset(syms)
        payloads: dict[bool, list[bytes]] = {}
        frames: dict[tuple[bool, bool], list[bytes]] = {}
        blobs: dict[tuple[bool, bool, frozenset[str]], tuple[bytes, int]] = {}
        frame_faults = self.faults.plan.frame_faults
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
                    fr = [frame(prefix[s] + p + b"}") for s, p in zip(syms, pl)]
                else:
                    fr = [frame(p) for p in pl]
                frames[key] = fr
            return fr

        for c in list(self.conns):
            wanted = c.symbols & all_syms if not c.closed else frozenset()
            if not wanted or self._stalled(c, now):
                continue
            if c.fast and not frame_faults:
                bkey = (c.combined, c.micro, wanted)
                blob = blobs.get(bkey)
                if blob is None:
                    fr = frames_for(c.combined, c.micro)
                    sel = fr if wanted == all_syms else [f for f, s in zip(fr, syms) if s in wanted]
                    blob = blobs[bkey] = (b"".join(sel), len(sel))
                self.send(c, blob[0], blob[1])
            else:
                fr = frames_for(c.combined, c.micro)
                self._send_slow(c, [f for f, s in zip(fr, syms) if s in wanted])

    def dispatch_named(self, msgs: list[Named]) -> None:
        """Send one tick's book and aggTrade messages to the connections that subscribed to them."""
        msgs = self.faults.apply_depth(msgs)
        if not msgs or not self.wanted:
            return
        frames: dict[tuple[bool, bool], list[bytes]] = {}
        now = time.monotonic()
        for c in list(self.conns):
            if c.closed or not c.named or self._stalled(c, now):
                continue
            key = (c.combined, c.micro)
            fr = frames.get(key)
            if fr is None:
                fr = frames[key] = [
                    frame(
                        (b'{"stream":"%s","data":%s}' % (m.stream.encode(), m.us if c.micro else m.ms))
                        if c.combined
                        else (m.us if c.micro else m.ms)
                    )
                    for m in msgs
                ]
            sel = [f for f, m in zip(fr, msgs) if m.stream in c.named]
            if not sel:
                continue
            data = b"".join(sel)
            if c.burst_reset:
                c.transport.write(data[: max(1, len(data) // 2)])  # half a burst, then the socket drops
                reset(c)
                self.faults.count("burst_reset")
                continue
            self.send(c, data, len(sel))

    @staticmethod
    def _stalled(c: Conn, now: float) -> bool:
        if not c.stalled_until:
            return False
        if now < c.stalled_until:
            return True
        c.stalled_until = 0.0
        c.wake.set()
        return False

    def _send_slow(self, c: Conn, frames: list[bytes]) -> None:
        """Per-connection path: duplicates, reordering, probabilistic faults."""
        out: list[bytes] = []
        plan, rng, count = self.faults.plan, self.faults.rng, self.faults.count
        p_dup = plan.probability("duplicate")
        p_reo = plan.probability("reorder")
        p_mal = plan.probabilistic("malformed")
        for f in frames:
            if p_reo and not c.reorder_n and rng.random() < p_reo:
                c.reorder_n = 2
            if c.reorder_n:
                c.reorder_buf.append(f)
                if len(c.reorder_buf) >= c.reorder_n:
                    out.extend(reversed(c.reorder_buf))
                    c.reorder_buf = []
                    c.reorder_n = 0
                    count("reorder")
                continue
            out.append(f)
            if c.dup_left or (p_dup and rng.random() < p_dup):
                out.append(f)
                if c.dup_left:
                    c.dup_left -= 1
                count("duplicate")
            for mi in p_mal:
                if rng.random() < (mi.p or 0):
                    out.append(self.malformed_frame(c, mi.params["variant"], mi.params["size"]))
                    count("malformed")
                    count(f"malformed_{mi.params['variant']}")
        if out:
            self.send(c, b"".join(out), len(out))

    def send(self, c: Conn, data: bytes, nframes: int = 1) -> None:
        t = c.transport
        if c.closed or t.is_closing():
            return
        t.write(data)
        c.frames_sent += nframes
        if t.get_write_buffer_size() > MAX_SEND_BUFFER:
            self.stats["slow_client_drops"] += 1
            hard_close(c, 1008, "client too slow")

    def _last_trade(self, c: Conn) -> tuple[SymbolLog, int]:
        for s in sorted(c.symbols):
            log = self.logs[s]
            if len(log.makers):
                return log, len(log.makers) - 1
        log = self.logs[sorted(c.symbols)[0]] if c.symbols else next(iter(self.logs.values()))
        return log, -1

    def malformed_frame(self, c: Conn, variant: str, size: int) -> bytes:
        """One extra, broken frame for this connection (never replaces a real trade)."""
        log, i = self._last_trade(c)
        k = 1 if c.micro else 1000
        sym = log.spec.symbol
        if i >= 0:
            tid, p, q, t, e, m = (
                log.ids[i],
                log.prices[i],
                log.qtys[i],
                log.times[i] // k,
                log.events[i] // k,
                bool(log.makers[i]),
            )
        else:
            tid, p, q, t, e, m = 1, log.spec.price, log.spec.lot, now_us() // k, now_us() // k, False
        mb = b"true" if m else b"false"
        ps, qs, sb = fmt8(p).encode(), fmt8(q).encode(), sym.encode()
        if variant == "bad_json":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":' % (e, sb, tid, ps)
        elif variant == "missing_field":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","T":%d,"m":%s,"M":true}' % (
                e,
                sb,
                tid,
                ps,
                t,
                mb,
            )
        elif variant == "wrong_type":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":%s,"q":"%s","T":%d,"m":%s,"M":true}' % (
                e,
                sb,
                tid,
                ps,
                qs,
                t,
                mb,
            )
        elif variant == "huge":
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
                e,
                sb,
                tid,
                b"9" * max(16, size),
                qs,
                t,
                mb,
            )
        elif variant == "unknown_event":
            payload = b'{"e":"mysteryEvent","E":%d,"s":"%s","x":"surprise"}' % (e, sb)
        else:  # absurd_value
            payload = b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"-%s","T":%d,"m":%s,"M":true}' % (
                e,
                sb,
                tid,
                ps,
                qs,
                t,
                mb,
            )
        if c.combined and variant != "bad_json":
            payload = self._stream_prefix[sym] + payload + b"}"
        return frame(payload)

    # ------------------------------------------------------------------ WebSocket endpoint
    def _resubscribe(self, c: Conn) -> None:
        syms = set()
        named = set()
        for name in c.streams:
            sym, _, kind = name.partition("@")
            if sym.upper() in self.logs and sym == sym.lower():
                if kind == "trade":
                    syms.add(sym.upper())
                elif book_stream_kind(kind) is not None:
                    named.add(name)
        c.symbols = frozenset(syms)
        self._set_named(c, frozenset(named))

    def _set_named(self, c: Conn, named: frozenset[str]) -> None:
        """Keep `wanted` (connections per named stream) in step; wake the books asked for."""
        for name in c.named - named:
            left = self.wanted.get(name, 0) - 1
            if left > 0:
                self.wanted[name] = left
            else:
                self.wanted.pop(name, None)
        new = named - c.named
        for name in new:
            self.wanted[name] = self.wanted.get(name, 0) + 1
        c.named = named
        books = {n.partition("@")[0].upper() for n in new if book_stream_kind(n.partition("@")[2]) != "agg"}
        if books and self.on_named is not None:
            self.on_named(books)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`/ws`, `/ws/<streams>` and `/stream?streams=…`: one client, until it or we close."""
        q = request.query
        combined = request.path.startswith("/stream")
        names = (
            q.get("streams", "").split("/") if combined else request.match_info.get("streams", "").split("/")
        )
        streams = [n for n in (x.strip() for x in names) if n]
        unit = q.get("timeUnit", "MILLISECOND").upper()
        if unit not in ("MILLISECOND", "MICROSECOND"):
            return json_response({"code": -1100, "msg": f"Invalid timeUnit '{q.get('timeUnit')}'."}, 400)
        if len(streams) > MAX_STREAMS:
            return json_response(
                {
                    "code": -1102,
                    "msg": f"Too many streams: {len(streams)} (at most {MAX_STREAMS} per connection).",
                },
                400,
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
                if c.closed or not await self._incoming(c, ws, msg):
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            c.closed = True
            self.conns.discard(c)
            self._set_named(c, frozenset())
            timer.cancel()
        return ws

    async def _incoming(self, c: Conn, ws: web.WebSocketResponse, msg: Any) -> bool:
        """One message from the client; False when the connection ends."""
        now = time.monotonic()
        c.incoming.append(now)
        while c.incoming and now - c.incoming[0] > 1.0:
            c.incoming.popleft()
        if len(c.incoming) > MAX_INCOMING_PER_S:
            self.stats["rate_limit_drops"] += 1
            hard_close(c, 1008, "Too many requests")
            return False
        if msg.type == WSMsgType.PING:
            if now >= c.stalled_until:
                await ws.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            if c.ping_payload is not None and msg.data == c.ping_payload:
                c.ping_payload = None
        elif msg.type == WSMsgType.TEXT:
            reply, changed = answer_method(c, msg.data)
            if changed:
                self._resubscribe(c)
            if not c.closed:
                await ws.send_str(json.dumps(reply, separators=(",", ":")))
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return False
        return True

    async def _conn_timer(self, c: Conn) -> None:
        """Pings, stale-client drop, serverShutdown and the max-age close of one connection."""
        st = self.settings
        next_ping = c.opened + st.ping_interval
        shutdown_at = c.opened + max(0.0, st.max_connection_age - st.shutdown_notice)
        close_at = c.opened + st.max_connection_age
        seq = 0
        try:
            while not c.closed:
                now = time.monotonic()
                stalled = now < c.stalled_until
                if stalled:
                    next_ping = max(next_ping, c.stalled_until)
                elif c.ping_payload is not None and now - c.ping_sent > st.ping_timeout:
                    self.stats["stale_drops"] += 1
                    hard_close(c, 1008, "pong timeout")
                    return
                if now >= close_at:
                    self.stats["max_age_closes"] += 1
                    await clean_close(c, 1000, "max connection age")
                    return
                if now >= shutdown_at and not c.shutdown_sent and not stalled:
                    c.shutdown_sent = True
                    self.send(
                        c, frame(b'{"e":"serverShutdown","E":%d}' % (now_us() // (1 if c.micro else 1000)))
                    )
                if now >= next_ping and not stalled:
                    seq += 1
                    self._ping(c, seq, now)
                    next_ping = now + st.ping_interval
                deadline = min(next_ping, close_at, shutdown_at if not c.shutdown_sent else close_at)
                if c.ping_payload is not None:
                    deadline = min(deadline, c.ping_sent + st.ping_timeout + 0.001)
                if stalled:
                    deadline = min(deadline, c.stalled_until)
                c.wake.clear()
                try:
                    await asyncio.wait_for(c.wake.wait(), max(0.001, min(deadline - now, 1.0)))
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            pass

    def _ping(self, c: Conn, seq: int, now: float) -> None:
        payload = b"%d" % seq
        if c.ping_payload is None:
            c.ping_payload = payload
            c.ping_sent = now
        else:  # still waiting for the earlier pong: ask again, same payload
            payload = c.ping_payload
        self.send(c, frame(payload, 0x9))
