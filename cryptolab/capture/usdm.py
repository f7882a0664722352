"""Capturing Binance USD-M futures: what differs from spot, kept apart from the spot hot path.

A capture with `market="usdm"` streams, per symbol, `@aggTrade` (futures publish no raw trade
stream), `@markPrice@1s`, `@forceOrder` on the routed `/market` URL and `@depth@100ms` /
`@bookTicker` on `/public` (Binance's 2026 routing: one connection per route). Aggregate trades
are sequenced by their aggregate id (`a`, consecutive per symbol) with the spot `Sequencer`;
what is missing is asked from `/fapi/v1/aggTrades?fromId=` (`UsdmBackfiller`). The trade ids
inside aggregates (`f`..`l`) may skip between two aggregates — insurance-fund and ADL trades are
not aggregated — so they are never used to find loss. Mark prices and liquidations are stored
as they come (a repeat is stored once: their keys), open interest is polled from REST every
`open_interest_interval` seconds. Every row goes to the same sink as trades and the book (one
transaction per turn; the journal while the database is away).

Pure parts: `usdm_kinds` (the capture's stream kinds on futures), `route_streams` (names by
route), `contract_problems` (a spot-only symbol, a delisted contract: one line each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import psycopg

from ..binance import ws as wsclient
from ..binance.frames import decode_frame
from ..binance.usdm import decode_usdm_fast
from ..binance.usdm_rest import UsdmRestClient, agg_trade_from_rest, open_interest_from_rest
from ..binance.usdm_streams import route_of
from ..book.model import DepthDiff, Quote
from ..errors import ConfigError, CryptolabError, SourceError
from ..markets import AggTrade, Liquidation, MarkPrice
from ..model import DeadLetter, now_us
from .backfill import Backfiller
from .endpoints import KNOWN_SOURCES, Endpoint, resolve_source
from .options import Counters
from .sink import Sink

__all__ = [
    "USDM_KINDS",
    "usdm_kinds",
    "route_streams",
    "usdm_endpoint",
    "contract_problems",
    "agg_resume_points",
    "usdm_receiver",
    "UsdmBackfiller",
    "poll_open_interest",
]

log = logging.getLogger("cryptolab.capture")

_monotonic = time.monotonic
_time_ns = time.time_ns

USDM_KINDS = ("aggTrade", "markPrice", "forceOrder", "depth", "bookTicker")
DEFAULT_KINDS = ("aggTrade", "markPrice", "forceOrder")
PAGE = 1000


def usdm_kinds(streams: Sequence[str]) -> tuple[str, ...]:
    """The capture's `streams` on futures (the spot default `trade` means aggTrade, markPrice and
    forceOrder); one clear line for a kind futures do not have."""
    kinds = tuple(streams)
    if kinds == ("trade",):
        return DEFAULT_KINDS
    if "trade" in kinds:
        raise ConfigError(
            "USD-M futures publish no raw trade stream: capture `aggTrade` (the aggregate trades) "
            "with --market usdm, e.g. --streams aggTrade,markPrice,forceOrder"
        )
    bad = [k for k in kinds if k not in USDM_KINDS]
    if bad:
        raise ConfigError(
            f"streams {', '.join(bad)} are not USD-M futures streams: use {', '.join(USDM_KINDS)}"
        )
    return kinds


def spot_kinds_problem(streams: Sequence[str]) -> str | None:
    """A futures-only stream asked on spot: one line (pure)."""
    fut = [k for k in streams if k in ("aggTrade", "markPrice", "forceOrder")]
    if fut:
        return (
            f"{', '.join(fut)} {'is a' if len(fut) == 1 else 'are'} USD-M futures stream"
            f"{'' if len(fut) == 1 else 's'} here: add --market usdm (spot captures trade, depth, bookTicker)"
        )
    return None


def route_streams(
    symbols: Iterable[str], kinds: Sequence[str], depth_speed: str = "100ms"
) -> dict[str, list[str]]:
    """Stream names by route: `{"market": ["btcusdt@aggTrade", …], "public": ["btcusdt@depth@100ms", …]}`."""
    wire = {
        "aggTrade": "aggTrade",
        "markPrice": "markPrice@1s",
        "forceOrder": "forceOrder",
        "bookTicker": "bookTicker",
        "depth": "depth@100ms" if depth_speed == "100ms" else "depth",
    }
    out: dict[str, list[str]] = {}
    for sym in symbols:
        for k in kinds:
            name = f"{sym.lower()}@{wire[k]}"
            out.setdefault(route_of(name), []).append(name)
    return out


def usdm_endpoint(source: str) -> Endpoint:
    """Where futures streams and REST live: `binance` → the settings' fstream/fapi roots (Binance's by
    default); a local exchange's futures URL (its `fws=…`) → that port. Futures times are ms."""
    if source == "binance":
        from ..config import settings

        cfg = settings()
        return Endpoint("binance-usdm", cfg.fstream_url.rstrip("/"), cfg.fapi_url.rstrip("/"), micro=False)
    if source in KNOWN_SOURCES or source == "simulator":
        raise SourceError(
            f"--market usdm captures from binance (USD-M futures) or a local exchange's futures URL "
            f"(`cryptolab exchange --markets spot,usdm` prints it as fws=…), not {source!r}"
        )
    ep = resolve_source(source)
    return Endpoint(ep.name, ep.ws, ep.rest, micro=False)


