"""Live widgets for Jupyter: charts, KPI tiles and a trade tape that refresh on a timer.

Design (why it looks like this):

* **No flicker.** A chart is a matplotlib `Figure` (no pyplot, so no backend or global
  state) rendered to PNG bytes and assigned to an `ipywidgets.Image`. The browser swaps
  the picture in place; nothing is cleared and redrawn in an Output area.
* **Never blocks the kernel.** A `Ticker` runs the refresh in its own daemon thread, so
  the analyst keeps running cells while the view updates, even while a long cell runs.
* **Updates reach the right place.** A tick only assigns widget *values* (PNG bytes,
  HTML). Those travel as comm messages addressed by the widget's model id, which the
  frontend routes regardless of which cell is running. No `Output` widget capture or
  `print` happens off the main thread, so ipykernel >= 7's per-thread output parent
  (ipykernel#1451, ipywidgets#4020) cannot send output to the wrong cell.
* **Static when not live.** `LiveView.show(live=False)` renders once and displays plain
  PNG/HTML outputs, which papermill keeps and nbconvert turns into a report.
* **Interactive when live.** With ipympl installed (matplotlib's widget backend), a live
  chart is an ipympl canvas: zoom, pan and the cursor's coordinates, like any charting
  tool. The timer thread redraws the figure and pushes the changed pixels itself
  (`canvas.draw()` sends a diff image over the widget's comm), so the chart keeps updating
  and the kernel stays free; one lock keeps the frontend's zoom/hover handling and the
  redraw apart. A view the user zoomed or panned keeps its limits across refreshes until
  they press *Home* (back to the live view at once) or choose another window or symbol
  (`LiveChart.reset_view`). Without ipympl, the chart is a PNG `ipywidgets.Image` swapped in place.
* **Theme.** Charts follow JupyterLab's theme (light or dark, read from the Lab settings;
  `CRYPTOLAB_THEME=dark|light` overrides); tiles and tables use JupyterLab's CSS variables.
* **Readable numbers.** Tables show rounded, aligned, unit-consistent numbers
  (`cryptolab.analysis.display`); the frames behind them stay exact.
"""

from __future__ import annotations

import html
import io
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import plots
from .analysis.display import figures_html, format_value, frame_html
from .errors import ConfigError
from .plots import DOWN, MUTED, UP

__all__ = [
    "Ticker",
    "LiveChart",
    "KpiTile",
    "KpiRow",
    "Tape",
    "LiveView",
    "LiveHTML",
    "panel",
    "to_html",
    "status_table",
    "render_png",
    "stop_all",
    "table",
    "key_figures",
    "interactive_available",
]

_REGISTRY: dict[str, Ticker] = {}
_REGISTRY_LOCK = threading.Lock()

_FG = "var(--jp-ui-font-color1, #111827)"
_BG = "var(--jp-layout-color1, #fff)"
_BORDER = "var(--jp-border-color2, #e5e7eb)"


