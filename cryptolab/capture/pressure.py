"""Backpressure (`CaptureOptions.backpressure`, off by default): stop reading the sockets while
the writer is behind, instead of spilling the excess to the journal.

Without it, a market faster than the database fills the queue to `max_queue_rows` and the
writer moves the excess to the journal, replayed later (each such row is written twice). With
it, while more than `max_queue_rows // 4` rows (trades + book + futures) wait in memory and the
database is up, every stream connection of the capture stops reading its socket
(`transport.pause_reading()`): the kernel's receive buffer fills, TCP's window closes and the
exchange keeps the rows. Reading resumes once the writer has drained the queue to
`max_queue_rows // 8` (hysteresis: no flapping at the mark). While the database is down the
connections always read, and rows go to the journal as without the option: an outage loses
nothing.

The trade-off: a consumer that stops reading is a slow consumer to the exchange, and Binance
closes such a connection once its own send buffer is full. That is healed like any other
drop: the capture reconnects and backfills the missed ids from REST.

`read_paused` is the decision (pure); `Valve` applies it. The check runs once per socket read
(`WSConnection.after_read`, on the event loop), not per message, and after each page the REST
backfill queues (which fetches no page while reading is paused); the writer thread asks for
the resume after each turn (`Valve.after_turn`, through `loop.call_soon_threadsafe`). A paused
connection's `last_msg` is `math.inf`, so the watchdog (`stall_timeout`) never counts a pause as
silence; on resume it restarts from then.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sized
from typing import Protocol

from ..binance.ws import WSConnection
from .options import Counters


class Connection(Protocol):
    """What the valve needs of a `streams.Connection` (no import: streams imports the sink)."""

    ws: WSConnection | None
    last_msg: float

__all__ = ["Valve", "pause_above", "read_paused", "resume_at"]


def pause_above(max_queue_rows: int) -> int:
    """Queued rows above which reading stops."""
    return max_queue_rows // 4


def resume_at(max_queue_rows: int) -> int:
    """Queued rows at or below which reading starts again."""
    return max_queue_rows // 8


def read_paused(*, queued: int, paused: bool, db_up: bool, max_queue_rows: int) -> bool:
    """Whether the stream connections should not read now.

    Stop above `max_queue_rows // 4` queued rows, go on again at `max_queue_rows // 8` or less;
    never while the database is down (then the journal takes the rows, as without backpressure).
    """
    if not db_up:
        return False
    if paused:
        return queued > resume_at(max_queue_rows)
    return queued > pause_above(max_queue_rows)


class Valve:
    """Pauses and resumes reading on a capture's stream connections (one per `Sink`).

    Event-loop thread: `attach`, `check` (after every read), `_resume`. Writer thread:
    `after_turn` only (it sets `db_up` and schedules the resume on the loop).
    """

    def __init__(
        self,
        queues: tuple[Sized, ...],
        max_queue_rows: int,
        counters: Counters,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.queues = queues
        self.max_queue_rows = max_queue_rows
        self.counters = counters
        self.loop = loop
        self.conns: dict[int, Connection] = {}
        """The connections watched, by `id` (a `Connection` is a dataclass: not hashable)."""
        self.paused = False
        """Reading is stopped (set and cleared on the event loop)."""
        self.db_up = True
        """What the writer last saw (written by the writer thread, read by the loop)."""
        self.paused_seconds = 0.0
        """Time spent paused so far (completed pauses)."""
        self._since = 0.0
        self._resume_asked = False
        self._open = asyncio.Event()
        self._open.set()

    def queued(self) -> int:
        return sum(len(q) for q in self.queues)

    # ---- event loop

    def attach(self, conn: Connection) -> None:
        """Watch `conn` from now on: its reads are checked, and it is paused with the others."""
        ws = conn.ws
        if ws is None:
            return
        for key, old in list(self.conns.items()):  # forget the closed ones (reconnects, rotations)
            if old.ws is None or old.ws.closed.done():
                del self.conns[key]
        self.conns[id(conn)] = conn
        ws.after_read = self.check

    async def wait_open(self) -> None:
        """Until reading goes on (the backfill fetches no REST page while the sockets are paused)."""
        await self._open.wait()

    def check(self) -> None:
        """After a socket read (or a backfilled page): stop reading everywhere when the queue is
        past the mark."""
        if read_paused(
            queued=self.queued(), paused=self.paused, db_up=self.db_up, max_queue_rows=self.max_queue_rows
        ):
            self._pause()

    def _pause(self) -> None:
        for key, conn in list(self.conns.items()):
            ws = conn.ws
            if ws is None or ws.closed.done():
                del self.conns[key]
                continue
            if not ws.reading_paused:
                ws.pause_reading()
                conn.last_msg = math.inf  # not silent: paused (the watchdog waits)
        if not self.paused:
            self.paused = True
            self._open.clear()
            self._since = time.monotonic()
            self.counters.read_pauses += 1
            # the writer may have drained the queue (or lost the database) between the decision and
            # `paused` being set, and seen no pause to end: look again now that it is set (the writer
            # drains, then reads `paused`; here `paused` is set, then the queue read)
            if not read_paused(
                queued=self.queued(), paused=True, db_up=self.db_up, max_queue_rows=self.max_queue_rows
            ):
                self._resume()

    def _resume(self) -> None:
        self._resume_asked = False
        if not self.paused or read_paused(
            queued=self.queued(), paused=True, db_up=self.db_up, max_queue_rows=self.max_queue_rows
        ):
            return
        now = time.monotonic()
        self.paused = False
        self._open.set()
        self.paused_seconds += now - self._since
        for key, conn in list(self.conns.items()):
            ws = conn.ws
            if ws is None or ws.closed.done():
                del self.conns[key]
                continue
            if ws.reading_paused:
                conn.last_msg = now  # silence counts again from now on
                ws.resume_reading()

    # ---- writer thread

    def after_turn(self, db_up: bool) -> None:
        """The writer drained a batch: ask the loop to resume reading once the queue is low
        enough, or at once when the database is down (the journal takes the rows)."""
        self.db_up = db_up
        if not self.paused or self._resume_asked:
            return
        if read_paused(queued=self.queued(), paused=True, db_up=db_up, max_queue_rows=self.max_queue_rows):
            return
        self._resume_asked = True
        try:
            self.loop.call_soon_threadsafe(self._resume)
        except RuntimeError:  # the loop is closed: the capture is over
            self._resume_asked = False
