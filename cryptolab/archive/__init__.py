"""cryptolab.archive: closed UTC days of raw trades as Parquet on a disk or S3, verified, one history.

* `archive(...)` / `cryptolab archive`: export closed days (zstd Parquet, hive-partitioned
  `trades/exchange=…/symbol=…/date=…`, sorted by trade id, exact narrow decimals, µs times),
  publish each only whole, and drop a partition only after the archived files are read back
  and match the database (count, first/last id, Σqty, Σ(price·qty)). See docs/archive.md.
* book days (book_diffs, quotes, book_snapshots, book_gaps) beside the trade days, same rules
  (archive/book.py); `read_book_diffs` / `read_quotes` / `read_book_snapshots` read them back.
* `read_archived_trades(...)` (also as `read_trades`, the name docs used first): the
  archived-and-dropped rows of a range into polars; `merge` joins them to database rows (used
  by `cryptolab.analysis.load_trades`).
* `attach(conn, …)` / `detach(conn)`: a session TEMP table `trades` holding database and
  archived rows of a range, so the SQL modules see one history (used by `cryptolab.analysis`).
* `open_store(url)`: the archive location (`CRYPTOLAB_ARCHIVE`, default `CRYPTOLAB_HOME/archive`).

Every file follows one schema, the contract (`layout.CONTRACT`, version `FORMAT_VERSION`); a
`manifest.json` at the root, written last, lists each verified day with its SHA-256 (manifest.py);
every read checks a file against it, and `cryptolab archive --verify` checks them all (check.py).
`cryptolab.storage.parquet.spark.register(spark)` lets Spark read an archive on S3 with no extra jar.
"""

from __future__ import annotations

from ..storage.parquet.book_read import read_book_diffs, read_book_snapshots, read_quotes
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import day_path
from ..storage.parquet.read import dropped_days, merge, read_archived_trades
from ..storage.parquet.session import attach, attach_for, detach
from ..storage.parquet.store import ArchiveStore, archive_url, open_store
from ..storage.parquet.verify import DayStats
from .job import Report, archive

read_trades = read_archived_trades
"""The first name of `read_archived_trades`, kept for code written against it."""

__all__ = [
    "archive", "Report", "ArchiveError", "open_store", "archive_url", "ArchiveStore", "day_path",
    "read_archived_trades", "read_trades", "merge", "dropped_days", "attach", "attach_for", "detach",
    "DayStats",
    "read_book_diffs", "read_quotes", "read_book_snapshots",
]
