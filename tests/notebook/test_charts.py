"""Live charts: a PNG or an ipympl canvas that keeps a user's zoom until Home or a new view."""

from __future__ import annotations

from typing import Any

import pytest

from cryptolab.notebook.charts import LiveChart


def test_chart_renders_png_and_updates_widget() -> None:
    n = {"i": 0}

    def draw(fig: Any) -> None:
        n["i"] += 1
        fig.add_subplot().plot([0, 1, 2], [0, n["i"], 0])

    chart = LiveChart(draw, width=3, height=2, interactive=False)
    png1 = chart.render()
    assert png1.startswith(b"\x89PNG")
    widget = chart.widget
    assert bytes(widget.value) == png1
    png2 = chart.render()
    assert png2 != png1 and bytes(widget.value) == png2


def test_interactive_chart_is_an_ipympl_canvas_that_keeps_a_users_zoom() -> None:
    pytest.importorskip("ipympl")
    n = {"i": 0}

    def draw(fig: Any) -> None:
        n["i"] += 1
        fig.add_subplot().plot([0, 1, 2], [0, n["i"], 0])

    chart = LiveChart(draw, width=3, height=2)
    assert chart.interactive
    canvas = chart.widget
    assert type(canvas).__name__ == "Canvas" and canvas.toolbar is not None  # zoom/pan/home toolbar
    assert chart.render() == b"" and chart.png.startswith(b"\x89PNG")  # a PNG only when asked
    ax = chart.figure.axes[0]
    ax.set_xlim(0.5, 1.0)  # the user zooms in
    chart.render()
    assert tuple(chart.figure.axes[0].get_xlim()) == (0.5, 1.0) and n["i"] == 2  # redrawn, zoom kept


def test_home_and_reset_view_let_go_of_a_zoom() -> None:
    pytest.importorskip("ipympl")
    n = {"i": 0}

    def draw(fig: Any) -> None:  # the data moves on every render: its own limits change
        n["i"] += 1
        fig.add_subplot().plot([n["i"], n["i"] + 2], [0, n["i"]])

    chart = LiveChart(draw, width=3, height=2)
    canvas = chart.widget
    chart.render()
    chart.figure.axes[0].set_xlim(1.5, 2.0)  # the user zooms in
    chart.render()
    assert tuple(chart.figure.axes[0].get_xlim()) == (1.5, 2.0)  # kept across a refresh
    canvas.handle_event(
        {"type": "toolbar_button", "name": "home"}
    )  # the toolbar's Home, as the frontend sends it
    live = tuple(chart.figure.axes[0].get_xlim())
    assert live != (1.5, 2.0) and live[0] < n["i"] < live[1]  # the live view, drawn at once
    chart.render()
    assert n["i"] - 1 < chart.figure.axes[0].get_xlim()[0] < n["i"]  # and it follows the data from then on
    chart.figure.axes[0].set_xlim(100.0, 101.0)  # zoom again, then another window or symbol
    chart.reset_view()
    chart.render()
    assert tuple(chart.figure.axes[0].get_xlim()) != (100.0, 101.0)


def test_price_labels_are_clear_of_the_floating_toolbar() -> None:
    pytest.importorskip("ipympl")
    from cryptolab.notebook.charts import TOOLBAR_PX

    def draw(fig: Any) -> None:  # the dashboard's kind of margins, wide price labels
        fig.subplots_adjust(left=0.04, right=0.98)
        fig.add_subplot().plot([0, 1, 2], [65000.5, 65123.25, 64999.75])

    chart = LiveChart(draw, width=9.6, height=5.2, dpi=88)
    chart.widget  # the ipympl canvas: its toolbar floats over the left edge
    chart.render()
    renderer = chart.figure.canvas.get_renderer()
    labels = [
        t.get_window_extent(renderer).x0 for t in chart.figure.axes[0].get_yticklabels() if t.get_text()
    ]
    assert labels and min(labels) >= TOOLBAR_PX  # every price label starts right of the toolbar
