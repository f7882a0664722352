"""What a capture is told (`CaptureOptions`), what it counts (`Counters`) and shows (`CaptureStatus`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CaptureOptions", "CaptureStatus", "Counters", "DURATION_FIELDS"]


@dataclass(frozen=True)
class CaptureOptions:
    """Tuning knobs; the defaults suit live Binance."""

    max_batch_rows: int = 20_000
    """Largest micro-batch one transaction takes."""
    commit_window: float = 0.2
    """Seconds the oldest queued row may wait for others before the rows are committed (group
    commit: a quiet market costs ~1/commit_window transactions a second; 0 = at once)."""
    commit_rows: int = 50
    """Queued rows that are committed at once, without waiting for `commit_window`."""
    max_queue_rows: int = 500_000
    """Rows held in memory before the writer spills to the journal."""
    backpressure: bool = False
    """While the database is up and more than `max_queue_rows // 4` rows wait in memory, stop
    reading the sockets (until `max_queue_rows // 8`) instead of spilling to the journal. Stores
    more at full speed, but the exchange may close a connection that stops reading (reconnect +
    REST backfill heal it); while the database is down, rows go to the journal as without it
    (docs/capture.md, "Backpressure")."""
    stall_timeout: float = 30.0
    """Seconds of silence after which a connection is presumed dead and replaced."""
    rotate_after: float = 23.5 * 3600
    """Connection age at which it is replaced (Binance closes at 24 h)."""
    gap_grace: float = 1.0
    """Seconds a missing id may take to arrive out of order before REST is asked."""
    backoff_base: float = 0.25
    backoff_max: float = 30.0
    max_streams_per_connection: int = 1024
    max_connects_per_5min: int = 300
    lookback_seconds: float = 6 * 3600
    """Resume after the last id stored within this window (older: start fresh)."""
    max_backfill_trades: int = 2_000_000
    """Largest gap backfilled from REST; beyond, the oldest part is recorded as lost."""
    heartbeat_seconds: float = 5.0
    dead_run_seconds: float = 60.0
    """A run whose heartbeat is older than this (or whose process is gone) is marked 'dead'."""
    db_retry_seconds: float = 1.0
    start_timeout: float = 15.0
    """Seconds `start()` may take (database, symbol check with retries); then it raises why."""
    max_frame_bytes: int = 16 * 1024 * 1024
    """Largest WebSocket message accepted; a larger one becomes a dead letter."""
    journal_max_bytes: int | None = None
    """Disk cap of the spill journal (default: CRYPTOLAB_JOURNAL_MAX_MB, else 2 GiB)."""
    lease_seconds: float = 5.0
    """A symbol's lease lasts this long after its last renewal: the bound on a takeover (plus a tick)."""
    lease_renew_seconds: float = 1.5
    """How often leases are renewed and the others looked at (with the data when there is data): 1.5 s
    keeps two renewals inside a 5 s lease and costs a quiet capture a third less than a renewal a second."""
    takeover_grace: float = 2.0
    """Seconds a symbol stays free before a capturer that is not its preferred owner takes it."""
    handoff_settle: float = 5.0
    """Seconds a (re)joined preferred capturer must be up before a symbol is handed back to it."""
    streams: tuple[str, ...] = ("trade",)
    """What to capture of each symbol: `trade`, `depth` (diffs, with REST snapshots: the book) and
    `bookTicker`; on USD-M futures `aggTrade`, `markPrice`, `forceOrder`, `depth`, `bookTicker` (the
    default `trade` means aggTrade, markPrice and forceOrder there)."""
    depth_speed: str = "100ms"
    """Diff stream speed: `100ms` (`@depth@100ms`) or `1000ms` (`@depth`)."""
    depth_snapshot: int = 1000
    """Levels a side of each REST snapshot (≤ 5000; weight 5 up to 100, 25 to 500, 50 to 1000, 250 above)."""
    open_interest_interval: float = 60.0
    """USD-M futures: seconds between two REST polls of each symbol's open interest."""
    simulator_rate: float = 50.0
    """Trades/s of the in-process simulator (source='simulator'), in total: split evenly between the
    symbols."""


