"""Which closed UTC days to export, and which partitions to drop: a pure function of what is where.

Inputs: the (exchange, symbol) groups each `trades_YYYYMMDD` partition holds, the days
recorded in `archive_days`, the day files present in the store, today (UTC) and the options.
Rules:

* only closed days are touched: day < today, and day < `before` when given;
* a group is exported unless its file is present and recorded at this location, under the
  current contract and with its checksum (an older file is rewritten: one schema per dataset);
* a partition is dropped only when asked (`drop`: every eligible day; `keep_days` N: days
  older than today − N), only when every group it holds is selected (`symbols`), and only
  after the job has read each archived file back and matched it against the database;
* a day recorded as dropped whose partition holds rows again is a conflict: reported, left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = ["Group", "Recorded", "ArchivePlan", "make_plan"]


@dataclass(frozen=True, order=True)
class Group:
    """One (exchange, symbol, UTC day)."""

    day: date
    exchange: str
    symbol: str


@dataclass(frozen=True)
class Recorded:
    """What archive_days says about a group."""

    location: str
    dropped: bool
    current: bool = True  # the file follows the current contract and its checksum is recorded


@dataclass
class ArchivePlan:
    """What one archive run does: the (day, exchange, symbol) groups to export, the partitions to
    drop, those kept (and why), conflicts with what is recorded, and groups archived already."""

    export: list[Group] = field(default_factory=list)
    drop: list[date] = field(default_factory=list)
    kept: list[tuple[date, str]] = field(default_factory=list)  # partitions not dropped, and why
    conflicts: list[tuple[Group, str]] = field(default_factory=list)
    done: list[Group] = field(default_factory=list)  # already archived here


def make_plan(
    partitions: Mapping[date, Collection[tuple[str, str]]],
    recorded: Mapping[Group, Recorded],
    present: Collection[Group],
    *,
    today: date,
    location: str,
    before: date | None = None,
    drop: bool = False,
    keep_days: int | None = None,
    symbols: Collection[str] | None = None,
) -> ArchivePlan:
    """The plan for one run (see the module docstring)."""
    plan = ArchivePlan()
    cutoff = today if before is None else min(before, today)
    drop_before: date | None = None
    if drop:
        drop_before = cutoff
    if keep_days is not None:
        keep = today - timedelta(days=keep_days)
        drop_before = keep if drop_before is None else min(drop_before, keep)
    wanted = None if symbols is None else {s.upper() for s in symbols}
    present_set = set(present)
    for day in sorted(partitions):
        if day >= cutoff:
            continue
        groups = sorted(Group(day, e, s) for e, s in partitions[day])
        if not groups:
            continue
        chosen = [g for g in groups if wanted is None or g.symbol in wanted]
        conflicted = False
        for g in chosen:
            rec = recorded.get(g)
            if rec is not None and rec.dropped:
                plan.conflicts.append((g, f"{g.exchange} {g.symbol} {day} was archived and dropped, but the "
                                          "database holds rows for it again: they are not archived; "
                                          "see docs/archive.md (late rows)"))
                conflicted = True
            elif g in present_set and rec is not None and rec.location == location and rec.current:
                plan.done.append(g)
            else:
                plan.export.append(g)
        if drop_before is None or day >= drop_before:
            continue
        others = [g for g in groups if g not in chosen]
        if others:
            names = ", ".join(f"{g.exchange} {g.symbol}" for g in others)
            plan.kept.append((day, f"the partition also holds {names}, not selected by --symbols"))
        elif conflicted:
            plan.kept.append((day, "it holds rows of a day already archived and dropped (conflict)"))
        else:
            plan.drop.append(day)
    return plan
