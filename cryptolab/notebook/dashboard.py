"""The live dashboard of notebook 00: KPI tiles, candles with VWAP bands, CVD, the tape,
refreshed from a background thread; start and stop a capture from it.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
from matplotlib.figure import Figure

from ..errors import ConfigError, CryptolabError
from ..model import DEFAULT_EXCHANGE, SIMULATOR_EXCHANGE
from . import bookplots, plots
from .bookpanel import BookPanel, BookView
from .charts import LiveChart
from .perppanel import PerpPanel, PerpView
from .snapshot import WINDOWS, Snapshot, SnapshotCache, _step_name, read_snapshot
from .tape import Tape
from .tiles import KpiRow
from .view import LiveView

_STALE_S = 15.0  # newest trade older than this (s): nothing is being captured now, the tiles say so

__all__ = ["Dashboard"]


_FALLBACK_SYMBOLS = ("BTCUSDT", "ETHUSDT")


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
        perp: bool = False,
    ) -> None:
        if symbols is not None and not symbols:
            raise ConfigError(
                "the dashboard needs at least one symbol, e.g. symbols=['BTCUSDT'] (or None: what is stored)"
            )
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
        self.kpis = KpiRow(
            {
                "last": "Last price",
                "vwap": "Session VWAP",
                "cvd": "Session CVD",
                "vol": "Volatility (ann.)",
                "tps": "Trades / s",
                "lag": "Capture lag",
            }
        )
        self.chart = LiveChart(
            self._draw,
            width=9.6,
            height=5.2,
            dpi=88,
            layout={"flex": "1 1 0%", "min_width": "0", "height": "auto", "object_fit": "contain"},
        )
        self.tape = Tape(rows=tape_rows)
        self.book_panel = BookPanel()
        self.book: BookView | None = None
        self.perp = perp
        """Draw the symbol's USD-M perp beside its spot candles, and the basis in bps."""
        self.perp_panel = PerpPanel()
        self.perp_view: PerpView | None = None
        """The perp panel's last read (None when `perp` is off or the read failed)."""
        """The order book panel's last read (None until read, or when the read failed)."""
        self.depth = LiveChart(
            self._draw_depth,
            width=3.6,
            height=3.0,
            dpi=88,
            layout={"flex": "0 0 auto", "width": "320px", "height": "auto"},
        )
        self.view = LiveView(
            self._update,
            [self.kpis, self.chart, self.depth, self.tape],
            interval=interval,
            key="cryptolab-dashboard",
            title="cryptolab",
        )
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
            from ..analysis.scope import stored_markets
            from ..storage.db import connect

            with connect(self.dsn) as conn:
                markets = stored_markets(conn)
        except CryptolabError:
            return chosen or DEFAULT_EXCHANGE, []
        if not chosen:
            wanted = {s.upper() for s in symbols or []}
            holders = {m.exchange for m in markets if not wanted or m.symbol in wanted}
            chosen = (
                DEFAULT_EXCHANGE
                if DEFAULT_EXCHANGE in holders or not holders
                else max((m for m in markets if m.exchange in holders), key=lambda m: m.last_second).exchange
            )
        mine = sorted((m for m in markets if m.exchange == chosen), key=lambda m: m.last_second, reverse=True)
        return chosen, [m.symbol for m in mine]

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            from ..storage.db import connect

            self._conn = connect(self.dsn, autocommit=True)
        return self._conn

    def read(self) -> Snapshot:
        """Read one snapshot for the selected symbol and window."""
        with self._lock:
            conn = self._connection()
            try:
                return read_snapshot(
                    conn,
                    self.symbol,
                    self.window,
                    exchange=self.exchange,
                    tape_rows=self.tape_rows,
                    cache=self.cache,
                )
            except psycopg.OperationalError:
                conn.close()  # reconnect on the next tick (database restarted)
                raise

    def refresh(self) -> Snapshot:
        """One tick: read, update tiles and tape, re-render the chart (when the data
        changed). Returns the snapshot."""
        self._update()
        for chart in (self.chart, self.depth):
            if chart.needs_render or not chart.rendered:
                chart.render()
        assert self.snapshot is not None
        return self.snapshot

    def _update(self) -> None:
        snap = self.read()
        old, self.snapshot = self.snapshot, snap
        old_book, self.book = self.book, self._read_book(snap)
        book_changed = _book_drawn(old_book) != _book_drawn(self.book)
        if self.perp:
            old_perp, self.perp_view = self.perp_view, self._read_perp(snap)
            book_changed = book_changed or _perp_drawn(old_perp) != _perp_drawn(self.perp_view)
        self.chart.needs_render = old is None or _drawn(old) != _drawn(snap) or book_changed
        self.depth.needs_render = book_changed
        self.apply(snap)

    def _read_book(self, snap: Snapshot) -> BookView | None:
        """The book panel's data for the candles' window (throttled by `BookPanel`); None
        when nothing can be read (a failure is shown in the panel, never stops the tick)."""
        if not snap.candles or snap.as_of is None:
            return None
        from datetime import timedelta

        try:
            with self._lock:
                return self.book_panel.read(
                    self._connection(),
                    self.exchange,
                    self.symbol,
                    snap.candles[0]["ts"],
                    snap.as_of + timedelta(seconds=1),
                )
        except CryptolabError as exc:
            return BookView(self.symbol, note=str(exc))

    def _read_perp(self, snap: Snapshot) -> PerpView | None:
        """The perp beside the candles (a failure is said in its panel, never stops the tick)."""
        try:
            with self._lock:
                return self.perp_panel.read(
                    self._connection(), self.exchange, self.symbol, snap.candles, snap.step
                )
        except (CryptolabError, psycopg.Error) as exc:
            return PerpView(self.symbol, "", note=f"perp: {' '.join(str(exc).split())[:160]}")

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
        k["cvd"].set(
            cvd,
            "taker buy − sell, today" if cvd is not None else "",
            None if not cvd else ("up" if cvd > 0 else "down"),
        )
        k["vol"].set(
            None if snap.volatility is None else f"{snap.volatility * 100:.1f}%",
            f"{_step_name(snap.step)} closes, last {snap.window}",
        )
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
        if (
            status is not None
            and getattr(status, "running", False)
            and getattr(status, "lag_ms", None) is not None
        ):
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
    def _draw_depth(self, fig: Figure) -> None:
        book = self.book
        ax = fig.subplots()
        fig.subplots_adjust(left=0.2, right=0.96, top=0.88, bottom=0.14)
        if book is None or book.book is None:
            plots.empty(ax, "no order book" if book is None or not book.note else book.note[:60] + "…")
            return
        bookplots.depth_chart(ax, book.book)
        ax.set_title(f"{book.symbol} book @ {book.update_id}", fontsize=9, loc="left")

    def _draw(self, fig: Figure) -> None:
        snap = self.snapshot
        book = self.book
        spread = (
            book is not None
            and book.top is not None
            and book.top.height
            and snap is not None
            and snap.candles
        )
        ratios = [3, *([1] if spread else []), 1.3, *([1.1] if self.perp else [])]
        axes = list(fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios}))
        ax_p, ax_c = axes[0], axes[2 if spread else 1]
        if spread:
            assert book is not None and book.top is not None
            bookplots.book_panel(None, axes[1], None, book.top)
        ax_b = axes[-1] if self.perp else None
        fig.subplots_adjust(left=0.085, right=0.975, top=0.94, bottom=0.1, hspace=0.06)
        if snap is None or not snap.candles:
            plots.empty(ax_p, f"waiting for {self.symbol} trades…")
            plots.empty(ax_c, "")
            if ax_b is not None:
                plots.empty(ax_b, "")
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
        perp = self.perp_view if ax_b is not None else None
        if perp is not None and perp.ts:
            pts = [t + snap.step / 2 for t in perp.ts]
            ax_p.plot(
                pts,
                plots.to_float(perp.perp),
                color="#7c3aed",
                linewidth=1.2,
                marker=".",
                markersize=3,
                label=f"perp {perp.exchange}",
            )
            if any(m is not None for m in perp.mark):
                ax_p.plot(
                    pts,
                    plots.to_float(perp.mark),
                    color="#7c3aed",
                    linewidth=0.8,
                    linestyle="--",
                    label="mark price",
                )
            bands += plots.to_float([*perp.perp, *perp.mark])
            ax_p.legend(loc="upper left", fontsize=7, frameon=False)
        ax_p.set_ylim(*plots.y_range(lows, highs, bands, pad=0.08))
        ax_p.set_title(
            f"{snap.symbol} · {snap.window} · {_step_name(snap.step)} candles · "
            f"{snap.as_of:%Y-%m-%d %H:%M:%S} UTC",
            fontsize=10,
            loc="left",
        )
        plots.cvd_line(ax_c, ts, [x["cvd"] for x in c], label="session CVD")
        if ax_b is not None:
            _basis_axis(ax_b, snap.step, self.perp_view)

    # ------------------------------------------------------------------ capture
    def capture_status(self) -> Any:
        """The running capture's status, or None."""
        return None if self.capture is None else self.capture.status()

    def start_capture(self) -> Any:
        """Start capturing every dashboard symbol from `source` (returns at once)."""
        if self.capture is not None and self.capture.status().running:
            return self.capture
        try:
            from ..capture import Capture
        except ImportError as exc:
            raise CryptolabError(f"capture is not available in this build ({exc})") from exc
        self.capture = Capture(
            self.symbols, source=self.source, dsn=self.dsn, exchange=self.exchange, **self.capture_options
        )
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
            text, colour = (
                (
                    f"capturing {', '.join(st.symbols)} from {st.source} · {st.rows_stored:,} rows · "
                    f"{st.trades_per_s:.1f} tr/s · reconnects {st.reconnects} · gaps {st.gaps_found}/"
                    f"{st.gaps_filled} filled"
                ),
                plots.UP,
            )
        else:
            text, colour = f"capture stopped · {st.rows_stored:,} rows stored", plots.MUTED
        new = (
            f'<span class="cryptolab-capture-status" data-error="{"1" if self.error else ""}" '
            f'style="font-size:12px;color:{colour}">{html.escape(text)}</span>'
        )
        if self._capture_status.value != new:
            self._capture_status.value = new

    # ------------------------------------------------------------------ widgets
    @property
    def widget(self) -> Any:
        """The whole dashboard as one ipywidgets box."""
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        sym = w.Dropdown(
            options=self.symbols, value=self.symbol, description="Symbol", layout=w.Layout(width="190px")
        )
        win = w.ToggleButtons(options=list(WINDOWS), value=self.window, style={"button_width": "54px"})
        sym.observe(lambda ch: self._set(symbol=ch["new"]), names="value")
        win.observe(lambda ch: self._set(window=ch["new"]), names="value")
        start = w.Button(
            description="Start capture", icon="play", button_style="success", layout=w.Layout(width="130px")
        )
        stop = w.Button(description="Stop capture", icon="stop", layout=w.Layout(width="130px"))
        self._capture_status = w.HTML()
        start.on_click(lambda _b: self._act(self.start_capture))
        # stop() flushes and may take seconds: keep the kernel free while it does
        stop.on_click(
            lambda _b: threading.Thread(
                target=self._act, args=(self.stop_capture,), daemon=True, name="cryptolab-capture-stop"
            ).start()
        )
        self._show_capture_status()
        controls = w.HBox([sym, win, *self.view.controls()], layout=w.Layout(align_items="center"))
        capture = w.HBox([start, stop, self._capture_status], layout=w.Layout(align_items="center"))
        # the tape beside the chart when the output area is wide enough, under it otherwise: never cut off
        body = w.HBox(
            [self.chart.widget, w.VBox([self.depth.widget, self.tape.widget])],
            layout=w.Layout(align_items="flex-start", width="100%", flex_flow="row wrap"),
        )
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
    return (
        s.symbol,
        s.window,
        s.as_of,
        len(s.candles),
        last and (last["close"], last["volume"], last["high"], last["low"]),
    )


