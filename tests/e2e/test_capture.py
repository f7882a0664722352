"""Capture end to end: the local exchange over real sockets → a real PostgreSQL.

Every scenario ends the same way: the market stops printing, the capture catches up,
and the `trades` table must equal the exchange's own trade log exactly (ids, prices,
quantities, sides, Σqty) while `bars_1s` equals an independent aggregation of it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal, localcontext

import psycopg
import pytest

from cryptolab.capture import Capture
from cryptolab.errors import SourceError
from cryptolab.exchange import LocalExchange
from cryptolab.storage import embedded

FAST = dict(gap_grace=0.3, stall_timeout=2.0, backoff_base=0.05, backoff_max=0.5, db_retry_seconds=0.3,
            heartbeat_seconds=0.5)
# The synthetic market numbers each symbol's trades from 1; a capture asked to start at
# id 1 must deliver every trade the exchange printed, including those printed before it
# connected (they come back through REST).
ALL = {"from_ids": {s: 1 for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")}}


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stored_count(dsn: str, symbols: list[str]) -> int:
    try:
        with psycopg.connect(dsn) as c:
            row = c.execute(
                "SELECT count(*) FROM trades WHERE symbol = ANY(%s)", ([s.upper() for s in symbols],)
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def printed_total(ex: LocalExchange, symbols: list[str]) -> int:
    return sum(len(ex.trade_log(s, "MILLISECOND")) for s in symbols)


def assert_exact(dsn: str, ex: LocalExchange, symbols: list[str]) -> None:
    """trades == exchange log, bars_1s == independent aggregation (exact decimals)."""
    with psycopg.connect(dsn) as c, localcontext() as ctx:
        ctx.prec = 80
        c.execute("SET TIME ZONE 'UTC'")
        for s in symbols:
            log = sorted(ex.trade_log(s, "MICROSECOND"), key=lambda t: t.trade_id)  # the capture asks for µs
            assert log, f"the exchange printed nothing for {s}"
            rows = c.execute(
                "SELECT trade_id, price, qty, is_buyer_maker, (extract(epoch FROM trade_time) * "
                "1000000)::bigint FROM trades WHERE symbol = %s ORDER BY trade_id",
                (s.upper(),),
            ).fetchall()
            want = [(t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us) for t in log]
            assert len(rows) == len(want), f"{s}: stored {len(rows)} trades, exchange printed {len(want)}"
            assert rows == want
            assert sum(r[2] for r in rows) == sum(t.qty for t in log)
            bars: dict[int, list] = defaultdict(list)
            for t in log:
                bars[t.trade_time_us // 1_000_000].append(t)
            got = c.execute(
                "SELECT extract(epoch FROM ts)::bigint, open, high, low, close, volume, quote_volume, "
                "taker_buy_volume, trade_count, first_trade_id, last_trade_id FROM bars_1s WHERE symbol = %s "
                "ORDER BY ts",
                (s.upper(),),
            ).fetchall()
            expect = []
            for sec in sorted(bars):
                ts = bars[sec]
                expect.append(
                    (
                        sec,
                        ts[0].price,
                        max(t.price for t in ts),
                        min(t.price for t in ts),
                        ts[-1].price,
                        sum(t.qty for t in ts),
                        sum(t.price * t.qty for t in ts),
                        sum((t.qty for t in ts if not t.is_buyer_maker), Decimal(0)),
                        len(ts),
                        ts[0].trade_id,
                        ts[-1].trade_id,
                    )
                )
            assert got == expect, f"{s}: bars_1s differ from an independent aggregation"


def finish(ex: LocalExchange, cap: Capture, dsn: str, symbols: list[str], timeout: float = 30.0):
    ex.stop_market()
    total = printed_total(ex, symbols)
    wait_until(lambda: stored_count(dsn, symbols) >= total, timeout, f"{total} trades stored")
    st = cap.stop()
    assert_exact(dsn, ex, symbols)
    return st


@pytest.fixture
def exchange() -> Iterator[Callable[..., LocalExchange]]:
    made: list[LocalExchange] = []

    def make(**kw) -> LocalExchange:
        ex = LocalExchange(**{"symbols": ["btcusdt", "ethusdt"], "rate": 300, "seed": 7, **kw}).start()
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.stop()


def test_clean_run(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(2.0)
    st = finish(ex, cap, dsn, syms)
    assert not st.running and st.rows_stored == printed_total(ex, syms)
    assert st.dead_letters == 0 and st.gaps_lost == 0
    with psycopg.connect(dsn) as c:
        run = c.execute("SELECT status, trades_stored, symbols FROM capture_runs").fetchone()
        assert run == ("stopped", st.rows_stored, ["BTCUSDT", "ETHUSDT"])
        assert c.execute("SELECT count(*) FROM trades WHERE source = 'live'").fetchone()[0] > 0


def test_a_quiet_market_is_committed_in_groups_through_the_append_path(dsn: str, exchange) -> None:
    """~100 trades/s: the writer commits when the oldest row has waited the window, a few
    transactions a second, not one per message; a healthy stream's batches are appended."""
    ex = exchange(rate=100, seed=8)
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **{**FAST, "commit_window": 0.25}, **ALL).start()
    time.sleep(4.0)
    st = finish(ex, cap, dsn, syms)
    assert st.messages >= 300
    assert st.commits <= 4.5 / 0.25 + 10, f"{st.commits} commits for {st.messages} messages"
    assert st.appended >= st.commits - 3  # the start's catch-up and the last batch may overlap