DURATION_FIELDS = frozenset(
    {
        "commit_window",
        "stall_timeout",
        "rotate_after",
        "gap_grace",
        "backoff_base",
        "backoff_max",
        "lookback_seconds",
        "heartbeat_seconds",
        "dead_run_seconds",
        "db_retry_seconds",
        "start_timeout",
        "lease_seconds",
        "lease_renew_seconds",
        "takeover_grace",
        "handoff_settle",
        "open_interest_interval",
    }
)
"""The CaptureOptions fields that are a time in seconds: `--option` takes them as durations too
(`cryptolab.durations`: `lease_seconds=500ms`, `rotate_after=12h`; a plain number is seconds)."""


@dataclass
class Counters:
    """What a capture has done so far. Each field is written by one thread only."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped_duplicates: int = 0
    dead_letters: int = 0
    reconnects: int = 0
    rotations: int = 0
    stalls: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    gaps_lost: int = 0
    backfilled: int = 0
    spilled: int = 0
    read_pauses: int = 0
    """Times the stream connections stopped reading because the writer was behind (`backpressure`)."""
    journal_bad_records: int = 0
    rejected_rows: int = 0
    archived: int = 0
    """Trades not stored because their ids live in the archive (days archived and dropped)."""
    commits: int = 0
    """Transactions that stored trades (group commit: few per second on a quiet market)."""
    appended: int = 0
    """Of those, batches stored by the append fast path (the rest took the merge)."""
    copied: int = 0
    """Of the appended, large batches stored by binary COPY (`storage/trade_copy.py`)."""
    worker_restarts: int = 0
    """Stream workers that raised and were started again (`capture/supervise.py`): a bug to report."""
    book_diffs: int = 0
    """Depth diffs stored (new rows)."""
    level_updates: int = 0
    """Price levels those diffs carried."""
    quotes: int = 0
    """bookTicker quotes stored (new rows)."""
    snapshots: int = 0
    """REST depth snapshots stored."""
    stored_book_duplicates: int = 0
    """Diffs and quotes offered that were already stored."""
    book_gaps: int = 0
    """Book losses seen (a missed diff, a crossed book, a restart's hole): each recorded in `book_gaps`."""
    book_resyncs: int = 0
    """Times a book was started again from a snapshot (every gap, reconnect and rotation)."""
    agg_trades: int = 0
    """USD-M futures: aggregate trades stored (new rows)."""
    mark_prices: int = 0
    """USD-M futures: mark price / funding updates stored (new rows)."""
    liquidations: int = 0
    """USD-M futures: liquidations stored (new rows)."""
    open_interest: int = 0
    """USD-M futures: open interest readings stored (new rows)."""

    def __getitem__(self, name: str) -> int:
        """`counters["stalls"]` reads like `counters.stalls` (the older, string-keyed spelling)."""
        value: int = getattr(self, name)
        return value


@dataclass(frozen=True)
class CaptureStatus:
    """A snapshot of a capture (see `Capture.status()`)."""

    running: bool
    symbols: tuple[str, ...]
    source: str
    started_at: datetime | None
    run_id: int | None
    rows_stored: int
    duplicates: int
    messages: int
    trades_per_s: float
    last_trade_time: dict[str, datetime]
    queue_depth: int
    journal_rows: int
    lag_ms: float | None
    reconnects: int
    rotations: int
    gaps_found: int
    gaps_filled: int
    gaps_lost: int
    backfilled: int
    dead_letters: int
    database_up: bool
    skipped_symbols: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    failed: bool = False
    """True when the capture stopped on an error it could not recover from (the CLI exits 1)."""
    exchange: str = ""
    database: dict[str, Any] = field(default_factory=dict)
    """The writer's database link: state ('up', 'down'), since when, the last error."""
    journal_bad_records: int = 0
    standby: bool = False
    history: dict[str, str] = field(default_factory=dict)
    """Per symbol, how the history join of `since` stands."""
    member_id: str | None = None
    commits: int = 0
    """Transactions that stored trades so far (see `CaptureOptions.commit_window`)."""
    appended: int = 0
    """Of those, batches that took the append fast path (ids above what is stored)."""
    copied: int = 0
    """Of the appended, large batches (≥ 1,000 trades) stored by binary COPY."""
    worker_restarts: int = 0
    """Stream workers that raised (a bug) and were started again; each is in `error` and the log."""
    book: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per symbol followed for depth: synced, the book's update id, best bid/ask, re-syncs, snapshot error."""
    book_gaps: tuple[Any, ...] = ()
    """The book gaps this capture saw (`BookGap`: symbol, update ids, times, the snapshot that healed it)."""
    book_diffs: int = 0
    level_updates: int = 0
    quotes: int = 0
    snapshots: int = 0
    futures: dict[str, int] = field(default_factory=dict)
    """USD-M futures rows stored: agg_trades, mark_prices, liquidations, open_interest (empty on spot)."""
    read_pauses: int = 0
    """Times reading stopped because the writer was behind (`CaptureOptions.backpressure`)."""

    def summary(self) -> str:
        """Human summary, printed by the CLI at the end of a capture."""
        lines = [
            f"capture {'running' if self.running else 'stopped'}: {', '.join(self.symbols) or '-'} from "
            f"{self.source}"
            + (f" as exchange {self.exchange!r}" if self.exchange else "")
            + (f" (run {self.run_id})" if self.run_id else ""),
            f"  stored {self.rows_stored:,} trades ({self.backfilled:,} by backfill), {self.duplicates:,} "
            f"duplicates dropped, {self.dead_letters:,} dead letters",
            f"  reconnects {self.reconnects}, rotations {self.rotations}, gaps found {self.gaps_found},"
            f" filled {self.gaps_filled}, lost {self.gaps_lost}",
            f"  queue {self.queue_depth:,}, journal {self.journal_rows:,}, database "
            f"{'up' if self.database_up else 'down'}, lag "
            + (f"{self.lag_ms:.1f} ms" if self.lag_ms is not None else "-"),
        ]
        if self.read_pauses:
            lines.append(
                f"  backpressure: reading paused {self.read_pauses:,} times while the writer caught up"
            )
        if self.worker_restarts:
            lines.append(
                f"  stream workers started again after an unexpected error: {self.worker_restarts} "
                f"(last: {self.error}); please report it with the log"
            )
        if self.book or self.quotes:
            healed = sum(1 for g in self.book_gaps if g.snapshot_id is not None)
            lines.append(
                f"  book: {self.book_diffs:,} diffs ({self.level_updates:,} level updates), {self.quotes:,} "
                f"quotes, {self.snapshots:,} snapshots; book gaps {len(self.book_gaps)} seen, {healed} healed"
            )
            for g in self.book_gaps:
                what = {
                    "gap": "diffs missed",
                    "crossed": "crossed book",
                    "restart": "diffs published while not capturing",
                }.get(g.reason, g.reason)
                fix = f"healed by snapshot {g.snapshot_id}" if g.snapshot_id is not None else "not healed yet"
                lines.append(f"    {g.symbol}: {what} after update id {g.after_id}, {fix}")
        if self.futures:
            f = self.futures
            lines.append(
                f"  futures: {f.get('agg_trades', 0):,} aggregate trades, {f.get('mark_prices', 0):,} mark "
                f"prices, {f.get('liquidations', 0):,} liquidations (Binance sends at most one per symbol "
                f"per second), {f.get('open_interest', 0):,} open interest readings"
            )
        if self.journal_bad_records:
            lines.append(
                f"  {self.journal_bad_records} journal records set aside as damaged (see the journal's "
                "quarantine)"
            )
        for sym, how in self.history.items():
            lines.append(f"  {sym}: {how}")
        for sym, why in self.skipped_symbols.items():
            lines.append(f"  {sym}: {why}")
        if self.error:
            lines.append(f"  {'FAILED' if self.failed else 'error'}: {self.error}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the summary, not one long line
        p.text(self.summary())
