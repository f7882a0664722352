"""USD-M futures capture at full speed, beside a bare client on the same streams, in one run.

    python benchmarks/bench_usdm.py [--symbols 50] [--rate 20000] [--seconds 10]

The local exchange runs in its own process (`cryptolab exchange --markets spot,usdm`) with a
perp for each of `--symbols` symbols, printing `--rate` trades/s in all (so the futures market
prints about as many aggregate trades, one mark price per symbol per second and the odd
liquidation). Both clients read `<sym>@aggTrade`, `<sym>@markPrice@1s` and `<sym>@forceOrder`
of every symbol from the routed `/market` URL, one after the other on the same exchange:

1. a bare client (cryptolab's WebSocket client, counting frames, nothing decoded);
2. `Capture(market="usdm")`: decode, sequence by aggregate id, store every row in PostgreSQL.

Printed: frames/s each received, aggregates/s and mark prices/s the capture stored, its
receive→commit latency p50/p99 and the queue left at the end (0: it kept up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import scratch_database

from cryptolab.capture import Capture

ROOT = Path(__file__).resolve().parents[1]


def start_exchange(symbols: list[str], rate: float) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "exchange",
            "--symbols",
            ",".join(symbols),
            "--rate",
            str(rate),
            "--seed",
            "1",
            "--port",
            "0",
            "--markets",
            "spot,usdm",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    urls = dict(p.split("=", 1) for p in proc.stdout.readline().split())
    return proc, urls["fws"]


def streams_of(symbols: list[str]) -> list[str]:
    return [f"{s}@{k}" for s in symbols for k in ("aggTrade", "markPrice@1s", "forceOrder")]


async def _bare(url: str, seconds: float) -> tuple[int, float]:
    from cryptolab.binance import ws as wsclient

    n = 0

    def on_message(_: object) -> None:
        nonlocal n
        n += 1

    conn = await wsclient.connect(url, on_message, open_timeout=10, max_size=16 * 1024 * 1024)
    await asyncio.sleep(1.0)  # settle
    n0, t0 = n, time.monotonic()
    await asyncio.sleep(seconds)
    got, dt = n - n0, time.monotonic() - t0
    await conn.close()
    return got, dt


def bare(fws: str, symbols: list[str], seconds: float) -> float:
    url = f"{fws}/market/stream?streams={'/'.join(streams_of(symbols))}"
    got, dt = asyncio.run(_bare(url, seconds))
    return got / dt


def capture(dsn: str, fws: str, symbols: list[str], seconds: float) -> dict[str, float]:
    cap = Capture(symbols, source=fws, dsn=dsn, market="usdm", open_interest_interval=30.0).start()
    try:
        time.sleep(2.0)  # settle (subscriptions by message past 100 streams, catch-up)
        cap.reset_latencies()
        s0, t0 = cap.status(), time.monotonic()
        time.sleep(seconds)
        s1, dt = cap.status(), time.monotonic() - t0
        lat = sorted(cap.latencies_us())
    finally:
        final = cap.stop()
    f0, f1 = s0.futures, s1.futures

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")

    return {
        "frames": (s1.messages - s0.messages) / dt,
        "aggs": (f1["agg_trades"] - f0["agg_trades"]) / dt,
        "marks": (f1["mark_prices"] - f0["mark_prices"]) / dt,
        "liqs": (f1["liquidations"] - f0["liquidations"]) / dt,
        "p50": q(0.5),
        "p99": q(0.99),
        "mean": statistics.fmean(lat) / 1000 if lat else float("nan"),
        "queue": float(s1.queue_depth),
        "gaps_lost": float(final.gaps_lost),
        "dead": float(final.dead_letters),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument(
        "--rate", type=float, default=20000.0, help="trades/s the exchange prints, all symbols together"
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    symbols = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt"] + [
        f"c{i:02d}usdt" for i in range(args.symbols)
    ]
    symbols = symbols[: args.symbols]
    proc, fws = start_exchange(symbols, args.rate)
    try:
        with scratch_database("cryptolab_bench_usdm") as dsn:
            ceiling = bare(fws, symbols, args.seconds)
            got = capture(dsn, fws, symbols, args.seconds)
    finally:
        proc.terminate()
        proc.wait(10)
    print(
        f"futures capture, {len(symbols)} symbols x (aggTrade, markPrice@1s, forceOrder) on /market, "
        f"exchange printing {args.rate:,.0f} trades/s, {args.seconds:g} s each:"
    )
    print(f"  bare client (frames counted, nothing decoded):   {ceiling:>10,.0f} frames/s")
    print(
        f"  Capture(market='usdm') received:                 {got['frames']:>10,.0f} frames/s "
        f"({got['frames'] / ceiling:.0%} of bare)"
    )
    print(
        f"    stored: {got['aggs']:,.0f} aggregates/s, {got['marks']:,.1f} mark prices/s, "
        f"{got['liqs']:,.2f} liquidations/s"
    )
    print(
        f"    receive->commit latency p50 {got['p50']:.1f} ms, p99 {got['p99']:.1f} ms (mean "
        f"{got['mean']:.1f} ms); queue at the end {got['queue']:.0f}; gaps lost {got['gaps_lost']:.0f}; dead "
        f"letters {got['dead']:.0f}"
    )


if __name__ == "__main__":
    main()
