"""Keep a stream worker running: a worker that raises is reported and started again.

A stream worker heals what the network does to it (a lost connection, a stall, a refused
connect) inside its own loop. What it does not expect — a bug, an error nobody foresaw — used to
end its task silently: the capture went on (leases, heartbeats, other symbols) while one group of
streams was no longer read, a loss nobody saw until the data was missing. `supervise` runs the
worker again after a backoff delay and says so (`report`: the capture's `status().error`
and the log, with the traceback); the restarted worker opens a new connection and its
sequencers find the ids missed meanwhile and backfill them, as after any reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

__all__ = ["supervise"]

log = logging.getLogger("cryptolab.capture")


async def supervise(
    what: str,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    report: Callable[[str], None],
    delays: Iterator[float],
) -> int:
    """Await `run()` until it returns or `stop` is set; each time it raises, report it and run it
    again after the next of `delays`. Returns how many times it was restarted."""
    restarts = 0
    while True:
        try:
            await run()
            return restarts
        except Exception as exc:  # (not CancelledError: a cancel ends it)
            if stop.is_set():
                return restarts
            text = f"{what} failed ({type(exc).__name__}: {exc}); starting it again — a bug: please report it"
            log.error("%s", text, exc_info=exc)
            report(text)
        try:
            await asyncio.wait_for(stop.wait(), timeout=next(delays))
        except asyncio.TimeoutError:
            pass
        if stop.is_set():
            return restarts
        restarts += 1
