"""`cryptolab capture`'s option parsing (cryptolab/cli/capture.py), without capturing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cryptolab.cli import main as cli
from cryptolab.cli.capture import parse_options
from cryptolab.errors import ConfigError
from tests.cli._helpers import _cli, _one_line


def test_option_times_take_the_duration_grammar_and_counts_stay_counts() -> None:
    got = parse_options(["lease_seconds=10s", "rotate_after=12h", "commit_window=0", "max_batch_rows=5000"])
    assert got == {
        "lease_seconds": 10.0,
        "rotate_after": 43_200.0,
        "commit_window": 0.0,
        "max_batch_rows": 5000,
    }
    assert parse_options(["gap_grace=250ms", "stall_timeout=45"]) == {
        "gap_grace": 0.25,
        "stall_timeout": 45.0,
    }


def test_a_switch_option_takes_true_or_false() -> None:
    assert parse_options(["backpressure=true"]) == {"backpressure": True}
    assert parse_options(["backpressure=0", "max_queue_rows=4000"]) == {
        "backpressure": False,
        "max_queue_rows": 4000,
    }
    with pytest.raises(ConfigError, match="'maybe' is not true or false"):
        parse_options(["backpressure=maybe"])


def test_a_bad_option_time_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError, match="--option lease_seconds 'soon' is not a duration"):
        parse_options(["lease_seconds=soon"])
    with pytest.raises(ConfigError, match="'5m' is not a number"):
        parse_options(["max_batch_rows=5m"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--seconds", "0"], "--seconds '0' must be more than 0"),
        (["--seconds", "nan"], "--seconds 'nan' is not a duration: write a number and a unit"),
        (["--seconds", "-5"], "--seconds '-5' must not be negative"),
        (["--seconds", "inf"], "--seconds 'inf' is not a duration"),
        (["--seconds", "soon"], "--seconds 'soon' is not a duration"),
        (["--from-id", "-1"], "not a trade id"),
        (["--from-id", str(2**63)], "not a trade id"),
        (["--from-id", "1e9"], "not a trade id"),
        (["--symbols", "btc$usdt"], "is not a symbol"),
        (["--symbols", ","], "--symbols is empty"),
    ],
)
def test_capture_rejects_bad_arguments_at_once(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "--symbols": "btcusdt",
        "--source": "simulator",
        "--seconds": "1",
        "--dsn": "postgresql://x@127.0.0.1:1/x",
    }
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["capture"] + [x for kv in base.items() for x in kv]
    with pytest.raises(SystemExit) as ei:
        rc = cli.main(argv)
        raise SystemExit(rc)
    assert ei.value.code == 2
    assert says in _one_line(capsys.readouterr().err)


def test_capture_that_cannot_start_exits_1_with_the_cause(cryptolab_home: Path) -> None:
    env = {**os.environ, "CRYPTOLAB_HOME": str(cryptolab_home)}
    r = _cli("capture", "--symbols", "btcusdt", "--source", "nonsense", "--seconds", "1", env=env)
    assert r.returncode == 1 and "unknown source" in _one_line(r.stderr), r.stderr


def test_capture_prints_a_ws_source_without_its_token(
    dsn: str, exchange: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ex = exchange()
    url = ex.ws_url.replace("ws://", "ws://user:s3cret-token@") if hasattr(ex, "ws_url") else None
    if url is None:
        pytest.skip("the local exchange does not expose ws_url")
    cli.main(["capture", "--symbols", "btcusdt", "--source", url, "--seconds", "1", "--quiet"])
    out = capsys.readouterr()
    assert "s3cret-token" not in out.out + out.err
