"""Manage the database: the embedded server (status|start|stop|url|psql) and the schema (init)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ..config import mask_dsn, settings
from ..errors import ConfigError
from ..storage import db, embedded


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("status", help="is the embedded server running; where its data and log are")
    sub.add_parser("start", help="start (or reuse) the embedded server and apply the schema")
    sub.add_parser("stop", help="stop the embedded server (also one left by a killed process)")
    url = sub.add_parser("url", help="print the DSN cryptolab uses (its password masked)")
    url.add_argument("--show-password", action="store_true",
                     help="print the password too (it ends up in your terminal's scrollback)")
    sub.add_parser("init", help="apply schema.sql (idempotent) and print the schema version")
    ps = sub.add_parser("psql", help="open psql on the database (extra args go to psql)")
    ps.add_argument("psql_args", nargs=argparse.REMAINDER)


def _psql_binary() -> str:
    cfg = settings()
    if cfg.embedded:
        return str(embedded.bin_dir() / "psql")
    return "psql"


def run(args: argparse.Namespace) -> int:
    cfg = settings()
    if args.action == "status":
        if not cfg.embedded:
            print("CRYPTOLAB_DSN is set: cryptolab uses your server, nothing embedded runs")
            with db.connect() as conn:
                print(f"schema version {db.schema_version(conn)}")
            return 0
        print(embedded.status(cfg).describe())
        return 0
    if args.action in ("start", "init"):
        t0 = time.perf_counter()
        with db.connect() as conn:
            version = db.apply_schema(conn)
        took = time.perf_counter() - t0
        if cfg.embedded:
            print(embedded.status(cfg).describe())
        print(f"schema version {version} applied ({took:.2f} s)")
        return 0
    if args.action == "stop":
        if not cfg.embedded:
            print("CRYPTOLAB_DSN is set: there is no embedded server to stop")
            return 0
        was = embedded.stop(cfg)
        print("embedded PostgreSQL stopped" if was else "embedded PostgreSQL was not running")
        return 0
    if args.action == "url":
        dsn = db.resolve_dsn()
        print(dsn if args.show_password else mask_dsn(dsn))
        return 0
    if args.action == "psql":
        dsn, password = split_password(db.resolve_dsn())
        extra = list(args.psql_args)
        if extra[:1] == ["--"]:
            extra = extra[1:]
        env = {**os.environ, "PGTZ": "UTC"}
        if password is not None:
            env["PGPASSWORD"] = password  # the environment, not argv: argv is public in `ps`
        cmd = [_psql_binary(), dsn, *extra]
        try:
            return subprocess.call(cmd, env=env, stdin=sys.stdin)
        except FileNotFoundError:
            raise ConfigError(f"{cmd[0]} not found: install the PostgreSQL client (psql)") from None
    return 1


def split_password(dsn: str) -> tuple[str, str | None]:
    """`dsn` without its password, and the password (None when it has none).

    For handing a DSN to a child process: the password goes in `PGPASSWORD` (the
    environment is private to the process; its command line is not).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:  # never echo libpq's parse error: it may quote a piece of the password
        raise ConfigError(f"the DSN {mask_dsn(dsn)!r} is malformed: fix CRYPTOLAB_DSN or --dsn") from None
    password = params.pop("password", None)
    if password is None:
        return dsn, None
    return make_conninfo("", **params), str(password)
