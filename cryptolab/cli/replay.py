"""Serve recorded/dumped trades from the local exchange (a shortcut for `exchange --replay`).

`cryptolab replay FILE… [--speed X]` serves only the trades of the files (trades or
aggTrades dumps of data.binance.vision, zip or csv; stream recordings, gz or plain)
at real pace × X (0 = as fast as clients read), with their real ids and times. A recording
that holds the book (depth@100ms, bookTicker, inline REST snapshots, as `cryptolab exchange
--record` writes and the team's real recordings are) replays every stream in file order and
serves its snapshots from `GET /api/v3/depth`.
"""

from __future__ import annotations

import argparse
import asyncio

from .exchange import configure as _configure_exchange
from .exchange import serve, server_kwargs

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="dumps (.zip/.csv) or recordings (.gz/.txt)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 real time (default), N times faster, 0 as fast as possible",
    )
    p.add_argument("--symbols", default=None, help="only these symbols of the files (comma-separated)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)")
    p.add_argument(
        "--faults", default=None, metavar="SPEC", help="fault schedule (see `cryptolab exchange --help`)"
    )


def run(args: argparse.Namespace) -> int:
    full = argparse.ArgumentParser(add_help=False)
    _configure_exchange(full)
    ns = full.parse_args([])
    ns.replay = args.files
    ns.speed = args.speed
    ns.symbols = args.symbols
    ns.port = args.port
    ns.faults = args.faults
    asyncio.run(
        serve(
            server_kwargs(ns),
            banner=f"cryptolab replay: {len(args.files)} file(s) at speed {args.speed:g}; Ctrl-C to stop",
        )
    )
    return 0
