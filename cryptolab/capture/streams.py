"""WebSocket streams: connect within Binance's budget, decode, sequence, reconnect, rotate.

One `StreamWorker` keeps one connection's worth of streams alive: it reconnects with
full-jitter backoff (`backoff.py`), replaces a silent connection (watchdog), rotates a
connection before Binance's 24 h limit — or on `serverShutdown` — by opening the next
one first and closing the old one only once the new one delivers, and after every
(re)connect asks REST for the latest id so a gap shows even when the market then goes
quiet. Every frame goes straight from the socket to `receiver(conn)`'s callback: decode,
sequence, queue for the sink (the hot path: no awaits, no locks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..binance import ws as wsclient
from ..binance.frames import decode_frame
from ..binance.rest import RestClient
from ..binance.wire import Control, decode, trade_fields
from ..book.model import DepthDiff, Quote
from ..config import mask_url
from ..errors import CryptolabError, SourceError
from ..model import DeadLetter, Trade, now_us
from .backoff import ConnectBudget, backoff
from .book import BookFeed
from .endpoints import Endpoint
from .options import CaptureOptions, Counters
from .sequencer import Sequencer
from .sink import Sink

__all__ = ["Connection", "StreamWorker", "stream_url"]

log = logging.getLogger("cryptolab.capture")

_monotonic = time.monotonic
_time_ns = time.time_ns

SUBSCRIBE_BATCH = 200
"""Streams per SUBSCRIBE message (Binance: at most 5 incoming messages/s per connection)."""
MAX_URL_STREAMS = 100
"""Up to this many streams go in the URL; beyond, they are subscribed by messages."""


def stream_url(ws_base: str, streams: list[str], *, micro: bool = False) -> str:
    """The combined-stream URL of `streams` (or the bare /stream URL when there are too many);
    `micro` asks for µs times (`timeUnit=MICROSECOND`)."""
    unit = "timeUnit=MICROSECOND" if micro else ""
    if len(streams) > MAX_URL_STREAMS:
        return f"{ws_base}/stream" + (f"?{unit}" if unit else "")
    return f"{ws_base}/stream?streams={'/'.join(streams)}" + (f"&{unit}" if unit else "")


@dataclass
class Connection:
    ws: wsclient.WSConnection | None
    opened: float
    first: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    last_msg: float = field(default_factory=time.monotonic)
    """When the last message came (monotonic); `math.inf` while backpressure pauses the reading
    (`pressure.Valve`): a paused connection is not silent, the watchdog leaves it be."""

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close(timeout=2)


class StreamWorker:
    """Keeps `streams` flowing into `sink` until `stop` is set."""

    def __init__(
        self,
        streams: list[str],
        endpoint: Endpoint,
        exchange: str,
        stream_source: str,
        seqs: dict[str, Sequencer],
        sink: Sink,
        counters: Counters,
        options: CaptureOptions,
        budget: ConnectBudget,
        rest: RestClient,
        stop: asyncio.Event,
        report_error: Callable[[str], None],
        books: BookFeed | None = None,
        market: str = "spot",
    ) -> None:
        self.market = market
        """"usdm": futures frames (`usdm.usdm_receiver`), sequenced by aggregate id."""
        self.streams = streams
        self.symbols = list(dict.fromkeys(s.split("@", 1)[0].upper() for s in streams))
        self.books = books
        self.endpoint = endpoint
        self.exchange = exchange
        self.stream_source = stream_source
        self.seqs = seqs
        self.sink = sink
        self.counters = counters
        self.options = options
        self.budget = budget
        self.rest = rest
        self.stop = stop
        self.report_error = report_error
        self._probes: set[asyncio.Task[None]] = set()

    # ---- the hot path

    def receiver(self, conn: Connection) -> Callable[[wsclient.Message], None]:
        """`on_message` for `conn`: every frame is decoded, sequenced and queued for the sink,
        inside the socket's `data_received` (no awaits, no locks; lookups done once here)."""
        if self.market == "usdm":
            from .usdm import usdm_receiver

            return usdm_receiver(self, conn)
        counters, seqs, sink, exchange, source = (
            self.counters,
            self.seqs,
            self.sink,
            self.exchange,
            self.stream_source,
        )
        queue, wake, first = sink.trades, sink.wake, conn.first
        append, enough = queue.append, self.options.commit_rows
        books = self.books
        dec = decode if books is None else decode_frame  # trades only: no routing by stream name
        if books is None and sink.columns_for(exchange, source):
            return self._columns_receiver(conn)

        def on_message(raw: wsclient.Message) -> None:
            now = _monotonic()
            conn.last_msg = now
            received = _time_ns() // 1000
            counters.messages += 1
            out = dec(raw, exchange=exchange, source=source, received_at_us=received)
            if type(out) is Trade:
                seq = seqs.get(out.symbol)
                if seq is not None:
                    if seq.see(out.trade_id, now):
                        append(out)
                        seq.last_trade_us = out.trade_time_us
                        # the writer wakes for the first row of a group and when a group is full,
                        # not for every message (it times the group's window itself)
                        n = len(queue)
                        if (n == 1 or n >= enough) and not wake.is_set():
                            wake.set()
                    else:
                        counters.dropped_duplicates += 1
                    if not first.is_set():
                        first.set()
                    return
            elif books is not None and (type(out) is DepthDiff or type(out) is Quote):
                if type(out) is DepthDiff:
                    books.on_diff(out)
                elif type(out) is Quote:
                    books.on_quote(out)
                if not first.is_set():
                    first.set()
                return
            if not first.is_set():
                first.set()
            self._other(out, raw, received, conn)

        return on_message

    def _columns_receiver(self, conn: Connection) -> Callable[[wsclient.Message], None]:
        """`on_message` of a trades-only connection: a trade in the usual shape goes from the frame
        straight into the sink's columns (`storage.columns`: no `Trade`, no `Decimal`, nothing for
        the garbage collector); anything else takes `decode` and the general path."""
        counters, seqs, sink, exchange, source = (
            self.counters,
            self.seqs,
            self.sink,
            self.exchange,
            self.stream_source,
        )
        queue, wake, first, lock = sink.trades, sink.wake, conn.first, sink.columns_lock
        append, enough = queue.append, self.options.commit_rows

        def on_message(raw: wsclient.Message) -> None:
            now = _monotonic()
            conn.last_msg = now
            received = _time_ns() // 1000
            counters.messages += 1
            f = trade_fields(raw, received)
            seq = seqs.get(f[0]) if f is not None else None
            if f is not None and seq is not None:
                if seq.see(f[1], now):
                    with lock:
                        cols = sink.columns
                        assert cols is not None
                        cols.add(f, received)
                        n = len(cols)
                    seq.last_trade_us = f[5]
                    # the writer wakes for the first row of a group and when a group is full
                    if (n == 1 or n >= enough) and not wake.is_set():
                        wake.set()
                else:
                    counters.dropped_duplicates += 1
                if not first.is_set():
                    first.set()
                return
            out = decode(raw, exchange=exchange, source=source, received_at_us=received)
            if type(out) is Trade:  # a trade only the careful decoder takes: queued as a row
                seq = seqs.get(out.symbol)
                if seq is not None:
                    if seq.see(out.trade_id, now):
                        append(out)
                        seq.last_trade_us = out.trade_time_us
                        if not wake.is_set():
                            wake.set()
                    else:
                        counters.dropped_duplicates += 1
                    if not first.is_set():
                        first.set()
                    return
            if not first.is_set():
                first.set()
            self._other(out, raw, received, conn)

        return on_message

    def _other(
        self,
        out: Trade | DepthDiff | Quote | Control | DeadLetter,
        raw: bytes | bytearray,
        received: int,
        conn: Connection,
    ) -> None:
        """The rare frames: a row of a symbol not subscribed, a dead letter, a control message."""
        if type(out) in (Trade, DepthDiff, Quote):
            what = "trade" if type(out) is Trade else "book update"
            self.sink.put_dead(
                DeadLetter(
                    f"{what} for a symbol not subscribed: {out.symbol}",  # type: ignore[union-attr]
                    bytes(raw),
                    "live",
                    self.exchange,
                    out.symbol,  # type: ignore[union-attr]
                    received,
                )
            )
        elif type(out) is DeadLetter:
            self.sink.put_dead(out)
        elif isinstance(out, Control):
            if out.kind == "shutdown":
                conn.shutdown.set()
            elif out.kind == "error":
                log.warning("exchange answered an error: %s", out.data)

    def on_oversized(self, size: int, head: bytes) -> None:
        self.sink.put_dead(
            DeadLetter(
                f"message of {size} bytes is larger than the {self.options.max_frame_bytes} bytes allowed: "
                "connection closed and reopened",
                head,
                "live",
                self.exchange,
                None,
                now_us(),
            )
        )

    # ---- connections

    async def open(self) -> Connection:
        await self.budget.acquire()
        ep = self.endpoint
        many = len(self.streams) > MAX_URL_STREAMS
        conn = Connection(ws=None, opened=time.monotonic())
        on_message = self.receiver(conn)
        shown = mask_url(ep.ws)
        try:
            conn.ws = await wsclient.connect(
                stream_url(ep.ws, self.streams, micro=ep.micro),
                on_message,
                open_timeout=10,
                max_size=self.options.max_frame_bytes,
                on_oversized=self.on_oversized,
            )
        except wsclient.HandshakeError as exc:
            hint = " (binance.com refuses this region: try source='binance.us')" if exc.status == 451 else ""
            raise SourceError(f"{shown} answered {exc}{hint}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise SourceError(
                f"cannot reach {shown}: {exc or type(exc).__name__} — no network? try --source simulator"
            ) from exc
        if many:
            for i in range(0, len(self.streams), SUBSCRIBE_BATCH):
                msg = {
                    "method": "SUBSCRIBE",
                    "params": self.streams[i : i + SUBSCRIBE_BATCH],
                    "id": i // SUBSCRIBE_BATCH + 1,
                }
                conn.ws.send_text(orjson.dumps(msg).decode())
                await asyncio.sleep(0.25)
        if self.sink.valve is not None:
            self.sink.valve.attach(conn)
        return conn

    async def run(self) -> None:
        opts, stop = self.options, self.stop
        delays = backoff(opts.backoff_base, opts.backoff_max)
        current: Connection | None = None
        stop_task = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if current is None:
                    try:
                        current = await self.open()
                    except SourceError as exc:
                        self.report_error(str(exc))
                        self.counters.reconnects += 1
                        await _sleep_or(stop, next(delays))
                        continue
                    if self.books is not None:
                        self.books.restart(self.symbols)  # a new connection: the books start again
                    self._probe_latest()
                ws = current.ws
                assert ws is not None
                rotate_in = max(0.0, current.opened + opts.rotate_after - time.monotonic())
                watchdog = max(0.05, current.last_msg + opts.stall_timeout - time.monotonic())
                shutdown_task = asyncio.create_task(current.shutdown.wait())
                waiting: set[asyncio.Future[Any]] = {ws.closed, shutdown_task, stop_task}
                # asleep until the watchdog or the rotation is due (no wake-up a second for nothing: a
                # quiet market's event loop only wakes for its messages and the lease tick)
                await asyncio.wait(
                    waiting, timeout=min(rotate_in, watchdog), return_when=asyncio.FIRST_COMPLETED
                )
                shutdown_task.cancel()
                if stop.is_set():
                    break
                if current.first.is_set() and time.monotonic() - current.opened >= 1.0:
                    delays = backoff(opts.backoff_base, opts.backoff_max)  # it delivered a while: afresh
                if ws.closed.done():
                    log.info(
                        "connection lost (close code %s: %s); reconnecting", ws.close_code, ws.closed.result()
                    )
                    await current.close()
                    current = None
                    self.counters.reconnects += 1
                    await _sleep_or(stop, next(delays))
                    continue
                if time.monotonic() - current.last_msg >= opts.stall_timeout:
                    log.info("no message for %.1f s: replacing the connection", opts.stall_timeout)
                    await current.close()
                    current = None
                    self.counters.reconnects += 1
                    self.counters.stalls += 1
                    continue
                if current.shutdown.is_set() or time.monotonic() - current.opened >= opts.rotate_after:
                    current = await self.rotate(current)
        finally:
            stop_task.cancel()
            for t in self._probes:
                t.cancel()
            if current is not None:
                await current.close()

    async def rotate(self, old: Connection) -> Connection:
        """Open the successor, wait until it delivers, then close the old one (overlap: no hole)."""
        try:
            new = await self.open()
        except SourceError as exc:
            log.warning("rotation failed (%s); keeping the old connection", exc)
            old.opened = time.monotonic() - self.options.rotate_after + 5.0
            return old
        try:
            await asyncio.wait_for(new.first.wait(), timeout=10)
        except asyncio.TimeoutError:
            pass
        await old.close()
        self.counters.rotations += 1
        self._probe_latest()
        return new

    def _probe_latest(self) -> None:
        task = asyncio.create_task(self.probe_latest())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def probe_latest(self) -> None:
        """After a (re)connect, learn each symbol's latest id from REST, so a gap shows at once."""
        usdm = self.market == "usdm"
        if "trade" not in self.options.streams and not (
            usdm and any(s.endswith("@aggTrade") for s in self.streams)
        ):
            return
        for sym in self.symbols:
            seq = self.seqs.get(sym)
            if seq is None or seq.last_id is None:
                continue
            try:
                items: list[Any] = await (
                    self.rest.agg_trades(seq.symbol, limit=1)
                    if usdm
                    else self.rest.recent_trades(seq.symbol, limit=1)
                )
            except (CryptolabError, asyncio.TimeoutError, OSError):
                continue
            if items:
                seq.advance_to(int(items[-1]["a" if usdm else "id"]), time.monotonic())


async def _sleep_or(ev: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(ev.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
