"""The local exchange's book over real sockets: diff streams + REST snapshot followed with
`cryptolab.book.BookSync`, bookTicker, partial depth, aggTrade, /api/v3/depth weights, the book
faults, and the control API that says the exchange's own book at any update id."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets

from cryptolab.binance.depth import decode_diff, decode_quote, snapshot_from_rest
from cryptolab.book import BookSync, DiffResult, OrderBook, SnapshotResult
from cryptolab.book.model import BookSnapshot, DepthDiff
from cryptolab.errors import ConfigError
from cryptolab.exchange import LocalExchange
from cryptolab.model import now_us


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(url: str, seconds: float, *, snapshot: str | None = None, limit: int = 5000,
                  stop_after: int | None = None) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """(stream, raw frame) of every message for `seconds`; with `snapshot` (a symbol) the REST
    snapshots fetched right after the first depth diff (retried on 429/500: their statuses kept)."""
    msgs: list[tuple[str, bytes]] = []
    snaps: list[dict] = []
    async with websockets.connect(url, max_queue=None) as ws, aiohttp.ClientSession() as http:
        base = url.split("/stream")[0].split("/ws")[0].replace("ws://", "http://")
        end = time.monotonic() + seconds
        while time.monotonic() < end and (stop_after is None or len(msgs) < stop_after):
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            b = raw.encode() if isinstance(raw, str) else raw
            d = json.loads(b)
            stream = d.get("stream", "")
            msgs.append((stream, b))
            if snapshot and not snaps and ("depth" in stream or d.get("e") == "depthUpdate"):
                for _ in range(6):
                    async with http.get(f"{base}/api/v3/depth?symbol={snapshot}&limit={limit}") as r:
                        body = await r.json()
                        snaps.append({"status": r.status, "body": body,
                                      "weight": r.headers.get("X-MBX-USED-WEIGHT-1M")})
                        if r.status == 200:
                            break
    return msgs, snaps


def follow(msgs: list[tuple[str, bytes]], snap: dict, symbol: str = "BTCUSDT"
           ) -> tuple[BookSync, list[tuple[int, OrderBook]], list[DiffResult]]:
    """BookSync over the diffs received and the snapshot: the book after every applied diff."""
    sync = BookSync("binance", symbol)
    books: list[tuple[int, OrderBook]] = []
    results = []
    now = now_us()
    snapped = False
    for stream, raw in msgs:
        if "@depth" not in stream and b'"depthUpdate"' not in raw[:40]:
            continue
        d = decode_diff(raw, exchange="binance", source="test", received_at_us=now)
        assert isinstance(d, DepthDiff), d
        r = sync.on_diff(d, now)
        results.append(r)
        if not snapped:
            snapped = True
            s = snapshot_from_rest(snap, symbol, exchange="binance", received_at_us=now)
            sync.on_snapshot(s, now)
        if sync.synced and r is DiffResult.APPLIED:
            copy = OrderBook()
            copy.bids, copy.asks, copy.update_id = (
                dict(sync.book.bids),
                dict(sync.book.asks),
                sync.book.update_id,
            )
            books.append((d.last_id, copy))
    return sync, books, results


def as_book(s: BookSnapshot) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return ({Decimal(p): Decimal(q) for p, q in s.bids}, {Decimal(p): Decimal(q) for p, q in s.asks})


def test_an_exchange_nobody_asks_for_a_book_keeps_none(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=500)

    async def main() -> None:
        async with websockets.connect(f"{ex.ws_url}/ws/btcusdt@trade", max_queue=None) as ws:
            for _ in range(20):
                await asyncio.wait_for(ws.recv(), 10)

    run(main())
    assert ex.state()["books"] == {}


def test_a_client_following_diffs_and_snapshot_has_the_exchange_book_at_every_update_id(
    exchange: Any,
) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=150)
    url = f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade"
    msgs, snaps = run(collect(url, 2.5, snapshot="BTCUSDT"))
    snap = snaps[-1]["body"]
    assert snaps[-1]["status"] == 200 and len(snap["bids"]) >= 500 and len(snap["asks"]) >= 500
    sync, books, results = follow(msgs, snap)
    assert sync.synced and not sync.gaps and DiffResult.GAP not in results
    assert len(books) >= 15
    own_books = ex.books("btcusdt", [uid for uid, _ in books])
    assert len(own_books) == len(books)
    for (uid, ob), own in zip(books, own_books):
        assert own.last_update_id == uid
        assert (ob.bids, ob.asks) == as_book(own)
        assert not ob.crossed()
    assert as_book(ex.book("btcusdt", books[-1][0])) == as_book(own_books[-1])
    # every bookTicker is the exchange book's top at its update id, and no quote is left out
    quotes = [
        decode_quote(raw, exchange="binance", source="t", received_at_us=now_us())
        for s, raw in msgs
        if s.endswith("@bookTicker")
    ]
    assert len(quotes) >= 50
    for q in quotes[::3]:
        own = ex.book("btcusdt", q.update_id)
        assert (q.bid_price, q.bid_qty) == own.bids[0] and (q.ask_price, q.ask_qty) == own.asks[0]
    published = {q.update_id for q in ex.quote_log("btcusdt")}
    assert {q.update_id for q in quotes} <= published
    # the diffs received are the exchange's published log, byte for byte in content
    log = {d.first_id: d for d in ex.depth_log("btcusdt")}
    for stream, raw in msgs:
        if stream.endswith("@depth@100ms"):
            d = decode_diff(raw, exchange="binance", source="simulator", received_at_us=now_us())
            assert isinstance(d, DepthDiff)
            mine = log[d.first_id]
            assert (mine.last_id, mine.bids, mine.asks) == (d.last_id, d.bids, d.asks)
            assert mine.event_time_us // 1000 * 1000 == d.event_time_us
    # trades on the same stream took liquidity at the top: a sell never above the best bid
    # the book showed at the trade's update (both streams come from one book)
    assert any(s.endswith("@trade") for s, _ in msgs)


def test_1000ms_diffs_on_a_raw_stream_and_subscribe_method(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=150)

    async def main() -> tuple[list[tuple[str, bytes]], dict]:
        async with (
            websockets.connect(f"{ex.ws_url}/ws", max_queue=None) as ws,
            aiohttp.ClientSession() as http,
        ):
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 1}))
            out: list[tuple[str, bytes]] = []
            snap: dict = {}
            end = time.monotonic() + 4.5
            while time.monotonic() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                b = raw.encode() if isinstance(raw, str) else raw
                if b'"result"' in b:
                    continue
                out.append(("btcusdt@depth", b))
                if not snap:
                    async with http.get(f"{ex.http_url}/api/v3/depth?symbol=BTCUSDT&limit=5000") as r:
                        snap = await r.json()
            return out, snap

    msgs, snap = run(main())
    assert 3 <= len(msgs) <= 6  # one a second
    first = json.loads(msgs[0][1])
    assert set(first) == {"e", "E", "s", "U", "u", "b", "a"} and first["e"] == "depthUpdate"
    sync, books, _ = follow(msgs, snap)
    assert sync.synced and not sync.gaps and len(books) >= 2
    for uid, ob in books:
        assert (ob.bids, ob.asks) == as_book(ex.book("btcusdt", uid))


def test_partial_depth_is_the_top_of_the_book(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=150)
    url = f"{ex.ws_url}/stream?streams=btcusdt@depth5@100ms/btcusdt@depth10/btcusdt@depth20@100ms"
    msgs, _ = run(collect(url, 2.2))
    by = {
        s: [json.loads(raw)["data"] for st, raw in msgs if st == s]
        for s in ("btcusdt@depth5@100ms", "btcusdt@depth10", "btcusdt@depth20@100ms")
    }
    assert len(by["btcusdt@depth5@100ms"]) >= 15 and 1 <= len(by["btcusdt@depth10"]) <= 3
    for name, n in (("btcusdt@depth5@100ms", 5), ("btcusdt@depth10", 10), ("btcusdt@depth20@100ms", 20)):
        for d in by[name][::4]:
            assert set(d) == {"lastUpdateId", "bids", "asks"}
            own = ex.book("btcusdt", d["lastUpdateId"])
            assert [tuple(x) for x in d["bids"]] == own.bids[:n] and [
                tuple(x) for x in d["asks"]
            ] == own.asks[:n]


def test_agg_trades_cover_the_trade_ids(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=400)
    msgs, _ = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@aggTrade", 1.5))
    aggs = [json.loads(raw)["data"] for _, raw in msgs]
    assert len(aggs) >= 50
    assert (
        set(aggs[0]) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"} and aggs[0]["e"] == "aggTrade"
    )
    log = {t.trade_id: t for t in ex.trade_log("btcusdt")}
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    assert [a["f"] for a in aggs[1:]] == [a["l"] + 1 for a in aggs[:-1]]  # every trade id, once
    for a in aggs:
        fills = [log[i] for i in range(a["f"], a["l"] + 1)]
        assert {(f.price, f.is_buyer_maker, f.trade_time_us) for f in fills} == {
            (Decimal(a["p"]), a["m"], a["T"] * 1000)
        }
        assert sum(f.qty for f in fills) == Decimal(a["q"])
        assert a["E"] >= a["T"]


def test_depth_rest_weights_limits_and_errors(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=50)

    async def main() -> list[tuple[int, Any, str | None]]:
        out = []
        async with aiohttp.ClientSession() as http:
            for q in (
                "limit=5",
                "",
                "limit=101",
                "limit=500",
                "limit=1000",
                "limit=1001",
                "limit=9000",
                "limit=0",
                "limit=x",
            ):
                async with http.get(f"{ex.http_url}/api/v3/depth?symbol=BTCUSDT&{q}") as r:
                    out.append((r.status, await r.json(), r.headers.get("X-MBX-USED-WEIGHT-1M")))
            async with http.get(f"{ex.http_url}/api/v3/depth?symbol=NOPE") as r:
                out.append((r.status, await r.json(), None))
        return out

    res = run(main())
    used = [int(w) for _, _, w in res[:7]]
    assert [b - a for a, b in zip([0] + used, used)] == [5, 5, 25, 25, 50, 250, 250]
    sizes = [len(body["bids"]) for _, body, _ in res[:7]]
    assert sizes[:3] == [5, 100, 101] and 500 <= sizes[4] <= 1000 and 500 <= sizes[6] <= 5000
    assert all(body["lastUpdateId"] >= 1 for _, body, _ in res[:7])
    assert res[7][0] == 400 and res[7][1]["code"] == -1100
    assert res[8][0] == 400 and res[8][1]["code"] == -1100
    assert res[9][0] == 400 and res[9][1]["code"] == -1121


def test_a_dropped_diff_is_a_gap_the_client_sees(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=150)
    ex.book("btcusdt")  # start the book now, so the fault finds diffs to drop

    async def main() -> tuple[list[tuple[str, bytes]], list[dict]]:
        task = asyncio.create_task(
            collect(f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms", 2.0, snapshot="BTCUSDT")
        )
        await asyncio.sleep(0.8)
        await asyncio.to_thread(ex.inject, "depth_drop")
        return await task

    msgs, snaps = run(main())
    _, _, results = follow(msgs, snaps[-1]["body"])
    assert DiffResult.GAP in results
    assert ex.fault_counts.get("depth_drop") == 1
    ids = [json.loads(raw)["data"] for _, raw in msgs]
    assert sum(1 for a, b in zip(ids, ids[1:]) if b["U"] != a["u"] + 1) == 1


def test_duplicated_and_reordered_diffs(exchange: Any) -> None:
    ex: LocalExchange = exchange(
        symbols=["btcusdt"], rate=150, faults="depth_duplicate=2@at=0.6s,depth_reorder=3@at=1.2s"
    )
    ex.book("btcusdt")
    msgs, snaps = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms", 2.5, snapshot="BTCUSDT"))
    ds = [json.loads(raw)["data"] for _, raw in msgs]
    pairs = list(zip(ds, ds[1:]))
    assert sum(1 for a, b in pairs if (a["U"], a["u"]) == (b["U"], b["u"])) == 2  # sent twice
    assert sum(1 for a, b in pairs if b["U"] < a["U"]) == 2  # three diffs in reverse order
    assert sorted({(d["U"], d["u"]) for d in ds}) == sorted({(d["U"], d["u"]) for d in ds})
    counts = ex.fault_counts
    assert counts.get("depth_duplicate") == 2 and counts.get("depth_reorder") == 1
    sync, _, results = follow(msgs, snaps[-1]["body"])
    assert DiffResult.OLD in results and DiffResult.GAP in results  # a duplicate is old; a reorder a gap


def test_snapshot_faults_stale_429_500(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=150)
    ex.book("btcusdt")
    time.sleep(1.0)
    ex.inject("snapshot_429")
    ex.inject("snapshot_500")
    ex.inject("snapshot_stale")
    msgs, snaps = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms", 1.5, snapshot="BTCUSDT"))
    assert [s["status"] for s in snaps] == [429, 500, 200]
    assert snaps[0]["body"]["code"] == -1003 and snaps[1]["body"]["code"] == -1001
    stale = snaps[2]["body"]
    with urllib.request.urlopen(f"{ex.http_url}/api/v3/depth?symbol=BTCUSDT") as r:
        fresh = json.loads(r.read())
    assert stale["lastUpdateId"] < fresh["lastUpdateId"]
    first = json.loads(msgs[0][1])["data"]
    assert stale["lastUpdateId"] < first["U"]  # older than anything the stream sent
    now = now_us()
    sync = BookSync("binance", "BTCUSDT")
    d0 = decode_diff(msgs[0][1], exchange="binance", source="t", received_at_us=now)
    assert isinstance(d0, DepthDiff)
    sync.on_diff(d0, now)
    assert (
        sync.on_snapshot(snapshot_from_rest(stale, "BTCUSDT", exchange="binance", received_at_us=now), now)
        is SnapshotResult.STALE
    )
    # the stale answer is the exchange's real book of that older id
    assert as_book(snapshot_from_rest(stale, "BTCUSDT", exchange="binance", received_at_us=now)) == as_book(
        ex.book("btcusdt", stale["lastUpdateId"])
    )
    counts = ex.fault_counts
    assert (counts.get("snapshot_429"), counts.get("snapshot_500"), counts.get("snapshot_stale")) == (1, 1, 1)


def test_a_reset_in_the_middle_of_a_burst(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=300)

    async def main() -> tuple[int, Any]:
        async with websockets.connect(
            f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker", max_queue=None
        ) as ws:
            for _ in range(5):
                await asyncio.wait_for(ws.recv(), 10)
            await asyncio.to_thread(ex.inject, "burst_reset")
            n = 0
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
                    n += 1
            except websockets.ConnectionClosed as exc:
                return n, exc.rcvd
        return -1, None

    n, rcvd = run(main())
    assert rcvd is None  # no close frame: the socket dropped
    assert ex.fault_counts.get("burst_reset") == 1


def test_fault_schedule_takes_the_book_kinds() -> None:
    from cryptolab.exchange import parse_faults

    plan = parse_faults(
        "depth_drop@p=0.1,depth_reorder=3@every=5s,snapshot_stale=2@at=1s,snapshot_429@p=0.5,"
        "burst_reset@every=10s"
    )
    assert [(i.kind, i.params) for i in plan.items] == [
        ("depth_drop", {"n": 1}),
        ("depth_reorder", {"n": 3}),
        ("snapshot_stale", {"n": 2}),
        ("snapshot_429", {"n": 1}),
        ("burst_reset", {}),
    ]
    with pytest.raises(ConfigError, match="n must be >= 2"):
        parse_faults("depth_reorder=1@at=1s")
    with pytest.raises(ConfigError, match="takes no value"):
        parse_faults("burst_reset=2@at=1s")


def test_control_api_says_the_book_from_another_process() -> None:
    with LocalExchange(symbols=["btcusdt"], rate=100, seed=1, process=True) as ex:
        first = ex.book("btcusdt")
        assert first.symbol == "BTCUSDT" and len(first.bids) >= 200 and first.bids[0][0] < first.asks[0][0]
        time.sleep(1.0)
        diffs = ex.depth_log("btcusdt")
        assert len(diffs) >= 5
        d = diffs[-1]
        ob = OrderBook()
        before = ex.book("btcusdt", d.first_id - 1)
        ob.load(before.bids, before.asks, before.last_update_id)
        ob.apply(d.bids, d.asks, d.last_id)
        assert (ob.bids, ob.asks) == as_book(ex.book("btcusdt", d.last_id))
        assert ex.quote_log("btcusdt")[-1].update_id <= ex.state()["books"]["BTCUSDT"]
        ids = [x.last_id for x in diffs[-5:]]
        assert [b.last_update_id for b in ex.books("btcusdt", ids[::-1])] == ids
        assert [as_book(b) for b in ex.books("btcusdt", ids)] == [as_book(ex.book("btcusdt", i)) for i in ids]
        with pytest.raises(Exception, match="not kept"):
            ex.book("btcusdt", 10**15)


def test_unknown_symbol_book_is_a_clear_error(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=10)
    with pytest.raises(ConfigError, match="does not list ETHUSDT"):
        ex.book("ethusdt")


def test_a_fast_market_keeps_its_book_streaming(exchange: Any) -> None:
    """At 20k trades/s the background flow is capped (bookfeed.MAX_BACKGROUND); the diffs keep
    coming every 100 ms, continuous, and the book stays exact."""
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=20_000)
    msgs, _ = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@depth@100ms", 2.5))
    ds = [json.loads(raw)["data"] for _, raw in msgs]
    assert len(ds) >= 5
    assert all(b["U"] == a["u"] + 1 for a, b in zip(ds, ds[1:]))
    last = ds[-1]
    before = ex.book("btcusdt", last["U"] - 1)
    ob = OrderBook()
    ob.load(before.bids, before.asks, before.last_update_id)
    ob.apply([tuple(x) for x in last["b"]], [tuple(x) for x in last["a"]], last["u"])
    assert (ob.bids, ob.asks) == as_book(ex.book("btcusdt", last["u"]))
