"""The backfiller's schedule: it sleeps while nothing is missing and wakes when a range opens.

A quiet capture's event loop should not be woken ten times a second to find nothing due
(at BTCUSDT's pace that polling was a third of the capture thread's CPU); a hole must still
be asked from REST as soon as its grace has passed, not a second later.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cryptolab.capture.backfill import Backfiller
from cryptolab.capture.options import CaptureOptions, Counters
from cryptolab.capture.runs import RunLog
from cryptolab.capture.sequencer import GapPolicy, Sequencer
from cryptolab.capture.sink import DbLink, Sink
from cryptolab.storage.journal import Journal


def _backfiller(dsn: str, tmp_path: Path, seqs: dict[str, Sequencer], grace: float) -> Backfiller:
    sink = Sink(CaptureOptions(), Counters(), Journal(tmp_path / "j"), DbLink(dsn, retry_seconds=0.2),
                RunLog("binance"), lambda why: None)
    sink.replayed.set()  # nothing left behind to replay
    return Backfiller(None, seqs, sink, Counters(), GapPolicy(grace=grace), "binance", lambda why: None)  # type: ignore[arg-type]


def test_with_nothing_missing_the_backfiller_looks_about_once_a_second(dsn: str, tmp_path: Path) -> None:
    bf = _backfiller(dsn, tmp_path, {"BTCUSDT": Sequencer("BTCUSDT", 100)}, grace=0.3)
    looks = []
    real = bf.fill_due

    async def counted(*, final: bool = False) -> None:
        looks.append(time.monotonic())
        await real(final=final)

    bf.fill_due = counted  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.create_task(bf.run())
        await asyncio.sleep(3.05)
        task.cancel()

    asyncio.run(main())
    assert len(looks) <= 4, f"{len(looks)} looks in 3 s with nothing missing"


def test_a_hole_is_asked_from_rest_once_its_grace_has_passed(dsn: str, tmp_path: Path) -> None:
    seq = Sequencer("BTCUSDT", 100)
    bf = _backfiller(dsn, tmp_path, {"BTCUSDT": seq}, grace=0.3)
    asked: list[tuple[float, int, int]] = []

    async def fetched(
        s: Sequencer, lo: int, hi: int, *, catch_up: bool = False
    ) -> None:  # REST answers at once
        asked.append((time.monotonic(), lo, hi))
        s.carve_range(lo, hi)

    bf.backfill_range = fetched  # type: ignore[method-assign]

    async def main() -> float:
        task = asyncio.create_task(bf.run())
        await asyncio.sleep(1.15)  # the backfiller has just looked and gone back to sleep
        opened = time.monotonic()
        seq.see(110, opened)  # 101..109 missing
        await asyncio.sleep(1.5)
        task.cancel()
        return opened

    opened = asyncio.run(main())
    assert [(lo, hi) for _, lo, hi in asked] == [(101, 109)]
    waited = asked[0][0] - opened
    assert 0.3 <= waited <= 0.6, f"asked {waited:.2f} s after the hole opened (grace 0.3 s)"
