"""Capture live trades into PostgreSQL until N seconds pass or Ctrl-C / SIGTERM, then flush and summarize."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from .capture import Capture


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusdt,ethusdt")
    p.add_argument(
        "--source",
        default="binance",
        help="binance (default), binance.us, binance-data, simulator, or a local exchange URL ws://127.0.0.1:PORT",
    )
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--dsn", default=None, help="libpq DSN (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument("--from-id", type=int, default=None,
                   help="start at this trade id for every symbol; older ids than the stream's are fetched from REST")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")


def run(args: argparse.Namespace) -> int:
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from_ids = None
    if args.from_id is not None:
        from_ids = {s.strip().upper(): args.from_id for s in args.symbols.split(",") if s.strip()}
    cap = Capture(args.symbols, source=args.source, dsn=args.dsn, from_ids=from_ids)
    cap.start()
    st = cap.status()
    print(f"capturing {', '.join(st.symbols)} from {args.source} (run {st.run_id}); Ctrl-C to stop", flush=True)
    for sym, why in st.skipped_symbols.items():
        print(f"  {sym}: {why}", flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    next_print = time.monotonic() + 10
    while not done.is_set():
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if done.wait(timeout) or (deadline is not None and time.monotonic() >= deadline):
            break
        if not args.quiet and time.monotonic() >= next_print:
            st = cap.status()
            print(f"  {st.rows_stored} stored, {st.trades_per_s:.0f} trades/s, queue {st.queue_depth}, "
                  f"journal {st.journal_rows}, reconnects {st.reconnects}, gaps {st.gaps_found}", file=sys.stderr, flush=True)
            next_print += 10
    final = cap.stop()
    print(final.summary(), flush=True)
    return 0
