"""One capture per (database, exchange, symbol) on this machine: fcntl locks that die with the process."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import TextIO

import psycopg

__all__ = ["SymbolLocks", "db_key"]


def db_key(dsn: str) -> str:
    """A short stable name of the database a DSN points at (host, port, dbname; no password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        ident = f"{info.get('host', '')}|{info.get('port', '')}|{info.get('dbname', '')}"
    except psycopg.ProgrammingError:
        ident = dsn
    return hashlib.sha1(ident.encode()).hexdigest()[:12]


class SymbolLocks:
    """Lock files under `home/locks`, one per (database, exchange, symbol)."""

    def __init__(self, home: Path, dbkey: str) -> None:
        self.dir = home / "locks"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dbkey = dbkey
        self.held: dict[str, TextIO] = {}

    def try_take(self, exchange: str, symbol: str, who: str) -> str | None:
        """Take the lock; None on success, else who holds it."""
        path = self.dir / f"{self.dbkey}-{exchange}-{symbol}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fh = os.fdopen(fd, "r+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.read().strip() or "another capture"
            fh.close()
            return holder
        fh.seek(0)
        fh.truncate()
        fh.write(who)
        fh.flush()
        self.held[symbol] = fh
        return None

    def release(self) -> None:
        for fh in self.held.values():
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                fh.close()
        self.held.clear()
