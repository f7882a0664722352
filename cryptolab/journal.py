"""An append-only local journal: where capture puts batches while the database is away.

Segments are files of JSON lines under one directory (`CRYPTOLAB_HOME/journal/…`),
named by a rising sequence number. `append()` writes one batch as lines and fsyncs;
`replay()` hands segments back oldest first and deletes each only after the caller
says it is stored. A crash between storing and deleting replays that segment again,
which the writer's idempotent insert absorbs: every trade still lands exactly once.
A torn last line (power loss, kill -9 mid-write) is skipped and counted.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from .model import DeadLetter, Trade

__all__ = ["Journal", "Segment"]

SEGMENT_BYTES = 32 * 1024 * 1024


def _trade_line(t: Trade) -> bytes:
    return orjson.dumps(
        ["T", t.exchange, t.symbol, t.trade_id, str(t.price), str(t.qty), t.is_buyer_maker,
         t.trade_time_us, t.event_time_us, t.received_at_us, t.source]
    )


def _dead_line(d: DeadLetter) -> bytes:
    return orjson.dumps(
        ["D", d.reason, base64.b64encode(bytes(d.payload)).decode(), d.source, d.exchange, d.symbol, d.received_at_us]
    )


@dataclass
class Segment:
    """One journal file's content, as read back."""

    path: Path
    trades: list[Trade]
    dead_letters: list[DeadLetter]
    torn_lines: int


def _parse(path: Path) -> Segment:
    trades: list[Trade] = []
    dead: list[DeadLetter] = []
    torn = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                row = orjson.loads(line)
                if row[0] == "T":
                    _, ex, sym, tid, p, q, m, tt, et, rt, src = row
                    trades.append(Trade(ex, sym, tid, Decimal(p), Decimal(q), m, tt, et, rt, src))
                elif row[0] == "D":
                    _, reason, b64, src, ex, sym, rt = row
                    dead.append(DeadLetter(reason, base64.b64decode(b64), src, ex, sym, rt))
                else:
                    torn += 1
            except (orjson.JSONDecodeError, ValueError, TypeError, IndexError):
                torn += 1
    return Segment(path, trades, dead, torn)


class Journal:
    """Append-only spill files in one directory. Not shared between threads."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh: object | None = None
        self._path: Path | None = None
        self._size = 0
        self.rows = sum(self._count_lines(p) for p in self.segments())
        """Trades and dead letters currently held in the journal."""

    @staticmethod
    def _count_lines(path: Path) -> int:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(self.dir.glob("seg-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))

    def _next_path(self) -> Path:
        segs = self.segments()
        n = int(segs[-1].stem.split("-")[1]) + 1 if segs else 1
        return self.dir / f"seg-{n:09d}.jsonl"

    def append(self, trades: Sequence[Trade], dead_letters: Iterable[DeadLetter] = ()) -> int:
        """Append one batch durably (fsync); return the number of rows written."""
        lines = [_trade_line(t) for t in trades] + [_dead_line(d) for d in dead_letters]
        if not lines:
            return 0
        if self._fh is None or self._size > SEGMENT_BYTES:
            self.close()
            self._path = self._next_path()
            self._fh = open(self._path, "ab")
            self._size = 0
        data = b"\n".join(lines) + b"\n"
        fh = self._fh
        fh.write(data)  # type: ignore[attr-defined]
        fh.flush()  # type: ignore[attr-defined]
        os.fsync(fh.fileno())  # type: ignore[attr-defined]
        self._size += len(data)
        self.rows += len(lines)
        return len(lines)

    def close(self) -> None:
        """Close the segment being written (the next append starts a new one)."""
        if self._fh is not None:
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

    def replay(self, store: Callable[[Segment], None]) -> tuple[int, int]:
        """Give each segment to `store`, oldest first; delete it once `store` returns.

        Stops at the first segment `store` raises on (that segment stays). Returns
        (rows replayed, torn lines skipped).
        """
        self.close()
        done = torn = 0
        for path in self.segments():
            seg = _parse(path)
            store(seg)
            path.unlink()
            n = len(seg.trades) + len(seg.dead_letters)
            done += n
            torn += seg.torn_lines
            self.rows = max(0, self.rows - n - seg.torn_lines)
        return done, torn

    def __len__(self) -> int:
        return self.rows
