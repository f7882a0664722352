"""The live dashboard of `00_live_dashboard.ipynb`: tiles, candles + VWAP bands, CVD, tape.

One refresh (`Dashboard.refresh()`) is a plain method: read a `Snapshot` with a few
index-backed queries on `bars_1s` (plus the newest trades for the tape), push it into
the widgets and re-render the chart when what it shows changed. The notebook runs it on
a background timer (see `cryptolab.live`); tests call it directly, headless. Between
ticks a `SnapshotCache` keeps closed candles and the session's sums, so a tick reads
only the newest bars (a few ms on a day of 10M trades).

Numbers: last price, session VWAP and CVD are exact Decimals computed from the stored
sums (VWAP = Σ quote / Σ volume; CVD = Σ taker buy − Σ taker sell, both from 00:00 UTC).
The σ bands and the volatility are floats for display: σ is the volume-weighted spread
of the 1 s bars' own VWAPs around the session VWAP; volatility is the annualized spread
of the window's candle-to-candle log returns.
"""

from __future__ import annotations

import html
import math
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
from matplotlib.figure import Figure

from . import plots
from .errors import ConfigError, CryptolabError
from .live import KpiRow, LiveChart, LiveView, Tape
from .model import DEFAULT_EXCHANGE, SIMULATOR_EXCHANGE

_FALLBACK_SYMBOLS = ("BTCUSDT", "ETHUSDT")

__all__ = ["WINDOWS", "Snapshot", "SnapshotCache", "Dashboard", "read_snapshot"]

# window name -> (length, candle step); each step divides a day, so no candle spans 00:00 UTC.
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "1m": (timedelta(minutes=1), timedelta(seconds=1)),
    "5m": (timedelta(minutes=5), timedelta(seconds=5)),
    "15m": (timedelta(minutes=15), timedelta(seconds=10)),
    "1h": (timedelta(hours=1), timedelta(seconds=30)),
    "4h": (timedelta(hours=4), timedelta(minutes=2)),
    "1d": (timedelta(days=1), timedelta(minutes=10)),
}
_TPS_SPAN = timedelta(seconds=10)
_STALE_S = 15.0  # newest trade older than this (s): nothing is being captured now, the tiles say so
_SECONDS_PER_YEAR = 365 * 86_400

_Q_LAST = "SELECT max(ts) FROM bars_1s WHERE exchange = %s AND symbol = %s"
_Q_FIRST = "SELECT min(ts) FROM bars_1s WHERE exchange = %s AND symbol = %s AND ts > %s"
# finer candle steps for data shorter than the window (each divides a day)
_STEPS = tuple(timedelta(seconds=x) for x in (1, 2, 5, 10, 30, 60, 120, 600))
_MIN_CANDLES = 30

_Q_CANDLES = """
SELECT date_bin(%(step)s, ts, timestamptz 'epoch') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(quote_volume)                      AS quote_volume,
       sum(taker_buy_volume)                  AS taker_buy_volume,
       sum(trade_count)::bigint               AS trade_count,
       sum(quote_volume * quote_volume / volume) AS q2v
FROM bars_1s
WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(cfrom)s AND ts <= %(to)s
GROUP BY 1 ORDER BY 1
"""

# Σ volume, Σ quote, Σ taker buy, Σ quote²/volume of the bars in [lo, hi): the session's
# sums before the window (for VWAP, σ and CVD that start at 00:00 UTC).
_Q_PREFIX = """
SELECT row(coalesce(sum(volume), 0), coalesce(sum(quote_volume), 0),
           coalesce(sum(taker_buy_volume), 0), coalesce(sum(quote_volume * quote_volume / volume), 0))::text
FROM bars_1s WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(lo)s AND ts < %(hi)s
"""