def render_png(fig: Figure) -> bytes:
    """Render a matplotlib Figure to PNG bytes with the Agg canvas (thread-safe per figure)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    buf = io.BytesIO()
    canvas.print_png(buf)  # type: ignore[no-untyped-call]  # matplotlib: untyped
    return buf.getvalue()


def interactive_available() -> bool:
    """True when ipympl (matplotlib's widget backend) is installed."""
    import importlib.util

    return importlib.util.find_spec("ipympl") is not None


class Ticker:
    """Calls `fn()` every `interval` seconds in a named daemon thread; pausable, stoppable.

    Ticks never overlap (one thread), a slow tick delays the next instead of piling up,
    and an exception in `fn` is kept in `last_error` (and passed to `on_error`) without
    stopping the timer. Giving a `key` stops any earlier Ticker with the same key, so
    re-running a notebook cell replaces its live view instead of stacking threads.
    """

    def __init__(
        self,
        fn: Callable[[], Any],
        interval: float = 1.0,
        *,
        key: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigError(f"refresh interval must be > 0 seconds, got {interval}")
        self.fn = fn
        self.interval = float(interval)
        self.key = key
        self.on_error = on_error
        self.ticks = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_duration: float | None = None
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poked = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the timer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        """True while ticks are suspended (the thread stays alive)."""
        return self._paused.is_set()

    def start(self) -> Ticker:
        """Start the timer thread (returns at once); a no-op when already running."""
        if self.running:
            return self
        if self.key is not None:
            with _REGISTRY_LOCK:
                old = _REGISTRY.get(self.key)
                _REGISTRY[self.key] = self
            if old is not None and old is not self:
                old.stop(timeout=2)
        self._stop.clear()
        name = f"cryptolab-live-{self.key}" if self.key is not None else f"cryptolab-live-{id(self):x}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread after the current tick; True if it ended within `timeout`."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.key is not None:
            with _REGISTRY_LOCK:
                if _REGISTRY.get(self.key) is self:
                    del _REGISTRY[self.key]
        return not self.running

    def pause(self) -> None:
        """Suspend ticks until `resume()`."""
        self._paused.set()

    def resume(self) -> None:
        """Resume ticks, with one right away."""
        self._paused.clear()
        self._wake.set()

    def poke(self) -> None:
        """Tick now instead of at the end of the current interval (even when paused)."""
        self._poked = True
        self._wake.set()

    def tick(self) -> bool:
        """Run `fn` once in the calling thread; True when it succeeded."""
        t0 = time.perf_counter()
        try:
            self.fn()
        except Exception as exc:  # kept and shown, never kills the timer
            self.errors += 1
            self.last_error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:
                    pass
            return False
        finally:
            self.last_duration = time.perf_counter() - t0
            self.ticks += 1
        self.last_error = None
        return True

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            poked, self._poked = self._poked, False
            if poked or not self._paused.is_set():
                self.tick()
            next_at = max(next_at + self.interval, time.monotonic() + 0.05)
            self._wake.wait(max(0.0, next_at - time.monotonic()))
            self._wake.clear()


def stop_all(timeout: float = 5.0) -> int:
    """Stop every keyed live timer of this process (e.g. before shutting a kernel down)."""
    with _REGISTRY_LOCK:
        tickers = list(_REGISTRY.values())
    for t in tickers:
        t.stop(timeout)
    return len(tickers)


TOOLBAR_PX = 44
"""Width of ipympl's toolbar, which floats over the canvas's left edge (toolbar_position 'left')."""


def clear_of_toolbar(fig: Figure) -> None:
    """Move the axes right just enough that nothing drawn left of them (the price labels) lies
    under the toolbar floating over the canvas's left edge."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    width = fig.bbox.width
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(TOOLBAR_PX / width, 0, 1 - TOOLBAR_PX / width, 1))
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [ax.yaxis.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]  # the labels at the left
    lefts = [b.x0 for b in boxes if b is not None]
    if not lefts or min(lefts) >= TOOLBAR_PX:
        return
    dx = (TOOLBAR_PX - min(lefts)) / width
    for ax in fig.axes:
        pos = ax.get_position()
        ax.set_position((pos.x0 + dx, pos.y0, pos.width - dx, pos.height))


class LiveChart:
    """A matplotlib chart redrawn by `draw(fig)`: an interactive ipympl canvas when live
    (and ipympl is installed), a PNG `ipywidgets.Image` otherwise.

    `draw` receives a cleared Figure and fills it (add axes, plot). `render()` is safe
    to call from the timer thread: one lock per chart, no pyplot.
    """

    def __init__(
        self,
        draw: Callable[[Figure], Any],
        *,
        width: float = 11.0,
        height: float = 4.5,
        dpi: int = 90,
        layout: Mapping[str, Any] | None = None,
        constrained: bool = False,
        interactive: bool | None = None,
    ) -> None:
        self.draw = draw
        # Default: no layout engine (constrained layout costs ~40 % of a render at 1 Hz);
        # `draw` sets the margins. Slower panels may ask for constrained layout.
        # whole pixels: ipympl's frontend sizes its canvas from them
        size = (round(width * dpi) / dpi, round(height * dpi) / dpi)
        self.figure = Figure(figsize=size, dpi=dpi, layout="constrained" if constrained else None)
        FigureCanvasAgg(self.figure)
        self._png: bytes = b""
        self._png_stale = True
        self.rendered = False
        """True once `render()` ran (the figure holds a drawing)."""
        self.needs_render = True
        """Owners may set this False when nothing changed, so a `LiveView` tick skips the render."""
        self.interactive = interactive_available() if interactive is None else interactive
        """Live widget is an ipympl canvas (zoom, pan, hover) rather than a PNG image."""
        self.dark = plots.dark_theme()
        self._lock = threading.RLock()
        self._widget: Any = None
        self._canvas: Any = None
        self._auto_limits: list[tuple[tuple[float, float], tuple[float, float]]] = []
        self._layout = dict(layout or {"width": "100%", "max_width": f"{int(width * dpi)}px"})

    @property
    def widget(self) -> Any:
        """The live widget: an ipympl canvas (interactive) or an `ipywidgets.Image` (made on first use)."""
        if self._widget is None:
            if self.interactive:
                self._widget = self._make_canvas()
            else:
                import ipywidgets as w

                self._widget = w.Image(format="png", value=self.png, layout=w.Layout(**self._layout))
        return self._widget

    def _make_canvas(self) -> Any:
        from ipympl.backend_nbagg import Canvas, FigureManager  # type: ignore[import-untyped]

        with self._lock:
            canvas = Canvas(self.figure)
            canvas.manager = FigureManager(canvas, id(self))
            # ipympl keeps a fallback PNG in `_data_url` until the frontend says hello, but
            # without the `data:` prefix: the frontend then fails to set the widget's state
            # (a "broken" image) and the canvas stays 0×0. The static fallback is ours (PNG).
            canvas.syncing_data_url = False
            canvas.header_visible = False
            canvas.toolbar_position = "left"
            canvas.toolbar_visible = "fade-in-fade-out"  # shown while the pointer is on the chart
            canvas.resizable = False
            canvas.layout.width = self._layout.get("width", "100%")
            lock = self._lock
            for name in ("draw", "handle_event", "get_diff_image"):  # the frontend's requests vs our redraws
                original = getattr(canvas, name)

                def locked(*a: Any, _f: Any = original, **k: Any) -> Any:
                    with lock:
                        return _f(*a, **k)

                setattr(canvas, name, locked)
            if canvas.toolbar is not None:  # Home: back to the live view (the data's own limits), at once
                def home(*a: Any, **k: Any) -> None:
                    self.reset_view()
                    self.render()

                canvas.toolbar.home = home
            self._canvas = canvas
        return canvas

    def reset_view(self) -> None:
        """Let go of the user's zoom/pan: the next render shows the data's own limits. *Home*
        calls it; owners call it when the data changes meaning (another window or symbol)."""
        with self._lock:
            self._auto_limits = []
            toolbar = getattr(self._canvas, "toolbar", None)
            if toolbar is not None:
                toolbar.update()  # the toolbar's view history starts again from the next view

    def _user_limits(self) -> list[tuple[tuple[float, float], tuple[float, float]] | None]:
        """Per axes: the limits the user zoomed/panned to (None where they are ours)."""
        axes = self.figure.axes
        if not self._auto_limits or len(axes) != len(self._auto_limits):
            return []
        out: list[tuple[tuple[float, float], tuple[float, float]] | None] = []
        for ax, auto in zip(axes, self._auto_limits):
            now = (tuple(ax.get_xlim()), tuple(ax.get_ylim()))
            out.append(now if now != auto else None)  # type: ignore[arg-type]
        return out

    def render(self) -> bytes:
        """Redraw the figure and update the widget (if made). Returns the PNG bytes, or b""
        for an interactive chart (its canvas got the pixels; `png` makes a PNG when asked)."""
        with self._lock:
            kept = self._user_limits() if self._canvas is not None else []
            self.figure.clear()
            self.draw(self.figure)
            plots.apply_theme(self.figure, dark=self.dark)
            if self._canvas is not None:
                clear_of_toolbar(self.figure)
            self._auto_limits = [(tuple(ax.get_xlim()), tuple(ax.get_ylim())) for ax in self.figure.axes]  # type: ignore[misc]
            if kept and len(kept) == len(self.figure.axes):
                for ax, lim in zip(self.figure.axes, kept):
                    if lim is not None:
                        ax.set_xlim(*lim[0])
                        ax.set_ylim(*lim[1])
            self.rendered = True
            if self._canvas is not None:
                self._canvas.draw()  # renders and pushes the changed pixels to the frontend
                self._png_stale = True  # a PNG is made only when asked for (`png`)
                return b""
            png = render_png(self.figure)
            self._png, self._png_stale = png, False
        if self._widget is not None and png != bytes(self._widget.value):
            self._widget.value = png
        return png

    @property
    def png(self) -> bytes:
        """The chart as PNG bytes (made on demand for an interactive chart)."""
        with self._lock:
            if self._png_stale and self.rendered:
                self._png, self._png_stale = render_png(self.figure), False
            return self._png

    def static_png(self) -> bytes:
        """The chart as PNG (static outputs, reports); renders first if it never was."""
        if not self.rendered:
            self.render()
        return self.png


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # exact, without the stored scale's trailing zeros
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


@dataclass
class _TileState:
    value: str = "–"
    sub: str = ""
    tone: str | None = None


class KpiTile:
    """One KPI: a label, a big value and a small line under it (coloured up/down)."""

    def __init__(self, label: str, *, width: str = "165px") -> None:
        self.label = label
        self.width = width
        self.state = _TileState()
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The `ipywidgets.HTML` of this tile (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.HTML(self.html(), layout=w.Layout(width=self.width, margin="0 6px 6px 0"))
        return self._widget

    def set(self, value: Any, sub: str = "", tone: str | None = None) -> None:
        """Show `value` (Decimal shown exactly); `tone` is 'up', 'down' or None."""
        self.state = _TileState(_fmt(value), sub, tone)
        if self._widget is not None:
            new = self.html()
            if new != self._widget.value:
                self._widget.value = new

    @property
    def value(self) -> str:
        """The value text now shown."""
        return self.state.value

    def html(self) -> str:
        """The tile as a self-contained HTML fragment."""
        colour = {"up": UP, "down": DOWN}.get(self.state.tone or "", _FG)
        sub_colour = {"up": UP, "down": DOWN}.get(self.state.tone or "", MUTED)
        return (
            '<div style="border:1px solid var(--jp-border-color2, #e5e7eb);border-radius:8px;padding:6px 10px;'
            'font-family:system-ui,sans-serif;background:var(--jp-layout-color1, #fff);min-height:64px">'
            f'<div style="font-size:11px;color:{MUTED};text-transform:uppercase;letter-spacing:.04em">'
            f"{html.escape(self.label)}</div>"
            f'<div style="font-size:19px;font-weight:600;color:{colour};white-space:nowrap;'
            f'font-variant-numeric:tabular-nums">{html.escape(self.state.value)}</div>'
            f'<div style="font-size:11px;color:{sub_colour};white-space:nowrap">{html.escape(self.state.sub) or "&nbsp;"}</div>'
            "</div>"
        )


class KpiRow:
    """A row of KPI tiles addressed by key."""

    def __init__(self, labels: Mapping[str, str], *, width: str = "165px") -> None:
        self.tiles = {key: KpiTile(label, width=width) for key, label in labels.items()}
        self._widget: Any = None

    def __getitem__(self, key: str) -> KpiTile:
        return self.tiles[key]

    @property
    def widget(self) -> Any:
        """An `ipywidgets.HBox` of the tiles."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.HBox(
                [t.widget for t in self.tiles.values()],
                layout=w.Layout(flex_flow="row wrap"),
            )
        return self._widget

    def html(self) -> str:
        """All tiles side by side, as static HTML."""
        cells = "".join(f'<div style="width:{t.width}">{t.html()}</div>' for t in self.tiles.values())
        return f'<div style="display:flex;flex-wrap:wrap;gap:6px">{cells}</div>'


class Tape:
    """The latest trades as an HTML table, rows coloured by aggressor side.

    `is_buyer_maker` false means the taker bought (green), true means the taker sold
    (red). Rows are shown newest first, prices and quantities exactly as stored.
    """

    COLUMNS = ("time", "price", "qty", "side")

    def __init__(self, rows: int = 18, *, height: str = "430px") -> None:
        self.rows = rows
        self.height = height
        self.trades: list[Mapping[str, Any]] = []
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The `ipywidgets.HTML` of the tape (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            # as wide as its widest row (long quantities included): no column is ever cut off
            self._widget = w.HTML(self.html(), layout=w.Layout(width="max-content", min_width="290px", flex="0 0 auto",
                                                               height=self.height, overflow="hidden"))
        return self._widget

    def update(self, trades: Iterable[Mapping[str, Any]]) -> None:
        """Show these trades (newest first): mappings with trade_id, price, qty,
        is_buyer_maker and trade_time."""
        self.trades = list(trades)[: self.rows]
        if self._widget is not None:
            new = self.html()
            if new != self._widget.value:
                self._widget.value = new

    @property
    def newest_id(self) -> int | None:
        """The trade id in the top row (None when empty)."""
        return int(self.trades[0]["trade_id"]) if self.trades else None

    def html(self) -> str:
        """The tape as a static HTML table."""
        head = "".join(
            f'<th style="text-align:{"left" if c in ("time", "side") else "right"};padding:2px 6px;'
            f'color:{MUTED};font-weight:500">{c}</th>'
            for c in self.COLUMNS
        )
        body = []
        for t in self.trades:
            sell = bool(t["is_buyer_maker"])
            colour = DOWN if sell else UP
            tt = t["trade_time"]
            when = tt.strftime("%H:%M:%S.%f")[:-3] if isinstance(tt, datetime) else str(tt)
            cells = (
                (when, "left"),
                (_fmt(t["price"]), "right"),
                (_fmt(t["qty"]), "right"),
                ("sell" if sell else "buy", "left"),
            )
            tds = "".join(f'<td style="text-align:{a};padding:1px 6px">{html.escape(v)}</td>' for v, a in cells)
            body.append(f'<tr style="color:{colour}" data-side="{"sell" if sell else "buy"}" '
                        f'data-id="{int(t["trade_id"])}" title="trade {int(t["trade_id"])}">{tds}</tr>')
        if not body:
            body.append(f'<tr><td colspan="4" style="color:{MUTED};padding:6px">no trades yet</td></tr>')
        return (
            '<table style="border-collapse:collapse;font-family:ui-monospace,monospace;font-size:12px;'
            'font-variant-numeric:tabular-nums;width:100%">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


class LiveHTML:
    """An HTML block re-made each tick from `render()` (a table, a note); shown as
    `ipywidgets.HTML` when live and as plain HTML output when static."""

    def __init__(self, render: Callable[[], Any]) -> None:
        self.render_fn = render
        self.value = ""
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The `ipywidgets.HTML` (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.HTML(self.value)
        return self._widget

    def render(self) -> str:
        """Re-make the HTML (DataFrames via their `_repr_html_`), update the widget."""
        self.value = to_html(self.render_fn())
        if self._widget is not None and self._widget.value != self.value:
            self._widget.value = self.value
        return self.value

    def html(self) -> str:
        """The HTML last rendered."""
        return self.value


def status_table(frame: Any, status_col: str = "status") -> str:
    """A DataFrame as an HTML table with each row coloured by its status
    (ok green, warn amber, fail red, info grey) — a scorecard."""
    colours = {"ok": UP, "match": UP, "warn": plots.WARN, "fail": DOWN, "mismatch": DOWN, "info": MUTED}
    cols = list(frame.columns)
    head = "".join(f'<th style="text-align:left;padding:3px 8px">{html.escape(c)}</th>' for c in cols)
    rows = []
    for rec in frame.iter_rows(named=True):
        colour = colours.get(str(rec.get(status_col)), _FG)
        tds = "".join(f'<td style="padding:2px 8px">{html.escape(format_value(rec[c]))}</td>' for c in cols)
        rows.append(f'<tr style="color:{colour}">{tds}</tr>')
    return ('<table style="border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def to_html(obj: Any) -> str:
    """HTML for a DataFrame (polars/pandas: readable numbers, see `cryptolab.analysis.display`),
    a list of them, a string (as is) or anything (escaped)."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, (list, tuple)):
        return "".join(to_html(o) for o in obj)
    if hasattr(obj, "columns") and (hasattr(obj, "height") or hasattr(obj, "iloc")):
        return frame_html(obj)
    if hasattr(obj, "_repr_html_"):
        return str(obj._repr_html_())
    return f"<pre>{html.escape(str(obj))}</pre>"


def table(frame: Any, caption: str | None = None, *, max_rows: int = 20) -> Any:
    """A DataFrame as a readable table for a notebook cell (rounded, aligned, one unit per
    column); the frame itself stays exact."""
    from IPython.display import HTML

    return HTML(frame_html(frame, max_rows=max_rows, caption=caption))  # type: ignore[no-untyped-call]


class RecordedFigures(dict[str, Any]):
    """The key figures recorded at Run All (a plain dict). Shown as the last value of a cell it
    displays nothing: the figures table above it is the display, and it stays live, where this
    dict of raw Decimals would be frozen at Run All and contradict it."""

    def _ipython_display_(self) -> None:
        return None


def key_figures(compute: Callable[[], Mapping[str, Any]], *, live: bool = True, interval: float = 5.0,
                title: str = "key figures") -> Any:
    """Record a notebook's key figures once (for reports and tests: `cryptolab.report.record`)
    and show them as a table that, when live, is recomputed from the live panels' data on
    its own timer — so it never goes stale next to them. Returns the figures recorded
    (a `RecordedFigures` dict, which a cell does not print again)."""
    from IPython.display import HTML, display

    from .report import record

    figures = RecordedFigures(compute())
    for name, value in figures.items():
        record(name, value, quiet=True)
    if not live:
        display(HTML(figures_html(figures)))  # type: ignore[no-untyped-call]
        return figures
    block = LiveHTML(lambda: figures_html(compute()))
    block.render()
    display(block.widget)  # type: ignore[no-untyped-call]
    Ticker(block.render, interval, key=f"figures-{title}").start()
    return figures


class LiveView:
    """Refreshes a set of parts from one `update()` function on a timer, with controls.

    `update()` is called each tick (in the timer thread when live); it pulls data and
    pushes it into charts, tiles and tapes. `parts` are what is shown, top to bottom:
    LiveChart, KpiRow, KpiTile, Tape, or any ipywidgets widget. The controls are a
    pause toggle, a refresh button and a status line (tick time or the last error).
    """

    def __init__(
        self,
        update: Callable[[], Any],
        parts: Sequence[Any],
        *,
        interval: float = 1.0,
        key: str | None = None,
        title: str | None = None,
    ) -> None:
        self.update = update
        self.parts = list(parts)
        self.title = title
        self.ticker = Ticker(self.tick, interval, key=key)
        self.data: Any = None
        """What the last `update()` returned (e.g. the frames a panel drew)."""
        self._widget: Any = None
        self._status: Any = None
        self._pause: Any = None

    def tick(self) -> None:
        """One refresh: call `update()`, then re-render every chart; report status."""
        t0 = time.perf_counter()
        try:
            self.data = self.update()
            for part in self.parts:
                if isinstance(part, LiveHTML) or (isinstance(part, LiveChart) and (part.needs_render or not part.rendered)):
                    part.render()
        except Exception as exc:
            self._set_status(f"error: {type(exc).__name__}: {exc}", error=True)
            raise
        self._set_status(f"updated {datetime.now().strftime('%H:%M:%S')} · {1000 * (time.perf_counter() - t0):.0f} ms")

    def _set_status(self, text: str, error: bool = False) -> None:
        if self._status is not None:
            colour = DOWN if error else MUTED
            self._status.value = f'<span style="font-size:11px;color:{colour}">{html.escape(text)}</span>'

    def controls(self) -> list[Any]:
        """The pause toggle, refresh button and status line (made on first use)."""
        import ipywidgets as w

        if self._pause is None:
            self._pause = w.ToggleButton(value=False, description="Pause", icon="pause", layout=w.Layout(width="90px"))
            self._pause.observe(self._on_pause, names="value")
            self._refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="95px"))
            self._refresh.on_click(lambda _b: self.refresh_now())
            self._status = w.HTML("")
        return [self._pause, self._refresh, self._status]

    def _on_pause(self, change: Mapping[str, Any]) -> None:
        if change["new"]:
            self.ticker.pause()
            self._pause.description, self._pause.icon = "Resume", "play"
        else:
            self.ticker.resume()
            self._pause.description, self._pause.icon = "Pause", "pause"

    def refresh_now(self) -> None:
        """Refresh at once: in the timer thread when live, else right here."""
        if self.ticker.running:
            self.ticker.poke()
        else:
            self.ticker.tick()

    def _part_widget(self, part: Any) -> Any:
        return part.widget if isinstance(part, (LiveChart, LiveHTML, KpiRow, KpiTile, Tape)) else part

    @property
    def widget(self) -> Any:
        """The whole view: controls above the parts."""
        if self._widget is None:
            import ipywidgets as w

            top = self.controls()
            if self.title:
                top = [w.HTML(f"<b>{html.escape(self.title)}</b>", layout=w.Layout(margin="0 12px 0 0")), *top]
            self._widget = w.VBox([w.HBox(top, layout=w.Layout(align_items="center")),
                                   *[self._part_widget(p) for p in self.parts]])
        return self._widget

    def start(self) -> LiveView:
        """Start refreshing in the background (returns at once)."""
        self.ticker.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop refreshing; True when the timer thread ended."""
        return self.ticker.stop(timeout)

    def static_outputs(self) -> list[Any]:
        """IPython display objects of the current state (PNG images, HTML)."""
        from IPython.display import HTML, Image

        out: list[Any] = []
        for part in self.parts:
            if isinstance(part, LiveChart):
                out.append(Image(data=part.static_png(), format="png"))  # type: ignore[no-untyped-call]
            elif isinstance(part, (KpiRow, KpiTile, Tape, LiveHTML)) and part.html():
                out.append(HTML(part.html()))  # type: ignore[no-untyped-call]
        return out

    def show(self, live: bool = True) -> None:
        """Display the view. Live: widgets plus background refresh. Not live (papermill,
        reports): one refresh in this thread, shown as static PNG/HTML outputs."""
        from IPython.display import display

        if live:
            display(self.widget)  # type: ignore[no-untyped-call]
            self.tick_safely()
            self.start()
        else:
            for part in self.parts:
                if isinstance(part, LiveChart):
                    part.interactive = False  # a report keeps pictures, not widgets
                    part.dark = False  # and is read on a light page, whatever the Lab theme
            self.tick()  # an error must fail the report, so it is not swallowed here
            display(*self.static_outputs())  # type: ignore[no-untyped-call]

    def tick_safely(self) -> None:
        """One tick that reports an error in the status line instead of raising."""
        self.ticker.tick()


def panel(
    load: Callable[[], Any],
    draw: Callable[[Figure, Any], Any] | None = None,
    table: Callable[[Any], Any] | None = None,
    *,
    live: bool = True,
    interval: float = 5.0,
    width: float = 11.0,
    height: float = 4.5,
    title: str | None = None,
    key: str | None = None,
    interactive: bool | None = None,
) -> LiveView:
    """One notebook section in one call: `load()` fetches data (e.g. analysis frames),
    `draw(fig, data)` plots it, `table(data)` gives DataFrames/HTML to show under it.

    Live: widgets refreshed every `interval` s in the background, with pause/refresh
    controls. Not live (papermill): drawn once as static outputs. The returned view's
    `.data` holds what `load()` returned last, for later cells (records, tables).
    """
    holder: dict[str, Any] = {}

    def update() -> Any:
        holder["data"] = load()
        return holder["data"]

    parts: list[Any] = []
    if draw is not None:
        parts.append(LiveChart(lambda fig: draw(fig, holder.get("data")), width=width, height=height, constrained=True,
                               layout={"width": "100%", "max_width": f"{int(width * 90)}px", "height": "auto"},
                               interactive=(interactive if interactive is not None else None) if live else False))
    if table is not None:
        parts.append(LiveHTML(lambda: table(holder.get("data"))))
    view = LiveView(update, parts, interval=interval, key=key or title, title=title)
    view.show(live)
    return view
