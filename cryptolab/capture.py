"""Zero-loss capture of Binance trades into PostgreSQL, from a background thread.

    cap = Capture(["btcusdt", "ethusdt"], source="binance")
    cap.start()          # returns at once; a daemon thread does the work
    cap.status()         # cheap, thread-safe snapshot
    cap.stop()           # flushes memory and journal, then returns

How no trade is lost:

* **Sequencing.** Binance trade ids are consecutive per symbol. Each symbol's last
  id is tracked; a jump opens a *missing range*. Frames that arrive late (out of
  order) carve their id out of it; what is still missing after a short grace is
  fetched from REST `historicalTrades?fromId=` and stored with source `backfill`.
  A range REST cannot give back is recorded in `capture_gaps` as `unrecoverable`,
  never dropped silently. A long pause with consecutive ids is a halt, not a gap.
* **Reconnects.** Every connection has a watchdog (silence → reconnect), reconnects
  back off exponentially with jitter within Binance's 300 connects / 5 min, and a
  connection is rotated before its 24 h limit (or on `serverShutdown`) by opening the
  next one first and closing the old one only once the new one delivers.
  After a reconnect the latest trade id is asked from REST, so a gap is seen even
  when the market then goes quiet.
* **Resume.** On start, each symbol resumes after the last id stored (within a
  look-back) and re-opens the gaps a previous run left open.
* **Writing.** A writer thread stores micro-batches through `TradeWriter` (one
  transaction each, idempotent). It takes whatever has arrived as soon as it is free,
  so batches grow with load and latency stays low when load is low. When the
  database is down or too slow, batches go to an append-only journal under
  `CRYPTOLAB_HOME` and are replayed in order when it is back. `stop()` flushes both.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from . import db
from .config import settings
from .errors import CryptolabError, DatabaseError, SourceError
from .journal import Journal, Segment
from .model import DeadLetter, Trade, now_us, us_to_datetime
from .wire import Control, decode, trade_from_rest
from .writer import TradeWriter

__all__ = ["Capture", "CaptureOptions", "CaptureStatus", "Endpoint", "resolve_source"]

log = logging.getLogger("cryptolab.capture")


@dataclass(frozen=True)
class Endpoint:
    """Where a source's WebSocket streams and REST API live."""

    name: str
    ws: str
    rest: str

    @property
    def local(self) -> bool:
        host = urlsplit(self.ws).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")


KNOWN_SOURCES = {
    "binance": Endpoint("binance", "wss://stream.binance.com:9443", "https://api.binance.com"),
    "binance.us": Endpoint("binance.us", "wss://stream.binance.us:9443", "https://api.binance.us"),
    "binance-data": Endpoint("binance-data", "wss://data-stream.binance.vision", "https://data-api.binance.vision"),
}


def resolve_source(source: str) -> Endpoint:
    """A source name (`binance`, `binance.us`, `binance-data`) or a local exchange URL → Endpoint."""
    if source in KNOWN_SOURCES:
        return KNOWN_SOURCES[source]
    parts = urlsplit(source)
    if parts.scheme in ("ws", "wss", "http", "https") and parts.netloc:
        secure = parts.scheme in ("wss", "https")
        return Endpoint(source, f"{'wss' if secure else 'ws'}://{parts.netloc}", f"{'https' if secure else 'http'}://{parts.netloc}")
    raise SourceError(
        f"unknown source {source!r}: use binance, binance.us, binance-data, simulator, "
        "or the URL of a local exchange (ws://127.0.0.1:PORT)"
    )