# The rest of the prefix (checkpoint → window start), the day's open and the last 10 s.
_Q_SESSION = """
SELECT
  (SELECT row(coalesce(sum(volume), 0), coalesce(sum(quote_volume), 0),
              coalesce(sum(taker_buy_volume), 0), coalesce(sum(quote_volume * quote_volume / volume), 0))::text
     FROM bars_1s WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(checkpoint)s AND ts < %(from)s) AS prior,
  (SELECT open FROM bars_1s WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts >= %(session)s
    ORDER BY ts LIMIT 1) AS session_open,
  (SELECT coalesce(sum(trade_count), 0) FROM bars_1s
    WHERE exchange = %(ex)s AND symbol = %(sym)s AND ts > %(to)s - %(tps_span)s AND ts <= %(to)s) AS recent_trades
"""

_Q_TAPE = """
SELECT trade_id, price, qty, is_buyer_maker, trade_time, received_at, ingested_at
FROM trades
WHERE exchange = %(ex)s AND symbol = %(sym)s AND trade_time >= %(since)s
ORDER BY trade_id DESC
LIMIT %(n)s
"""

_CHECKPOINT = timedelta(minutes=15)
_GRACE = timedelta(seconds=5)
_RAW = ("ts", "open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "trade_count", "q2v")


@dataclass
class SnapshotCache:
    """What one dashboard keeps between ticks so a tick reads only the newest bars:
    candles closed more than 5 s ago, and the session's sums up to a 15-minute checkpoint.

    Everything is read afresh every `max_age` seconds and whenever the symbol or window
    changes, so a late backfill of older bars shows within a minute.
    """

    max_age: float = 60.0
    key: tuple[str, str, str] | None = None
    born: float = 0.0
    candles: list[dict[str, Any]] = field(default_factory=list)
    prefix: dict[datetime, list[Decimal]] = field(default_factory=dict)

    def valid_for(self, key: tuple[str, str, str]) -> bool:
        """True when the cache holds this key's data and is young enough; else reset it."""
        if self.key == key and time.monotonic() - self.born < self.max_age:
            return True
        self.key, self.born, self.candles, self.prefix = key, time.monotonic(), [], {}
        return False


@dataclass
class Snapshot:
    """What one refresh read for one symbol and window (exact values as Decimal)."""

    symbol: str
    window: str
    step: timedelta
    as_of: datetime | None = None
    """Second of the newest stored bar (the chart's right edge); None when nothing stored."""
    candles: list[dict[str, Any]] = field(default_factory=list)
    """Per candle: ts, open, high, low, close, volume, taker_buy_volume, trade_count,
    vwap (session VWAP at the candle's close), sigma (float), cvd (session CVD)."""
    trades: list[dict[str, Any]] = field(default_factory=list)
    """Newest trades first: trade_id, price, qty, is_buyer_maker, trade_time, received_at, ingested_at."""
    session_open: Decimal | None = None
    session_volume: Decimal | None = None
    """Σ qty of the session (UTC day of `as_of`), exact."""
    session_quote_volume: Decimal | None = None
    """Σ price·qty of the session, exact."""
    session_vwap: Decimal | None = None
    session_cvd: Decimal | None = None
    volatility: float | None = None
    """Annualized realized volatility of the window's candle closes, as a fraction."""
    trades_per_s: float = 0.0
    """Trades per second over the last 10 s of stored bars."""
    took_ms: float = 0.0

    @property
    def last(self) -> dict[str, Any] | None:
        """The newest stored trade."""
        return self.trades[0] if self.trades else None

    @property
    def change(self) -> Decimal | None:
        """Last price minus the session (UTC day) open."""
        if self.last is None or self.session_open is None:
            return None
        price: Decimal = self.last["price"]
        return price - self.session_open


def _day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _parse_row(text: str) -> list[Decimal]:
    return [Decimal(x) for x in text.strip("()").split(",")]


def read_snapshot(conn: psycopg.Connection, symbol: str, window: str = "15m", *, exchange: str = DEFAULT_EXCHANGE,
                  tape_rows: int = 18, cache: SnapshotCache | None = None) -> Snapshot:
    """Read everything one dashboard refresh shows (a handful of index-backed queries).

    With a `cache`, closed candles and the session prefix come from earlier ticks and
    only newer bars are read; the result is the same as without it.
    """
    if window not in WINDOWS:
        raise ConfigError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")
    t0 = time.perf_counter()
    symbol = symbol.upper()
    length, step = WINDOWS[window]
    snap = Snapshot(symbol=symbol, window=window, step=step)
    row = conn.execute(_Q_LAST, (exchange, symbol)).fetchone()
    last_ts: datetime | None = row[0] if row else None
    if last_ts is None:
        snap.took_ms = 1000 * (time.perf_counter() - t0)
        return snap
    snap.as_of = last_ts
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    first_row = conn.execute(_Q_FIRST, (exchange, symbol, last_ts - length)).fetchone()
    first_ts: datetime | None = first_row[0] if first_row else None
    span = last_ts - first_ts + timedelta(seconds=1) if first_ts is not None else length
    if span < length:  # less data than the window: finer candles, and no empty stretch on the left
        step = max((x for x in _STEPS if x <= step and span / x >= _MIN_CANDLES), default=_STEPS[0])
        snap.step = step
    last_bin = epoch + (last_ts - epoch) // step * step
    start = last_bin - length + step
    if first_ts is not None and span < length:
        start = epoch + (first_ts - epoch) // step * step
    day = _day(start)

    cached: list[dict[str, Any]] = []
    checkpoint = day
    if cache is not None and cache.valid_for((exchange, symbol, f"{window}@{int(step.total_seconds())}s")):
        cached = [c for c in cache.candles if c["ts"] >= start]
    if cache is not None:
        checkpoint = max(day, epoch + (start - epoch) // _CHECKPOINT * _CHECKPOINT)
        if checkpoint not in cache.prefix:
            cache.prefix = {checkpoint: _parse_row(conn.execute(_Q_PREFIX, {
                "ex": exchange, "sym": symbol, "lo": day, "hi": checkpoint}).fetchone()[0])}  # type: ignore[index]
    params = {"ex": exchange, "sym": symbol, "step": step, "from": start, "to": last_ts,
              "cfrom": cached[-1]["ts"] + step if cached else start, "checkpoint": checkpoint,
              "session": _day(last_ts), "tps_span": _TPS_SPAN,
              "since": last_ts - timedelta(minutes=2), "n": tape_rows}
    with conn.pipeline():
        cur_c = conn.execute(_Q_CANDLES, params)
        cur_s = conn.execute(_Q_SESSION, params)
        cur_t = conn.execute(_Q_TAPE, params)
    names = [d.name for d in cur_c.description or []]
    rows = cached + [dict(zip(names, r)) for r in cur_c.fetchall()]
    prior, session_open, recent = cur_s.fetchone()  # type: ignore[misc]
    tnames = [d.name for d in cur_t.description or []]
    snap.trades = [dict(zip(tnames, r)) for r in cur_t.fetchall()]
    if cache is not None:
        cache.candles = [dict(c) for c in rows if c["ts"] + step <= last_ts - _GRACE]

    sums = _parse_row(prior)
    if cache is not None:
        sums = [a + b for a, b in zip(cache.prefix[checkpoint], sums)]
    vol, quote, buy, q2v = sums
    candles = []
    for raw in rows:
        c = {k: raw[k] for k in _RAW if k != "q2v"}
        if _day(c["ts"]) != day:  # a new UTC session inside the window: VWAP and CVD restart
            day = _day(c["ts"])
            vol = quote = buy = q2v = Decimal(0)
        vol += raw["volume"]
        quote += raw["quote_volume"]
        buy += raw["taker_buy_volume"]
        q2v += raw["q2v"]
        c["session_volume"], c["session_quote_volume"] = vol, quote
        vwap = quote / vol
        c["vwap"] = vwap
        c["sigma"] = math.sqrt(max(0.0, float(q2v / vol - vwap * vwap)))
        c["cvd"] = 2 * buy - vol
        candles.append(c)
    snap.candles = candles
    if candles and _day(candles[-1]["ts"]) == _day(last_ts):
        last = candles[-1]
        snap.session_vwap, snap.session_cvd = last["vwap"], last["cvd"]
        snap.session_volume, snap.session_quote_volume = last["session_volume"], last["session_quote_volume"]
    snap.session_open = session_open
    snap.trades_per_s = float(recent) / _TPS_SPAN.total_seconds()
    snap.volatility = _volatility(candles)
    snap.took_ms = 1000 * (time.perf_counter() - t0)
    return snap


def _volatility(candles: Sequence[Mapping[str, Any]]) -> float | None:
    """Annualized σ of log returns between consecutive candle closes, each scaled by
    √(seconds apart) so quiet gaps do not inflate it; None with fewer than 3 candles."""
    r = [math.log(float(b["close"]) / float(a["close"])) / math.sqrt((b["ts"] - a["ts"]).total_seconds())
         for a, b in zip(candles, candles[1:])]
    if len(r) < 2:
        return None
    return statistics.stdev(r) * math.sqrt(_SECONDS_PER_YEAR)


def _signed(d: Decimal) -> str:
    return ("+" if d > 0 else "") + format(d.normalize(), "f")


def _round_sig(d: Decimal | None, places: int = 2) -> Decimal | None:
    return None if d is None else d.quantize(Decimal(1).scaleb(-places))


class Dashboard:
    """The live trading dashboard for one database and a few symbols.

    `refresh()` reads and shows one snapshot (headless-safe). `show(live=True)` displays
    the widgets and refreshes every `interval` seconds in a background thread;
    `show(live=False)` renders one static snapshot (papermill/reports).
    """

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        source: str = "binance",
        dsn: str | None = None,
        exchange: str | None = None,
        window: str = "15m",
        interval: float = 1.0,
        tape_rows: int = 18,
        capture_options: Mapping[str, Any] | None = None,
    ) -> None:
        if symbols is not None and not symbols:
            raise ConfigError("the dashboard needs at least one symbol, e.g. symbols=['BTCUSDT'] (or None: what is stored)")
        if window not in WINDOWS:
            raise ConfigError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")
        self.source = source
        self.dsn = dsn
        self.exchange, found = self._from_data(exchange, symbols)
        self.symbols = [s.upper() for s in (symbols or found or _FALLBACK_SYMBOLS)]
        self.symbol = self.symbols[0]
        self.window = window
        self.tape_rows = tape_rows
        self.snapshot: Snapshot | None = None
        self.cache = SnapshotCache()
        self.capture: Any = None
        self.capture_options = dict(capture_options or {})
        """Extra keyword arguments for `Capture` (e.g. simulator_rate=200)."""
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.kpis = KpiRow({
            "last": "Last price", "vwap": "Session VWAP", "cvd": "Session CVD",
            "vol": "Volatility (ann.)", "tps": "Trades / s", "lag": "Capture lag",
        })
        self.chart = LiveChart(self._draw, width=9.6, height=5.2, dpi=88,
                               layout={"flex": "1 1 0%", "min_width": "0", "height": "auto", "object_fit": "contain"})
        self.tape = Tape(rows=tape_rows)
        self.view = LiveView(self._update, [self.kpis, self.chart, self.tape], interval=interval,
                             key="cryptolab-dashboard", title="cryptolab")
        self._widget: Any = None
        self._capture_status: Any = None
        self.error: str | None = None
        """The last capture error; shown until the user starts or stops the capture again."""
        self._acked: Any = None

    # ------------------------------------------------------------------ data
    def _from_data(self, exchange: str | None, symbols: Sequence[str] | None) -> tuple[str, list[str]]:
        """The exchange (and, when not given, the symbols) to show: the given exchange; the
        simulator's for source='simulator' (simulated data lives apart, as Capture stores it);
        else the exchange holding the symbols' data, real `binance` first."""
        if exchange:
            chosen = exchange.strip().lower()
        elif self.source == SIMULATOR_EXCHANGE:
            chosen = SIMULATOR_EXCHANGE
        else:
            chosen = ""
        try:
            from .analysis.common import stored_markets
            from .db import connect

            with connect(self.dsn) as conn:
                markets = stored_markets(conn)
        except CryptolabError:
            return chosen or DEFAULT_EXCHANGE, []
        if not chosen:
            wanted = {s.upper() for s in symbols or []}
            holders = {m.exchange for m in markets if not wanted or m.symbol in wanted}
            chosen = DEFAULT_EXCHANGE if DEFAULT_EXCHANGE in holders or not holders else \
                max((m for m in markets if m.exchange in holders), key=lambda m: m.last_second).exchange
        mine = sorted((m for m in markets if m.exchange == chosen), key=lambda m: m.last_second, reverse=True)
        return chosen, [m.symbol for m in mine]

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            from .db import connect

            self._conn = connect(self.dsn, autocommit=True)
        return self._conn

    def read(self) -> Snapshot:
        """Read one snapshot for the selected symbol and window."""
        with self._lock:
            conn = self._connection()
            try:
                return read_snapshot(conn, self.symbol, self.window, exchange=self.exchange, tape_rows=self.tape_rows,
                                     cache=self.cache)
            except psycopg.OperationalError:
                conn.close()  # reconnect on the next tick (database restarted)
                raise

    def refresh(self) -> Snapshot:
        """One tick: read, update tiles and tape, re-render the chart (when the data
        changed). Returns the snapshot."""
        self._update()
        if self.chart.needs_render or not self.chart.rendered:
            self.chart.render()
        assert self.snapshot is not None
        return self.snapshot

    def _update(self) -> None:
        snap = self.read()
        old, self.snapshot = self.snapshot, snap
        self.chart.needs_render = old is None or _drawn(old) != _drawn(snap)
        self.apply(snap)

    def apply(self, snap: Snapshot) -> None:
        """Push a snapshot into the tiles, the tape and the capture status line."""
        k = self.kpis
        last = snap.last
        if last is None:
            k["last"].set(None, f"no trades stored for {snap.symbol}")
        else:
            ch = snap.change
            tone = None if not ch else ("up" if ch > 0 else "down")
            pct = ""
            if ch is not None and snap.session_open:
                pct = f" ({float(ch / snap.session_open) * 100:+.3f}%)"
            k["last"].set(last["price"], (f"{_signed(ch)}{pct} today" if ch is not None else ""), tone)
        k["vwap"].set(_round_sig(snap.session_vwap, 4), "since 00:00 UTC" if snap.session_vwap else "")
        cvd = snap.session_cvd
        k["cvd"].set(cvd, "taker buy − sell, today" if cvd is not None else "",
                     None if not cvd else ("up" if cvd > 0 else "down"))
        k["vol"].set(None if snap.volatility is None else f"{snap.volatility * 100:.1f}%",
                     f"{_step_name(snap.step)} closes, last {snap.window}")
        age = None if last is None else (datetime.now(timezone.utc) - last["trade_time"]).total_seconds()
        if age is not None and age > _STALE_S:  # not a rate of now: the newest trade is old
            k["tps"].set("–", f"none stored in the last 10 s; newest {_age(age)} ago")
        else:
            k["tps"].set(f"{snap.trades_per_s:.1f}", "last 10 s stored")
        k["lag"].set(*self._lag(snap))
        self.tape.update(snap.trades)
        self._show_capture_status()

    def _lag(self, snap: Snapshot) -> tuple[str, str]:
        status = self.capture_status()
        if status is not None and getattr(status, "running", False) and getattr(status, "lag_ms", None) is not None:
            return f"{status.lag_ms:.0f} ms", "receive → commit (capture)"
        last = snap.last
        if last is None:
            return "–", ""
        age = (datetime.now(timezone.utc) - last["trade_time"]).total_seconds()
        if age > _STALE_S:  # no capture is storing trades now: the lag of an old trade is no capture lag
            return "–", f"no capture running; newest trade {_age(age)} ago"
        if last.get("ingested_at") is not None:
            lag_ms = (last["ingested_at"] - last["trade_time"]).total_seconds() * 1000
            return f"{lag_ms:.0f} ms", f"trade → stored; newest {_age(age)} ago"
        return "–", f"newest trade {_age(age)} ago"

    # ------------------------------------------------------------------ chart
    def _draw(self, fig: Figure) -> None:
        snap = self.snapshot
        ax_p, ax_c = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
        fig.subplots_adjust(left=0.085, right=0.975, top=0.94, bottom=0.1, hspace=0.06)
        if snap is None or not snap.candles:
            plots.empty(ax_p, f"waiting for {self.symbol} trades…")
            plots.empty(ax_c, "")
            return
        c = snap.candles
        ts = [x["ts"] + snap.step / 2 for x in c]
        candles = {"ts": ts, **{k: [x[k] for x in c] for k in ("open", "high", "low", "close")}}
        plots.candles(ax_p, candles, step=snap.step)
        plots.vwap_bands(ax_p, ts, [x["vwap"] for x in c], [x["sigma"] for x in c], label="session VWAP")
        ax_p.ticklabel_format(axis="y", useOffset=False, style="plain")
        lows = plots.to_float(candles["low"])
        highs = plots.to_float(candles["high"])
        vw = plots.to_float([x["vwap"] for x in c])
        bands = [v + k * (x["sigma"] or 0.0) for v, x in zip(vw, c) for k in (-2, 2)]
        ax_p.set_ylim(*plots.y_range(lows, highs, bands, pad=0.08))
        ax_p.set_title(f"{snap.symbol} · {snap.window} · {_step_name(snap.step)} candles · "
                       f"{snap.as_of:%Y-%m-%d %H:%M:%S} UTC", fontsize=10, loc="left")
        plots.cvd_line(ax_c, ts, [x["cvd"] for x in c], label="session CVD")

    # ------------------------------------------------------------------ capture
    def capture_status(self) -> Any:
        """The running capture's status, or None."""
        return None if self.capture is None else self.capture.status()

    def start_capture(self) -> Any:
        """Start capturing every dashboard symbol from `source` (returns at once)."""
        if self.capture is not None and self.capture.status().running:
            return self.capture
        try:
            from .capture import Capture
        except ImportError as exc:
            raise CryptolabError(f"capture is not available in this build ({exc})") from exc
        self.capture = Capture(self.symbols, source=self.source, dsn=self.dsn, exchange=self.exchange,
                               **self.capture_options)
        self.capture.start()
        self._show_capture_status()
        return self.capture

    def stop_capture(self, timeout: float = 10.0) -> None:
        """Stop the capture (flushes what it holds)."""
        if self.capture is not None:
            self.capture.stop(timeout=timeout)
            self._show_capture_status()

    def _show_capture_status(self) -> None:
        st = self.capture_status()
        if st is not None and getattr(st, "error", None) and self.error is None and st.error != self._acked:
            self.error = f"capture error: {st.error}"  # kept until the user acts (start/stop)
        if self._capture_status is None:
            return
        if self.error:
            text, colour = self.error, plots.DOWN
        elif st is None:
            text, colour = f"capture: not started (source {self.source})", plots.MUTED
        elif st.running:
            text, colour = (f"capturing {', '.join(st.symbols)} from {st.source} · {st.rows_stored:,} rows · "
                            f"{st.trades_per_s:.1f} tr/s · reconnects {st.reconnects} · gaps {st.gaps_found}/"
                            f"{st.gaps_filled} filled"), plots.UP
        else:
            text, colour = f"capture stopped · {st.rows_stored:,} rows stored", plots.MUTED
        new = (f'<span class="cryptolab-capture-status" data-error="{"1" if self.error else ""}" '
               f'style="font-size:12px;color:{colour}">{html.escape(text)}</span>')
        if self._capture_status.value != new:
            self._capture_status.value = new

    # ------------------------------------------------------------------ widgets
    @property
    def widget(self) -> Any:
        """The whole dashboard as one ipywidgets box."""
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        sym = w.Dropdown(options=self.symbols, value=self.symbol, description="Symbol", layout=w.Layout(width="190px"))
        win = w.ToggleButtons(options=list(WINDOWS), value=self.window, style={"button_width": "54px"})
        sym.observe(lambda ch: self._set(symbol=ch["new"]), names="value")
        win.observe(lambda ch: self._set(window=ch["new"]), names="value")
        start = w.Button(description="Start capture", icon="play", button_style="success", layout=w.Layout(width="130px"))
        stop = w.Button(description="Stop capture", icon="stop", layout=w.Layout(width="130px"))
        self._capture_status = w.HTML()
        start.on_click(lambda _b: self._act(self.start_capture))
        # stop() flushes and may take seconds: keep the kernel free while it does
        stop.on_click(lambda _b: threading.Thread(target=self._act, args=(self.stop_capture,), daemon=True,
                                                  name="cryptolab-capture-stop").start())
        self._show_capture_status()
        controls = w.HBox([sym, win, *self.view.controls()], layout=w.Layout(align_items="center"))
        capture = w.HBox([start, stop, self._capture_status], layout=w.Layout(align_items="center"))
        # the tape beside the chart when the output area is wide enough, under it otherwise: never cut off
        body = w.HBox([self.chart.widget, self.tape.widget],
                      layout=w.Layout(align_items="flex-start", width="100%", flex_flow="row wrap"))
        self._widget = w.VBox([controls, capture, self.kpis.widget, body])
        return self._widget

    def _act(self, fn: Any) -> None:
        """A user's click: it acknowledges the error shown, then runs `fn` (guarded)."""
        self.error = None
        self._acked = getattr(self.capture_status(), "error", None)
        self._guard(fn)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # shown in the status line, not lost in a thread, until the user acts
            self.error = f"capture: {exc}"
        self._show_capture_status()

    def _set(self, **kw: Any) -> None:
        for name, value in kw.items():
            setattr(self, name, value)
        if "symbol" in kw or "window" in kw:
            self.chart.reset_view()  # another symbol or window: a zoom into the old one means nothing here
        self.view.refresh_now()

    def show(self, live: bool = True, *, capture: bool = False) -> None:
        """Display the dashboard; live = refresh in the background (and start the capture
        when `capture`), else one static render."""
        from IPython.display import display

        global _SHOWN
        if live:
            previous, _SHOWN = _SHOWN, self
            if previous is not None and previous is not self:  # the cell was run again: one live dashboard
                previous.close()
            display(self.widget)  # type: ignore[no-untyped-call]
            if capture:  # a failure to start shows in the capture status line
                self._guard(self.start_capture)
            self.view.tick_safely()
            self.view.start()
        else:
            self.refresh()
            display(*self.view.static_outputs())  # type: ignore[no-untyped-call]

    def close(self, timeout: float = 10.0) -> None:
        """Stop refreshing, stop the capture this dashboard started, close the connection."""
        self.view.stop(timeout)
        self.stop_capture(timeout)
        if self._conn is not None:
            self._conn.close()


_SHOWN: Dashboard | None = None
"""The dashboard shown live in this kernel; showing another one closes it (and its capture)."""


def _drawn(s: Snapshot) -> tuple[Any, ...]:
    """What the chart shows of a snapshot: same tuple, same picture."""
    last = s.candles[-1] if s.candles else None
    return (s.symbol, s.window, s.as_of, len(s.candles), last and (last["close"], last["volume"], last["high"],
                                                                   last["low"]))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _step_name(step: timedelta) -> str:
    s = int(step.total_seconds())
    return f"{s // 60}m" if s >= 60 and s % 60 == 0 else f"{s}s"
