"""`cryptolab capture`'s option parsing (cryptolab/cli/capture.py), without capturing."""

from __future__ import annotations

import pytest

from cryptolab.cli.capture import parse_options
from cryptolab.errors import ConfigError


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


def test_a_bad_option_time_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError, match="--option lease_seconds 'soon' is not a duration"):
        parse_options(["lease_seconds=soon"])
    with pytest.raises(ConfigError, match="'5m' is not a number"):
        parse_options(["max_batch_rows=5m"])
