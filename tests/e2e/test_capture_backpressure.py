"""Backpressure (`backpressure=True`): a database that is up but behind stops the reading, not
the journal; a database that is down still gets the journal; a paused connection is not silent.

Real parts only: the local exchange over real sockets, a real PostgreSQL made slow the way
`test_slow_database_spills_to_the_journal_not_memory` does it (one row per transaction), or
stuck behind a table lock the test holds, or stopped. Every scenario ends with the `trades`
table equal to the exchange's log (`finish`: each trade once, exact decimals, bars).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from cryptolab.capture import Capture
from cryptolab.capture.pressure import pause_above
from cryptolab.storage import embedded
from tests.e2e.test_capture import ALL, FAST, finish, needs_embedded, stored_count, wait_until

SYMS = ["btcusdt", "ethusdt"]
ONE_READ = 256 * 1024 // 180
"""Trades one socket read can hold (asyncio reads up to 256 KiB; a trade frame is ≥ 180 bytes):
what arrives after the mark, before the pause takes effect (a REST backfill page, 1,000, is less)."""
SLOW = dict(max_batch_rows=1, max_queue_rows=4000)
"""One row per transaction: at 6,000 trades/s the writer falls behind (without backpressure the
queue passes 4,000 and spills)."""


@contextmanager
def queue_peak(cap: Capture) -> Iterator[list[int]]:
    """The largest queue seen while the block runs (sampled every 2 ms)."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], cap.status().queue_depth)
            done.wait(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield peak
    finally:
        done.set()
        t.join()


def wait_paused(cap: Capture, timeout: float = 15.0) -> None:
    """Until reading has stopped and stays stopped: a pause counted, then no message for 0.5 s
    (the writer is stuck, so nothing resumes it)."""
    end = time.monotonic() + timeout
    last = cap.counters.messages
    while time.monotonic() < end:
        time.sleep(0.5)
        now = cap.counters.messages
        if now == last and cap.counters.read_pauses >= 1:
            return
        last = now
    raise AssertionError(f"reading did not pause within {timeout} s")


def test_slow_database_with_backpressure_pauses_reading_and_spills_nothing(dsn: str, exchange) -> None:
    ex = exchange(rate=6000, seed=7)
    cap = Capture(SYMS, source=ex.ws_url, backpressure=True, **SLOW, **FAST, **ALL).start()
    with queue_peak(cap) as peak:
        time.sleep(2.5)
    assert cap.counters.read_pauses >= 1, "the writer never fell behind: the test proves nothing"
    assert cap.counters.spilled == 0
    assert peak[0] <= pause_above(SLOW["max_queue_rows"]) + ONE_READ, peak
    st = finish(ex, cap, dsn, SYMS, timeout=90)  # every trade stored once, as the exchange printed it
    assert st.journal_rows == 0 and cap.counters.spilled == 0 and st.read_pauses >= 1
    assert st.reconnects == 0 and cap.counters.stalls == 0


def test_without_backpressure_the_same_slow_database_spills(dsn: str, exchange) -> None:
    """The contrast: the same market and database, the option off (the default) — the queue
    passes max_queue_rows and the excess goes to the journal, reading never stops."""
    ex = exchange(rate=6000, seed=7)
    cap = Capture(SYMS, source=ex.ws_url, **SLOW, **FAST, **ALL).start()
    time.sleep(2.5)
    assert cap.counters.spilled > 0 and cap.counters.read_pauses == 0
    finish(ex, cap, dsn, SYMS, timeout=90)


def test_a_connection_paused_by_backpressure_is_not_replaced_by_the_watchdog(dsn: str, exchange) -> None:
    """The writer is stuck behind a lock for 3 stall timeouts: the connections stop reading
    (silent all that time), and the watchdog leaves them be — no stall, no reconnect."""
    ex = exchange(rate=2000, seed=7)
    opts = {**FAST, "stall_timeout": 1.0}
    cap = Capture(SYMS, source=ex.ws_url, backpressure=True, max_queue_rows=2000, **opts, **ALL).start()
    wait_until(lambda: stored_count(dsn, SYMS) > 500, 20, "the capture to store trades")
    with psycopg.connect(dsn) as c:
        c.execute("LOCK TABLE trades IN SHARE MODE")  # the writer's next batch waits: up, but stuck
        wait_paused(cap)
        messages = cap.counters.messages
        time.sleep(3.0)
        assert cap.counters.messages == messages, "a paused connection read on"
        assert cap.counters.stalls == 0 and cap.status().reconnects == 0
    # the lock is gone: the writer drains, reading goes on where it stopped
    st = finish(ex, cap, dsn, SYMS, timeout=90)
    assert cap.counters.stalls == 0 and st.reconnects == 0
    assert st.journal_rows == 0 and cap.counters.spilled == 0


@needs_embedded
def test_with_backpressure_a_database_outage_still_goes_to_the_journal(dsn: str, exchange) -> None:
    """Paused behind a stuck writer when the database goes away: reading resumes and the rows go
    to the journal (zero loss through the outage), then are stored once it is back."""
    ex = exchange(rate=2000, seed=7)
    cap = Capture(SYMS, source=ex.ws_url, backpressure=True, max_queue_rows=2000, **FAST, **ALL).start()
    wait_until(lambda: stored_count(dsn, SYMS) > 500, 20, "the capture to store trades")
    lock = psycopg.connect(dsn)
    lock.execute("LOCK TABLE trades IN SHARE MODE")
    wait_paused(cap)
    messages = cap.counters.messages
    embedded.stop()  # ends every session: the writer's stuck batch fails as an outage
    try:
        wait_until(lambda: not cap.status().database_up, 10, "the capture to notice the database is down")
        wait_until(lambda: cap.counters.messages > messages + 2000, 10, "reading to go on while down")
        wait_until(lambda: cap.status().journal_rows > 2000, 10, "the journal to take the rows")
    finally:
        lock.close()
        embedded.start()
    st = finish(ex, cap, dsn, SYMS, timeout=60)
    assert st.journal_rows == 0 and st.database_up


def test_the_cli_backpressure_flag_pauses_reading_behind_a_slow_database(dsn: str, exchange) -> None:
    ex = exchange(rate=6000, seed=7)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "capture",
            "--symbols",
            "btcusdt,ethusdt",
            "--source",
            ex.ws_url,
            "--seconds",
            "3",
            "--backpressure",
            "--option",
            "max_batch_rows=1",
            "--option",
            "max_queue_rows=4000",
        ],
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "backpressure: reading paused" in r.stdout, r.stdout
