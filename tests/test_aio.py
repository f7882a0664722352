"""run_sync: a coroutine's result from plain code and from inside a running loop (a notebook cell)."""

from __future__ import annotations

import asyncio

from cryptolab.aio import run_sync


def test_run_sync_with_and_without_a_running_loop() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    assert run_sync(add(1, 2)) == 3

    async def notebook_cell() -> int:  # Jupyter runs cells inside a running loop
        return run_sync(add(3, 4)) + run_sync(add(0, 1))

    assert asyncio.run(notebook_cell()) == 8
