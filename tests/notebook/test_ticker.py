"""The notebook timer: ticks, pauses, resumes, survives an error, one timer per key."""

from __future__ import annotations

import threading
import time
from typing import Any

from cryptolab.notebook.ticker import Ticker, stop_all


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_ticker_ticks_pauses_resumes_and_stops() -> None:
    calls: list[str] = []
    t = Ticker(lambda: calls.append(threading.current_thread().name), interval=0.02, key="t1").start()
    assert wait_for(lambda: len(calls) >= 3)
    assert calls[0] == "cryptolab-live-t1"  # its own named thread, not the caller's
    t.pause()
    time.sleep(0.06)
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n and t.paused
    t.poke()  # a manual refresh works while paused
    assert wait_for(lambda: len(calls) == n + 1)
    t.resume()
    assert wait_for(lambda: len(calls) >= n + 3)
    assert t.stop(timeout=2) and not t.running


def test_ticker_keeps_running_after_an_error() -> None:
    seen: list[BaseException] = []
    n = {"i": 0}

    def fn() -> None:
        n["i"] += 1
        if n["i"] == 2:
            raise RuntimeError("database went away")

    t = Ticker(fn, interval=0.01, on_error=seen.append).start()
    assert wait_for(lambda: n["i"] >= 4)
    t.stop()
    assert t.errors == 1 and isinstance(seen[0], RuntimeError)
    assert t.last_error is None  # cleared by the next good tick


def test_same_key_replaces_the_previous_timer() -> None:
    a = Ticker(lambda: None, interval=0.01, key="dup").start()
    b = Ticker(lambda: None, interval=0.01, key="dup").start()
    assert not a.running and b.running
    assert stop_all() >= 1 and not b.running
