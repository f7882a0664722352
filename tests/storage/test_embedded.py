"""Settings from the environment, the embedded server, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptolab.config import settings
from cryptolab.errors import DatabaseError
from cryptolab.storage import db, embedded


def test_settings_from_env_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    envfile = tmp_path / ".env"
    envfile.write_text("CRYPTOLAB_DSN=postgresql://from-dotenv/db\nCRYPTOLAB_HOME=/tmp/from-dotenv\n")
    monkeypatch.setenv("CRYPTOLAB_ENV_FILE", str(envfile))
    monkeypatch.delenv("CRYPTOLAB_DSN", raising=False)
    monkeypatch.setenv("CRYPTOLAB_HOME", str(tmp_path / "h"))  # real env wins over .env
    s = settings()
    assert s.dsn == "postgresql://from-dotenv/db"
    assert s.home == (tmp_path / "h").resolve()
    assert not s.embedded and s.pgdata == s.home / "pgdata"


def test_bad_dsn_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, cryptolab_home: Path) -> None:
    monkeypatch.setenv("CRYPTOLAB_DSN", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DatabaseError) as ei:
        db.connect()
    msg = str(ei.value)
    assert "CRYPTOLAB_DSN" in msg and "\n" not in msg


def test_malformed_dsn_is_clear(monkeypatch: pytest.MonkeyPatch, cryptolab_home: Path) -> None:
    monkeypatch.setenv("CRYPTOLAB_DSN", "this is = not a dsn ===")
    with pytest.raises(DatabaseError, match="CRYPTOLAB_DSN"):
        db.connect()


def test_cli_bad_dsn_no_traceback(cryptolab_home: Path) -> None:
    env = {**os.environ, "CRYPTOLAB_DSN": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}
    r = subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", "db", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "CRYPTOLAB_DSN" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_embedded_server_is_reused_not_doubled(server_dsn: str, cryptolab_home: Path) -> None:
    if os.environ.get("CRYPTOLAB_TEST_DSN"):
        pytest.skip("an external test server is in use: nothing embedded runs")
    st = embedded.status()
    assert st.running and st.pid
    # a second process (as a notebook or the CLI would be) asks for the server
    code = "from cryptolab.storage import embedded; print(embedded.start()); print(embedded.status().pid)"
    r = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    uri, pid = r.stdout.split()
    assert int(pid) == st.pid
    assert uri.endswith(f"/cryptolab?host={st.socket_dir}")
    postmasters = subprocess.run(
        ["pgrep", "-f", f"postgres -D {st.pgdata}"], capture_output=True, text=True
    ).stdout.split()
    assert len(postmasters) == 1


def test_foreign_owned_home_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        # as root we can still make the situation: run the check as another user
        tmp_path.chmod(0o755)
        pgdata = tmp_path / "pgdata"
        pgdata.mkdir(mode=0o755)
        os.chown(pgdata, 12345, 12345)
        code = (
            "import os; from cryptolab.storage import embedded;"
            "from cryptolab.errors import DatabaseError; os.setuid(54321)\n"
            f"try:\n embedded._check_owner(__import__('pathlib').Path({str(pgdata)!r}))\n"
            "except DatabaseError as e: print('ERR', e)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert "ERR" in r.stdout and "CRYPTOLAB_HOME" in r.stdout, r.stdout + r.stderr
    else:  # pragma: no cover - depends on the machine
        pytest.skip("needs root to make a directory owned by someone else")


def test_db_stop_leaves_no_orphan_after_a_killed_starter(tmp_path: Path) -> None:
    """A process that started the server is killed -9; `cryptolab db stop` still stops it."""
    import shutil
    import signal
    import tempfile
    import time

    home = Path(tempfile.mkdtemp(prefix="cryptolab-orphan-"))
    env = {**os.environ, "CRYPTOLAB_HOME": str(home)}
    env.pop("CRYPTOLAB_DSN", None)
    try:
        starter = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cryptolab.storage import embedded; embedded.start(); print('up', flush=True); "
                "import time; time.sleep(60)",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert starter.stdout is not None and starter.stdout.readline().strip() == "up"
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)

        def postmasters() -> list[str]:
            out = subprocess.run(
                ["pgrep", "-f", f"postgres -D {home / 'pgdata'}"], capture_output=True, text=True
            )
            return out.stdout.split()

        assert len(postmasters()) == 1  # the server outlived its starter, as designed
        status = subprocess.run(
            [sys.executable, "-m", "cryptolab.cli.main", "db", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "running" in status.stdout and str(home / "pgdata" / "log") in status.stdout
        stop = subprocess.run(
            [sys.executable, "-m", "cryptolab.cli.main", "db", "stop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
        deadline = time.monotonic() + 10
        while postmasters() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert postmasters() == []
    finally:
        subprocess.run(
            [sys.executable, "-m", "cryptolab.cli.main", "db", "stop"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(home, ignore_errors=True)
