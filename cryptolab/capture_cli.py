"""Capture live trades into PostgreSQL until N seconds pass or Ctrl-C / SIGTERM, then flush and summarize."""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import threading
import time

from .config import mask_url, settings
from .errors import ConfigError, CryptolabError

MAX_TRADE_ID = 2**63 - 1
"""Trade ids are PostgreSQL bigints."""
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds (leave --seconds out to run until Ctrl-C)"
        )
    return value


def _trade_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a trade id (a whole number)") from None
    if not 0 <= value <= MAX_TRADE_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a trade id: ids run from 0 to {MAX_TRADE_ID}")
    return value


def parse_symbols(text: str) -> list[str]:
    """`btcusdt, ethusdt` → ['BTCUSDT', 'ETHUSDT']; a ConfigError for characters no exchange uses."""
    syms = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not syms:
        raise ConfigError("--symbols is empty: name at least one, e.g. --symbols btcusdt")
    bad = [s for s in syms if not _SYMBOL_RE.match(s)]
    if bad:
        raise ConfigError(
            f"--symbols: {bad[0][:40]!r} is not a symbol (2-20 letters and digits, e.g. BTCUSDT)"
        )
    return list(dict.fromkeys(syms))


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusdt,ethusdt")
    p.add_argument(
        "--source",
        default="binance",
        help="binance (default), binance.us, binance-data, simulator, or a local exchange URL ws://127.0.0.1:PORT",
    )
    p.add_argument("--seconds", type=_seconds, default=None,
                   help="stop after this many seconds, > 0 (default: until Ctrl-C)")
    p.add_argument("--dsn", default=None, help="libpq DSN (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument("--from-id", type=_trade_id, default=None,
                   help="start at this trade id for every symbol; older ids than the stream's are fetched from REST")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")


def run(args: argparse.Namespace) -> int:
    from .capture import Capture

    symbols = parse_symbols(args.symbols)
    settings().writable_home()  # the journal lives there: a bad CRYPTOLAB_HOME is one line now, not later
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from_ids = {s: args.from_id for s in symbols} if args.from_id is not None else None
    source = mask_url(args.source)
    cap = Capture(symbols, source=args.source, dsn=args.dsn, from_ids=from_ids)
    try:
        cap.start()
    except CryptolabError as exc:
        print(f"cryptolab capture: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 1
    st = cap.status()
    print(f"capturing {', '.join(st.symbols)} from {source} (run {st.run_id}); Ctrl-C to stop", flush=True)
    for sym, why in st.skipped_symbols.items():
        print(f"  {sym}: {why}", flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds is not None else None
    next_print = time.monotonic() + 10
    while not done.is_set():
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if done.wait(timeout) or (deadline is not None and time.monotonic() >= deadline):
            break
        st = cap.status()
        if not st.running:  # stopped on its own (a fatal error): do not wait for the deadline
            break
        if not args.quiet and time.monotonic() >= next_print:
            print(f"  {st.rows_stored} stored, {st.trades_per_s:.0f} trades/s, queue {st.queue_depth}, "
                  f"journal {st.journal_rows}, reconnects {st.reconnects}, gaps {st.gaps_found}", file=sys.stderr, flush=True)
            next_print += 10
    final = cap.stop()
    print(final.summary().replace(args.source, source), flush=True)  # never the token of a ws://user:token@ source
    if final.failed:
        print(f"cryptolab capture: {' '.join(str(final.error or 'failed').split())}", file=sys.stderr, flush=True)
        return 1
    return 0
