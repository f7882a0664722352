"""Manage the database: the embedded server (status|start|stop|url|psql) and the schema (init)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from . import db, embedded
from .config import settings


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("status", help="is the embedded server running; where its data and log are")
    sub.add_parser("start", help="start (or reuse) the embedded server and apply the schema")
    sub.add_parser("stop", help="stop the embedded server (also one left by a killed process)")
    sub.add_parser("url", help="print the DSN cryptolab uses")
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
        print(db.resolve_dsn())
        return 0
    if args.action == "psql":
        dsn = db.resolve_dsn()
        extra = list(args.psql_args)
        if extra[:1] == ["--"]:
            extra = extra[1:]
        cmd = [_psql_binary(), dsn, *extra]
        return subprocess.call(cmd, env={**os.environ, "PGTZ": "UTC"}, stdin=sys.stdin)
    return 1
