"""`cryptolab history SYMBOL… --from DATE …`: a symbol's past from dumps + REST into the database."""

from __future__ import annotations

import argparse

from ..history.core import DEFAULT_REST_URL, default_cache, fetch_history
from ..history.download import DEFAULT_DUMPS_URL
from ..history.plan import INTERVALS, USDM_KINDS
from ..markets import MARKETS

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("symbols", nargs="+", metavar="SYMBOL", help="symbols, e.g. BTCUSDT ETHUSDT")
    p.add_argument("--from", dest="start", required=True, metavar="DATE", help="first UTC day, YYYY-MM-DD")
    p.add_argument(
        "--to", dest="end", default=None, metavar="DATE", help="last UTC day (default: today, up to now)"
    )
    p.add_argument(
        "--market",
        default="spot",
        choices=MARKETS,
        help="spot (default) or usdm: Binance USD-M futures (data/futures/um dumps, /fapi REST, "
        "stored under exchange binance-usdm)",
    )
    p.add_argument(
        "--kind",
        default="trades",
        choices=USDM_KINDS,
        help="what to fetch (default trades); markPriceKlines, fundingRate, metrics: --market usdm only",
    )
    p.add_argument("--interval", default="1m", choices=INTERVALS, help="klines interval (default 1m)")
    p.add_argument(
        "--dumps",
        default=DEFAULT_DUMPS_URL,
        metavar="URL",
        help=f"dump site (default {DEFAULT_DUMPS_URL}; a local exchange's http:// URL works)",
    )
    p.add_argument(
        "--rest",
        default=None,
        metavar="URL",
        help=f"REST endpoint for days no dump holds (default {DEFAULT_REST_URL}; "
        "https://fapi.binance.com with --market usdm)",
    )
    p.add_argument(
        "--exchange",
        default=None,
        help="value of the `exchange` column (default: 'simulator' for a synthetic local market, else "
        "binance; with --market usdm simulator-usdm / binance-usdm)",
    )
    p.add_argument("--workers", type=int, default=4, help="concurrent downloads (default 4)")
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="where zips are kept (default CRYPTOLAB_HOME/history-cache)",
    )
    p.add_argument("--dsn", default=None, help="database (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    res = fetch_history(
        args.symbols,
        args.start,
        args.end,
        kind=args.kind,
        interval=args.interval,
        dumps=args.dumps,
        rest=args.rest,
        workers=args.workers,
        cache=args.cache or default_cache(),
        dsn=args.dsn,
        exchange=args.exchange,
        progress=not args.no_progress,
        market=args.market,
    )
    print(res.summary())
    return 0
