"""Settings from the environment and a .env file (the real environment wins); passwords in DSNs and
URLs masked wherever shown, never put on a command line; a CRYPTOLAB_HOME that is a file or read-only
is one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cryptolab.config import mask_dsn, mask_secrets, mask_url, settings
from cryptolab.errors import DatabaseError
from cryptolab.storage import db, embedded
from tests.cli._helpers import _one_line

SECRET = "s3cret-Pw"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"postgresql://u:{SECRET}@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            f"postgres://u:{SECRET}@h/db?sslmode=require&password={SECRET}",
            "postgres://u:***@h/db?sslmode=require&password=***",
        ),
        (f"host=h user=u password={SECRET} dbname=d", "host=h user=u password=*** dbname=d"),
        (f"host=h password = '{SECRET} x\\'y' user=u", "host=h password = *** user=u"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql:///cryptolab?host=/tmp/s", "postgresql:///cryptolab?host=/tmp/s"),
        ("host=h user=u", "host=h user=u"),
        ("", ""),
    ],
)
def test_mask_dsn(raw: str, shown: str) -> None:
    assert mask_dsn(raw) == shown


def test_mask_url() -> None:
    assert mask_url(f"ws://user:{SECRET}@127.0.0.1:9443/ws") == "ws://user:***@127.0.0.1:9443/ws"
    assert mask_url(f"wss://h/stream?streams=a&token={SECRET}") == "wss://h/stream?streams=a&token=***"
    assert mask_url("ws://127.0.0.1:9443") == "ws://127.0.0.1:9443"
    assert mask_url("binance") == "binance"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(dsn: str, cryptolab_home: Path) -> dict[str, str]:
    env = {**os.environ, "CRYPTOLAB_DSN": dsn, "CRYPTOLAB_HOME": str(cryptolab_home)}
    env["PATH"] = f"{embedded.bin_dir()}{os.pathsep}{env.get('PATH', '')}"  # a psql even without a system one
    env.pop("PGPASSWORD", None)
    return env


def test_db_url_masks_unless_asked(cryptolab_home: Path) -> None:
    dsn = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
    env = _env(dsn, cryptolab_home)
    r = _cli("db", "url", env=env)
    assert r.returncode == 0 and SECRET not in r.stdout and "u:***@127.0.0.1:1/x" in r.stdout
    r = _cli("db", "url", "--show-password", env=env)
    assert r.stdout.strip() == dsn


def test_connection_errors_never_show_the_password(cryptolab_home: Path) -> None:
    for dsn in (
        f"postgresql://u:{SECRET}@127.0.0.1:1/x?connect_timeout=2",
        f"host=127.0.0.1 port=1 password={SECRET} connect_timeout=2",
        f"host=h password={SECRET} junk",
    ):  # malformed: libpq would quote a token
        with pytest.raises(DatabaseError) as ei:
            db.connect(dsn)
        assert SECRET not in str(ei.value) and "\n" not in str(ei.value)
        r = _cli("db", "init", env=_env(dsn, cryptolab_home))
        assert r.returncode != 0 and SECRET not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_db_psql_passes_the_password_in_the_environment_not_argv(
    server_dsn: str, cryptolab_home: Path
) -> None:
    # the embedded server authenticates by peer and ignores the password; what matters is how psql got it
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    params.update(password=SECRET, dbname="postgres")
    dsn = psycopg.conninfo.make_conninfo("", **params)
    script = '\\! tr "\\0" " " < /proc/$PPID/cmdline; echo; echo "env=$PGPASSWORD"'
    r = _cli("db", "psql", "-X", "-At", "-c", script, env=_env(dsn, cryptolab_home))
    assert r.returncode == 0, r.stderr
    argv, env_line = r.stdout.strip().splitlines()[-2:]
    assert "psql" in argv and SECRET not in argv, argv
    assert env_line == f"env={SECRET}"


def test_home_that_is_a_file_or_read_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRYPTOLAB_DSN"}
    env["CRYPTOLAB_ENV_FILE"] = str(tmp_path / "no.env")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for home in (afile, afile / "sub"):
        r = _cli("db", "start", env={**env, "CRYPTOLAB_HOME": str(home)})
        assert r.returncode == 2 and "not a directory" in _one_line(r.stderr), r.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root writes through any mode bits: a read-only file system it is
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True, check=False
        )
        if r.returncode != 0:
            pytest.skip("as root a read-only CRYPTOLAB_HOME needs a read-only mount, and mount failed")
        mounted = True
    else:
        ro.chmod(0o555)
    try:
        for home in (ro, ro / "sub"):
            r = _cli("db", "start", env={**env, "CRYPTOLAB_HOME": str(home)})
            assert r.returncode == 2 and "not writable" in _one_line(r.stderr), r.stderr
            r = _cli(
                "capture",
                "--symbols",
                "btcusdt",
                "--source",
                "simulator",
                "--seconds",
                "1",
                "--dsn",
                "postgresql://nobody@127.0.0.1:1/x",
                env={**env, "CRYPTOLAB_HOME": str(home)},
            )
            assert r.returncode == 2 and "not writable" in _one_line(r.stderr), r.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)
        ro.chmod(0o755)


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


def test_mask_secrets_hides_passwords_inside_any_text() -> None:
    assert mask_secrets("postgresql://me:pa:ss@h:5432/db") == "postgresql://me:***@h:5432/db"
    assert mask_secrets("host=h password='a b' user=me") == "host=h password=*** user=me"
    assert mask_secrets("host=h password=secret") == "host=h password=***"
