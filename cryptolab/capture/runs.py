"""The run log in the database: `capture_runs`, `capture_gaps` and where a capture resumes.

All SQL of the capture except the writer's (cryptolab/storage/writer.py) lives here.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Sequence

import psycopg

from .options import Counters
from .sequencer import GapEvent

__all__ = ["ResumePoint", "RunLog", "db_key", "mark_dead_runs", "max_stored_ids", "release_dead_members",
           "resume_points"]

ResumePoint = tuple[int | None, list[tuple[int, int]]]
"""(the id to resume after: the last stored within the look-back, or a hole's end past it; holes to fill)."""


def db_key(dsn: str) -> str:
    """A short stable name of the database a DSN points at (host, port, dbname; no password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        ident = f"{info.get('host', '')}|{info.get('port', '')}|{info.get('dbname', '')}"
    except psycopg.ProgrammingError:
        ident = dsn
    return hashlib.sha1(ident.encode()).hexdigest()[:12]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_runs(conn: psycopg.Connection, stale_seconds: float) -> int:
    """Mark runs that still say 'running' but are dead: their process is gone from this
    host, or their heartbeat is older than `stale_seconds`. Returns how many.

    Capturers of this host whose process is gone are marked dead in `capture_members` too and
    their leases deleted: a capture that died without handing its leases back (the database
    was away when it stopped) does not make the restart wait for them to expire."""
    host = socket.gethostname()
    release_dead_members(conn, host)
    with conn.transaction():
        rows = conn.execute(
            "SELECT run_id, pid FROM capture_runs WHERE status = 'running' AND host = %s", (host,)
        ).fetchall()
        gone = [
            int(r) for r, pid in rows if pid is not None and pid != os.getpid() and not _pid_alive(int(pid))
        ]
        cur = conn.execute(
            "UPDATE capture_runs SET status = 'dead', stopped_at = coalesce(heartbeat_at, started_at), "
            "note = concat_ws('; ', note, 'found dead at ' || clock_timestamp()::text) "
            "WHERE status = 'running' AND (run_id = ANY(%s) "
            "OR coalesce(heartbeat_at, started_at) < clock_timestamp() - make_interval(secs => %s))",
            (gone, stale_seconds),
        )
        return cur.rowcount


def release_dead_members(conn: psycopg.Connection, host: str) -> list[str]:
    """Members of `host` still 'running' whose process is gone: marked 'dead', leases deleted."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT member_id, pid FROM capture_members WHERE host = %s AND state = 'running'", (host,)
        ).fetchall()
        gone = [str(m) for m, pid in rows if int(pid) != os.getpid() and not _pid_alive(int(pid))]
        if gone:
            conn.execute("DELETE FROM capture_leases WHERE owner = ANY(%s)", (gone,))
            conn.execute("UPDATE capture_members SET state = 'dead' WHERE member_id = ANY(%s)", (gone,))
    return gone


def resume_points(
    conn: psycopg.Connection,
    exchange: str,
    symbols: Iterable[str],
    lookback_seconds: float,
    from_ids: dict[str, int],
) -> dict[str, ResumePoint]:
    """Per symbol: the last id stored within the look-back, and the holes to fill.

    Holes are found in the stored ids themselves (so a capture killed mid-backfill
    leaves nothing behind), plus ranges a previous run recorded as still open; ranges
    already recorded as unrecoverable are not asked again.
    """
    out: dict[str, ResumePoint] = {}
    with conn.transaction():
        for sym in symbols:
            key = (exchange, sym)
            row = conn.execute(
                "SELECT min(trade_id), max(trade_id) FROM trades WHERE exchange = %s AND symbol = %s "
                "AND trade_time > now() - make_interval(secs => %s)",
                (*key, lookback_seconds),
            ).fetchone()
            lo_id, hi_id = (row[0], row[1]) if row else (None, None)
            holes = conn.execute(
                "SELECT prev + 1, trade_id - 1 FROM ("
                "  SELECT trade_id, lag(trade_id) OVER (ORDER BY trade_id) AS prev FROM trades"
                "  WHERE exchange = %s AND symbol = %s AND trade_time > now() - make_interval(secs => %s)) t "
                "WHERE trade_id > prev + 1 ORDER BY 1",
                (*key, lookback_seconds),
            ).fetchall()
            opened = conn.execute(
                "DELETE FROM capture_gaps WHERE exchange = %s AND symbol = %s AND status = 'open' "
                "RETURNING first_missing_id, last_missing_id",
                key,
            ).fetchall()
            lost = conn.execute(
                "SELECT first_missing_id, last_missing_id FROM capture_gaps "
                "WHERE exchange = %s AND symbol = %s AND status = 'unrecoverable'",
                key,
            ).fetchall()
            want = from_ids.get(sym)
            ranges = [(int(a), int(b)) for a, b in [*holes, *opened]]
            if want is not None and lo_id is not None and want < lo_id:
                ranges.append((want, int(lo_id) - 1))
            ranges = [r for r in ranges if not any(a <= r[0] and r[1] <= b for a, b in lost)]
            # resume after the highest id known: a recorded hole ends past what is stored when nothing
            # after it was stored (a history join stopped early), and what came after it is missing too
            top = max([*(b for _, b in ranges), *([int(hi_id)] if hi_id is not None else [])], default=None)
            out[sym] = (top, sorted(set(ranges)))
    return out


