"""Every fault kind of the local exchange fires, is seen by a real client, and is counted."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cryptolab.errors import ConfigError
from cryptolab.exchange import LocalExchange, parse_faults
from cryptolab.exchange.faults import MALFORMED_VARIANTS, check_fault


def connect(url: str, **kw: Any) -> Any:
    return websockets.connect(url, max_queue=None, max_size=2**22, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def collect(ws: Any, seconds: float) -> list[tuple[float, str]]:
    """(arrival time, text) of every message for `seconds`."""
    out: list[tuple[float, str]] = []
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return out
        try:
            msg = await asyncio.wait_for(ws.recv(), left)
            out.append((time.monotonic(), msg))
        except asyncio.TimeoutError:
            return out


def trade_ids(msgs: list[tuple[float, str]]) -> list[int]:
    ids = []
    for _, m in msgs:
        try:
            d = json.loads(m)
        except ValueError:
            continue
        d = d.get("data", d)
        if (
            d.get("e") == "trade"
            and isinstance(d.get("q"), str)
            and not d["q"].startswith("-")
            and isinstance(d.get("p"), str)
            and len(d["p"]) < 40
        ):
            ids.append(d["t"])
    return ids


def test_reset_and_close(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=200)

    async def main() -> None:
        async with (
            connect(f"{ex.ws_url}/ws/btcusdt@trade") as a,
            connect(f"{ex.ws_url}/ws/ethusdt@trade") as b,
        ):
            await a.recv()
            await b.recv()
            assert ex.inject("reset") == 2
            for ws in (a, b):
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await ws.recv()
                assert info.value.rcvd is None  # no close frame: the TCP connection was reset
        async with connect(f"{ex.ws_url}/ws/btcusdt@trade") as c:
            await c.recv()
            assert ex.inject("close") == 1
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await c.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000

    run(main())
    assert ex.fault_counts["reset"] == 2 and ex.fault_counts["close"] == 1


def test_stall_keeps_socket_open_and_loses_frames(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=400)

    async def main() -> tuple[list[tuple[float, str]], float]:
        async with connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
            await ws.recv()
            before = await collect(ws, 0.3)
            t0 = time.monotonic()
            ex.inject("stall", seconds=0.8)
            during = await collect(ws, 1.3)
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))  # still open
            return before + during, t0

    msgs, t0 = run(main())
    quiet = [t for t, _ in msgs if t0 + 0.05 < t < t0 + 0.75]
    assert not quiet, "frames arrived during the stall"
    assert any(t > t0 + 0.8 for t, _ in msgs), "frames did not resume after the stall"
    ids = trade_ids(msgs)
    jumps = [b - a for a, b in zip(ids, ids[1:]) if b != a + 1]
    assert len(jumps) == 1 and jumps[0] > 50  # the trades printed meanwhile never came
    assert ex.fault_counts["stall"] == 1


def test_duplicate_and_reorder(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=400)

    async def main() -> list[tuple[float, str]]:
        async with connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
            await ws.recv()
            ex.inject("duplicate", n=3)
            a = await collect(ws, 0.5)
            ex.inject("reorder", n=4)
            b = await collect(ws, 0.5)
            return a + b

    ids = trade_ids(run(main()))
    dups = [a for a, b in zip(ids, ids[1:]) if a == b]
    assert len(dups) == 3
    descending = [(a, b) for a, b in zip(ids, ids[1:]) if b < a]
    assert len(descending) == 3  # 4 frames reversed: 3 steps backwards
    assert sorted(set(ids)) == list(range(min(ids), max(ids) + 1)), "nothing may be lost"
    assert ex.fault_counts["duplicate"] == 3 and ex.fault_counts["reorder"] == 1


def test_malformed_frames_are_extra(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=200)

    async def main() -> list[tuple[float, str]]:
        async with connect(f"{ex.ws_url}/stream?streams=btcusdt@trade") as ws:
            await ws.recv()
            for v in MALFORMED_VARIANTS:
                ex.inject("malformed", variant=v)
            return await collect(ws, 0.6)

    msgs = [m for _, m in run(main())]
    bad: dict[str, str] = {}
    for m in msgs:
        try:
            w = json.loads(m)
        except ValueError:
            bad["bad_json"] = m
            continue
        d = w["data"]
        if d.get("e") == "mysteryEvent":
            bad["unknown_event"] = m
        elif "q" not in d:
            bad["missing_field"] = m
        elif not isinstance(d["p"], str):
            bad["wrong_type"] = m
        elif len(d["p"]) > 1000:
            bad["huge"] = m
            assert len(m) > 300_000
        elif d["q"].startswith("-"):
            bad["absurd_value"] = m
    assert set(bad) == set(MALFORMED_VARIANTS)
    ids = trade_ids([(0.0, m) for m in msgs])
    assert ids == list(range(ids[0], ids[0] + len(ids))), "real trades are untouched"
    counts = ex.fault_counts
    assert counts["malformed"] == len(MALFORMED_VARIANTS)
    assert all(counts[f"malformed_{v}"] == 1 for v in MALFORMED_VARIANTS)


def test_gap_on_stream_but_in_rest(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=300)

    async def main() -> list[tuple[float, str]]:
        async with connect(f"{ex.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            await ws.recv()
            ex.inject("gap", n=5, symbol="btcusdt")
            return await collect(ws, 0.8)

    msgs = run(main())
    btc = [json.loads(m)["data"]["t"] for _, m in msgs if '"BTCUSDT"' in m]
    eth = [json.loads(m)["data"]["t"] for _, m in msgs if '"ETHUSDT"' in m]
    holes = [(a, b) for a, b in zip(btc, btc[1:]) if b != a + 1]
    assert len(holes) == 1 and holes[0][1] - holes[0][0] == 6
    assert eth == list(range(eth[0], eth[0] + len(eth)))
    missing = range(holes[0][0] + 1, holes[0][1])

    async def rest() -> list[dict]:
        async with aiohttp.ClientSession() as s:
            async with s.get(
                f"{ex.http_url}/api/v3/historicalTrades",
                params={"symbol": "BTCUSDT", "fromId": missing[0], "limit": 5},
            ) as r:
                return await r.json()

    rows = run(rest())
    assert [r["id"] for r in rows] == list(missing)
    assert ex.fault_counts["gap"] == 1 and ex.fault_counts["gap_trades"] == 5


def test_rest_faults(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=50)
    ex.inject("rest_429", n=2)
    ex.inject("rest_500")
    ex.inject("rest_timeout", seconds=1.0)

    async def main() -> list[Any]:
        out: list[Any] = []
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.get(f"{ex.http_url}/api/v3/time") as r:
                    out.append((r.status, r.headers.get("Retry-After"), (await r.json())["code"]))
            with pytest.raises(asyncio.TimeoutError):
                async with s.get(f"{ex.http_url}/api/v3/time", timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                    await r.read()
            async with s.get(f"{ex.http_url}/api/v3/time") as r:
                out.append(r.status)
        return out

    assert run(main()) == [(429, "1", -1003), (429, "1", -1003), (500, None, -1001), 200]
    c = ex.fault_counts
    assert (c["rest_429"], c["rest_500"], c["rest_timeout"]) == (2, 1, 1)


def test_schedule_fires_and_counts(exchange: Any) -> None:
    ex: LocalExchange = exchange(
        symbols=["btcusdt"],
        rate=400,
        faults="reset@every=0.4s,duplicate@p=0.05,gap=2@at=0.2s,rest_500=1@at=0.1s,rest_429@p=0.5",
    )

    async def main() -> int:
        reconnects = 0
        end = time.monotonic() + 1.3
        while time.monotonic() < end:
            try:
                async with connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
                    while time.monotonic() < end:
                        await asyncio.wait_for(ws.recv(), 1)
            except ConnectionClosed:
                reconnects += 1
        return reconnects

    assert run(main()) >= 2
    c = ex.fault_counts
    assert c["reset"] >= 2 and c["duplicate"] >= 1 and c["gap"] == 1 and c["gap_trades"] == 2
    assert c.get("rest_500", 0) == 0 and c.get("rest_429", 0) == 0  # armed for REST calls, none made yet
    statuses = []
    for _ in range(20):
        try:
            with urllib.request.urlopen(f"{ex.http_url}/api/v3/ping", timeout=5) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
    assert statuses[0] == 500  # the armed one first
    assert statuses.count(429) == ex.fault_counts["rest_429"] and 2 <= statuses.count(429) <= 18


def test_fault_syntax() -> None:
    plan = parse_faults(
        "reset@every=10s, "
        "stall=3s@at=20s,duplicate@p=0.01,malformed=huge@every=500ms,rest_429=2@every=1m,gap@at=5"
    )
    kinds = [(i.kind, i.params, i.every, i.at, i.p) for i in plan.items]
    assert kinds == [
        ("reset", {}, 10.0, None, None),
        ("stall", {"seconds": 3.0}, None, 20.0, None),
        ("duplicate", {"n": 1}, None, None, 0.01),
        ("malformed", {"variant": "huge", "size": 300_000}, 0.5, None, None),
        ("rest_429", {"n": 2}, 60.0, None, None),
        ("gap", {"n": 10}, None, 5.0, None),
    ]
    assert plan.probability("duplicate") == 0.01 and plan.frame_faults
    assert parse_faults("stall=1.5m@at=1d").items[0].params == {"seconds": 90.0}  # the one duration grammar
    assert parse_faults("stall=1.5m@at=1d").items[0].at == 86_400.0
    assert parse_faults("").items == [] and parse_faults(None).items == []
    for bad in (
        "explode@every=1s",
        "reset",
        "reset=3@every=1s",
        "stall=3s@every=fast",
        "duplicate@p=2",
        "malformed=garbled@at=1s",
        "reorder=1@at=1s",
        "gap=x@at=1s",
        "reset@sometimes=1",
    ):
        with pytest.raises(ConfigError):
            parse_faults(bad)
    with pytest.raises(ConfigError):
        check_fault("stall", {"n": 3})
