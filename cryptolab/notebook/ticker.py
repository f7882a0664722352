"""Ticker: a background thread that calls a refresh at an interval (pause, poke, stop),
and the registry that stops them all when a notebook is re-run.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["Ticker", "stop_all"]


_REGISTRY: dict[str, Ticker] = {}


_REGISTRY_LOCK = threading.Lock()


class Ticker:
    """Calls `fn()` every `interval` seconds in a named daemon thread; pausable, stoppable.

    Ticks never overlap (one thread), a slow tick delays the next instead of piling up,
    and an exception in `fn` is kept in `last_error` (and passed to `on_error`) without
    stopping the timer. Giving a `key` stops any earlier Ticker with the same key, so
    re-running a notebook cell replaces its live view instead of stacking threads.
    """

    def __init__(
        self,
        fn: Callable[[], Any],
        interval: float = 1.0,
        *,
        key: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigError(f"refresh interval must be > 0 seconds, got {interval}")
        self.fn = fn
        self.interval = float(interval)
        self.key = key
        self.on_error = on_error
        self.ticks = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_duration: float | None = None
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poked = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the timer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        """True while ticks are suspended (the thread stays alive)."""
        return self._paused.is_set()

    def start(self) -> Ticker:
        """Start the timer thread (returns at once); a no-op when already running."""
        if self.running:
            return self
        if self.key is not None:
            with _REGISTRY_LOCK:
                old = _REGISTRY.get(self.key)
                _REGISTRY[self.key] = self
            if old is not None and old is not self:
                old.stop(timeout=2)
        self._stop.clear()
        name = f"cryptolab-live-{self.key}" if self.key is not None else f"cryptolab-live-{id(self):x}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread after the current tick; True if it ended within `timeout`."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.key is not None:
            with _REGISTRY_LOCK:
                if _REGISTRY.get(self.key) is self:
                    del _REGISTRY[self.key]
        return not self.running

    def pause(self) -> None:
        """Suspend ticks until `resume()`."""
        self._paused.set()

    def resume(self) -> None:
        """Resume ticks, with one right away."""
        self._paused.clear()
        self._wake.set()

    def poke(self) -> None:
        """Tick now instead of at the end of the current interval (even when paused)."""
        self._poked = True
        self._wake.set()

    def tick(self) -> bool:
        """Run `fn` once in the calling thread; True when it succeeded."""
        t0 = time.perf_counter()
        try:
            self.fn()
        except Exception as exc:  # kept and shown, never kills the timer
            self.errors += 1
            self.last_error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:
                    pass
            return False
        finally:
            self.last_duration = time.perf_counter() - t0
            self.ticks += 1
        self.last_error = None
        return True

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            poked, self._poked = self._poked, False
            if poked or not self._paused.is_set():
                self.tick()
            next_at = max(next_at + self.interval, time.monotonic() + 0.05)
            self._wake.wait(max(0.0, next_at - time.monotonic()))
            self._wake.clear()


def stop_all(timeout: float = 5.0) -> int:
    """Stop every keyed live timer of this process (e.g. before shutting a kernel down)."""
    with _REGISTRY_LOCK:
        tickers = list(_REGISTRY.values())
    for t in tickers:
        t.stop(timeout)
    return len(tickers)
