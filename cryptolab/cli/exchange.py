"""Run the local Binance-compatible exchange on 127.0.0.1 (synthetic market or replay).

Prints `ws=ws://127.0.0.1:PORT http=http://127.0.0.1:PORT` as its first line, then
serves until SIGINT/SIGTERM. See `cryptolab.exchange.faults` for the --faults syntax.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from functools import partial
from typing import Any

from ..durations import parse_seconds
from ..errors import ConfigError
from ..exchange.faults import parse_faults

__all__ = ["configure", "run", "serve", "server_kwargs"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default btcusdt,ethusdt; with --replay: all in the files)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="synthetic market: mean trades/s, all symbols together (default 200)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="synthetic market: random seed (same seed, same trades, ids from 1; default: from the start "
        "time)",
    )
    p.add_argument(
        "--first-id",
        type=int,
        default=None,
        help="synthetic market: id of the first trade of each symbol (default: 1 with --seed, else the "
        "start time in µs, so that two exchanges never print the same ids)",
    )
    p.add_argument(
        "--replay",
        nargs="+",
        metavar="FILE",
        default=None,
        help="serve these dumps/recordings instead of the synthetic market",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay pace: 1 real time, N times faster, 0 as fast as possible",
    )
    p.add_argument(
        "--faults",
        default=None,
        metavar="SPEC",
        help="fault schedule, e.g. 'reset@every=30s,stall=3s@at=20s,duplicate@p=0.01'",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)")
    p.add_argument(
        "--ping-interval",
        type=partial(parse_seconds, name="--ping-interval"),
        default=20.0,
        help="time between server pings, seconds or a duration like 500ms (Binance: 20)",
    )
    p.add_argument(
        "--ping-timeout",
        type=partial(parse_seconds, name="--ping-timeout"),
        default=20.0,
        help="drop a client whose pong is this late (seconds or a duration; default 20)",
    )
    p.add_argument(
        "--max-connection-age",
        type=partial(parse_seconds, name="--max-connection-age"),
        default=86400.0,
        help="close connections this old (seconds or a duration like 1h; Binance: 24h)",
    )
    p.add_argument(
        "--shutdown-notice",
        type=partial(parse_seconds, name="--shutdown-notice", zero=True),
        default=None,
        help="send serverShutdown this long before the max-age close (default: age/10, at most 600 s)",
    )
    p.add_argument(
        "--weight-budget", type=int, default=6000, help="REST request weight per minute (Binance: 6000)"
    )
    p.add_argument(
        "--max-trades", type=int, default=None, help="stop printing after this many trades per symbol"
    )
    p.add_argument(
        "--history-days",
        type=int,
        default=0,
        help="synthetic market: a deterministic past of N whole UTC days before today (and today so far), "
        "served by REST and as data.binance.vision dumps under /data/spot/…",
    )
    p.add_argument(
        "--history-rate",
        type=float,
        default=1.0,
        help="trades/s of that past, all symbols together (default 1)",
    )
    p.add_argument(
        "--pace",
        default=None,
        metavar="SYMBOLS",
        help="serve these symbols at BTCUSDT's real mix (~31 trades/s, ~112 bookTicker/s, 10 depth "
        "diffs/s carrying ~460 level updates/s each), books from the start; replaces --symbols/--rate",
    )
    p.add_argument("--pace-x", type=float, default=1.0, help="with --pace: N times the real pace (default 1)")
    p.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write the trade, depth@100ms and bookTicker streams (and snapshots) as a raw recording "
        "(`<ns> <json>` lines; .gz gzipped)",
    )
    p.add_argument(
        "--markets",
        default="spot",
        metavar="MARKETS",
        help="spot, or spot,usdm: a synthetic USD-M perp per symbol tied to the spot, on its own port "
        "(announced as fws=… fhttp=… on the first line)",
    )
    p.add_argument(
        "--book-history",
        type=int,
        default=1_000_000,
        help="book changes kept so the exchange can say its book at a past update id (default 1000000)",
    )


def _check(args: argparse.Namespace) -> None:
    """One clear line for a value the exchange cannot run with (before anything starts)."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port: use 1-65535, or 0 for any free port")
    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ConfigError(f"--rate must be a number > 0 trades/s (got {args.rate:g})")
    if not (math.isfinite(args.speed) and args.speed >= 0):
        raise ConfigError(f"--speed must be >= 0 (0 = as fast as possible; got {args.speed:g})")
    for opt, value in (
        ("--ping-interval", args.ping_interval),
        ("--ping-timeout", args.ping_timeout),
        ("--max-connection-age", args.max_connection_age),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{opt} must be a number of seconds > 0 (got {value:g})")
    if not 0 <= args.history_days <= 3660:
        raise ConfigError(f"--history-days must be 0-3660 (got {args.history_days})")
    if not (math.isfinite(args.history_rate) and args.history_rate > 0):
        raise ConfigError(f"--history-rate must be a number > 0 trades/s (got {args.history_rate:g})")
    if args.history_days and args.replay:
        raise ConfigError("--history-days makes a synthetic past: it does not go with --replay")
    if (args.pace or args.record) and args.replay:
        raise ConfigError("--pace and --record make a synthetic market: they do not go with --replay")
    if not (math.isfinite(args.pace_x) and args.pace_x > 0):
        raise ConfigError(f"--pace-x must be a number > 0 (got {args.pace_x:g})")
    if args.book_history < 10_000:
        raise ConfigError(f"--book-history must be >= 10000 changes (got {args.book_history})")
    if args.shutdown_notice is not None and not (
        math.isfinite(args.shutdown_notice) and args.shutdown_notice >= 0
    ):
        raise ConfigError(f"--shutdown-notice must be >= 0 s (got {args.shutdown_notice:g})")
    for opt, n in (
        ("--weight-budget", args.weight_budget),
        ("--max-trades", args.max_trades),
        ("--first-id", args.first_id),
    ):
        if n is not None and n < 1:
            raise ConfigError(f"{opt} must be >= 1 (got {n})")


def server_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    return dict(
        symbols=symbols,
        rate=args.rate,
        seed=args.seed,
        first_id=args.first_id,
        faults=parse_faults(args.faults),
        replay=args.replay,
        speed=args.speed,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_connection_age=args.max_connection_age,
        shutdown_notice=args.shutdown_notice,
        weight_budget=args.weight_budget,
        max_trades=args.max_trades,
        port=args.port,
        history_days=args.history_days,
        history_rate=args.history_rate,
        record=args.record,
        pace=[s.strip() for s in args.pace.split(",") if s.strip()] if args.pace else None,
        pace_x=args.pace_x,
        book_history=args.book_history,
        **(
            {"markets": [m.strip() for m in args.markets.split(",") if m.strip()]}
            if args.markets != "spot"
            else {}
        ),
    )


async def serve(kwargs: dict[str, Any], banner: str = "") -> None:
    """Serve until SIGINT/SIGTERM; print the URLs line first (flushed)."""
    from ..exchange.server import ExchangeServer

    server = ExchangeServer(**kwargs)
    try:
        port = await server.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{kwargs.get('port')}: {exc.strerror} — pick another --port or 0"
        ) from None
    fut = (
        f" fws=ws://127.0.0.1:{server.usdm.port} fhttp=http://127.0.0.1:{server.usdm.port}"
        if server.usdm
        else ""
    )
    print(f"ws=ws://127.0.0.1:{port} http=http://127.0.0.1:{port}{fut}", flush=True)
    if banner:
        print(banner, file=sys.stderr, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await server.stop()
        st = server.state()
        print(
            f"stopped: printed {sum(st['printed'].values())} trades, faults {st['fault_counts'] or 'none'}",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    kwargs = server_kwargs(args)
    what = (
        f"replaying {len(args.replay)} file(s) at speed {args.speed}"
        if args.replay
        else (
            f"{','.join(kwargs['pace'])} at {args.pace_x:g}x BTCUSDT's real mix (trades, bookTicker, depth)"
            if kwargs["pace"]
            else f"synthetic market {','.join(kwargs['symbols'] or ['btcusdt', 'ethusdt'])} at "
            f"{args.rate:g} trades/s, "
            + (f"seed {args.seed}" if args.seed is not None else "seed and ids from the start time")
        )
    )
    asyncio.run(serve(kwargs, banner=f"cryptolab exchange: {what}; Ctrl-C to stop"))
    return 0
