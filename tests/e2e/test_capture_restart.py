"""Restarting after a failure (real PostgreSQL — the embedded test server is stopped and
started —, the local exchange): a capture that died on a full journal is restarted at once,
by replaying what it kept rather than fetching it again, and says why it died in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from cryptolab.capture import Capture
from cryptolab.capture.backfill import missing_parts
from cryptolab.capture.runs import db_key
from cryptolab.config import settings
from cryptolab.storage import embedded
from cryptolab.storage.journal import Journal
from tests.e2e.test_capture import FAST, assert_exact, printed_total, stored_count, wait_until

needs_embedded = pytest.mark.skipif(
    bool(os.environ.get("CRYPTOLAB_TEST_DSN")),
    reason="restarts the server: only with the embedded test server",
)


def _journaled(dsn: str) -> set[tuple[str, int]]:
    """(symbol, id) of every trade the journals under this database hold."""
    out: set[tuple[str, int]] = set()
    for j in Journal.all_under(settings().journal_dir / db_key(dsn)):
        try:
            for path in j.segments():
                out |= {(t.symbol, t.trade_id) for t in j.read(path).trades}
        finally:
            j.close()
    return out


def test_missing_parts_are_a_range_minus_the_stored_runs() -> None:
    assert missing_parts(1, 10, []) == [(1, 10)]
    assert missing_parts(1, 10, [(1, 10)]) == []
    assert missing_parts(1, 10, [(3, 4), (7, 7)]) == [(1, 2), (5, 6), (8, 10)]
    assert missing_parts(5, 10, [(1, 6), (9, 12)]) == [(7, 8)]


@needs_embedded
def test_a_capture_that_died_on_a_full_journal_restarts_at_once_and_replays_it(dsn: str, exchange) -> None:
    ex = exchange(rate=300)
    syms = ["btcusdt", "ethusdt"]
    opts = [
        f"--option={k}={v}" for k, v in {**FAST, "journal_max_bytes": 24 * 1024, "lease_seconds": 30}.items()
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            ",".join(syms),
            "--source",
            ex.ws_url,
            "--quiet",
            "--from-id",
            "1",
            *opts,
        ],
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: stored_count(dsn, syms) > 100, 30, "the subprocess capture to store trades")
        embedded.stop()
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            embedded.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # why it died: one line that says it once
    assert proc.returncode == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("cryptolab capture: the capture journal") and "is full" in line
    assert line.count("is full") == 1 and len(line) < 600, line
    journaled = _journaled(dsn)
    assert len(journaled) > 50
    with psycopg.connect(dsn) as c:  # it could not hand its 30 s leases back: the database was away
        assert (
            c.execute("SELECT count(*) FROM capture_leases WHERE expires_at > clock_timestamp()").fetchone()[
                0
            ]
            == 2
        )
    # the restart owns its symbols at once (the dead capture's leases do not hold it back) ...
    cap2 = Capture(syms, source=ex.ws_url, **FAST).start()
    try:
        assert cap2.status().skipped_symbols == {} and cap2.status().symbols == ("BTCUSDT", "ETHUSDT")
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 60, "every trade stored")
    finally:
        st2 = cap2.stop()
    assert_exact(dsn, ex, syms)
    # ... and stores what the journal kept from the journal, not from REST a second time
    with psycopg.connect(dsn) as c:
        sources = dict(
            ((s, i), src)
            for s, i, src in c.execute(
                "SELECT symbol, trade_id, source FROM trades WHERE symbol || ':' || trade_id = ANY(%s)",
                ([f"{s}:{i}" for s, i in journaled],),
            ).fetchall()
        )
    assert len(sources) == len(journaled) and set(sources.values()) == {"live"}
    assert st2.duplicates < len(journaled) // 10


def test_steady_counts_a_members_up_time_from_its_return_to_life() -> None:
    import math

    from cryptolab.capture.ownership import Member, steady

    a = Member("a", frozenset({"BTCUSDT"}), up_for=3600.0, heartbeat_age=0.5)
    got, seen = steady([a], {}, 100.0, 5.0)
    assert got[0].up_for == 3600.0 and seen == {"a": 100.0 - 3600.0}  # first sight: its own up time
    frozen = Member("a", frozenset({"BTCUSDT"}), up_for=3620.0, heartbeat_age=20.0)
    got, seen = steady([frozen], seen, 120.0, 5.0)
    assert got[0] == frozen and seen == {"a": math.inf}
    thawed = Member("a", frozenset({"BTCUSDT"}), up_for=3622.0, heartbeat_age=0.2)
    got, seen = steady([thawed], seen, 122.0, 5.0)
    assert got[0].up_for == 0.0
    got, seen = steady([thawed], seen, 125.5, 5.0)
    assert got[0].up_for == 3.5


def test_a_frozen_capturer_does_not_take_its_symbols_straight_back(dsn: str, exchange, tmp_path) -> None:
    import signal

    from tests.e2e.test_capture_cluster import SIX, owners, start_capturer

    ex = exchange(symbols=SIX, rate=120, seed=5)
    procs = [start_capturer(dsn, tmp_path / f"host{i}", ex.ws_url, SIX) for i in range(2)]
    try:
        with psycopg.connect(dsn) as c:
            wait_until(
                lambda: (
                    c.execute("SELECT count(*) FROM capture_members WHERE state = 'running'").fetchone()[0]
                    == 2
                    and len(owners(dsn)) == 6
                ),
                60,
                "two capturers, every symbol owned",
            )
            pid_of = dict(c.execute("SELECT member_id, pid FROM capture_members").fetchall())
        time.sleep(7)  # hand-backs settle: each symbol with its preferred capturer
        own = owners(dsn)
        victim = max(set(own.values()), key=lambda m: sum(1 for o in own.values() if o == m))
        mine = {s for s, o in own.items() if o == victim}
        os.kill(pid_of[victim], signal.SIGSTOP)
        try:
            wait_until(
                lambda: all(owners(dsn).get(s) not in (None, victim) for s in mine),
                20,
                "the frozen capturer's symbols to be taken over",
            )
        finally:
            os.kill(pid_of[victim], signal.SIGCONT)
        end = time.monotonic() + 3.0  # less than handoff_settle (5 s): the taker keeps them meanwhile
        while time.monotonic() < end:
            now = owners(dsn)
            assert all(now.get(s) not in (None, victim) for s in mine), now
            time.sleep(0.1)
        # then, once the thawed one has heartbeated steadily for the settle time, it gets its share back
        wait_until(
            lambda: all(owners(dsn).get(s) == victim for s in mine), 20, "the hand-back after the settle"
        )
        ex.stop_market()
        total = printed_total(ex, SIX)
        wait_until(lambda: stored_count(dsn, SIX) >= total, 60, f"{total} trades stored")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    assert_exact(dsn, ex, SIX)
