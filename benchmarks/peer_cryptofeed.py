"""A peer client for bench_pace: cryptofeed's Binance feed receiving the local exchange's trades.

Run by `bench_pace.py` with the Python of cryptofeed's own venv (it does not import
cryptolab):

    <venv>/bin/python benchmarks/peer_cryptofeed.py WS_URL REST_URL SYMBOL SECONDS WARMUP [trades|book]

`book` also subscribes cryptofeed's L2 book (its REST snapshot from the local exchange's
`/api/v3/depth`, then the `@depth@100ms` diffs applied to its own `OrderBook`) and its ticker
(`@bookTicker`), each with a callback that only counts.

Every URL cryptofeed knows for Binance (websocket, REST, their sandboxes) is replaced by the
local exchange's before the first call, and `socket.getaddrinfo` refuses any host other than
127.0.0.1 / localhost, so not even a DNS lookup of a real host can happen. At start cryptofeed
reads `/api/v3/exchangeInfo` (its symbol map) from the local exchange.

cryptofeed accepts only `wss://` addresses; its connection class is given the plain
`ws://` address after that check (the capture, too, reads plain `ws://` here).

Trades come as cryptofeed takes them from Binance: its own `@aggTrade` subscription,
parser and message handler, unchanged (the local exchange serves `@aggTrade`, aggregates made
from its trade log as Binance makes them): its JSON parse with Decimal floats, symbol mapping,
a `Trade` object per aggregate, the callback. The callback
only counts. After WARMUP seconds the process's CPU (user + system, all threads, as
`os.times()` gives it) is sampled, again after SECONDS, and one JSON line is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from typing import Any

_LOCAL = {"127.0.0.1", "localhost", "::1"}
_real_getaddrinfo = socket.getaddrinfo


def _local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL:
        raise OSError(f"peer_cryptofeed: refused a lookup of {name!r}: only 127.0.0.1 may be reached")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only  # before cryptofeed (and requests, websockets) are imported


def main() -> None:
    ws, rest, symbol, seconds, warmup = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        float(sys.argv[4]),
        float(sys.argv[5]),
    )
    mix = sys.argv[6] if len(sys.argv) > 6 else "trades"

    import dataclasses

    import cryptofeed.exchanges.binance as cfb
    import cryptofeed.feed
    from cryptofeed import FeedHandler
    from cryptofeed.connection import WSAsyncConn
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES

    class PlainWS(WSAsyncConn):  # type: ignore[misc]
        """cryptofeed refuses ws:// (only wss://); the local exchange, like the capture's run, is plain."""

        def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
            super().__init__("wss://" + address.removeprefix("ws://"), *args, **kwargs)
            self.address = address

    cryptofeed.feed.WSAsyncConn = PlainWS

    class LocalBinance(cfb.Binance):  # type: ignore[misc]
        # every endpoint (and its sandbox) on the local exchange; routes (exchangeInfo, depth, …) kept
        websocket_endpoints = [
            dataclasses.replace(e, address=ws, sandbox=ws) for e in cfb.Binance.websocket_endpoints
        ]
        rest_endpoints = [
            dataclasses.replace(e, address=rest, sandbox=rest) for e in cfb.Binance.rest_endpoints
        ]

    count = [0]
    others = [0]

    async def on_trade(trade: Any, receipt: float) -> None:
        count[0] += 1

    async def on_other(update: Any, receipt: float) -> None:
        others[0] += 1

    fh = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    base, quote = symbol[:-4].upper(), symbol[-4:].upper()
    channels: list[str] = [TRADES]
    callbacks: dict[str, Any] = {TRADES: on_trade}
    if mix == "book":
        channels += [L2_BOOK, TICKER]
        callbacks.update({L2_BOOK: on_other, TICKER: on_other})
    fh.add_feed(LocalBinance(symbols=[f"{base}-{quote}"], channels=channels, callbacks=callbacks))

    async def measure() -> None:
        await asyncio.sleep(warmup)
        t = os.times()
        c0, n0, o0, w0 = t.user + t.system, count[0], others[0], time.monotonic()
        await asyncio.sleep(seconds)
        t = os.times()
        c1, n1, o1, w1 = t.user + t.system, count[0], others[0], time.monotonic()
        wall = w1 - w0
        print(
            json.dumps(
                {
                    "trades_per_s": (n1 - n0) / wall,
                    "book_updates_per_s": (o1 - o0) / wall,
                    "cpu_h": (c1 - c0) * 3600 / wall,
                    "trades": n1,
                }
            ),
            flush=True,
        )
        os._exit(0 if n1 > n0 else 1)

    if hasattr(fh, "run_async"):  # cryptofeed 3: asyncio.Runner on uvloop, feeds in a TaskGroup
        import uvloop

        async def both() -> None:
            asyncio.get_running_loop().create_task(measure())
            await fh.run_async(install_signal_handlers=False)

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(both())
    else:  # cryptofeed 2: feeds started on the loop, which we run
        loop = asyncio.new_event_loop()  # uvloop's, the policy FeedHandler set
        asyncio.set_event_loop(loop)
        fh.run(start_loop=False, install_signal_handlers=False)
        loop.create_task(measure())
        loop.run_forever()


if __name__ == "__main__":
    main()
