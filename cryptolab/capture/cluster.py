"""Membership and symbol leases in the shared database (the I/O shell around `ownership.py`).

A `Cluster` is one capturer's seat: a row in `capture_members` (heartbeat, what it asked
for, what it stored) and the leases it holds in `capture_leases`. `tick()` renews its
leases, reads the others, and claims or hands back symbols as `plan_ownership` says.
A lease is only trusted locally until `lease_seconds` after the renewal that last
succeeded *started*, minus a margin — earlier than the server can give it to anyone
else — so a capturer cut off from the database stops before another one starts. When the
database returns, a lease that no one took in between is still ours: `tick()` renews it and
reports its symbol as gained again, and the capture resumes it after what is stored (the
hole is filled from REST by id). A lease is never held without its symbol being captured.

A tick's renewal (heartbeat, lease renewal, the look at the others) is one transaction. When the
capture has rows waiting to be committed, it rides in *their* transaction instead (`Carrier`:
the sink's writer runs the statements with its next data commit), so a capture that stores
data commits once per data commit, not once more per renewal; when the writer does not take
it within `RIDE_WAIT` seconds (nothing due, the database away), the tick runs it on its own
connection as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from ..config import mask_dsn
from .ownership import Lease, Member, plan_ownership, steady

__all__ = ["Carrier", "Cluster", "RIDE_WAIT", "Rows", "Statement", "TickResult"]

log = logging.getLogger("cryptolab.capture")

MARGIN = 0.5
"""Seconds of safety between the local end of a lease and the server's."""
RIDE_WAIT = 0.5
"""Seconds a renewal waits for the data's writer to take it before it runs on its own."""

Statement = tuple[str, Sequence[object]]
Rows = list[list[tuple[Any, ...]]]
"""Each statement's rows ([] for one that returns none)."""


class Carrier(Protocol):
    """Who can run a renewal's statements in its next data transaction (the capture's sink)."""

    def offer(self, statements: Sequence[Statement]) -> concurrent.futures.Future[Rows] | None:
        """A future of the statements' rows once committed with data; None when no data is waiting."""
        ...


@dataclass
class TickResult:
    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    holders: dict[str, str] = field(default_factory=dict)
    """Symbols asked for and owned by someone else: symbol → who (host, pid)."""