def _book_drawn(b: BookView | None) -> tuple[Any, ...]:
    """What the book panel shows: same tuple, same picture."""
    if b is None:
        return ()
    return (
        b.symbol,
        b.update_id,
        b.note,
        None if b.top is None else (b.top.height, b.top["ts"][-1] if b.top.height else None),
    )


def _perp_drawn(p: PerpView | None) -> tuple[Any, ...]:
    return () if p is None else p.drawn()


def _basis_axis(ax: Any, step: Any, perp: PerpView | None) -> None:
    """The basis of the perp over the spot candles' closes, in bps (or what to capture)."""
    if perp is None or not perp.ts:
        # text only: the x axis is shared with the candles (emptying its ticks would empty theirs)
        ax.text(
            0.5,
            0.5,
            "no perp" if perp is None or not perp.note else perp.note,
            ha="center",
            va="center",
            transform=ax.transAxes,
            color=plots.MUTED,
            fontsize=7,
            wrap=True,
        )
        ax.set_yticks([])
        return
    pts = [t + step / 2 for t in perp.ts]
    y = plots.to_float(perp.basis_bps)
    ax.bar(pts, y, width=step * 0.8, color=["#7c3aed" if v >= 0 else plots.DOWN for v in y], alpha=0.6)
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    last = perp.last_basis_bps
    ax.set_ylabel("basis (bps)" + ("" if last is None else f"\nlast {last}"), fontsize=8)
    plots.time_axis(ax)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
