"""The embedded server: reused, not doubled; a home owned by another user refused; no orphan after a
killed starter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptolab.storage import embedded


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