def contract_problems(info: Mapping[str, Any], symbols: Sequence[str], where: str) -> str | None:
    """Why these symbols cannot be captured on futures (pure): not listed (a spot-only symbol?), or
    listed but not trading (a delisted or settling contract). None when all are fine."""
    listed = {str(s.get("symbol")): s for s in info.get("symbols", []) if isinstance(s, dict)}
    unknown = [s for s in symbols if s not in listed]
    if unknown:
        return (
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a USD-M futures contract on "
            f"{where}: a spot-only symbol? capture it without --market usdm (or check the spelling, e.g. "
            "BTCUSDT)"
        )
    dead = [
        f"{s} ({listed[s].get('status')})" for s in symbols if listed[s].get("status", "TRADING") != "TRADING"
    ]
    if dead:
        return (
            f"{', '.join(dead)}: the contract is not trading (delisted or settling) on {where}: it has no "
            "live streams — take its past with `cryptolab history --market usdm`"
        )
    return None


def agg_resume_points(
    conn: psycopg.Connection, exchange: str, symbols: Sequence[str], lookback_seconds: float
) -> dict[str, int]:
    """The last aggregate id stored per symbol within the look-back window (resume after it)."""
    out: dict[str, int] = {}
    with conn.transaction():  # never leave the writer's connection inside a transaction
        for sym in symbols:
            row = conn.execute(
                "SELECT max(agg_id) FROM agg_trades WHERE exchange = %s AND symbol = %s "
                "AND trade_time > now() - make_interval(secs => %s)",
                (exchange, sym, float(lookback_seconds)),
            ).fetchone()
            if row and row[0] is not None:
                out[sym] = int(row[0])
    return out


def agg_open_ranges(
    conn: psycopg.Connection, exchange: str, symbols: Sequence[str]
) -> dict[str, list[tuple[int, int]]]:
    """Aggregate id ranges a previous run recorded as `open` (a history join stopped early), taken
    out of `capture_gaps` to be fetched again (as spot's `runs.resume_points` does)."""
    out: dict[str, list[tuple[int, int]]] = {}
    with conn.transaction():
        for sym in symbols:
            rows = conn.execute(
                "DELETE FROM capture_gaps WHERE exchange = %s AND symbol = %s AND status = 'open' "
                "RETURNING first_missing_id, last_missing_id",
                (exchange, sym),
            ).fetchall()
            if rows:
                out[sym] = sorted((int(a), int(b)) for a, b in rows)
    return out


