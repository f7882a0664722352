"""Reconnect policy: full-jitter exponential backoff and Binance's connect budget (pure, no I/O)."""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable, Iterator

__all__ = ["ConnectBudget", "backoff"]


def backoff(
    base: float = 0.25, cap: float = 30.0, *, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Delays before each retry: uniform in [0, min(cap, base·2ⁿ)], never below base/4.

    Start a new generator after a success (that is the reset), as websockets does.
    """
    n = 0
    while True:
        yield max(base / 4, rand() * min(cap, base * 2**n))
        n = min(n + 1, 30)


class ConnectBudget:
    """At most `limit` connects per `window` seconds (Binance: 300 per 5 min per IP)."""

    def __init__(
        self, limit: int, window: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._times: collections.deque[float] = collections.deque()

    def wait_time(self) -> float:
        """Seconds until a connect is allowed (0: now)."""
        now = self.clock()
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self.window - (now - self._times[0]) + 0.01

    def take(self) -> bool:
        """Spend one connect if allowed now; False when the budget is used up."""
        if self.wait_time() > 0:
            return False
        self._times.append(self.clock())
        return True

    async def acquire(self) -> None:
        """Wait until a connect is allowed, then spend it."""
        import asyncio

        while not self.take():
            await asyncio.sleep(self.wait_time())
