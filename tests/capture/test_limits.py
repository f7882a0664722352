"""Inputs that make no sense are refused with one clear line; what history writes is the owner's only.

`capture --since` a day not yet begun, `--option lease_seconds=-5`, `demo --seconds -1` were all
accepted; the history cache was world-readable while the journal is 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.capture import CaptureOptions
from cryptolab.capture.limits import option_problems, since_problem
from cryptolab.history import fetch_history


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptolab", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_option_problems_name_each_senseless_value() -> None:
    assert option_problems(CaptureOptions()) == []
    fast = dict(
        gap_grace=0.3,
        stall_timeout=2.0,
        backoff_base=0.05,
        backoff_max=0.5,
        db_retry_seconds=0.3,
        heartbeat_seconds=0.5,
        lease_seconds=3.0,
        takeover_grace=0.0,
        lookback_seconds=0,
    )
    assert option_problems(replace(CaptureOptions(), **fast)) == []
    assert option_problems(replace(CaptureOptions(), lease_seconds=-5)) == [
        "lease_seconds=-5 must be more than 0"
    ]
    assert option_problems(replace(CaptureOptions(), max_batch_rows=0, gap_grace=-1.0)) == [
        "max_batch_rows=0 must be more than 0",
        "gap_grace=-1.0 is negative: use 0 or more",
    ]
    assert option_problems(replace(CaptureOptions(), stall_timeout=float("nan")))[0].endswith(
        "not a finite number"
    )
    assert "expire before its renewal" in option_problems(replace(CaptureOptions(), lease_seconds=1.0))[0]


def test_since_problem_refuses_a_day_not_yet_begun() -> None:
    today = date(2025, 3, 1)
    assert since_problem(today, today) is None and since_problem(date(2025, 2, 1), today) is None
    assert "in the future" in (since_problem(date(2099, 1, 1), today) or "")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("capture", "--symbols", "btcusdt", "--since", "2099-01-01"), "--since 2099-01-01 is in the future"),
        (
            ("capture", "--symbols", "btcusdt", "--option", "lease_seconds=-5"),
            "--option lease_seconds '-5' must not be negative",
        ),
        (("capture", "--symbols", "btcusdt", "--option", "lease_seconds=0.5s"), "lease_seconds=0.5: a lease"),
        (("demo", "--seconds", "-1"), "--seconds '-1' must not be negative"),
        (("demo", "--rate", "0"), "'0': give a number more than 0"),
    ],
)
def test_senseless_inputs_are_refused_with_one_line(
    args: tuple[str, ...], words: str, tmp_path: Path
) -> None:
    r = _run(*args, env={"CRYPTOLAB_HOME": str(tmp_path), "CRYPTOLAB_DSN": "host=/nonexistent dbname=none"})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_python_capture_refuses_them_too() -> None:
    from cryptolab.capture import Capture
    from cryptolab.errors import ConfigError

    with pytest.raises(ConfigError, match="lease_seconds=-5 must be more than 0"):
        Capture(["btcusdt"], source="simulator", lease_seconds=-5)
    with pytest.raises(ConfigError, match="is in the future"):
        Capture(["btcusdt"], source="simulator", since=datetime.now(timezone.utc).date() + timedelta(days=2))


@pytest.mark.usefixtures("not_at_midnight")
def test_the_history_cache_is_private_to_its_owner(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=0.5)
    today = datetime.now(timezone.utc).date()
    cache = tmp_path / "new" / "cache"
    os.umask(0o022)
    res = fetch_history(
        "BTCUSDT",
        today - timedelta(days=1),
        today - timedelta(days=1),
        dsn=dsn,
        dumps=ex.http_url,
        rest=ex.http_url,
        cache=cache,
        workers=1,
    )
    assert res.files_loaded == 1 and res.bulk_files == 1
    paths = [p for p in (tmp_path / "new").rglob("*")]
    assert any(p.suffix == ".zip" for p in paths) and any(p.name.endswith(".CHECKSUM") for p in paths)
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    with psycopg.connect(dsn) as c:  # the bulk load left the day's partition analysed for the planner
        part = f"trades_{today - timedelta(days=1):%Y%m%d}"
        assert c.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s", (part,)
        ).fetchone() == (True,)
