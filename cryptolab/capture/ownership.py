"""Who owns which symbol when several capturers share one database (pure, no I/O).

Each capturer (a *member*) asks for some symbols. Each symbol is owned by at most one
member at a time, through a lease in `capture_leases` (see `cluster.py`). Members
split the symbols by rendezvous hashing: a symbol's *preferred* member is the live,
non-standby member asking for it with the highest hash of (symbol, member). On every
tick each member:

* claims the symbols it prefers that are free (no unexpired lease);
* claims any symbol it asked for that has been free for `grace` seconds, whoever
  prefers it (a takeover: the preferred member is gone, or every asker is a standby);
* hands back a symbol it owns when another live member, up for `settle` seconds,
  is now preferred (so a capturer that (re)joins gets its share back): the lease goes
  straight to that member (make-before-break, never a moment without an owner). "Up" counts
  from when this member last saw the other come (back) to life (`steady`): a capturer
  that was frozen (SIGSTOP, a VM paused) and whose symbols were taken over gets them
  back only after it has heartbeated steadily for `settle`, not the moment it thaws.

Standby members are never preferred: they own nothing until a symbol is orphaned.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["Lease", "Member", "OwnershipPlan", "plan_ownership", "preferred", "steady"]


@dataclass(frozen=True)
class Member:
    """A capturer as the database sees it (ages in seconds, on the server's clock)."""

    member_id: str
    requested: frozenset[str]
    standby: bool = False
    up_for: float = 0.0
    heartbeat_age: float = 0.0


@dataclass(frozen=True)
class Lease:
    symbol: str
    owner: str
    expires_in: float
    """Seconds until the lease expires (≤ 0: expired, the symbol is free)."""


@dataclass(frozen=True)
class OwnershipPlan:
    claim: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    free: frozenset[str] = field(default_factory=frozenset)
    """Symbols this member asked for that no one holds now (to time the grace)."""
    hand_to: Mapping[str, str] = field(default_factory=dict)
    """For each symbol of `release`, the member it goes to (the lease is handed over, not dropped)."""


def steady(members: Iterable[Member], live_since: Mapping[str, float], now: float,
           live_within: float) -> tuple[list[Member], dict[str, float]]:
    """Members with `up_for` counted from when they were last seen come (back) to life.

    `live_since[m]`: when `m` was first seen live since it was last seen stale (`inf`
    while stale). A member seen for the first time is trusted for its own `up_for`.
    Returns the members and the new `live_since` (keep it for the next tick)."""
    out: list[Member] = []
    seen: dict[str, float] = {}
    for m in members:
        if m.heartbeat_age > live_within:
            seen[m.member_id] = math.inf
            out.append(m)
            continue
        since = live_since.get(m.member_id, now - m.up_for)
        if since == math.inf:
            since = now  # back from the dead just now
        seen[m.member_id] = since
        out.append(replace(m, up_for=min(m.up_for, max(0.0, now - since))))
    return out, seen


def _score(symbol: str, member_id: str) -> bytes:
    return hashlib.sha1(f"{symbol}\x00{member_id}".encode()).digest()


def preferred(symbol: str, members: Iterable[Member], live_within: float) -> str | None:
    """The member that should own `symbol`: live, not standby, asking for it, highest hash."""
    best: tuple[bytes, str] | None = None
    for m in members:
        if m.standby or symbol not in m.requested or m.heartbeat_age > live_within:
            continue
        cand = (_score(symbol, m.member_id), m.member_id)
        if best is None or cand > best:
            best = cand
    return best[1] if best else None


def plan_ownership(
    me: str,
    requested: Iterable[str],
    members: Iterable[Member],
    leases: Iterable[Lease],
    free_since: Mapping[str, float],
    now: float,
    *,
    grace: float = 2.0,
    settle: float = 5.0,
    live_within: float = 5.0,
) -> OwnershipPlan:
    """One tick of ownership for member `me`. `free_since[s]`: when `me` first saw `s` free (monotonic)."""
    members = list(members)
    by_id = {m.member_id: m for m in members}
    held = {ls.symbol: ls for ls in leases if ls.expires_in > 0}
    claim: list[str] = []
    release: list[str] = []
    hand_to: dict[str, str] = {}
    free: set[str] = set()
    for sym in sorted(set(requested)):
        lease = held.get(sym)
        pref = preferred(sym, members, live_within)
        if lease is None:
            free.add(sym)
            waited = now - free_since.get(sym, now)
            if pref == me or pref is None or waited >= grace:
                claim.append(sym)
        elif lease.owner == me and pref is not None and pref != me:
            other = by_id.get(pref)
            if other is not None and other.up_for >= settle and other.heartbeat_age <= live_within:
                release.append(sym)
                hand_to[sym] = pref
    return OwnershipPlan(tuple(claim), tuple(release), frozenset(free), hand_to)