def test_without_a_window_every_few_messages_commit(dsn: str, exchange) -> None:
    """The same market with commit_window=0 commits far more often: the window is what groups."""
    ex = exchange(rate=100, seed=8)
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **{**FAST, "commit_window": 0.0}, **ALL).start()
    time.sleep(4.0)
    st = finish(ex, cap, dsn, syms)
    assert st.commits > 4.5 / 0.25 + 10


def test_many_symbols_split_across_connections(dsn: str, exchange) -> None:
    syms = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt"]
    ex = exchange(symbols=syms, rate=100)
    cap = Capture(syms, source=ex.ws_url, max_streams_per_connection=2, **FAST, **ALL).start()
    time.sleep(2.0)
    finish(ex, cap, dsn, syms)


def test_forced_disconnects(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    for kind in ("reset", "close", "reset"):
        time.sleep(0.7)
        ex.inject(kind)
    time.sleep(1.0)
    st = finish(ex, cap, dsn, syms)
    assert st.reconnects >= 3
    assert ex.fault_counts.get("reset", 0) >= 2 and ex.fault_counts.get("close", 0) >= 1


def test_stall_is_detected_and_recovered(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **{**FAST, **ALL, "stall_timeout": 1.0}).start()
    time.sleep(0.8)
    ex.inject("stall", seconds=4.0)
    time.sleep(3.0)
    st = finish(ex, cap, dsn, syms)
    assert st.reconnects >= 1
    assert cap.counters["stalls"] >= 1


def test_duplicated_and_reordered_frames(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    for _ in range(3):
        time.sleep(0.4)
        ex.inject("duplicate", n=20)
        ex.inject("reorder", n=20)
    time.sleep(0.5)
    st = finish(ex, cap, dsn, syms)
    assert st.duplicates >= 20


def test_gap_on_the_stream_is_backfilled(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(0.6)
    ex.inject("gap", n=150)
    time.sleep(1.5)
    st = finish(ex, cap, dsn, syms)
    assert st.gaps_found >= 1 and st.gaps_filled >= 1 and st.backfilled >= 150 and st.gaps_lost == 0
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades WHERE source = 'backfill'").fetchone()[0] >= 150
        assert c.execute("SELECT count(*) FROM capture_gaps WHERE status = 'filled'").fetchone()[0] >= 1


def test_rest_429_during_backfill(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(0.5)
    ex.inject("rest_429", n=2)
    ex.inject("gap", n=80)
    time.sleep(3.5)  # Retry-After: 1 twice
    st = finish(ex, cap, dsn, syms)
    assert ex.fault_counts.get("rest_429", 0) >= 2
    assert st.backfilled >= 80 and st.gaps_lost == 0


def test_malformed_frames_go_to_dead_letters(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    variants = ["bad_json", "missing_field", "wrong_type", "huge", "unknown_event", "absurd_value"]
    for v in variants:
        time.sleep(0.15)
        ex.inject("malformed", variant=v)
    time.sleep(0.5)
    st = finish(ex, cap, dsn, syms)
    assert st.dead_letters >= len(variants)
    with psycopg.connect(dsn) as c:
        reasons = [r[0] for r in c.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) >= len(variants)
    joined = " | ".join(reasons)
    for needle in ("invalid JSON", "missing field", "must be", "unknown event type", "absurd"):
        assert needle in joined, (needle, reasons)


def test_rotation_before_max_age_and_server_shutdown(dsn: str, exchange) -> None:
    ex = exchange(max_connection_age=1.5)
    syms = ["btcusdt", "ethusdt"]
    # the capture rotates on its own timer (1.0 s) and also on serverShutdown
    cap = Capture(syms, source=ex.ws_url, rotate_after=1.0, **FAST, **ALL).start()
    time.sleep(3.5)
    st = finish(ex, cap, dsn, syms)
    assert st.rotations >= 2


def _restart_embedded() -> None:
    embedded.stop()
    time.sleep(1.5)
    embedded.start()


needs_embedded = pytest.mark.skipif(
    bool(os.environ.get("CRYPTOLAB_TEST_DSN")),
    reason="restarts the server: only with the embedded test server",
)


@needs_embedded
def test_database_restart_mid_run(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(1.0)
    embedded.stop()
    wait_until(lambda: not cap.status().database_up, 10, "the capture to notice the database is down")
    time.sleep(1.0)
    assert cap.status().journal_rows > 0
    embedded.start()
    time.sleep(1.0)
    st = finish(ex, cap, dsn, syms)
    assert st.journal_rows == 0 and st.database_up


@needs_embedded
def test_stop_while_database_down_then_restart(dsn: str, exchange) -> None:
    ex = exchange()
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(1.0)
    embedded.stop()
    time.sleep(0.5)
    ex.stop_market()
    time.sleep(1.0)
    st = cap.stop()
    assert st.journal_rows > 0 and st.error and "journal" in st.error
    embedded.start()
    cap2 = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    total = printed_total(ex, syms)
    wait_until(lambda: stored_count(dsn, syms) >= total, 20, "the journal to be replayed")
    st2 = cap2.stop()
    assert st2.journal_rows == 0
    assert_exact(dsn, ex, syms)


def test_kill_9_and_restart(dsn: str, exchange) -> None:
    ex = exchange(rate=400)
    syms = ["btcusdt", "ethusdt"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "capture",
            "--symbols",
            ",".join(syms),
            "--source",
            ex.ws_url,
            "--quiet",
            "--from-id",
            "1",
        ],
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: stored_count(dsn, syms) > 200, 30, "the subprocess capture to store trades")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    time.sleep(1.0)  # the market goes on while nobody listens
    cap = Capture(syms, source=ex.ws_url, **FAST, **ALL).start()
    time.sleep(1.0)
    st = finish(ex, cap, dsn, syms)
    assert st.backfilled > 0  # what was printed while down came back through REST


def test_start_returns_fast_inside_a_running_loop(dsn: str, exchange) -> None:
    ex = exchange()

    async def notebook_cell() -> float:
        t0 = time.perf_counter()
        cap.start()
        return time.perf_counter() - t0

    cap = Capture(["btcusdt"], source=ex.ws_url, **FAST, **ALL)
    took = asyncio.run(notebook_cell())
    try:
        assert took < 1.0
        assert cap.status().running
        assert any(
            t.name.startswith("cryptolab-capture[BTCUSDT]") and t.daemon
            for t in __import__("threading").enumerate()
        )
    finally:
        cap.stop()


def test_second_capture_same_symbols_does_not_double(dsn: str, exchange) -> None:
    ex = exchange(symbols=["btcusdt", "ethusdt", "solusdt"])
    a = Capture(["btcusdt", "ethusdt"], source=ex.ws_url, **FAST, **ALL).start()
    assert a.start() is a  # idempotent on the same object
    b = Capture(["ethusdt", "solusdt"], source=ex.ws_url, **FAST, **ALL).start()  # overlaps on ETHUSDT
    assert set(b.status().skipped_symbols) == {"ETHUSDT"}
    assert b.status().symbols == ("SOLUSDT",)
    time.sleep(1.5)
    ex.stop_market()
    syms = ["btcusdt", "ethusdt", "solusdt"]
    total = printed_total(ex, syms)
    wait_until(lambda: stored_count(dsn, syms) >= total, 30, "both captures to catch up")
    sa, sb = a.stop(), b.stop()
    assert_exact(dsn, ex, syms)
    assert sa.rows_stored + sb.rows_stored == total  # nothing was stored twice


def test_unknown_symbol_and_unreachable_endpoint(dsn: str, exchange) -> None:
    ex = exchange()
    with pytest.raises(SourceError, match="NOPEUSDT"):
        Capture(["btcusdt", "nopeusdt"], source=ex.ws_url, **FAST, **ALL).start()
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(SourceError) as ei:
        Capture(["btcusdt"], source=f"ws://127.0.0.1:{port}", **FAST, **ALL).start()
    assert f"127.0.0.1:{port}" in str(ei.value)


def test_cli_capture_runs_for_n_seconds_and_summarizes(dsn: str, exchange) -> None:
    ex = exchange()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "capture",
            "--symbols",
            "btcusdt",
            "--source",
            ex.ws_url,
            "--seconds",
            "2",
        ],
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "stored" in r.stdout and "capture stopped" in r.stdout
    assert stored_count(dsn, ["btcusdt"]) > 0


def test_unrecoverable_range_is_recorded_not_silent(dsn: str, exchange) -> None:
    # the exchange's history starts at id 1000: ids 1..999 can never be had from REST
    ex = exchange(first_ids={"BTCUSDT": 1000})
    cap = Capture(["btcusdt"], source=ex.ws_url, **FAST, from_ids={"BTCUSDT": 1}).start()
    time.sleep(1.5)
    st = finish(ex, cap, dsn, ["btcusdt"])
    assert st.gaps_lost >= 1
    with psycopg.connect(dsn) as c:
        lost = c.execute(
            "SELECT first_missing_id, last_missing_id, missing, status FROM capture_gaps "
            "WHERE status = 'unrecoverable'"
        ).fetchall()
        assert lost == [(1, 999, 999, "unrecoverable")]
        assert c.execute("SELECT min(trade_id) FROM trades").fetchone() == (1000,)


def test_many_streams_go_through_subscribe(dsn: str, exchange) -> None:
    # past 100 streams the URL would get long: the capture connects to /stream and SUBSCRIBEs
    syms = [f"t{i:03d}usdt" for i in range(120)]
    ex = exchange(symbols=syms, rate=6000)  # ~50 trades/s each
    cap = Capture(syms, source=ex.ws_url, **FAST, from_ids={s.upper(): 1 for s in syms}).start()
    time.sleep(3.0)
    finish(ex, cap, dsn, syms, timeout=60)


def test_slow_database_spills_to_the_journal_not_memory(dsn: str, exchange) -> None:
    # tiny transactions make the writer slower than the market: the queue must stay bounded
    ex = exchange(rate=3000)
    syms = ["btcusdt", "ethusdt"]
    cap = Capture(syms, source=ex.ws_url, max_batch_rows=5, max_queue_rows=200, **FAST, **ALL).start()
    time.sleep(2.0)
    assert cap.counters["spilled"] > 0
    finish(ex, cap, dsn, syms, timeout=90)
