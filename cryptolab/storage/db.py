"""Connections, the schema and small readers: the storage side of cryptolab.

`connect()` gives a psycopg 3 connection to `CRYPTOLAB_DSN`, or to the embedded
server when it is unset (started on first use). The schema is applied on first use
of each database in a process; `apply_schema()` applies it on demand.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..config import mask_dsn, settings
from ..errors import DatabaseError, first_line
from . import embedded

__all__ = [
    "resolve_dsn",
    "connect",
    "apply_schema",
    "schema_version",
    "ensure_partitions",
    "partitions_of",
    "read_frame",
    "SCHEMA_PATH",
    "SQL_DIR",
]

_PKG = Path(__file__).resolve().parent.parent
SCHEMA_PATH = _PKG / "schema.sql"
"""The project's `schema.sql` (shipped inside the package)."""
SQL_DIR = _PKG / "sql"
"""The project's `sql/` analysis modules (shipped inside the package)."""

_schema_done: set[str] = set()
_schema_lock = threading.Lock()


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: the argument, else `CRYPTOLAB_DSN`, else the embedded server."""
    if dsn:
        return dsn
    cfg = settings()
    if cfg.dsn:
        return cfg.dsn
    return embedded.start(cfg)


def _explain(exc: Exception, dsn: str, explicit: bool) -> DatabaseError:
    first = first_line(exc)
    if isinstance(exc, psycopg.ProgrammingError):
        # libpq's parse errors quote a token of the DSN, which may be (part of) the password
        first = f"malformed DSN {mask_dsn(dsn)!r}" if "password" not in dsn.lower() else "malformed DSN"
    password = _password_of(dsn)
    if password:
        first = first.replace(password, "***")
    if explicit:
        where = "the DSN you passed"
    elif settings().dsn:
        where = "CRYPTOLAB_DSN"
    else:
        where = "the embedded server (see `cryptolab db status`)"
    return DatabaseError(f"cannot connect to PostgreSQL via {where}: {first} — fix {where.split(' (')[0]} "
                         "or unset CRYPTOLAB_DSN to use the embedded server")


def _password_of(dsn: str) -> str | None:
    try:
        value = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return str(value) if value else None


def connect(
    dsn: str | None = None,
    *,
    autocommit: bool = False,
    ensure_schema: bool = True,
    **kwargs: Any,
) -> psycopg.Connection:
    """Open a psycopg connection in UTC; apply the schema once per database and process."""
    real = resolve_dsn(dsn)
    try:
        conn = psycopg.connect(real, autocommit=autocommit, **kwargs)
    except psycopg.ProgrammingError as exc:  # malformed DSN
        raise _explain(exc, real, bool(dsn)) from None
    except psycopg.OperationalError as exc:
        raise _explain(exc, real, bool(dsn)) from None
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    if ensure_schema and real not in _schema_done:
        apply_schema(conn)
        _schema_done.add(real)
    return conn


def apply_schema(conn: psycopg.Connection) -> int:
    """Apply `schema.sql`, then the server-side functions of `sql/schema/*.sql` in name order
    (each idempotent; serialized by an advisory lock); return the version."""
    text = SCHEMA_PATH.read_text()
    functions = [p.read_text() for p in sorted((SQL_DIR / "schema").glob("*.sql"))]
    with _schema_lock:
        prev = conn.autocommit
        conn.autocommit = True
        try:
            conn.execute("SELECT pg_advisory_lock(hashtext('cryptolab_schema'))")
            try:
                conn.execute(text)  # a multi-statement script, no parameters
                for script in functions:  # after the tables they use
                    conn.execute(script)
                # under the same lock: a partition made while another session's script runs
                # `CREATE INDEX … ON trades` deadlocks the two (each waits for the other)
                ensure_partitions(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext('cryptolab_schema'))")
            version = schema_version(conn)
        finally:
            conn.autocommit = prev
    return version


def schema_version(conn: psycopg.Connection) -> int:
    """Highest applied schema version (0 when the schema was never applied)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def ensure_partitions(conn: psycopg.Connection, first: Any = None, last: Any = None) -> int:
    """Make the daily `trades` partitions for [first, last] (default: yesterday … +2 days)."""
    if first is None:
        row = conn.execute(
            "SELECT cryptolab_ensure_partitions(now() - interval '1 day', now() + interval '2 days')"
        ).fetchone()
    else:
        row = conn.execute("SELECT cryptolab_ensure_partitions(%s, %s)", (first, last or first)).fetchone()
    if not conn.autocommit:
        conn.commit()
    return int(row[0]) if row else 0


def read_frame(
    query: str,
    params: Any = None,
    *,
    conn: psycopg.Connection | None = None,
    as_: Literal["polars", "pandas"] = "polars",
) -> Any:
    """Run a query and return its rows as a polars (default) or pandas DataFrame.

    NUMERIC values arrive as `decimal.Decimal`; polars keeps them as exact Decimal
    columns, pandas as object columns of Decimal.
    """
    import polars as pl

    own = conn is None
    c = conn or connect()
    try:
        with c.cursor() as cur:
            cur.execute(query, params)
            cols = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    finally:
        if own:
            c.close()
    if as_ == "pandas":
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=cols)
    data = {name: [r[i] for r in rows] for i, name in enumerate(cols)}
    return pl.DataFrame(data, strict=False) if rows else pl.DataFrame({c: [] for c in cols})


def partitions_of(conn: psycopg.Connection, schema: str, name: str) -> list[tuple[str, str]]:
    """The (exchange, symbol) pairs one partition holds: a loose index scan, one probe per pair."""
    part = sql.Identifier(schema, name)
    rows = conn.execute(
        sql.SQL(
            "WITH RECURSIVE s AS ((SELECT exchange, symbol FROM {p} ORDER BY exchange, symbol LIMIT 1) "
            "UNION ALL SELECT n.exchange, n.symbol FROM s CROSS JOIN LATERAL (SELECT t.exchange, t.symbol "
            "FROM {p} t WHERE (t.exchange, t.symbol) > (s.exchange, s.symbol) ORDER BY t.exchange, t.symbol "
            "LIMIT 1) AS n) SELECT exchange, symbol FROM s"
        ).format(p=part)
    ).fetchall()
    return [(str(e), str(s)) for e, s in rows]