def max_stored_ids(conn: psycopg.Connection, exchange: str, symbols: Sequence[str]) -> dict[str, int]:
    """The highest stored trade id per symbol (for continuing a simulated market)."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT symbol, max(trade_id) FROM trades WHERE exchange = %s AND symbol = ANY(%s) GROUP BY 1",
            (exchange, list(symbols)),
        ).fetchall()
    return {str(sym): int(top) for sym, top in rows}


class RunLog:
    """One capture's row in `capture_runs` and its `capture_gaps` (writer thread only)."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.run_id: int | None = None

    def open(self, conn: psycopg.Connection, symbols: Sequence[str], endpoint: str, note: str | None) -> int:
        """Insert the run's row; `endpoint` must already be masked (no credentials)."""
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO capture_runs (exchange, symbols, endpoint, host, pid, heartbeat_at, note) "
                "VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s) RETURNING run_id",
                (self.exchange, list(symbols), endpoint, socket.gethostname(), os.getpid(), note),
            ).fetchone()
        assert row is not None
        self.run_id = int(row[0])
        return self.run_id

    def write_gaps(self, conn: psycopg.Connection, events: Sequence[GapEvent]) -> None:
        if not events:
            return
        with conn.transaction():
            for ev in events:
                conn.execute(
                    "INSERT INTO capture_gaps (run_id, exchange, symbol, first_missing_id, last_missing_id, "
                    "status, reason, resolved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                    "CASE WHEN %s = 'open' THEN NULL ELSE clock_timestamp() END)",
                    (self.run_id, self.exchange, ev.symbol, ev.lo, ev.hi, ev.status, ev.reason, ev.status),
                )

    def heartbeat(self, conn: psycopg.Connection, c: Counters, *, final: bool, failed: bool = False) -> None:
        with conn.transaction():
            conn.execute(*self.heartbeat_statement(c, final=final, failed=failed))

    def heartbeat_statement(
        self, c: Counters, *, final: bool = False, failed: bool = False
    ) -> tuple[str, tuple[object, ...]]:
        """The run's heartbeat as (SQL, parameters): the cluster's tick runs it in its own
        transaction while the capture runs (one commit a renewal, not two)."""
        status = ("failed" if failed else "stopped") if final else "running"
        return (
            "UPDATE capture_runs SET heartbeat_at = clock_timestamp(), messages = %s, trades_stored = %s, "
            "duplicates = %s, dead_letters = %s, reconnects = %s, gaps_found = %s, gaps_filled = %s, "
            "backfilled = %s, stopped_at = CASE WHEN %s THEN clock_timestamp() END, status = %s "
            "WHERE run_id = %s",
            (
                c.messages,
                c.stored,
                c.duplicates,
                c.dead_letters,
                c.reconnects,
                c.gaps_found,
                c.gaps_filled,
                c.backfilled,
                final,
                status,
                self.run_id,
            ),
        )
