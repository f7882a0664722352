"""`cryptolab exchange` / `cryptolab replay` as processes, and LocalExchange(process=True)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cryptolab.exchange import LocalExchange


def start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptolab.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    parts = dict(p.split("=", 1) for p in first.split())
    assert set(parts) == {"ws", "http"}, first
    assert parts["ws"].startswith("ws://127.0.0.1:") and parts["http"] == "http" + parts["ws"][2:]
    return proc, parts["ws"], parts["http"]


async def first_trades(url: str, n: int) -> list[dict]:
    out = []
    async with websockets.connect(url, max_queue=None) as ws:
        while len(out) < n:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exchange_command_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    proc, ws, http = start(
        "exchange", "--symbols", "btcusdt,solusdt", "--rate", "300", "--seed", "4", "--port", "0"
    )
    try:
        trades = asyncio.run(first_trades(f"{ws}/stream?streams=solusdt@trade", 5))
        assert all(t["data"]["s"] == "SOLUSDT" for t in trades)
        info = json.loads(urllib.request.urlopen(f"{http}/api/v3/exchangeInfo").read())
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "SOLUSDT"]
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert "stopped: printed" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_options_fail_with_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", "exchange", "--faults", "explode@every=1s"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().startswith("cryptolab exchange: unknown fault 'explode'")
    out = subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", "replay", "/nonexistent/BTCUSDT-trades-2025-01-01.zip"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "no such file" in out.stderr


def test_replay_command(make_dumps: Any) -> None:
    files, trades = make_dumps(n=50)
    proc, ws, _ = start("replay", str(files["trades_us_zip"]), "--speed", "0")
    try:
        got = asyncio.run(first_trades(f"{ws}/ws/btcusdt@trade?timeUnit=MICROSECOND", 50))
        assert [(d["t"], d["T"]) for d in got] == [(t.trade_id, t.trade_time_us) for t in trades]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_local_exchange_in_a_process() -> None:
    with LocalExchange(symbols=["btcusdt"], rate=400, seed=2, process=True, ping_interval=5) as ex:
        assert ex.symbols == ["BTCUSDT"]

        async def main() -> list[dict]:
            seen: list[dict] = []
            async with websockets.connect(f"{ex.ws_url}/ws/btcusdt@trade", max_queue=None) as ws:
                while len(seen) < 20:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                assert ex.inject("reset") == 1
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
            return seen

        seen = asyncio.run(main())
        ex.stop_market()
        n = ex.printed("btcusdt")
        time.sleep(0.3)
        assert ex.printed("btcusdt") == n
        log = ex.trade_log("btcusdt")
        assert len(log) == n and log[-1].trade_id == n
        by_id = {t.trade_id: t for t in log}
        for d in seen:
            t = by_id[d["t"]]
            assert (str(t.price), str(t.qty), t.is_buyer_maker, t.trade_time_us) == (
                d["p"],
                d["q"],
                d["m"],
                d["T"] * 1000,
            )
        assert ex.fault_counts == {"reset": 1}
        assert len(ex.trade_log("btcusdt", "MICROSECOND")) == n
        with pytest.raises(Exception, match="unknown fault"):
            ex.inject("explode")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["exchange", "--port", "99999"],
            "--port 99999 is not a TCP port: use 1-65535, or 0 for any free port",
        ),
        (["exchange", "--port", "-1"], "--port -1 is not a TCP port"),
        (["exchange", "--rate", "nan"], "--rate must be a number > 0 trades/s (got nan)"),
        (["exchange", "--first-id", "0"], "--first-id must be >= 1 (got 0)"),
        (["replay", "whatever.csv", "--speed", "-1"], "--speed must be >= 0"),
    ],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cryptolab.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_port_in_use_gives_one_line() -> None:
    with LocalExchange(symbols=["btcusdt"], rate=10, seed=1) as ex:
        proc = subprocess.run(
            [sys.executable, "-m", "cryptolab.cli.main", "exchange", "--port", str(ex.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{ex.port}" in lines[0], proc.stderr