class Cluster:
    """One capturer's membership and leases (used from the capture's event loop)."""

    def __init__(self, dsn: str, exchange: str, requested: Iterable[str], *, standby: bool = False,
                 lease_seconds: float = 5.0, grace: float = 2.0, settle: float = 5.0) -> None:
        self.dsn = dsn
        self.exchange = exchange
        self.requested = tuple(requested)
        self.standby = standby
        self.lease_seconds = lease_seconds
        self.grace = grace
        self.settle = settle
        self.member_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owned: set[str] = set()
        self.valid_until = 0.0
        self._free_since: dict[str, float] = {}
        self._live_since: dict[str, float] = {}
        self._conn: psycopg.AsyncConnection | None = None
        self.rode = 0
        """Renewals committed in the data's transaction (see `Carrier`)."""
        self.alone = 0
        """Renewals committed on their own (no data commit took them in time, or none was due)."""

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=3
                )
            except psycopg.Error as exc:
                raise psycopg.OperationalError(f"cannot reach {mask_dsn(self.dsn)}: {exc}") from None
            await self._conn.execute("SET statement_timeout = '3s'")
            await self._register(self._conn)
        return self._conn

    async def _register(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(
            "DELETE FROM capture_members WHERE heartbeat_at < clock_timestamp() - interval '1 day'"
        )
        await conn.execute(
            "INSERT INTO capture_members (member_id, host, pid, home, standby, requested, exchange) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (member_id) DO UPDATE SET "
            "heartbeat_at = clock_timestamp(), state = 'running'",
            (
                self.member_id,
                socket.gethostname(),
                os.getpid(),
                os.environ.get("CRYPTOLAB_HOME"),
                self.standby,
                list(self.requested),
                self.exchange,
            ),
        )

    async def tick(
        self,
        *,
        rows_stored: int = 0,
        lag_ms: float | None = None,
        also: Sequence[Statement] = (),
        carrier: Carrier | None = None,
    ) -> TickResult:
        """Renew, look, claim, hand back. Raises psycopg.Error when the database cannot be used.

        `also`: statements (SQL, parameters) to run in the renewal's transaction (the run's heartbeat).
        `carrier`: who may run the renewal in its data transaction (see the module's doc)."""
        started = time.monotonic()
        out = TickResult()
        # one transaction a tick when nothing changes hands: heartbeat, renewal and the look at the
        # others (an idle capture's whole cost to the database); claims and hand-backs below commit
        # each on its own, as before (holding a claimed row while renewing could deadlock two capturers)
        statements: list[Statement] = [
            (
                "UPDATE capture_members SET heartbeat_at = clock_timestamp(), rows_stored = %s, lag_ms = %s, "
                "state = 'running' WHERE member_id = %s",
                (rows_stored, lag_ms, self.member_id),
            ),
            *also,
            (
                "UPDATE capture_leases SET expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE exchange = %s AND owner = %s RETURNING symbol",
                (self.lease_seconds, self.exchange, self.member_id),
            ),
            (
                "SELECT member_id, requested, standby, "
                "extract(epoch FROM clock_timestamp() - started_at)::float8, "
                "extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, host, pid "
                "FROM capture_members WHERE exchange = %s AND state = 'running'",
                (self.exchange,),
            ),
            (
                "SELECT symbol, owner, extract(epoch FROM expires_at - clock_timestamp())::float8 "
                "FROM capture_leases WHERE exchange = %s",
                (self.exchange,),
            ),
        ]
        got = await self._ride(carrier, statements) if carrier is not None else None
        self.rode += got is not None
        if got is None:
            self.alone += 1
            conn = await self._connect()
            got = []
            async with conn.transaction():
                for sql, params in statements:
                    cur = await conn.execute(sql, params)
                    got.append(await cur.fetchall() if cur.description is not None else [])
        still = {str(r[0]) for r in got[-3]}
        rows, lease_rows = got[-2], got[-1]
        out.lost = sorted(self.owned - still)
        # Leases still ours on the server but not captured here: our local lease ran out while
        # the database was away and no one took the symbol over. The renewal above made them
        # valid again, so capture them again (never hold a lease without capturing its symbol).
        out.gained = sorted(still - self.owned)
        self.owned = set(still)
        members = [Member(str(r[0]), frozenset(r[1]), bool(r[2]), float(r[3]), float(r[4])) for r in rows]
        who = {str(r[0]): f"{r[5]} pid {r[6]}" for r in rows}
        leases = [Lease(str(r[0]), str(r[1]), float(r[2])) for r in lease_rows]
        now = time.monotonic()
        members, self._live_since = steady(members, self._live_since, now, max(3.0, self.lease_seconds))
        plan = plan_ownership(
            self.member_id,
            self.requested,
            members,
            leases,
            self._free_since,
            now,
            grace=self.grace,
            settle=self.settle,
            live_within=max(3.0, self.lease_seconds),
        )
        self._free_since = {s: self._free_since.get(s, now) for s in plan.free}
        if plan.release or plan.claim:
            conn = await self._connect()
        for sym in plan.release:
            # make-before-break: the lease goes straight to the preferred capturer, which starts at
            # its next tick (its renewal returns the symbol); this one streams on until its own next
            # tick, whose renewal no longer returns it (then it stops: `lost`). Never a moment without
            # an owner; at most duplicates meanwhile, which the primary key drops.
            await conn.execute(
                "UPDATE capture_leases SET owner = %s, epoch = epoch + 1, acquired_at = clock_timestamp(), "
                "expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE exchange = %s AND symbol = %s AND owner = %s",
                (plan.hand_to[sym], self.lease_seconds, self.exchange, sym, self.member_id),
            )
            log.info("handing %s over to its preferred capturer", sym)
        for sym in plan.claim:
            cur = await conn.execute(
                "INSERT INTO capture_leases (exchange, symbol, owner, expires_at) "
                "VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s)) "
                "ON CONFLICT (exchange, symbol) DO UPDATE SET owner = EXCLUDED.owner, "
                "epoch = capture_leases.epoch + 1, acquired_at = clock_timestamp(), "
                "expires_at = EXCLUDED.expires_at "
                "WHERE capture_leases.expires_at <= clock_timestamp() "
                "OR capture_leases.owner = EXCLUDED.owner "
                "RETURNING symbol",
                (self.exchange, sym, self.member_id, self.lease_seconds),
            )
            if await cur.fetchone() is not None and sym not in self.owned:
                self.owned.add(sym)
                out.gained.append(sym)
        if self.owned:
            self.valid_until = started + self.lease_seconds - MARGIN
        held = {ls.symbol: ls.owner for ls in leases if ls.expires_in > 0 and ls.owner != self.member_id}
        out.holders = {
            s: who.get(o, o) for s, o in held.items() if s in self.requested and s not in self.owned
        }
        return out

    @staticmethod
    async def _ride(carrier: Carrier, statements: Sequence[Statement]) -> Rows | None:
        """The statements' rows, committed with the carrier's data; None when it did not take them
        in time (or its transaction failed): then they run on this member's own connection."""
        fut = carrier.offer(statements)
        if fut is None:
            return None
        waiting = asyncio.wrap_future(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), RIDE_WAIT)
        except asyncio.CancelledError:
            fut.cancel()  # (when not taken yet)
            raise
        except asyncio.TimeoutError:
            if fut.cancel():  # not taken: never runs there
                return None
            try:  # taken, being committed: its outcome (the caller's own timeout bounds the wait)
                return await waiting
            except Exception:
                return None
        except Exception:  # the data's transaction failed: nothing of it committed
            return None

    def expired_locally(self) -> list[str]:
        """Symbols whose lease may have run out (no renewal got through in time): stop them now."""
        if self.owned and time.monotonic() >= self.valid_until:
            lost = sorted(self.owned)
            self.owned.clear()
            return lost
        return []

    async def leave(self) -> None:
        """Hand every lease back and say this member stopped (best effort: leases expire anyway)."""
        try:
            conn = await self._connect()
            await conn.execute(
                "DELETE FROM capture_leases WHERE exchange = %s AND owner = %s",
                (self.exchange, self.member_id),
            )
            await conn.execute(
                "UPDATE capture_members SET state = 'stopped', heartbeat_at = clock_timestamp() "
                "WHERE member_id = %s",
                (self.member_id,),
            )
        except psycopg.Error as exc:
            log.warning(
                "could not hand the leases back (%s): they expire within %.0f s", exc, self.lease_seconds
            )
        finally:
            self.owned.clear()
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


def record_final_rows(dsn: str, member_id: str, rows_stored: int) -> None:
    """Once the sink has stored its last rows (after `leave`): the member's final count, so
    `capture status` says what the run stored, not the count of its last heartbeat."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "UPDATE capture_members SET rows_stored = %s WHERE member_id = %s", (rows_stored, member_id)
            )
    except psycopg.Error as exc:
        log.warning(
            "could not record the final row count (%s): capture status shows the last heartbeat's", exc
        )
