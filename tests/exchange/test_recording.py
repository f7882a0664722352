"""Recordings in the real format (`<local ns> <raw JSON>`, combined frames of trade,
depth@100ms and bookTicker, REST snapshots inline), written by the local exchange and
replayed by it; and a real symbol's pace."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets

from cryptolab.binance.depth import decode_diff, snapshot_from_rest
from cryptolab.book import BookSync, SnapshotResult
from cryptolab.book.model import DepthDiff
from cryptolab.errors import ConfigError
from cryptolab.exchange import LocalExchange
from cryptolab.model import now_us

STREAMS = "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker"


def read_lines(path: Path) -> list[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:  # type: ignore[operator]
        out = []
        for line in fh:
            head, _, raw = line.rstrip("\n").partition(" ")
            out.append((int(head), json.loads(raw)))
    return out


async def read_n(url: str, n: int, timeout: float = 20) -> list[dict]:
    out = []
    async with websockets.connect(url, max_queue=None) as ws:
        while len(out) < n:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return out


@pytest.mark.parametrize("name", ["rec.gz", "rec.txt"])
def test_a_recording_the_exchange_writes_replays_to_the_same_messages(tmp_path: Path, exchange: Any,
                                                                       name: str) -> None:
    path = tmp_path / name
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=120, record=path)
    time.sleep(2.0)
    ex.stop()
    lines = read_lines(path)
    assert all(ns > 1_600_000_000 * 10**9 for ns, _ in lines)
    assert [ns for ns, _ in lines] == sorted(ns for ns, _ in lines)
    kinds = [o.get("stream", "snapshot").partition("@")[2] or "snapshot" for _, o in lines]
    assert {"trade", "depth@100ms", "bookTicker", "snapshot"} == set(kinds)
    assert kinds.count("snapshot") == 1 and kinds[kinds.index("snapshot") - 1] == "depth@100ms"
    snap = lines[kinds.index("snapshot")][1]
    assert set(snap) == {"lastUpdateId", "bids", "asks"} and len(snap["bids"]) <= 1000
    # the recording alone rebuilds the exchange's book: its snapshot and the diffs after it
    sync = BookSync("binance", "BTCUSDT")
    now = now_us()
    for i, (_, o) in enumerate(lines):
        if i == kinds.index("snapshot"):
            assert sync.on_snapshot(snapshot_from_rest(o, "BTCUSDT", exchange="binance", received_at_us=now),
                                    now) in (SnapshotResult.SYNCED, SnapshotResult.WAIT)
        elif kinds[i] == "depth@100ms":
            d = decode_diff(
                json.dumps(o, separators=(",", ":")).encode(),
                exchange="binance",
                source="replay",
                received_at_us=now,
            )
            assert isinstance(d, DepthDiff)
            sync.on_diff(d, now)
    assert sync.synced and not sync.gaps
    depth = [o["data"] for _, o in lines if "@depth" in o.get("stream", "")]
    assert [d["U"] for d in depth[1:]] == [d["u"] + 1 for d in depth[:-1]]

    # replayed: the same messages, in the same order, on one combined stream
    rp: LocalExchange = exchange(symbols=None, replay=[path], speed=0)
    assert not rp.synthetic and rp.symbols == ["BTCUSDT"]
    with urllib.request.urlopen(f"{rp.http_url}/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
        served = json.loads(r.read())
    assert served == snap  # the recording's snapshot, served before its line is reached
    want = [o for k, (_, o) in zip(kinds, lines) if k != "snapshot"]
    got = asyncio.run(read_n(f"{rp.ws_url}/stream?streams={STREAMS}", len(want)))
    assert got == want
    with urllib.request.urlopen(f"{rp.http_url}/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
        five = json.loads(r.read())
    assert five == {"lastUpdateId": snap["lastUpdateId"], "bids": snap["bids"][:5], "asks": snap["asks"][:5]}
    with pytest.raises(Exception, match="keeps no book of its own"):
        rp.book("btcusdt")


def test_a_recording_split_in_two_files_replays_as_one(tmp_path: Path, exchange: Any) -> None:
    path = tmp_path / "rec.txt"
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=120, record=path)
    time.sleep(1.5)
    ex.stop()
    text = path.read_text().splitlines(keepends=True)
    half = len(text) // 2
    while text[half - 1].partition(" ")[0] == text[half].partition(" ")[0]:
        half += 1  # split between two receive times, as a recorder does
    (tmp_path / "a.txt").write_text("".join(text[:half]))
    (tmp_path / "b.gz").write_bytes(gzip.compress("".join(text[half:]).encode()))
    want = [json.loads(t.partition(" ")[2]) for t in text if '"stream"' in t]
    rp: LocalExchange = exchange(symbols=None, replay=[tmp_path / "b.gz", tmp_path / "a.txt"], speed=0)
    got = asyncio.run(read_n(f"{rp.ws_url}/stream?streams={STREAMS}", len(want)))
    assert got == want


def test_pace_serves_a_real_symbols_mix(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=None, rate=1, pace="btcusdt")
    st = ex.state()
    assert st["symbols"] == ["BTCUSDT"] and "BTCUSDT" in st["books"]  # the book runs from the start
    assert st["rate"] == pytest.approx(30.59)

    async def main() -> list[dict]:
        out = []
        async with websockets.connect(f"{ex.ws_url}/stream?streams={STREAMS}", max_queue=None) as ws:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                try:
                    out.append(json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic())))
                except asyncio.TimeoutError:
                    break
        return out

    msgs = asyncio.run(main())
    diffs = [m["data"] for m in msgs if m["stream"].endswith("@depth@100ms")]
    quotes = [m for m in msgs if m["stream"].endswith("@bookTicker")]
    assert 20 <= len(diffs) <= 31  # 10 a second (fewer when the machine is busy: a late tick merges windows)
    assert 100 <= sum(len(d["b"]) + len(d["a"]) for d in diffs) <= 4000
    assert 60 <= len(quotes) <= 1500
    fast: LocalExchange = exchange(symbols=None, pace=["btcusdt", "ethusdt"], pace_x=10)
    assert fast.state()["rate"] == pytest.approx(2 * 305.9)


def test_pace_and_record_do_not_go_with_a_replay(tmp_path: Path, make_dumps: Any) -> None:
    files, _ = make_dumps(n=20)
    with pytest.raises(ConfigError, match="does not go with a replay"):
        LocalExchange(replay=[files["trades_us_zip"]], pace="btcusdt").start()
    with pytest.raises(ConfigError, match="does not go with a replay"):
        LocalExchange(replay=[files["trades_us_zip"]], record=tmp_path / "x.gz").start()


def test_agg_trades_of_a_replay(make_dumps: Any, exchange: Any) -> None:
    files, trades = make_dumps(n=300)
    rp: LocalExchange = exchange(symbols=None, replay=[files["trades_us_zip"]], speed=0)

    async def main() -> list[dict]:
        out: list[dict] = []
        async with websockets.connect(f"{rp.ws_url}/ws/btcusdt@aggTrade", max_queue=None) as ws:
            while not out or out[-1]["l"] < trades[-1].trade_id:
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return out

    aggs = asyncio.run(main())
    assert aggs[0]["f"] == trades[0].trade_id and [a["a"] for a in aggs] == list(range(len(aggs)))
    assert [a["f"] for a in aggs[1:]] == [a["l"] + 1 for a in aggs[:-1]]
    by_id = {t.trade_id: t for t in trades}
    for a in aggs:
        fills = [by_id[i] for i in range(a["f"], a["l"] + 1)]
        assert len({(f.price, f.trade_time_us, f.is_buyer_maker) for f in fills}) == 1
        assert Decimal(a["q"]) == sum(f.qty for f in fills) and a["T"] == fills[0].trade_time_us // 1000


def test_a_recording_replayed_with_a_dump_gives_trades_only(make_dumps: Any, exchange: Any) -> None:
    files, trades = make_dumps(n=30)
    rp: LocalExchange = exchange(symbols=None, replay=[files["stream_gz"], files["trades_ms_csv"]], speed=0)
    got = asyncio.run(read_n(f"{rp.ws_url}/stream?streams={STREAMS}", len(trades)))
    assert {m["stream"] for m in got} == {"btcusdt@trade"}
    assert [m["data"]["t"] for m in got] == [t.trade_id for t in trades]
