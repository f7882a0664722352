"""The embedded server is locked to the user who started it (issue 13, item 1).

Real servers, a real second local account: as root the test makes one with `useradd`
and runs psql as it. Without root (and outside CI) those tests skip; in CI they fail,
since CI is where this must be proven.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cryptolab.config import Settings
from cryptolab.errors import ConfigError
from cryptolab.storage import embedded

INTRUDER = "cryptolab-intruder"


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("this test needs root (to make a second local account with useradd) and CI must prove it")
    pytest.skip("needs root to make a second local account")


@pytest.fixture(scope="module")
def intruder() -> pwd.struct_passwd:
    """A second, unprivileged local account."""
    _need_root()
    try:
        return pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
                       check=False, capture_output=True)
        return pwd.getpwnam(INTRUDER)


def _as(user: pwd.struct_passwd, socket_dir: Path) -> subprocess.CompletedProcess[str]:
    """psql as `user` against the server's socket, as superuser postgres (what an attacker tries)."""
    psql = embedded.bin_dir() / "psql"
    return subprocess.run(
        [
            str(psql),
            "-X",
            "-At",
            "-h",
            str(socket_dir),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "SELECT 'IN'",
        ],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/", "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def private_home() -> Iterator[Path]:
    """A throw-away CRYPTOLAB_HOME (its own server, stopped and removed after the test)."""
    base = Path(tempfile.mkdtemp(prefix="cl-sec-"))
    base.chmod(0o755)
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


def _long_home(base: Path) -> Path:
    home = base / ("x" * 60) / ("y" * 60)
    home.mkdir(parents=True)
    return home


def _rules(uri: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(uri.replace("/cryptolab?", "/postgres?")) as c:
        methods = {r[0] for r in c.execute("SELECT auth_method FROM pg_hba_file_rules WHERE error IS NULL")}
        users = {r[0] for r in c.execute("SELECT sys_name FROM pg_ident_file_mappings WHERE error IS NULL")}
    return methods, users


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_session_server_refuses_another_local_user(server_dsn: str, intruder: pwd.struct_passwd) -> None:
    if os.environ.get("CRYPTOLAB_TEST_DSN"):
        pytest.skip("an external test server is in use: nothing embedded runs")
    st = embedded.status()
    assert st.running and st.socket_dir is not None
    r = _as(intruder, st.socket_dir)
    assert r.returncode != 0 and "IN" not in r.stdout, r.stdout + r.stderr
    methods, users = _rules(server_dsn)
    assert methods == {"peer"}, methods  # never trust
    assert users <= {"root", embedded.SERVER_ACCOUNT, pwd.getpwuid(os.geteuid()).pw_name}


def test_long_path_socket_dir_is_private_and_peer_still_refuses(
    private_home: Path, intruder: pwd.struct_passwd
) -> None:
    home = _long_home(private_home)
    cfg = Settings(dsn=None, home=home)
    try:
        uri = embedded.start(cfg)
        sock = embedded.status(cfg).socket_dir
        assert sock is not None and sock != cfg.pgdata  # too long for a socket path: moved
        assert len(str(cfg.pgdata / ".s.PGSQL.5432")) > 107
        st = sock.stat()
        assert _mode(sock) == 0o700, oct(_mode(sock))
        assert pwd.getpwuid(st.st_uid).pw_name in (
            embedded.SERVER_ACCOUNT,
            pwd.getpwuid(os.geteuid()).pw_name,
        )
        with psycopg.connect(uri) as c:  # the starter gets in
            assert c.execute("SELECT 1").fetchone() == (1,)
        r = _as(intruder, sock)
        assert r.returncode != 0 and "IN" not in r.stdout
        assert "Permission denied" in r.stderr, r.stderr
        # second layer: even with the socket reachable, peer authentication refuses a stranger
        sock.chmod(0o755)
        (sock / ".s.PGSQL.5432").chmod(0o777)
        r = _as(intruder, sock)
        assert r.returncode != 0 and "IN" not in r.stdout
        assert "authentication failed" in r.stderr or "no match" in r.stderr, r.stderr
    finally:
        embedded.stop(cfg)
    assert not sock.exists()  # the private socket dir goes with the server


def test_start_never_widens_directories_above_home(private_home: Path) -> None:
    parent = private_home.parent / "closed"
    parent.mkdir(mode=0o700)
    parent.chmod(0o700)
    home = parent / "home"
    cfg = Settings(dsn=None, home=home)
    if os.geteuid() == 0:
        # the server's account cannot enter `closed`: one line naming it, nothing chmod-ed
        with pytest.raises(ConfigError) as ei:
            embedded.start(cfg)
        msg = str(ei.value)
        assert str(parent) in msg and "CRYPTOLAB_HOME" in msg and "\n" not in msg
        assert _mode(parent) == 0o700
        assert _mode(private_home.parent) == 0o755
        # traversable but not listable for others: fine, and still not widened
        parent.chmod(0o711)
    try:
        embedded.start(cfg)
        assert _mode(parent) == (0o711 if os.geteuid() == 0 else 0o700)
        assert _mode(private_home.parent) == 0o755
        assert _mode(home) & 0o007 == 0  # home: nothing for others
        assert _mode(cfg.pgdata) == 0o700
    finally:
        embedded.stop(cfg)


def test_old_trust_rules_are_replaced_on_start_and_on_reuse(private_home: Path) -> None:
    cfg = Settings(dsn=None, home=private_home)
    try:
        embedded.start(cfg)
        embedded.stop(cfg)
        hba = cfg.pgdata / "pg_hba.conf"
        hba.write_text("local all all trust\n")  # as an older cryptolab left it
        uri = embedded.start(cfg)
        assert _rules(uri)[0] == {"peer"}
        hba.write_text("local all all trust\n")  # while running: reused, reloaded
        uri = embedded.start(cfg)
        assert _rules(uri)[0] == {"peer"}
        assert "trust" not in hba.read_text()
    finally:
        embedded.stop(cfg)
