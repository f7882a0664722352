"""A live view: parts (charts, tiles, tables) refreshed together by one ticker, with
pause / refresh controls, and the static outputs papermill keeps.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from matplotlib.figure import Figure

from ..analysis.display import figures_html
from .charts import LiveChart
from .tables import to_html
from .tape import Tape
from .theme import DOWN, MUTED
from .ticker import Ticker
from .tiles import KpiRow, KpiTile

__all__ = ["LiveView", "LiveHTML", "panel", "key_figures"]


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


class RecordedFigures(dict[str, Any]):
    """The key figures recorded at Run All (a plain dict). Shown as the last value of a cell it
    displays nothing: the figures table above it is the display, and it stays live, where this
    dict of raw Decimals would be frozen at Run All and contradict it."""

    def _ipython_display_(self) -> None:
        return None


def key_figures(compute: Callable[[], Mapping[str, Any]], *, live: bool = True, interval: float = 5.0,
                title: str = "key figures") -> Any:
    """Record a notebook's key figures once (for reports and tests: `cryptolab.notebook.record`)
    and show them as a table that, when live, is recomputed from the live panels' data on
    its own timer — so it never goes stale next to them. Returns the figures recorded
    (a `RecordedFigures` dict, which a cell does not print again)."""
    from IPython.display import HTML, display

    from .records import record

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
                if isinstance(part, LiveHTML) or (
                    isinstance(part, LiveChart) and (part.needs_render or not part.rendered)
                ):
                    part.render()
        except Exception as exc:
            self._set_status(f"error: {type(exc).__name__}: {exc}", error=True)
            raise
        self._set_status(
            f"updated {datetime.now().strftime('%H:%M:%S')} · {1000 * (time.perf_counter() - t0):.0f} ms"
        )

    def _set_status(self, text: str, error: bool = False) -> None:
        if self._status is not None:
            colour = DOWN if error else MUTED
            self._status.value = f'<span style="font-size:11px;color:{colour}">{html.escape(text)}</span>'

    def controls(self) -> list[Any]:
        """The pause toggle, refresh button and status line (made on first use)."""
        import ipywidgets as w

        if self._pause is None:
            self._pause = w.ToggleButton(
                value=False, description="Pause", icon="pause", layout=w.Layout(width="90px")
            )
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
                top = [
                    w.HTML(f"<b>{html.escape(self.title)}</b>", layout=w.Layout(margin="0 12px 0 0")),
                    *top,
                ]
            self._widget = w.VBox(
                [
                    w.HBox(top, layout=w.Layout(align_items="center")),
                    *[self._part_widget(p) for p in self.parts],
                ]
            )
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
        parts.append(
            LiveChart(
                lambda fig: draw(fig, holder.get("data")),
                width=width,
                height=height,
                constrained=True,
                layout={"width": "100%", "max_width": f"{int(width * 90)}px", "height": "auto"},
                interactive=(interactive if interactive is not None else None) if live else False,
            )
        )
    if table is not None:
        parts.append(LiveHTML(lambda: table(holder.get("data"))))
    view = LiveView(update, parts, interval=interval, key=key or title, title=title)
    view.show(live)
    return view
