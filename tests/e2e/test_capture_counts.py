"""Counts that agree: a fault-free capture reports no gap, `capture status` says what the run
stored, and trades fetched from REST carry no pipeline latency.

Real PostgreSQL, the project's local exchange on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import time

import psycopg

from cryptolab import analysis as an
from cryptolab.capture import Capture
from cryptolab.capture.sequencer import GapPolicy, Sequencer
from cryptolab.cli import main as cli
from tests.e2e.test_capture import FAST, finish


def test_the_ids_printed_before_the_first_streamed_trade_are_a_catch_up_not_a_gap() -> None:
    seq = Sequencer("BTCUSDT", 0)  # wants the market from id 1
    assert seq.see(4, 0.0)  # first streamed trade: 1..3 were printed before we connected
    plan = GapPolicy(grace=0.0).plan(seq, 1.0)
    assert (plan.action, plan.lo, plan.hi, plan.catch_up) == ("backfill", 1, 3, True)
    seq.carve_range(1, 3)
    assert seq.see(5, 2.0) and seq.see(9, 2.0)  # a hole in the stream after that: a gap
    plan = GapPolicy(grace=0.0).plan(seq, 3.0)
    assert (plan.lo, plan.hi, plan.catch_up) == (6, 8, False)


def test_a_fault_free_capture_counts_no_gap_and_status_shows_every_row(dsn: str, exchange, capsys) -> None:
    ex = exchange(symbols=["btcusdt"], rate=200)
    time.sleep(0.5)  # the exchange prints trades before the capture connects: caught up from REST
    cap = Capture(["btcusdt"], source=ex.ws_url, from_ids={"BTCUSDT": 1}, **FAST).start()
    time.sleep(1.5)
    st = finish(ex, cap, dsn, ["btcusdt"])  # every printed trade stored, exactly
    assert st.backfilled >= 1  # the catch-up happened ...
    assert (st.gaps_found, st.gaps_filled, st.gaps_lost) == (0, 0, 0)  # ... and is no gap
    with psycopg.connect(dsn) as c:
        stored = c.execute("SELECT count(*) FROM trades").fetchone()[0]
        assert c.execute("SELECT count(*) FROM capture_gaps").fetchone() == (0,)
        assert c.execute("SELECT trades_stored, gaps_found, gaps_filled FROM capture_runs").fetchone() == (
            stored,
            0,
            0,
        )
        assert c.execute("SELECT rows_stored FROM capture_members").fetchone() == (stored,)
    assert st.rows_stored == stored
    assert cli.main(["capture", "status"]) == 0
    assert f"{stored:,}" in capsys.readouterr().out  # what the run stored, not its last heartbeat's count
    # trades fetched from REST (source 'backfill') have no latency: they were not streamed
    stats = an.latency_stats("BTCUSDT", interval="1d")
    assert stats["history"].sum() == st.backfilled and stats["streamed"].sum() == stored - st.backfilled
