"""`cryptolab exchange --pace/--record` as a process: the book's streams and a recording."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets


def test_pace_and_record_from_the_command_line(tmp_path: Path) -> None:
    rec = tmp_path / "rec.gz"
    proc = subprocess.Popen([sys.executable, "-m", "cryptolab.cli.main", "exchange", "--pace", "btcusdt",
                             "--pace-x", "3", "--record", str(rec), "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ws = proc.stdout.readline().split()[0].partition("=")[2]

        async def main() -> list[dict]:
            out = []
            async with websockets.connect(f"{ws}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker",
                                          max_queue=None) as c:
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    try:
                        out.append(json.loads(await asyncio.wait_for(c.recv(), end - time.monotonic())))
                    except asyncio.TimeoutError:
                        break
            return out

        msgs = asyncio.run(main())
        assert sum(1 for m in msgs if m["stream"] == "btcusdt@depth@100ms") >= 12
        assert any(m["stream"] == "btcusdt@bookTicker" for m in msgs)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "3x BTCUSDT's real mix" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with gzip.open(rec, "rt") as fh:
        lines = fh.read().splitlines()
    streams = {json.loads(line.partition(" ")[2]).get("stream", "snapshot") for line in lines}
    assert streams == {"btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@bookTicker", "snapshot"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pace-x", "0"], "--pace-x must be a number > 0"),
        (["--pace", "btcusdt", "--replay", "x.gz"], "--pace and --record make a synthetic market"),
        (["--book-history", "5"], "--book-history must be >= 10000"),
    ],
)
def test_bad_book_options_give_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", "exchange", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
