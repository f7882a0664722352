"""The message rate `Capture.status()` shows, measured when asked (pure, no I/O, no timer).

A capture used to sample its message counter twice a second on the event loop only for this
figure: a quiet market's event loop woke for it whether anyone looked or not. Now each look
(`status()`) is a sample, and the rate is taken over the last `span` seconds of looks: from the
newest sample at least `span` old (or the start) to now. A dashboard that looks every second
sees a 5 s rate as before; a script that looks once an hour sees that hour's mean.
"""

from __future__ import annotations

import collections

__all__ = ["RateMeter"]


class RateMeter:
    """Count per second over about the last `span` seconds, from the samples its callers give."""

    def __init__(self, start: float, count: int = 0, *, span: float = 5.0, keep: int = 256) -> None:
        self.span = span
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(start, count)], maxlen=keep)

    def rate(self, now: float, count: int) -> float:
        """Take the sample (`now`, `count`) and return the rate since the newest sample that is at
        least `span` old (the oldest kept when none is)."""
        s = self._samples
        s.append((now, count))
        while len(s) > 2 and now - s[1][0] >= self.span:
            s.popleft()
        t0, n0 = s[0]
        return (count - n0) / (now - t0) if now > t0 else 0.0