@dataclass(frozen=True)
class CaptureOptions:
    """Tuning knobs; the defaults suit live Binance."""

    max_batch_rows: int = 20_000
    """Largest micro-batch one transaction takes."""
    max_queue_rows: int = 500_000
    """Rows held in memory before the writer spills to the journal."""
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
    db_retry_seconds: float = 1.0
    start_timeout: float = 15.0
    simulator_rate: float = 50.0
    """Trades/s per symbol of the in-process simulator (source='simulator')."""


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

    def summary(self) -> str:
        """Human summary, printed by the CLI at the end of a capture."""
        lines = [
            f"capture {'running' if self.running else 'stopped'}: {', '.join(self.symbols) or '-'} from {self.source}"
            + (f" (run {self.run_id})" if self.run_id else ""),
            f"  stored {self.rows_stored} trades ({self.backfilled} by backfill), {self.duplicates} duplicates dropped,"
            f" {self.dead_letters} dead letters",
            f"  reconnects {self.reconnects}, rotations {self.rotations}, gaps found {self.gaps_found},"
            f" filled {self.gaps_filled}, lost {self.gaps_lost}",
            f"  queue {self.queue_depth}, journal {self.journal_rows}, lag "
            + (f"{self.lag_ms:.1f} ms" if self.lag_ms is not None else "-"),
        ]
        for sym, why in self.skipped_symbols.items():
            lines.append(f"  {sym}: {why}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


# ---------------------------------------------------------------- per-symbol sequencing


class _Sequencer:
    """Last id seen and the ranges still missing, for one symbol (loop thread only)."""

    __slots__ = ("symbol", "last_id", "missing", "last_trade_us")

    def __init__(self, symbol: str, last_id: int | None) -> None:
        self.symbol = symbol
        self.last_id = last_id
        self.missing: list[list[float]] = []  # [lo, hi, detected_monotonic, attempts]
        self.last_trade_us: int | None = None

    def see(self, tid: int, now: float) -> bool:
        """Account for id `tid`; return False if it is a duplicate to drop."""
        last = self.last_id
        if last is None or tid == last + 1:
            self.last_id = tid
            return True
        if tid > last:
            self.missing.append([last + 1, tid - 1, now, 0])
            self.last_id = tid
            return True
        return self.carve(tid)

    def carve_range(self, lo: int, hi: int) -> None:
        """Remove every id in [lo, hi] from the missing ranges."""
        kept: list[list[float]] = []
        for rng in self.missing:
            a, b = int(rng[0]), int(rng[1])
            if b < lo or a > hi:
                kept.append(rng)
                continue
            if a < lo:
                kept.append([a, lo - 1, rng[2], rng[3]])
            if b > hi:
                kept.append([hi + 1, b, rng[2], rng[3]])
        self.missing = kept

    def carve(self, tid: int) -> bool:
        """Remove `tid` from the missing ranges; False if it was not missing."""
        for i, rng in enumerate(self.missing):
            lo, hi = int(rng[0]), int(rng[1])
            if lo <= tid <= hi:
                if lo == hi:
                    del self.missing[i]
                elif tid == lo:
                    rng[0] = lo + 1
                elif tid == hi:
                    rng[1] = hi - 1
                else:
                    self.missing.insert(i + 1, [tid + 1, hi, rng[2], rng[3]])
                    rng[1] = tid - 1
                return True
        return False


class _Backoff:
    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.n = base, cap, 0

    def next(self) -> float:
        """Full-jitter exponential backoff."""
        delay = random.uniform(0, min(self.cap, self.base * (2 ** self.n)))
        self.n = min(self.n + 1, 20)
        return max(delay, self.base / 4)

    def reset(self) -> None:
        self.n = 0


class _ConnectBudget:
    """At most `n` connects per 300 s (Binance's limit per IP)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.times: collections.deque[float] = collections.deque()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self.times and now - self.times[0] > 300:
                self.times.popleft()
            if len(self.times) < self.n:
                self.times.append(now)
                return
            await asyncio.sleep(300 - (now - self.times[0]) + 0.01)


@dataclass
class _Conn:
    ws: Any  # wsclient.WSConnection once open
    opened: float
    first: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    last_msg: float = field(default_factory=time.monotonic)


@dataclass
class _GapEvent:
    symbol: str
    lo: int
    hi: int
    status: str  # 'filled' | 'unrecoverable' | 'open'
    reason: str


# ---------------------------------------------------------------- symbol locks


def _db_key(dsn: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        ident = f"{info.get('host', '')}|{info.get('port', '')}|{info.get('dbname', '')}"
    except psycopg.ProgrammingError:
        ident = dsn
    return hashlib.sha1(ident.encode()).hexdigest()[:12]


class _SymbolLocks:
    """One capture per (database, exchange, symbol) on this machine: fcntl locks that die with the process."""

    def __init__(self, home: Path, dbkey: str) -> None:
        self.dir = home / "locks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dbkey = dbkey
        self.held: dict[str, Any] = {}

    def try_take(self, exchange: str, symbol: str, who: str) -> str | None:
        """Take the lock; None on success, else who holds it."""
        path = self.dir / f"{self.dbkey}-{exchange}-{symbol}.lock"
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another capture"
            fh.close()
            return holder
        fh.seek(0)
        fh.truncate()
        fh.write(who)
        fh.flush()
        self.held[symbol] = fh
        return None

    def release(self) -> None:
        for fh in self.held.values():
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                fh.close()
        self.held.clear()


# ---------------------------------------------------------------- the capture


class Capture:
    """Capture trades for `symbols` from `source` into the database at `dsn`.

    `source`: `binance` (default), `binance.us`, `binance-data`
    (data-stream.binance.vision), `simulator` (an in-process local exchange whose trades
    are stored as exchange 'simulator', source 'simulator', apart from real data), or the
    URL of a local exchange (`ws://127.0.0.1:PORT`). `dsn`: any libpq DSN; default
    `CRYPTOLAB_DSN`, else the embedded server. `from_ids` (optional, per symbol): the
    first trade id wanted; anything older than what the stream delivers is fetched from
    REST — use it to capture from a known point instead of from "now".
    """

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] | str,
        source: str = "binance",
        dsn: str | None = None,
        *,
        options: CaptureOptions | None = None,
        exchange: str | None = None,
        from_ids: dict[str, int] | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(symbols, str):
            symbols = [s for s in symbols.replace(" ", "").split(",") if s]
        syms = tuple(dict.fromkeys(s.upper() for s in symbols))
        if not syms:
            raise SourceError("no symbols given: pass e.g. symbols=['btcusdt']")
        self.symbols = syms
        self.source = source
        self.exchange = exchange or ("simulator" if source == "simulator" else "binance")
        """Value of `trades.exchange` for what this capture stores ('simulator' for the simulator)."""
        self._stream_source = "simulator" if source == "simulator" else "live"
        self.options = replace(options or CaptureOptions(), **overrides)
        self._dsn_arg = dsn
        self.from_ids = {k.upper(): int(v) for k, v in (from_ids or {}).items()}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._writer_thread: threading.Thread | None = None
        self._reset_state()

    # ---- state shared between threads (guarded by self._lock where noted)

    def _reset_state(self) -> None:
        self._trades: collections.deque[Trade] = collections.deque()
        self._dead: collections.deque[DeadLetter] = collections.deque()
        self._gap_events: collections.deque[_GapEvent] = collections.deque()
        self._wake = threading.Event()
        self._stop_reading = threading.Event()
        self._reading_done = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._seq: dict[str, _Sequencer] = {}
        self._active: tuple[str, ...] = ()
        self._skipped: dict[str, str] = {}
        self._locks: _SymbolLocks | None = None
        self._journal: Journal | None = None
        self._endpoint: Endpoint | None = None
        self._local_exchange: Any = None
        self._dsn: str | None = None
        self._run_id: int | None = None
        self._started_at: datetime | None = None
        self._error: str | None = None
        self._db_up = False
        self._last_lag_ms: float | None = None
        self._rate_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        self.counters: collections.Counter[str] = collections.Counter()
        self._last_trade_time: dict[str, int] = {}
        self._writer_lat_us: collections.deque[int] = collections.deque(maxlen=100_000)

    # ---- public API

    def start(self) -> Capture:
        """Start capturing in a daemon thread and return once it runs (or raise why not).

        Calling it again on a running capture does nothing. Symbols that another
        capture already records into the same database are skipped (see
        `status().skipped_symbols`), so nothing is captured twice.
        """
        if self._thread is not None and self._thread.is_alive():
            return self
        self._reset_state()
        name = f"cryptolab-capture[{','.join(self.symbols)[:60]}]"
        self._thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.options.start_timeout):
            self._error = "capture did not become ready in time"
        if self._start_error is not None:
            err = self._start_error
            self._thread.join(5)
            self._thread = None
            if isinstance(err, CryptolabError):
                raise err
            raise SourceError(f"capture could not start: {err}") from err
        return self

    def stop(self, timeout: float = 30.0) -> CaptureStatus:
        """Stop reading, store everything received (memory and journal), return the final status.

        If the database is down, what could not be stored stays in the journal and
        is replayed by the next capture on this database; the status says how much.
        """
        thread = self._thread
        if thread is None:
            return self.status()
        self._stop_reading.set()
        loop = self._loop
        if loop is not None and self._stop_async is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stop_async.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        self._thread = None
        return self.status()

    def status(self) -> CaptureStatus:
        """A cheap, thread-safe snapshot: rates, last trade times, queue, lag, gaps, rows."""
        c = self.counters
        now = time.monotonic()
        with self._lock:
            window = [(t, n) for t, n in self._rate_window if now - t <= 5.0]
            last_times = {s: us_to_datetime(us) for s, us in self._last_trade_time.items()}
        rate = 0.0
        if len(window) >= 2 and window[-1][0] > window[0][0]:
            rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        thread = self._thread
        return CaptureStatus(
            running=thread is not None and thread.is_alive(),
            symbols=self._active or self.symbols,
            source=self.source,
            started_at=self._started_at,
            run_id=self._run_id,
            rows_stored=c["stored"],
            duplicates=c["duplicates"] + c["dropped_duplicates"],
            messages=c["messages"],
            trades_per_s=round(rate, 1),
            last_trade_time=last_times,
            queue_depth=len(self._trades),
            journal_rows=len(self._journal) if self._journal is not None else 0,
            lag_ms=self._last_lag_ms,
            reconnects=c["reconnects"],
            rotations=c["rotations"],
            gaps_found=c["gaps_found"],
            gaps_filled=c["gaps_filled"],
            gaps_lost=c["gaps_lost"],
            backfilled=c["backfilled"],
            dead_letters=c["dead_letters"],
            database_up=self._db_up,
            skipped_symbols=dict(self._skipped),
            error=self._error,
        )

    @property
    def endpoint(self) -> Endpoint | None:
        """The resolved endpoint (after start)."""
        return self._endpoint

    @property
    def local_exchange(self) -> Any:
        """The in-process local exchange when source='simulator', else None."""
        return self._local_exchange

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        st = self.status()
        return f"<Capture {','.join(self.symbols)} from {self.source}: {'running' if st.running else 'stopped'}, {st.rows_stored} stored>"

    # ---------------------------------------------------------------- thread bodies

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
            else:
                self._error = f"{type(exc).__name__}: {exc}"
                log.exception("capture failed")
        finally:
            self._stop_reading.set()
            self._reading_done.set()
            self._wake.set()
            if self._writer_thread is not None:
                self._writer_thread.join()
            if self._locks is not None:
                self._locks.release()
            if self._local_exchange is not None:
                try:
                    self._local_exchange.__exit__(None, None, None)
                except Exception:
                    log.exception("stopping the local exchange")
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _main(self) -> None:
        from .rest import RestClient

        self._stop_async = asyncio.Event()
        if self._stop_reading.is_set():
            self._stop_async.set()
        opts = self.options
        cfg = settings()
        # database first: resume points, journal, run row (raises a clear DatabaseError)
        self._dsn = db.resolve_dsn(self._dsn_arg)
        conn = db.connect(self._dsn)
        self._db_up = True
        if self.source == "simulator":
            from .exchange import LocalExchange

            # our own market continues the simulated history already stored, and is kept
            # whole from its first trade
            with conn.transaction():
                rows = conn.execute(
                    "SELECT symbol, max(trade_id) FROM trades WHERE exchange = %s AND symbol = ANY(%s) GROUP BY 1",
                    (self.exchange, list(self.symbols)),
                ).fetchall()
            first = {sym: 1 for sym in self.symbols} | {sym: int(top) + 1 for sym, top in rows}
            for sym, fid in first.items():
                self.from_ids.setdefault(sym, fid)
            self._local_exchange = LocalExchange(
                symbols=[s.lower() for s in self.symbols], rate=opts.simulator_rate, seed=int(time.time()),
                first_ids=first,
            )
            self._local_exchange.__enter__()
            self._endpoint = resolve_source(self._local_exchange.ws_url)
        else:
            self._endpoint = resolve_source(self.source)
        ep = self._endpoint
        dbkey = _db_key(self._dsn)
        self._locks = _SymbolLocks(cfg.home, dbkey)
        who = f"pid {os.getpid()} on {socket.gethostname()}"
        active = []
        for sym in self.symbols:
            holder = self._locks.try_take(self.exchange, sym, who)
            if holder is None:
                active.append(sym)
            else:
                self._skipped[sym] = f"already captured into this database by {holder}: not captured twice"
                log.warning("%s %s", sym, self._skipped[sym])
        self._active = tuple(active)
        jdir = cfg.journal_dir / dbkey / hashlib.sha1(",".join(self.symbols).encode()).hexdigest()[:10]
        self._journal = Journal(jdir)

        async with RestClient(ep.rest) as rest:
            self._rest = rest
            if self._active:
                await self._check_symbols(rest, ep)
            resume = self._resume_points(conn) if self._active else {}
            for sym in self._active:
                last_id, open_gaps = resume.get(sym, (None, []))
                if sym in self.from_ids and (last_id is None or last_id < self.from_ids[sym] - 1):
                    last_id = self.from_ids[sym] - 1
                seq = _Sequencer(sym, last_id)
                for lo, hi in open_gaps:
                    seq.missing.append([lo, hi, 0.0, 0])
                self._seq[sym] = seq
            self._run_id = self._open_run(conn, ep)
            self._started_at = datetime.now(timezone.utc)
            self._writer_thread = threading.Thread(
                target=self._writer_main, args=(conn,), name=f"{threading.current_thread().name}-writer", daemon=True
            )
            self._writer_thread.start()
            self._ready.set()
            if not self._active:
                self._error = "nothing to capture: every symbol is already captured by another capture"
                return
            streams = [f"{s.lower()}@trade" for s in self._active]
            n = max(1, opts.max_streams_per_connection)
            chunks = [streams[i : i + n] for i in range(0, len(streams), n)]
            budget = _ConnectBudget(opts.max_connects_per_5min)
            tasks = [asyncio.create_task(self._stream_worker(chunk, budget)) for chunk in chunks]
            tasks.append(asyncio.create_task(self._gap_filler(rest)))
            tasks.append(asyncio.create_task(self._ticker()))
            await self._stop_async.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # last chance for ranges still missing: one more REST pass (bounded)
            try:
                await asyncio.wait_for(self._fill_gaps(rest, final=True), timeout=10)
            except (asyncio.TimeoutError, CryptolabError):
                pass
            self._flush_open_gaps()
            rest_left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest_left:
                t.cancel()
            await asyncio.gather(*rest_left, return_exceptions=True)
        self._reading_done.set()
        self._wake.set()

    async def _check_symbols(self, rest: Any, ep: Endpoint) -> None:
        info = await rest.exchange_info(list(self._active))
        known = {s.get("symbol") for s in info.get("symbols", [])}
        unknown = [s for s in self._active if s not in known]
        if unknown:
            raise SourceError(
                f"unknown symbol {', '.join(unknown)} on {ep.rest}: check the spelling "
                "(e.g. BTCUSDT), or the exchange lists it under another name"
            )

    def _resume_points(self, conn: psycopg.Connection) -> dict[str, tuple[int | None, list[tuple[int, int]]]]:
        """Per symbol: the last id stored within the look-back, and the holes to fill.

        Holes are found in the stored ids themselves (so a capture killed mid-backfill
        leaves nothing behind), plus ranges a previous run recorded as still open;
        ranges already recorded as unrecoverable are not asked again.
        """
        out: dict[str, tuple[int | None, list[tuple[int, int]]]] = {}
        secs = self.options.lookback_seconds
        with conn.transaction():
            for sym in self._active:
                key = (self.exchange, sym)
                row = conn.execute(
                    "SELECT min(trade_id), max(trade_id) FROM trades WHERE exchange = %s AND symbol = %s "
                    "AND trade_time > now() - make_interval(secs => %s)",
                    (*key, secs),
                ).fetchone()
                lo_id, hi_id = (row[0], row[1]) if row else (None, None)
                holes = conn.execute(
                    "SELECT prev + 1, trade_id - 1 FROM ("
                    "  SELECT trade_id, lag(trade_id) OVER (ORDER BY trade_id) AS prev FROM trades"
                    "  WHERE exchange = %s AND symbol = %s AND trade_time > now() - make_interval(secs => %s)) t "
                    "WHERE trade_id > prev + 1 ORDER BY 1",
                    (*key, secs),
                ).fetchall()
                opened = conn.execute(
                    "DELETE FROM capture_gaps WHERE exchange = %s AND symbol = %s AND status = 'open' "
                    "RETURNING first_missing_id, last_missing_id",
                    key,
                ).fetchall()
                lost = conn.execute(
                    "SELECT first_missing_id, last_missing_id FROM capture_gaps "
                    "WHERE exchange = %s AND symbol = %s AND status = 'unrecoverable'",
                    key,
                ).fetchall()
                want = self.from_ids.get(sym)
                ranges = [(int(a), int(b)) for a, b in [*holes, *opened]]
                if want is not None and lo_id is not None and want < lo_id:
                    ranges.append((want, int(lo_id) - 1))
                ranges = [r for r in ranges if not any(a <= r[0] and r[1] <= b for a, b in lost)]
                out[sym] = (hi_id, sorted(set(ranges)))
        return out

    def _open_run(self, conn: psycopg.Connection, ep: Endpoint) -> int:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO capture_runs (exchange, symbols, endpoint, host, pid, heartbeat_at, note) "
                "VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s) RETURNING run_id",
                (self.exchange, list(self._active), ep.ws, socket.gethostname(), os.getpid(),
                 "; ".join(f"{k}: {v}" for k, v in self._skipped.items()) or None),
            ).fetchone()
        assert row is not None
        return int(row[0])

    # ---------------------------------------------------------------- connections

    def _stream_url(self, streams: list[str]) -> str:
        assert self._endpoint is not None
        return f"{self._endpoint.ws}/stream?streams={'/'.join(streams)}"

    async def _open(self, streams: list[str], budget: _ConnectBudget) -> _Conn:
        from . import wsclient

        await budget.acquire()
        ep = self._endpoint
        assert ep is not None
        many = len(streams) > 100
        url = f"{ep.ws}/stream" if many else self._stream_url(streams)
        conn = _Conn(ws=None, opened=time.monotonic())
        handle = self._handle

        def on_message(raw: bytes) -> None:
            conn.last_msg = time.monotonic()
            if not conn.first.is_set():
                conn.first.set()
            handle(raw, conn)

        try:
            conn.ws = await wsclient.connect(url, on_message, open_timeout=10, max_size=16 * 1024 * 1024)
        except wsclient.HandshakeError as exc:
            hint = " (binance.com refuses this region: try source='binance.us')" if exc.status == 451 else ""
            raise SourceError(f"{ep.ws} answered {exc}{hint}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise SourceError(f"cannot reach {ep.ws}: {exc or type(exc).__name__} — no network? "
                              "try --source simulator") from exc
        if many:
            for i in range(0, len(streams), 200):  # Binance: at most 5 incoming messages/s
                conn.ws.send_text(_json({"method": "SUBSCRIBE", "params": streams[i : i + 200], "id": i // 200 + 1}).decode())
                await asyncio.sleep(0.25)
        return conn

    def _handle(self, raw: bytes, conn: _Conn) -> None:
        received = now_us()
        self.counters["messages"] += 1
        out = decode(raw, exchange=self.exchange, source=self._stream_source, received_at_us=received)
        if type(out) is Trade:
            seq = self._seq.get(out.symbol)
            if seq is None:
                self._dead.append(DeadLetter(f"trade for a symbol not subscribed: {out.symbol}", raw, "live",
                                             self.exchange, out.symbol, received))
                self.counters["dead_letters"] += 1
            elif seq.see(out.trade_id, time.monotonic()):
                self._trades.append(out)
                seq.last_trade_us = out.trade_time_us
            else:
                self.counters["dropped_duplicates"] += 1
            if not self._wake.is_set():
                self._wake.set()
        elif type(out) is DeadLetter:
            self._dead.append(out)
            self.counters["dead_letters"] += 1
            self._wake.set()
        elif isinstance(out, Control):
            if out.kind == "shutdown":
                conn.shutdown.set()
            elif out.kind == "error":
                log.warning("exchange answered an error: %s", out.data)

    async def _stream_worker(self, streams: list[str], budget: _ConnectBudget) -> None:
        opts = self.options
        backoff = _Backoff(opts.backoff_base, opts.backoff_max)
        stop = self._stop_async
        assert stop is not None
        current: _Conn | None = None
        stop_task = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if current is None:
                    try:
                        current = await self._open(streams, budget)
                    except SourceError as exc:
                        self._error = str(exc)
                        self.counters["reconnects"] += 1
                        await _sleep_or(stop, backoff.next())
                        continue
                    asyncio.create_task(self._probe_latest(streams))
                rotate_in = max(0.0, current.opened + opts.rotate_after - time.monotonic())
                watchdog = max(0.05, current.last_msg + opts.stall_timeout - time.monotonic())
                shutdown_task = asyncio.create_task(current.shutdown.wait())
                await asyncio.wait(
                    {current.ws.closed, shutdown_task, stop_task},
                    timeout=min(rotate_in, watchdog, 1.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                shutdown_task.cancel()
                if stop.is_set():
                    break
                if current.ws.closed.done():
                    exc = current.ws.closed.result()
                    if current.ws.protocol.close_code == 1009:
                        self._dead.append(DeadLetter("frame larger than 16 MiB: connection dropped by the client",
                                                     b"", "live", self.exchange, None, now_us()))
                        self.counters["dead_letters"] += 1
                    log.info("connection lost (%s); reconnecting", exc)
                    await _close(current)
                    current = None
                    self.counters["reconnects"] += 1
                    await _sleep_or(stop, backoff.next())
                    continue
                if current.first.is_set():
                    backoff.reset()
                if time.monotonic() - current.last_msg >= opts.stall_timeout:
                    log.info("no message for %.1f s: replacing the connection", opts.stall_timeout)
                    await _close(current)
                    current = None
                    self.counters["reconnects"] += 1
                    self.counters["stalls"] += 1
                    continue
                if current.shutdown.is_set() or time.monotonic() - current.opened >= opts.rotate_after:
                    current = await self._rotate(current, streams, budget)
        finally:
            stop_task.cancel()
            if current is not None:
                await _close(current)

    async def _rotate(self, old: _Conn, streams: list[str], budget: _ConnectBudget) -> _Conn | None:
        """Open the successor, wait until it delivers, then close the old one (overlap: no hole)."""
        try:
            new = await self._open(streams, budget)
        except SourceError as exc:
            log.warning("rotation failed (%s); keeping the old connection", exc)
            old.opened = time.monotonic() - self.options.rotate_after + 5.0
            return old
        try:
            await asyncio.wait_for(new.first.wait(), timeout=10)
        except asyncio.TimeoutError:
            pass
        await _close(old)
        self.counters["rotations"] += 1
        asyncio.create_task(self._probe_latest(streams))
        return new

    async def _probe_latest(self, streams: list[str]) -> None:
        """After a (re)connect, learn each symbol's latest id from REST, so a gap shows at once."""
        for stream in streams:
            sym = stream.split("@", 1)[0].upper()
            seq = self._seq.get(sym)
            if seq is None or seq.last_id is None:
                continue
            try:
                items = await self._rest.recent_trades(sym, limit=1)
            except (CryptolabError, asyncio.TimeoutError, OSError):
                continue
            if not items:
                continue
            latest = int(items[-1]["id"])
            if seq.last_id is not None and latest > seq.last_id:
                seq.missing.append([seq.last_id + 1, latest, time.monotonic(), 0])
                seq.last_id = latest

    # ---------------------------------------------------------------- gaps

    async def _gap_filler(self, rest: Any) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                await self._fill_gaps(rest)
            except CryptolabError as exc:
                self._error = str(exc)
                await asyncio.sleep(1.0)

    async def _fill_gaps(self, rest: Any, final: bool = False) -> None:
        opts = self.options
        now = time.monotonic()
        for seq in list(self._seq.values()):
            while seq.missing:
                rng = seq.missing[0]
                lo, hi, seen_at, attempts = int(rng[0]), int(rng[1]), rng[2], int(rng[3])
                if not final and now - seen_at < opts.gap_grace:
                    break
                if attempts == 0:
                    rng[3] = 1
                    self.counters["gaps_found"] += 1
                    if hi - lo + 1 > opts.max_backfill_trades:
                        cut = hi - opts.max_backfill_trades
                        self._gap_events.append(_GapEvent(seq.symbol, lo, cut, "unrecoverable",
                                                          f"larger than max_backfill_trades={opts.max_backfill_trades}"))
                        self.counters["gaps_lost"] += 1
                        rng[0] = lo = cut + 1
                await self._backfill_range(rest, seq, lo, hi)

    async def _backfill_range(self, rest: Any, seq: _Sequencer, lo: int, hi: int) -> None:
        frm = lo
        lost = False
        while frm <= hi:
            limit = min(1000, hi - frm + 1)
            items = await rest.historical_trades(seq.symbol, from_id=frm, limit=limit)
            received = now_us()
            got = []
            for it in items:
                try:
                    t = trade_from_rest(it, seq.symbol, exchange=self.exchange, received_at_us=received)
                except ValueError as exc:
                    self._dead.append(DeadLetter(f"backfill: {exc}", _json(it), "backfill", self.exchange,
                                                 seq.symbol, received))
                    self.counters["dead_letters"] += 1
                    continue
                if frm <= t.trade_id <= hi:
                    got.append(t)
            ids = sorted(t.trade_id for t in got)
            if not ids or ids[0] != frm:
                last_missing = (ids[0] - 1) if ids else hi
                self._gap_events.append(_GapEvent(seq.symbol, frm, last_missing, "unrecoverable",
                                                  "REST historicalTrades did not return these ids"))
                self.counters["gaps_lost"] += 1
                lost = True
                seq.carve_range(frm, last_missing)
                if not ids:
                    return
            for t in got:
                if seq.carve(t.trade_id):
                    self._trades.append(t)
                    self.counters["backfilled"] += 1
            self._wake.set()
            frm = ids[-1] + 1
        if not lost:
            self.counters["gaps_filled"] += 1
            self._gap_events.append(_GapEvent(seq.symbol, lo, hi, "filled", "backfilled from REST"))

    def _flush_open_gaps(self) -> None:
        for seq in self._seq.values():
            for rng in seq.missing:
                self._gap_events.append(_GapEvent(seq.symbol, int(rng[0]), int(rng[1]), "open",
                                                  "still missing at stop: the next capture retries it"))
            seq.missing.clear()
        self._wake.set()

    async def _ticker(self) -> None:
        while True:
            with self._lock:
                self._rate_window.append((time.monotonic(), self.counters["messages"]))
                for sym, seq in self._seq.items():
                    if seq.last_trade_us is not None:
                        self._last_trade_time[sym] = seq.last_trade_us
            await asyncio.sleep(0.5)

    # ---------------------------------------------------------------- writer thread

    def _writer_main(self, conn: psycopg.Connection | None) -> None:
        opts = self.options
        journal = self._journal
        assert journal is not None and self._dsn is not None
        writer = TradeWriter(conn) if conn is not None else None
        next_db_try = 0.0
        last_beat = 0.0

        def db_ok() -> bool:
            nonlocal conn, writer, next_db_try
            if writer is not None:
                return True
            if time.monotonic() < next_db_try:
                return False
            try:
                conn = db.connect(self._dsn, ensure_schema=False)
                writer = TradeWriter(conn)
                self._db_up = True
                log.info("database is back")
                return True
            except DatabaseError:
                next_db_try = time.monotonic() + opts.db_retry_seconds
                return False

        def db_failed(exc: Exception) -> None:
            nonlocal conn, writer, next_db_try
            log.warning("database write failed (%s): spilling to the journal %s", exc, journal.dir)
            self._db_up = False
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
            conn, writer = None, None
            next_db_try = time.monotonic() + opts.db_retry_seconds

        def store_segment(seg: Segment) -> None:
            assert writer is not None
            for i in range(0, max(len(seg.trades), 1), opts.max_batch_rows):
                chunk = seg.trades[i : i + opts.max_batch_rows]
                dead = seg.dead_letters if i == 0 else []
                res = writer.write(chunk, dead)
                self._account(chunk, res.inserted, res.duplicates)

        while True:
            stopping = self._reading_done.is_set()
            if not self._trades and not self._dead and not self._gap_events and not stopping:
                self._wake.wait(0.05)
                self._wake.clear()
            batch = _drain(self._trades, opts.max_batch_rows)
            dead = _drain(self._dead, 10_000)
            up = db_ok()
            if up and len(journal):
                try:
                    journal.replay(store_segment)
                except DatabaseError as exc:
                    db_failed(exc)
                    up = False
            if batch or dead:
                if up and not len(journal):
                    try:
                        assert writer is not None
                        res = writer.write(batch, dead)
                        self._account(batch, res.inserted, res.duplicates)
                    except DatabaseError as exc:
                        db_failed(exc)
                        journal.append(batch, dead)
                else:
                    journal.append(batch, dead)
            if len(self._trades) > opts.max_queue_rows:
                # the database is slower than the market: move the oldest rows to the journal
                # (replayed first, so order holds) instead of growing memory without bound
                self.counters["spilled"] += journal.append(
                    _drain(self._trades, len(self._trades) - opts.max_queue_rows // 2))
            if self._gap_events and db_ok():
                try:
                    self._write_gaps(conn)
                except psycopg.Error as exc:
                    db_failed(exc)
            if time.monotonic() - last_beat > opts.heartbeat_seconds and db_ok():
                last_beat = time.monotonic()
                try:
                    self._update_run(conn, final=False)
                except psycopg.Error as exc:
                    db_failed(exc)
            if stopping and not self._trades and not self._dead and not self._gap_events:
                if len(journal) and db_ok():
                    continue  # replay the rest first
                break
        journal.close()
        if db_ok():
            try:
                self._write_gaps(conn)
                self._update_run(conn, final=True)
            except psycopg.Error as exc:
                db_failed(exc)
        if conn is not None:
            conn.close()
        left = len(journal)
        if left:
            self._error = (f"database unreachable at stop: {left} rows kept in the journal {journal.dir}; "
                           "they are stored by the next capture on this database")

    def _account(self, batch: list[Trade], inserted: int, duplicates: int) -> None:
        self.counters["stored"] += inserted
        self.counters["duplicates"] += duplicates
        if batch:
            newest = batch[-1]
            done = now_us()
            self._last_lag_ms = (done - newest.trade_time_us) / 1000.0
            for t in batch:
                if t.received_at_us is not None and t.source != "backfill":
                    self._writer_lat_us.append(done - t.received_at_us)

    def _write_gaps(self, conn: psycopg.Connection | None) -> None:
        assert conn is not None
        events = _drain(self._gap_events, len(self._gap_events))
        if not events:
            return
        with conn.transaction():
            for ev in events:
                conn.execute(
                    "INSERT INTO capture_gaps (run_id, exchange, symbol, first_missing_id, last_missing_id, "
                    "status, reason, resolved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                    "CASE WHEN %s = 'open' THEN NULL ELSE clock_timestamp() END)",
                    (self._run_id, self.exchange, ev.symbol, ev.lo, ev.hi, ev.status, ev.reason, ev.status),
                )

    def _update_run(self, conn: psycopg.Connection | None, final: bool) -> None:
        assert conn is not None
        c = self.counters
        with conn.transaction():
            conn.execute(
                "UPDATE capture_runs SET heartbeat_at = clock_timestamp(), messages = %s, trades_stored = %s, "
                "duplicates = %s, dead_letters = %s, reconnects = %s, gaps_found = %s, gaps_filled = %s, "
                "backfilled = %s, stopped_at = CASE WHEN %s THEN clock_timestamp() END, "
                "status = CASE WHEN %s THEN 'stopped' ELSE 'running' END WHERE run_id = %s",
                (c["messages"], c["stored"], c["duplicates"], c["dead_letters"], c["reconnects"], c["gaps_found"],
                 c["gaps_filled"], c["backfilled"], final, final, self._run_id),
            )

    def latencies_us(self) -> list[int]:
        """Receive→commit latencies (µs) of recent live trades, for benchmarks and the dashboard."""
        return list(self._writer_lat_us)


def _drain(dq: collections.deque, n: int) -> list:
    out = []
    pop = dq.popleft
    try:
        for _ in range(n):
            out.append(pop())
    except IndexError:
        pass
    return out


async def _sleep_or(ev: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(ev.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


async def _close(conn: _Conn) -> None:
    if conn.ws is not None:
        await conn.ws.close(timeout=2)


def _json(obj: Any) -> bytes:
    import orjson

    return orjson.dumps(obj)
