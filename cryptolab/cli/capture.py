"""Capture live trades into PostgreSQL until N seconds pass or Ctrl-C / SIGTERM, then flush and summarize."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from functools import partial
from typing import Any

from ..capture.options import CaptureStatus
from ..config import mask_url, settings
from ..durations import parse_seconds
from ..errors import ConfigError, CryptolabError

MAX_TRADE_ID = 2**63 - 1
"""Trade ids are PostgreSQL bigints."""
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


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
    p.add_argument("action", nargs="?", choices=["run", "status"], default="run",
                   help="run (default): capture; status: list the capturers sharing this database")
    p.add_argument("--symbols", default=None, help="comma-separated, e.g. btcusdt,ethusdt (required to run)")
    p.add_argument(
        "--source",
        default="binance",
        help="binance (default), binance.us, binance-data, simulator, or a local exchange URL ws://127.0.0.1:PORT",
    )
    p.add_argument("--seconds", type=partial(parse_seconds, name="--seconds"), default=None,
                   help="stop after this long, > 0: seconds or a duration like 5m (default: until Ctrl-C)")
    p.add_argument("--dsn", default=None, help="libpq DSN (default: CRYPTOLAB_DSN, else the embedded server)")
    p.add_argument(
        "--from-id",
        type=_trade_id,
        default=None,
        help="start at this trade id for every symbol; older ids than the stream's are fetched from REST",
    )
    p.add_argument(
        "--exchange",
        default=None,
        help="store as this exchange name (default: binance; 'simulator' for synthetic markets)",
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="DATE",
        help="join history from this UTC day (dumps + REST) to the live stream, with no gap",
    )
    p.add_argument(
        "--dumps",
        default=None,
        metavar="URL",
        help="dump site for --since (default: data.binance.vision; a local exchange serves its own)",
    )
    p.add_argument(
        "--standby",
        action="store_true",
        help="warm standby: own nothing until a capturer of these symbols disappears, then take over",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="shard the symbols over N capture processes on this host (default 1)",
    )
    p.add_argument(
        "--market",
        default="spot",
        choices=["spot", "usdm"],
        help="spot (default), or usdm: Binance USD-M futures (--source binance, or a local exchange's fws=… "
        "URL); stored under binance-usdm",
    )
    p.add_argument(
        "--streams",
        default="trade",
        metavar="KINDS",
        help="what to capture, comma-separated: trade, depth (the book: diffs + REST snapshots), bookTicker "
        "(default trade); with --market usdm: aggTrade, markPrice, forceOrder, depth, bookTicker "
        "(default aggTrade,markPrice,forceOrder)",
    )
    p.add_argument(
        "--open-interest-interval",
        type=partial(parse_seconds, name="--open-interest-interval"),
        default=60.0,
        metavar="DURATION",
        help="--market usdm: time between REST polls of each symbol's open interest (default 60 s; 5m, 1h)",
    )
    p.add_argument(
        "--depth-speed",
        default="100ms",
        choices=["100ms", "1000ms"],
        help="depth diff stream speed (default 100ms)",
    )
    p.add_argument(
        "--depth-snapshot",
        type=int,
        default=1000,
        metavar="N",
        help="levels a side of each REST book snapshot, ≤ 5000 (default 1000, weight 50)",
    )
    p.add_argument(
        "--backpressure",
        action="store_true",
        help="while the database is up but behind, stop reading the sockets instead of spilling to the "
        "journal (faster at full speed; Binance may drop the slow connection: reconnect + REST heal it)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a CaptureOptions field, e.g. --option lease_seconds=3 or rotate_after=12h (repeatable)",
    )
    p.add_argument("--status-json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"--workers {n}: use 1 to 256 processes")
    return n


def stream_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--streams`, `--depth-speed`, `--depth-snapshot` as CaptureOptions overrides (checked)."""
    from ..capture.limits import option_problems
    from ..capture.options import CaptureOptions

    kinds = tuple(k for k in args.streams.replace(" ", "").split(",") if k)
    out = {"streams": kinds, "depth_speed": args.depth_speed, "depth_snapshot": args.depth_snapshot}
    if getattr(args, "market", "spot") == "usdm":
        from ..capture.usdm import usdm_kinds

        usdm_kinds(kinds)
        if not args.open_interest_interval > 0:
            raise ConfigError(
                f"--open-interest-interval {args.open_interest_interval:g}: use a number of seconds > 0"
            )
        out["open_interest_interval"] = args.open_interest_interval
    from dataclasses import replace

    problems = option_problems(replace(CaptureOptions(), **out))
    if problems:
        raise ConfigError(f"--streams/--depth-*: {'; '.join(problems)}")
    return out


_BOOLS = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}


