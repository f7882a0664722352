"""Live matplotlib charts: an interactive canvas (ipympl) when the front end has one,
else PNG; a user's zoom is kept until Home.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import theme

__all__ = ["LiveChart", "render_png", "interactive_available"]


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
    boxes = [
        ax.yaxis.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()
    ]  # the labels at the left
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
        self.dark = theme.dark_theme()
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
            theme.apply_theme(self.figure, dark=self.dark)
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
