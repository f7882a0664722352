"""The writer's batching decisions (pure, no I/O): what goes where on each turn.

Rows are committed in groups: the queued rows are written once there are `commit_rows` of
them or once the oldest has waited `commit_window` seconds (`commit_wait`), so a quiet
market costs a few transactions a second, not one per message, and a busy one gets batches
that grow with load. On each turn:

* a journal left from an outage is replayed first (order holds);
* a batch goes to the database when it is up and the journal is empty, else to the
  journal;
* when memory holds more than `max_queue_rows` (the database is up but slower than the
  market), the oldest rows move to the journal until half of it is left.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = ["Turn", "commit_wait", "drain", "plan_turn"]

T = TypeVar("T")


@dataclass(frozen=True)
class Turn:
    replay_journal: bool
    write_to: Literal["database", "journal"]
    spill: int
    """Oldest queued rows to move from memory to the journal."""


def plan_turn(*, queued: int, journal_rows: int, db_up: bool, max_queue_rows: int) -> Turn:
    """One turn of the writer. `journal_rows` is counted after any replay."""
    spill = queued - max_queue_rows // 2 if queued > max_queue_rows else 0
    return Turn(
        replay_journal=db_up and journal_rows > 0,
        write_to="database" if db_up and journal_rows == 0 else "journal",
        spill=spill,
    )


def commit_wait(*, queued: int, oldest_age: float, window: float, enough_rows: int) -> float | None:
    """Seconds to wait before the queued rows are written: 0 now (enough rows, or the oldest
    has waited `window`), None when nothing is queued (wait for the first row)."""
    if queued == 0:
        return None
    if queued >= enough_rows or oldest_age >= window:
        return 0.0
    return window - oldest_age


def drain(dq: collections.deque[T], n: int) -> list[T]:
    """Pop up to `n` items from the left of `dq` (safe against a concurrent appender)."""
    out: list[T] = []
    pop = dq.popleft
    try:
        for _ in range(n):
            out.append(pop())
    except IndexError:
        pass
    return out