def parse_options(items: list[str]) -> dict[str, Any]:
    """`["lease_seconds=3", "max_batch_rows=5000"]` → CaptureOptions overrides (typed as the fields)."""
    from dataclasses import fields

    from ..capture import CaptureOptions
    from ..capture.options import DURATION_FIELDS

    kinds = {f.name: f.type for f in fields(CaptureOptions)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise ConfigError(f"--option {item!r}: use KEY=VALUE with KEY one of {', '.join(sorted(kinds))}")
        kind = str(kinds[key])
        if key in DURATION_FIELDS:  # seconds, or a duration: lease_seconds=500ms, rotate_after=12h
            out[key] = parse_seconds(value, name=f"--option {key}", zero=True)
            continue
        if kind == "bool":  # backpressure=true
            flag = _BOOLS.get(value.strip().lower())
            if flag is None:
                raise ConfigError(f"--option {item!r}: {value!r} is not true or false")
            out[key] = flag
            continue
        try:
            out[key] = int(value) if kind.startswith("int") else float(value)
        except ValueError:
            raise ConfigError(f"--option {item!r}: {value!r} is not a number") from None
    from ..capture.limits import option_problems

    problems = option_problems(CaptureOptions(**out))
    if problems:
        raise ConfigError(f"--option: {'; '.join(problems)}")
    return out


def run(args: argparse.Namespace) -> int:
    from ..capture import Capture

    if args.action == "status":
        return _status(args)
    if args.symbols is None:
        raise ConfigError("--symbols is required to capture, e.g. --symbols btcusdt,ethusdt")
    symbols = parse_symbols(args.symbols)
    overrides = parse_options(args.option)
    overrides.update(stream_overrides(args))
    if args.backpressure:
        overrides["backpressure"] = True
    _check_since(args.since)  # refused here, before any worker or connection starts
    if args.workers > 1 and args.market == "usdm":
        raise ConfigError(
            "--workers with --market usdm is not supported yet: run one futures capture per process"
        )
    if args.workers > 1:
        from ..capture.workers import run_workers

        return run_workers(args, symbols)
    settings().writable_home()  # the journal lives there: a bad CRYPTOLAB_HOME is one line now, not later
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from_ids = {s: args.from_id for s in symbols} if args.from_id is not None else None
    source = mask_url(args.source)
    cap = Capture(
        symbols,
        source=args.source,
        dsn=args.dsn,
        from_ids=from_ids,
        exchange=args.exchange,
        standby=args.standby,
        since=args.since,
        dumps=args.dumps,
        market=args.market,
        **overrides,
    )
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
            print(
                f"  {st.rows_stored} stored, {st.trades_per_s:.0f} trades/s, queue {st.queue_depth}, "
                f"journal {st.journal_rows}, reconnects {st.reconnects}, gaps {st.gaps_found}",
                file=sys.stderr,
                flush=True,
            )
            next_print += 10
    final = cap.stop()
    print(final.summary(), flush=True)  # the status holds the source masked (no ws://user:token@ token)
    if args.status_json:
        write_status_json(final, args.status_json)
    return _exit_code(final)


def _check_since(since: str | None) -> None:
    """`--since` must be a day that has begun."""
    if since is None:
        return
    from datetime import datetime, timezone

    from ..capture.limits import since_problem
    from ..history.plan import parse_day

    why = since_problem(parse_day(since, "--since"), datetime.now(timezone.utc).date())
    if why:
        raise ConfigError(why)


def _exit_code(final: CaptureStatus) -> int:
    """1 when the capture failed or left a history join unfinished (said on stderr), else 0."""
    if final.failed:
        print(
            f"cryptolab capture: {' '.join(str(final.error or 'failed').split())}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    from ..capture.joins import UNFINISHED

    unfinished = [s for s, how in final.history.items() if how.startswith(UNFINISHED)]
    if unfinished:
        print(
            f"cryptolab capture: the history join of {', '.join(unfinished)} did not finish: what is missing "
            "is said above and recorded; the next capture of these symbols fetches it",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def write_status_json(status: object, path: str) -> None:
    """The final status as JSON (how `--workers` children report to their parent)."""
    import dataclasses
    import json

    assert dataclasses.is_dataclass(status) and not isinstance(status, type)
    with open(path, "w") as fh:
        json.dump(dataclasses.asdict(status), fh, default=str)


def _status(args: argparse.Namespace) -> int:
    """Print the `capture_status` view: capturers, hosts, symbols, heartbeat age, lag, rows."""
    from ..storage import db

    with db.connect(db.resolve_dsn(args.dsn)) as conn:
        rows = conn.execute(
            "SELECT host, pid, standby, symbols, heartbeat_age_s, lag_ms, rows_stored, state FROM "
            "capture_status WHERE state = 'running' OR heartbeat_age_s < 3600"
        ).fetchall()
    if not rows:
        print("no capturer has registered in this database in the last hour")
        return 0
    print(f"{'host':<20} {'pid':>7} {'role':<8} {'heartbeat':>9} {'lag':>9} {'rows':>12}  state    symbols")
    for host, pid, standby, syms, age, lag, stored, state in rows:
        role = "standby" if standby else "owner"
        lag_s = f"{lag:.0f} ms" if lag is not None else "-"
        print(
            f"{host[:20]:<20} {pid:>7} {role:<8} {float(age):>7.1f} s {lag_s:>9} {stored:>12,}  {state:<8} "
            f"{', '.join(syms) or '-'}"
        )
    return 0
