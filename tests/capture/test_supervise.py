"""`capture.supervise`: a stream worker that raises is reported and run again; a stop ends it."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from cryptolab.capture.supervise import supervise


def test_a_worker_that_raises_is_reported_and_run_again_until_it_returns() -> None:
    calls: list[int] = []
    reports: list[str] = []

    async def run() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("surprise")

    async def main() -> int:
        delays = itertools.repeat(0.01)
        return await supervise("stream worker btcusdt@trade", run, asyncio.Event(), reports.append, delays)

    assert asyncio.run(main()) == 2
    assert len(calls) == 3 and len(reports) == 2
    assert "stream worker btcusdt@trade failed (KeyError: 'surprise')" in reports[0]


def test_a_stop_during_the_delay_ends_it_without_running_again() -> None:
    calls: list[int] = []

    async def run() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    async def main() -> int:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await supervise("w", run, stop, lambda _: None, itertools.repeat(30.0))

    assert asyncio.run(asyncio.wait_for(main(), 5)) == 0
    assert calls == [1]


def test_an_error_after_the_stop_is_not_reported_and_a_cancel_ends_it() -> None:
    reports: list[str] = []

    async def after_stop() -> int:
        stop = asyncio.Event()
        stop.set()

        async def run() -> None:
            raise OSError("closing")

        return await supervise("w", run, stop, reports.append, itertools.repeat(0.0))

    assert asyncio.run(after_stop()) == 0 and reports == []

    async def cancelled() -> None:
        async def run() -> None:
            await asyncio.sleep(30)

        forever = supervise("w", run, asyncio.Event(), reports.append, itertools.repeat(0.0))
        task = asyncio.create_task(forever)
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert reports == []
