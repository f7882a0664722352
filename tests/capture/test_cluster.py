"""The lease renewal rides in the data's transaction (`Sink.offer`, `Cluster.tick(carrier=…)`),
and runs on the member's own connection whenever the data cannot take it: nothing waiting,
the writer not there in time, the data's transaction rolled back. Real PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any

import psycopg

from cryptolab.capture.cluster import RIDE_WAIT, Cluster
from cryptolab.capture.options import Counters
from cryptolab.capture.sink import Sink
from cryptolab.model import Trade, now_us
from cryptolab.storage.journal import Journal
from tests.e2e.test_capture_faults import _sink, trade


def _expiry(dsn: str) -> object:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT expires_at FROM capture_leases WHERE symbol = 'BTCUSDT'").fetchone()
    assert row is not None
    return row[0]


def _stored(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT count(*) FROM trades").fetchone()
    return int(row[0]) if row else 0


def _cluster(dsn: str) -> Cluster:
    cl = Cluster(dsn, "simulator", ["BTCUSDT"], lease_seconds=5.0)
    assert asyncio.run(cl.tick()).gained == ["BTCUSDT"]
    return cl


async def _queue_then_tick(cl: Cluster, sink: Sink, rows: list[Trade]) -> None:
    """Rows that wait for their group (received now), then a tick while they wait."""
    sink.trades.extend(r._replace(received_at_us=now_us()) for r in rows)
    sink.wake.set()
    await cl.tick(rows_stored=7, carrier=sink)


def test_a_renewal_rides_in_the_next_data_commit(dsn: str, tmp_path: Path) -> None:
    cl = _cluster(dsn)
    before = _expiry(dsn)
    sink = _sink(dsn, Journal(tmp_path / "j"), Counters(), [], commit_window=0.3)
    sink.start("test-writer")
    try:
        asyncio.run(_queue_then_tick(cl, sink, [trade(i) for i in range(1, 21)]))
        assert _stored(dsn) == 20  # the renewal came back once the data committed
    finally:
        sink.finish()
        sink.join(30)
    assert cl.rode == 1 and cl.owned == {"BTCUSDT"}
    assert _expiry(dsn) > before  # type: ignore[operator]


def test_a_renewal_runs_on_its_own_when_no_data_waits(dsn: str, tmp_path: Path) -> None:
    cl = _cluster(dsn)
    before = _expiry(dsn)
    sink = _sink(dsn, Journal(tmp_path / "j"), Counters(), [])
    assert sink.offer([("SELECT 1", ())]) is None
    asyncio.run(_renew_only(cl, sink))
    assert cl.rode == 0 and cl.owned == {"BTCUSDT"}
    assert _expiry(dsn) > before  # type: ignore[operator]


async def _renew_only(cl: Cluster, sink: object) -> None:
    await cl.tick(carrier=sink)  # type: ignore[arg-type]


def test_a_renewal_the_writer_does_not_take_in_time_runs_on_its_own(dsn: str, tmp_path: Path) -> None:
    cl = _cluster(dsn)
    before = _expiry(dsn)
    sink = _sink(dsn, Journal(tmp_path / "j"), Counters(), [])
    sink.trades.extend(trade(i) for i in range(1, 6))  # rows wait, but no writer runs
    t0 = time.monotonic()
    asyncio.run(_renew_only(cl, sink))
    waited = time.monotonic() - t0
    assert cl.rode == 0 and _expiry(dsn) > before  # type: ignore[operator]
    assert RIDE_WAIT <= waited < RIDE_WAIT + 3.0
    ((_, fut),) = list(sink.riders)
    assert fut.cancelled()  # the writer, when it comes, does not run it
    sink.start("test-writer")
    sink.finish()
    sink.join(30)
    assert _stored(dsn) == 5 and not sink.riders


def test_a_rolled_back_data_commit_sends_the_renewal_to_its_own_connection(dsn: str, tmp_path: Path) -> None:
    cl = _cluster(dsn)
    before = _expiry(dsn)
    counters = Counters()
    sink = _sink(dsn, Journal(tmp_path / "j"), counters, [], commit_window=0.3)
    rows = [trade(i) for i in range(1, 11)]
    rows[4] = trade(5, qty="-1")  # refused by the CHECK: the batch's transaction rolls back, then splits
    offered: list[concurrent.futures.Future[Any]] = []
    offer = sink.offer

    def spy(statements: Any) -> Any:  # the real offer; keeps its future to look at
        fut = offer(statements)
        if fut is not None:
            offered.append(fut)
        return fut

    sink.offer = spy  # type: ignore[method-assign]
    sink.start("test-writer")
    try:
        asyncio.run(_queue_then_tick(cl, sink, rows))
    finally:
        sink.finish()
        sink.join(30)
    assert len(offered) == 1 and "not committed with the data" in str(offered[0].exception(0))
    assert cl.rode == 0 and cl.owned == {"BTCUSDT"}
    assert _expiry(dsn) > before  # type: ignore[operator]
    assert counters.stored == 9 and counters.rejected_rows == 1


def test_between_two_trades_of_a_quiet_market_the_renewal_rides_with_the_next(
    dsn: str, tmp_path: Path
) -> None:
    cl = _cluster(dsn)
    sink = _sink(dsn, Journal(tmp_path / "j"), Counters(), [], commit_window=0.2)
    sink.start("test-writer")

    async def quiet() -> None:
        sink.trades.append(trade(1)._replace(received_at_us=now_us()))
        sink.wake.set()
        while _stored(dsn) < 1:  # the first trade committed; nothing waits now
            await asyncio.sleep(0.02)
        assert not sink.trades
        tick = asyncio.create_task(cl.tick(carrier=sink))
        await asyncio.sleep(0.1)  # the next trade of a quiet market
        sink.trades.append(trade(2)._replace(received_at_us=now_us()))
        sink.wake.set()
        await tick

    try:
        asyncio.run(quiet())
    finally:
        sink.finish()
        sink.join(30)
    assert cl.rode == 1 and _stored(dsn) == 2