# ---------------------------------------------------------------------- the hot path
def usdm_receiver(worker: Any, conn: Any) -> Callable[[wsclient.Message], None]:
    """`on_message` of a futures connection: book frames to the books, aggregates sequenced by
    their id, mark prices and liquidations queued; all to the sink's futures queue."""
    counters, seqs, sink = worker.counters, worker.seqs, worker.sink
    exchange, source = worker.exchange, worker.stream_source
    queue, wake, first = sink.futures, sink.wake, conn.first
    append, enough = queue.append, worker.options.commit_rows
    books = worker.books
    wanted = frozenset(worker.symbols)

    def on_message(raw: wsclient.Message) -> None:
        now = _monotonic()
        conn.last_msg = now
        received = _time_ns() // 1000
        counters.messages += 1
        if books is not None and (b"@depth" in raw[11:60] or b"@bookTicker" in raw[11:60]):
            out: Any = decode_frame(raw, exchange=exchange, source=source, received_at_us=received)
            if type(out) is DepthDiff:
                books.on_diff(out)
            elif type(out) is Quote:
                books.on_quote(out)
            else:
                worker._other(out, raw, received, conn)
        else:
            out = decode_usdm_fast(raw, exchange=exchange, source=source, received_at_us=received)
            t = type(out)
            if t is AggTrade:
                seq = seqs.get(out.symbol)
                if seq is None:
                    sink.put_dead(
                        DeadLetter(
                            f"aggTrade for a symbol not subscribed: {out.symbol}",
                            bytes(raw),
                            "live",
                            exchange,
                            out.symbol,
                            received,
                        )
                    )
                elif seq.see(out.agg_id, now):
                    append(out)
                    seq.last_trade_us = out.trade_time_us
                    n = len(queue)
                    if (n == 1 or n >= enough) and not wake.is_set():
                        wake.set()
                else:
                    counters.dropped_duplicates += 1
            elif t is MarkPrice or t is Liquidation:
                if out.symbol in wanted:
                    append(out)
                    n = len(queue)
                    if (n == 1 or n >= enough) and not wake.is_set():
                        wake.set()
                else:
                    sink.put_dead(
                        DeadLetter(
                            f"{'markPrice' if t is MarkPrice else 'forceOrder'} for a symbol not "
                            f"subscribed: {out.symbol}",
                            bytes(raw),
                            "live",
                            exchange,
                            out.symbol,
                            received,
                        )
                    )
            else:
                worker._other(out, raw, received, conn)
        if not first.is_set():
            first.set()

    return on_message


# ---------------------------------------------------------------------- backfill by aggregate id
def stored_agg_runs(dsn: str, exchange: str, symbol: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The runs of consecutive aggregate ids of [lo, hi] stored for the symbol."""
    from ..storage import db

    with db.connect(dsn, autocommit=True, ensure_schema=False) as conn:
        rows = conn.execute(
            "SELECT min(agg_id), max(agg_id) FROM (SELECT agg_id, agg_id - row_number() OVER (ORDER BY "
            "agg_id) AS run FROM agg_trades WHERE exchange = %s AND symbol = %s AND agg_id BETWEEN %s AND "
            "%s) t GROUP BY run ORDER BY 1",
            (exchange, symbol, lo, hi),
        ).fetchall()
    return [(int(a), int(b)) for a, b in rows]


class UsdmBackfiller(Backfiller):
    """Fills missing aggregate ids from `/fapi/v1/aggTrades?fromId=` (the spot policy, paging and records)."""

    stored_runs = staticmethod(stored_agg_runs)
    source = "REST /fapi/v1/aggTrades"

    async def fetch_page(self, symbol: str, from_id: int, limit: int) -> list[Any]:
        return list(await self.rest.agg_trades(symbol, from_id=from_id, limit=limit))

    def parse(self, item: Any, symbol: str, received: int) -> tuple[int, Any]:
        a = agg_trade_from_rest(item, symbol, exchange=self.exchange)
        return a.agg_id, a

    def queue(self, row: Any) -> None:
        self.sink.futures.append(row)


async def latest_agg_id(rest: UsdmRestClient, symbol: str) -> int | None:
    """The exchange's latest aggregate id of a symbol (REST), or None when it has none yet."""
    items = await rest.agg_trades(symbol, limit=1)
    return int(items[-1]["a"]) if items else None


# ---------------------------------------------------------------------- open interest
async def poll_open_interest(
    rest: UsdmRestClient,
    symbols: Callable[[], Sequence[str]],
    sink: Sink,
    counters: Counters,
    exchange: str,
    interval: float,
    report_error: Callable[[str], None],
) -> None:
    """Every `interval` seconds, each symbol's open interest from REST into the sink (until cancelled)."""
    while True:
        for sym in symbols():
            try:
                body = await rest.open_interest(sym)
                row = open_interest_from_rest(body, exchange=exchange, source="live")
            except ValueError as exc:
                sink.put_dead(
                    DeadLetter(f"openInterest: {exc}", orjson.dumps(body), "live", exchange, sym, now_us())
                )
                continue
            except (CryptolabError, asyncio.TimeoutError, OSError) as exc:
                report_error(f"{sym}: open interest poll failed: {exc} (retried at the next interval)")
                continue
            sink.futures.append(row)
            sink.wake.set()
        await asyncio.sleep(interval)
