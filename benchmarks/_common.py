"""Shared set-up for benchmarks: a scratch database and synthetic trades."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg

from cryptolab.model import Trade
from cryptolab.storage import db


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A fresh database with the schema, on CRYPTOLAB_DSN's server or a private embedded one."""
    own_home = None
    if not os.environ.get("CRYPTOLAB_DSN"):
        own_home = tempfile.mkdtemp(prefix="cryptolab-bench-")
        os.environ["CRYPTOLAB_HOME"] = own_home
    server = db.resolve_dsn()
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    with db.connect(dsn):
        pass
    try:
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if own_home:
            from cryptolab.storage import embedded

            embedded.stop()


def synthetic_trades(
    n: int, symbol: str = "BTCUSDT", start_us: int = 1_735_689_600_000_000, first_id: int = 1, seed: int = 1
) -> list[Trade]:
    """n trades with 8-decimal prices/quantities, ~2 ms apart, ids consecutive."""
    rng = random.Random(seed)
    out = []
    t = start_us
    price = 9_500_000_000_000  # 95000.00000000 in 1e-8 units
    for i in range(first_id, first_id + n):
        t += rng.randint(0, 4000)
        price += rng.randint(-300, 300) * 1_000_000
        qty = rng.randint(1, 5_000_000)
        out.append(
            Trade(
                "binance",
                symbol,
                i,
                Decimal(price).scaleb(-8),
                Decimal(qty).scaleb(-8),
                rng.random() < 0.5,
                t,
                t + 3000,
                t + 9000,
                "simulator",
            )
        )
    return out


TRADE_COLUMNS = (
    "exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, event_time, received_at, source"
)
_COPY_TYPES = [
    "text",
    "text",
    "int8",
    "numeric",
    "numeric",
    "bool",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "text",
]


def plain_copy(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> float:
    """Seconds for one plain binary COPY of `rows` into `trades` (no dedupe, no bars_1s) + commit."""
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(f"COPY trades ({TRADE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(_COPY_TYPES)
        for r in rows:
            cp.write_row(r)
    conn.commit()
    return time.perf_counter() - t0


def insert_per_row(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> float:
    """Seconds for the seed's way: one INSERT and one commit per row."""
    t0 = time.perf_counter()
    for r in rows:
        conn.execute(f"INSERT INTO trades ({TRADE_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", r)
        conn.commit()
    return time.perf_counter() - t0


def build_bars(conn: psycopg.Connection[Any]) -> None:
    """Fill `bars_1s` from every stored trade in one aggregate (after a bulk insert of
    synthetic trades that bypassed the writer), then vacuum both tables; prints the time."""
    t0 = time.perf_counter()
    conn.execute(
        """
        INSERT INTO bars_1s
        SELECT exchange, symbol, date_trunc('second', trade_time),
               (array_agg(price ORDER BY trade_id))[1], max(price), min(price),
               (array_agg(price ORDER BY trade_id DESC))[1], sum(qty), sum(price * qty),
               coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0),
               coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0),
               count(*), min(trade_id), max(trade_id), sum(qty * price * price)
        FROM trades GROUP BY 1, 2, 3
        """
    )
    conn.execute("VACUUM ANALYZE trades")
    conn.execute("VACUUM ANALYZE bars_1s")
    print(f"  bars_1s built, vacuumed in {time.perf_counter() - t0:.1f} s", flush=True)


def synthetic_diffs(
    n: int,
    symbol: str = "BTCUSDT",
    start_us: int = 1_735_689_600_000_000,
    first_id: int = 1,
    levels: int = 46,
    seed: int = 1,
) -> list[Any]:
    """n depth diffs shaped like BTCUSDT's @depth@100ms (~46 levels each, 8-decimal strings, most
    levels within 1 % of mid, a quarter removals), 100 ms apart, update ids contiguous."""
    from cryptolab.book import DepthDiff

    rng = random.Random(seed)
    out = []
    uid, t, mid = first_id, start_us, 9_500_000_000_000
    for _ in range(n):
        mid += rng.randint(-200, 200) * 1_000_000
        k = max(1, int(rng.expovariate(1 / levels)))
        nb = rng.randint(0, k)
        side: list[list[tuple[str, str]]] = [[], []]
        for j in range(k):
            off = int(rng.expovariate(1 / 40_000_000_000)) // 1_000_000 * 1_000_000 + 1_000_000
            p = mid - off if j < nb else mid + off
            q = 0 if rng.random() < 0.25 else rng.randint(1, 300_000_000)
            side[0 if j < nb else 1].append((f"{p / 1e8:.8f}", f"{q / 1e8:.8f}"))
        out.append(
            DepthDiff("binance", symbol, uid, uid + k - 1, t, side[0], side[1], t + 2000, None, "simulator")
        )
        uid += k
        t += 100_000
    return out
