"""Local exchange benchmark: the most trades/s one client can receive on a combined stream.

    python benchmarks/bench_exchange.py [--seconds 5] [--rates 10000,25000,50000,100000,200000]
        [--calibrate ../shared/data/binance/hftbacktest_spot_btcusdt_2024080*.gz] [--load 1000000]

The exchange runs in its own process (`cryptolab exchange`), the client in this one
(two cores: one each). For each offered rate it prints what the exchange printed, what
the client received (trades/s) and the exchange's CPU use, for

* `cryptolab exchange` — pre-encoded frames, one write per connection per tick;
* two naive baselines in the same run — the same market, one `json.dumps` + one
  send per trade, with aiohttp (`ws.send_str`) and with websockets (`ws.send`).

The client that measures the ceiling only parses WebSocket frame headers (so it is not
the bottleneck); a second table shows what real client libraries (aiohttp, websockets)
keep up with at the top rate. With --calibrate, the synthetic market's shape is compared
with a real recording (the README's table). With --load N, a data.binance.vision-style
zip dump of N synthetic trades is written and imported with `cryptolab load` (rows/s),
beside the reader alone (rows/s parsed, nothing stored).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

SYMBOL = "btcusdt"


# ---------------------------------------------------------------------------- servers
def start_server(kind: str, rate: float) -> tuple[subprocess.Popen[str], str]:
    if kind == "cryptolab":
        cmd = [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "exchange",
            "--symbols",
            SYMBOL,
            "--rate",
            str(rate),
            "--port",
            "0",
        ]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve-naive", kind, "--rate-naive", str(rate)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    http = dict(p.split("=", 1) for p in line)["http"]
    return proc, http


def printed(kind: str, http: str) -> int:
    path = "/_cryptolab/state" if kind == "cryptolab" else "/state"
    state = json.loads(urllib.request.urlopen(http + path, timeout=10).read())
    return int(sum(state["printed"].values()))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_naive(kind: str, rate: float) -> None:
    """The baselines: same synthetic market, one json.dumps + one send per trade per client,
    with aiohttp (`naive-aiohttp`) or websockets (`naive-websockets`)."""
    from aiohttp import web

    from cryptolab.exchange.market import SyntheticMarket, symbol_spec
    from cryptolab.exchange.tradelog import SymbolLog, fmt8
    from cryptolab.model import now_us

    log = SymbolLog(symbol_spec(SYMBOL))
    market = SyntheticMarket([log], rate=rate, seed=1)
    clients: set[Any] = set()

    def message(lg: Any, i: int) -> str:
        return json.dumps(
            {
                "stream": f"{SYMBOL}@trade",
                "data": {
                    "e": "trade",
                    "E": lg.events[i] // 1000,
                    "s": lg.spec.symbol,
                    "t": lg.ids[i],
                    "p": fmt8(lg.prices[i]),
                    "q": fmt8(lg.qtys[i]),
                    "T": lg.times[i] // 1000,
                    "m": bool(lg.makers[i]),
                    "M": True,
                },
            }
        )

    if kind == "naive-websockets":
        from http import HTTPStatus

        from websockets.asyncio.server import serve

        async def handler(ws: Any) -> None:
            clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                clients.discard(ws)

        def process_request(connection: Any, request: Any) -> Any:
            if request.path == "/state":
                return connection.respond(HTTPStatus.OK, json.dumps({"printed": {SYMBOL: len(log)}}))
            return None

        async def main_ws() -> None:
            async with serve(
                handler, "127.0.0.1", 0, process_request=process_request, compression=None
            ) as server:
                port = list(server.sockets)[0].getsockname()[1]
                print(f"ws=ws://127.0.0.1:{port} http=http://127.0.0.1:{port}", flush=True)
                while True:
                    now = now_us()
                    market.generate(now)
                    for lg, i in market.release(now):
                        msg = message(lg, i)
                        for ws in list(clients):
                            try:
                                await ws.send(msg)
                            except Exception:
                                clients.discard(ws)
                    await asyncio.sleep(0.002)

        asyncio.run(main_ws())
        return

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            clients.discard(ws)
        return ws

    async def state(request: web.Request) -> web.Response:
        return web.json_response({"printed": {SYMBOL: len(log)}})

    async def produce() -> None:
        while True:
            now = now_us()
            market.generate(now)
            for lg, i in market.release(now):
                msg = message(lg, i)
                for ws in list(clients):
                    try:
                        await ws.send_str(msg)
                    except ConnectionError:
                        clients.discard(ws)
            await asyncio.sleep(0.002)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/stream", stream)
        app.router.add_get("/state", state)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"ws=ws://127.0.0.1:{port} http=http://127.0.0.1:{port}", flush=True)
        await produce()

    asyncio.run(main())


# ---------------------------------------------------------------------------- clients
async def raw_count(http: str, seconds: float, warmup: float) -> tuple[int, float]:
    """Frames received in `seconds` after `warmup`, parsing only WebSocket frame headers."""
    host, port = http.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /stream?streams={SYMBOL}@trade HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    buf = b""
    n = 0
    t_start = time.monotonic()
    t0: float | None = None
    while True:
        data = await reader.read(1 << 20)
        if not data:
            break
        buf += data
        i, end = 0, len(buf)
        while i + 2 <= end:
            ln = buf[i + 1] & 0x7F
            h = 2
            if ln == 126:
                if i + 4 > end:
                    break
                ln = int.from_bytes(buf[i + 2 : i + 4], "big")
                h = 4
            elif ln == 127:
                if i + 10 > end:
                    break
                ln = int.from_bytes(buf[i + 2 : i + 10], "big")
                h = 10
            if i + h + ln > end:
                break
            if buf[i] == 0x81:
                n += 1
            i += h + ln
        buf = buf[i:]
        now = time.monotonic()
        if t0 is None and now - t_start >= warmup:
            t0, n = now, 0
        if t0 is not None and now - t0 >= seconds:
            break
    writer.close()
    assert t0 is not None
    return n, time.monotonic() - t0


async def lib_count(lib: str, http: str, seconds: float, warmup: float) -> float:
    url = http.replace("http", "ws", 1) + f"/stream?streams={SYMBOL}@trade"
    n, t0 = 0, None
    start = time.monotonic()
    if lib == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            while True:
                await ws.receive()
                n += 1
                now = time.monotonic()
                if t0 is None and now - start >= warmup:
                    t0, n = now, 0
                if t0 is not None and now - t0 >= seconds:
                    return n / (now - t0)
    import websockets

    async with websockets.connect(url, max_queue=4096, compression=None, close_timeout=0.5) as c:
        while True:
            await c.recv(decode=False)
            n += 1
            now = time.monotonic()
            if t0 is None and now - start >= warmup:
                t0, n = now, 0
            if t0 is not None and now - t0 >= seconds:
                return n / (now - t0)


def measure(kind: str, rate: float, seconds: float, client: str = "raw") -> dict[str, float]:
    proc, http = start_server(kind, rate)
    try:
        time.sleep(0.3)
        warm = 1.0
        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
        if client == "raw":

            async def go() -> tuple[int, float, int, int]:
                task = asyncio.create_task(raw_count(http, seconds, warm))
                await asyncio.sleep(warm)
                p0 = await asyncio.to_thread(printed, kind, http)
                n, dt = await task
                p1 = await asyncio.to_thread(printed, kind, http)
                return n, dt, p0, p1

            n, dt, p0, p1 = asyncio.run(go())
            recv = n / dt
            made = (p1 - p0) / dt
        else:
            recv = asyncio.run(lib_count(client, http, seconds, warm))
            made = float("nan")
        cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"offered": rate, "printed": made, "received": recv, "cpu": cpu}


def calibrate(paths: list[str]) -> None:
    from cryptolab.binance.dumps import read_dump_trades
    from cryptolab.exchange.calibration import comparison_table, shape_stats, simulate

    real = [t for p in sorted(paths) for t in read_dump_trades(p)]
    rs = shape_stats(real)
    sims = [
        shape_stats(simulate("btcusdt", rate=rs["trades_per_s_mean"], seconds=3 * 650, seed=s))
        for s in (1, 2, 3)
    ]
    ss = {k: sum(s[k] for s in sims) / len(sims) for k in sims[0]}
    print(
        f"\n## synthetic market vs the real recording ({len(real):,} BTCUSDT trades; synthetic: mean of 3 "
        "seeds × 1950 s)\n"
    )
    print(comparison_table(rs, ss))


def bench_load(n: int) -> None:
    """Write an N-trade µs zip dump, then time the reader alone and `cryptolab load`."""
    import tempfile
    import zipfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import scratch_database

    from cryptolab.binance.dumps import read_dump_trades
    from cryptolab.exchange.calibration import simulate
    from cryptolab.history.load import load_files

    trades = simulate("btcusdt", rate=20_000, seconds=n / 20_000 * 1.2)[:n]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "BTCUSDT-trades-2025-01-01.zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(
                "BTCUSDT-trades-2025-01-01.csv",
                "".join(
                    f"{t.trade_id},{t.price:f},{t.qty:f},{t.price * t.qty:f},{t.trade_time_us},"
                    f"{t.is_buyer_maker},True\n"
                    for t in trades
                ),
            )
        t0 = time.perf_counter()
        parsed = sum(1 for _ in read_dump_trades(path))
        t_read = time.perf_counter() - t0
        with scratch_database("cl_bench_load") as dsn:
            res = load_files([path], dsn=dsn, progress=False)
    print(f"\n## cryptolab load, {len(trades):,}-trade zip dump ({os.cpu_count()} cores)\n")
    print(
        f"reader alone: {parsed / t_read:,.0f} rows/s; cryptolab load (parse + COPY + dedupe + bars_1s): "
        f"{res.rows / res.seconds:,.0f} rows/s ({res.seconds:.1f} s, {res.inserted:,} stored)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="10000,25000,50000,100000,200000")
    ap.add_argument("--calibrate", nargs="*", default=None, metavar="RECORDING")
    ap.add_argument(
        "--load", type=int, default=0, metavar="N", help="also time `cryptolab load` on an N-trade dump"
    )
    ap.add_argument("--serve-naive", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rate-naive", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_naive is not None:
        serve_naive(args.serve_naive, args.rate_naive)
        return
    if args.rates == "0":  # only the optional parts
        if args.calibrate:
            calibrate(args.calibrate)
        if args.load:
            bench_load(args.load)
        return
    rates = [float(r) for r in args.rates.split(",")]
    print(
        f"one client, combined stream {SYMBOL}@trade, {args.seconds:g} s per point, exchange in its own "
        "process\n"
    )
    print("| server | offered/s | printed/s | received/s | exchange CPU | sustained |")
    print("|---|---:|---:|---:|---:|:---:|")
    best: dict[str, float] = {}
    ceiling: dict[str, float] = {}
    for kind in ("cryptolab", "naive-aiohttp", "naive-websockets"):
        for rate in rates:
            r = measure(kind, rate, args.seconds)
            ok = r["received"] >= 0.97 * r["printed"] and r["printed"] >= 0.9 * rate
            if ok:
                best[kind] = max(best.get(kind, 0.0), r["received"])
            ceiling[kind] = max(ceiling.get(kind, 0.0), r["received"])
            print(
                f"| {kind} | {rate:,.0f} | {r['printed']:,.0f} | {r['received']:,.0f} | {r['cpu']:.0%} | "
                f"{'yes' if ok else 'no'} |",
                flush=True,
            )
    c, top_c = best.get("cryptolab", 0.0), ceiling.get("cryptolab", 0.0)
    print(
        f"\nmax sustained (received >= 97 % of printed, printed >= 90 % of offered): cryptolab exchange "
        f"{c:,.0f} trades/s; most received at any offered rate: {top_c:,.0f} trades/s"
    )
    for kind in ("naive-aiohttp", "naive-websockets"):
        n = ceiling.get(kind, 0.0)
        print(
            f"  {kind} baseline: most received {n:,.0f} trades/s, max sustained {best.get(kind, 0.0):,.0f}"
            + (f" (cryptolab/baseline ceiling: {top_c / n:.1f}x)" if n else "")
        )
    top = max(rates)
    print(f"\nreal client libraries at {top:,.0f} offered (frames/s they read):")
    for lib in ("aiohttp", "websockets"):
        r = measure("cryptolab", top, args.seconds, client=lib)
        print(f"  {lib}: {r['received']:,.0f} /s (exchange CPU {r['cpu']:.0%})", flush=True)
    if args.calibrate:
        calibrate(args.calibrate)
    if args.load:
        bench_load(args.load)


if __name__ == "__main__":
    main()
