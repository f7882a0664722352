"""`cryptolab capture --workers N`: what each child process is told (no process started)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptolab.capture.workers import _child_argv
from cryptolab.cli.capture import configure


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    configure(p)
    return p.parse_args(["--symbols", "btcusdt,ethusdt", "--workers", "2", *argv])


def test_every_worker_gets_the_backpressure_switch_and_the_options() -> None:
    argv = _child_argv(
        _args("--backpressure", "--option", "max_queue_rows=4000"), ["BTCUSDT"], Path("/tmp/s.json")
    )
    assert "--backpressure" in argv
    assert argv[argv.index("--option") + 1] == "max_queue_rows=4000"
    plain = _child_argv(_args(), ["BTCUSDT"], Path("/tmp/s.json"))
    assert "--backpressure" not in plain
