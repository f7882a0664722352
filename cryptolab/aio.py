"""Run a coroutine to completion from plain (sync) code — also inside Jupyter.

A notebook cell already runs inside an event loop, where `asyncio.run()` refuses to
start another one. `run_sync()` then re-enters the running loop with `nest_asyncio`
(applied once, to that loop only); elsewhere it is `asyncio.run()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result, with or without a running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import nest_asyncio

    if not getattr(loop, "_nest_patched", False):
        nest_asyncio.apply(loop)
    return loop.run_until_complete(coro)
