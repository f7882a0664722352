"""Does an archived day hold exactly what the database holds? Counts, ids and exact sums.

`table_stats` reads them from a Parquet table (the sums are computed from the decimal
columns' unscaled integers, exactly: numpy on 32-bit limbs, no float anywhere);
`db_stats` asks PostgreSQL for the same over the day's rows. `differences` names what
disagrees; an empty list is the only thing that lets a partition be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

import psycopg

from ...errors import DatabaseError, first_line

__all__ = ["DayStats", "table_stats", "db_stats", "differences", "day_bounds"]

_MASK32 = (1 << 32) - 1


@dataclass(frozen=True)
class DayStats:
    """What one (exchange, symbol, day) holds."""

    rows: int
    first_id: int | None
    last_id: int | None
    sum_qty: Decimal
    sum_quote: Decimal  # Σ price·qty
    sum_time_us: int  # Σ trade_time in epoch microseconds
    buyer_maker: int  # rows with is_buyer_maker

    def brief(self) -> str:
        return (f"{self.rows} rows, ids {self.first_id}…{self.last_id}, Σqty {self.sum_qty}, "
                f"Σ(price·qty) {self.sum_quote}")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[00:00, next 00:00) UTC of `day`."""
    t0 = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return t0, t0 + timedelta(days=1)


def _unscaled(arr: Any) -> Any | None:
    """The unscaled integers of a decimal128 array as uint64, or None if one is < 0 or ≥ 2^64."""
    import numpy as np

    if arr.null_count:
        return None
    buf = arr.buffers()[1]
    words = np.frombuffer(buf, dtype="<u8").reshape(-1, 2)[arr.offset: arr.offset + len(arr)]
    if len(words) and bool((words[:, 1] != 0).any()):
        return None
    return words[:, 0]


def _sum_u64(x: Any) -> int:
    """Exact sum of a uint64 array (as 32-bit halves, each summed without overflow)."""
    import numpy as np

    if len(x) == 0:
        return 0
    lo = int(np.sum(x & np.uint64(_MASK32), dtype=np.uint64))
    hi = int(np.sum(x >> np.uint64(32), dtype=np.uint64))
    return (hi << 32) + lo


def _sum_i128(arr: Any) -> int:
    """Exact sum of a decimal128 array's unscaled values (two's complement hi:lo words)."""
    import numpy as np

    words = np.frombuffer(arr.buffers()[1], dtype="<u8").reshape(-1, 2)[arr.offset: arr.offset + len(arr)]
    lo = _sum_u64(np.ascontiguousarray(words[:, 0]))
    hi = words[:, 1].view(np.int64)
    hi_lo = int(np.sum(hi & np.int64(_MASK32), dtype=np.int64))  # < n·2^32: no overflow below 2^31 rows
    hi_hi = int(np.sum(hi >> np.int64(32), dtype=np.int64))  # |x| < 2^31 each
    return (((hi_hi << 32) + hi_lo) << 64) + lo


def _sum_products(a: Any, b: Any) -> int:
    """Exact Σ a·b of two uint64 arrays."""
    import numpy as np

    m = np.uint64(_MASK32)
    s = np.uint64(32)
    a1, a0, b1, b0 = a >> s, a & m, b >> s, b & m
    return ((_sum_u64(a1 * b1) << 64) + ((_sum_u64(a1 * b0) + _sum_u64(a0 * b1)) << 32) + _sum_u64(a0 * b0))


def _decimal_sum(col: Any, other: Any = None) -> Decimal:
    """Σ col (or Σ col·other) of decimal128 chunked arrays, exactly."""
    import pyarrow as pa

    a = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    sa = a.type.scale
    if other is None:
        if not a.null_count:
            return Decimal(_sum_i128(a)).scaleb(-sa)
        with localcontext() as ctx:
            ctx.prec = 200
            return sum((v for v in a.to_pylist() if v is not None), Decimal(0))
    b = other.combine_chunks() if isinstance(other, pa.ChunkedArray) else other
    ua, ub = _unscaled(a), _unscaled(b)
    if ua is not None and ub is not None:
        return Decimal(_sum_products(ua, ub)).scaleb(-(sa + b.type.scale))
    with localcontext() as ctx:
        ctx.prec = 200
        return sum(
            (x * y for x, y in zip(a.to_pylist(), b.to_pylist()) if x is not None and y is not None),
            Decimal(0),
        )


def table_stats(table: Any) -> DayStats:
    """DayStats of an archived day's table (columns trade_id, trade_time, price, qty, is_buyer_maker).

    Raises ArchiveError if the stored quote_qty column disagrees with price·qty.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .errors import ArchiveError

    n = table.num_rows
    if n == 0:
        return DayStats(0, None, None, Decimal(0), Decimal(0), 0, 0)
    ids = table.column("trade_id")
    mm = pc.min_max(ids)
    sum_qty = _decimal_sum(table.column("qty"))
    sum_quote = _decimal_sum(table.column("price"), table.column("qty"))
    if "quote_qty" in table.column_names and _decimal_sum(table.column("quote_qty")) != sum_quote:
        raise ArchiveError(
            "the archived quote_qty column does not add up to Σ(price·qty): the file is damaged"
        )
    times = table.column("trade_time").combine_chunks().cast(pa.int64())
    import numpy as np

    tv = times.to_numpy(zero_copy_only=False)
    if bool((tv < 0).any()):
        sum_time = int(sum(int(v) for v in tv))
    else:
        sum_time = _sum_u64(tv.astype(np.uint64))
    bm = int(pc.sum(table.column("is_buyer_maker").cast(pa.int64())).as_py() or 0)
    return DayStats(n, int(mm["min"].as_py()), int(mm["max"].as_py()), sum_qty, sum_quote, sum_time, bm)


_DB_STATS = """
SELECT count(*), min(trade_id), max(trade_id), coalesce(sum(qty), 0), coalesce(sum(price * qty), 0),
       coalesce(sum((extract(epoch FROM trade_time) * 1000000)::bigint), 0),
       count(*) FILTER (WHERE is_buyer_maker)
FROM trades
WHERE exchange = %s AND symbol = %s AND trade_time >= %s AND trade_time < %s
"""


def db_stats(conn: psycopg.Connection, exchange: str, symbol: str, day: date) -> DayStats:
    """DayStats of the day's rows in the database (one aggregate over its partition)."""
    t0, t1 = day_bounds(day)
    try:
        row = conn.execute(_DB_STATS, (exchange, symbol, t0, t1)).fetchone()
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not read {exchange} {symbol} {day} from the database: {first_line(exc)}"
        ) from None
    assert row is not None
    return DayStats(int(row[0]), row[1], row[2], Decimal(row[3]), Decimal(row[4]), int(row[5]), int(row[6]))


def differences(archive: DayStats, database: DayStats) -> list[str]:
    """What differs between the archive's and the database's view of a day (empty: identical)."""
    out = []
    for name, label in (
        ("rows", "row count"),
        ("first_id", "first id"),
        ("last_id", "last id"),
        ("sum_qty", "Σqty"),
        ("sum_quote", "Σ(price·qty)"),
        ("sum_time_us", "Σtrade_time"),
        ("buyer_maker", "buyer-maker rows"),
    ):
        a, d = getattr(archive, name), getattr(database, name)
        if a != d:
            out.append(f"{label}: archive {a}, database {d}")
    return out
