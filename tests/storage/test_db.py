"""Connecting: a bad or malformed CRYPTOLAB_DSN is one clear line naming it, from the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptolab.errors import DatabaseError
from cryptolab.storage import db


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
