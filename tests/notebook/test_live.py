"""Live widgets: the timer, charts, tiles and tape — and, in a real ipykernel (the one
pinned in the venv), updates from the background thread that reach the frontend while
another cell is busy."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cryptolab.notebook.charts import LiveChart
from cryptolab.notebook.tape import Tape
from cryptolab.notebook.ticker import Ticker, stop_all
from cryptolab.notebook.tiles import KpiRow, KpiTile
from cryptolab.notebook.view import LiveView


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_ticker_ticks_pauses_resumes_and_stops() -> None:
    calls: list[str] = []
    t = Ticker(lambda: calls.append(threading.current_thread().name), interval=0.02, key="t1").start()
    assert wait_for(lambda: len(calls) >= 3)
    assert calls[0] == "cryptolab-live-t1"  # its own named thread, not the caller's
    t.pause()
    time.sleep(0.06)
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n and t.paused
    t.poke()  # a manual refresh works while paused
    assert wait_for(lambda: len(calls) == n + 1)
    t.resume()
    assert wait_for(lambda: len(calls) >= n + 3)
    assert t.stop(timeout=2) and not t.running


def test_ticker_keeps_running_after_an_error() -> None:
    seen: list[BaseException] = []
    n = {"i": 0}

    def fn() -> None:
        n["i"] += 1
        if n["i"] == 2:
            raise RuntimeError("database went away")

    t = Ticker(fn, interval=0.01, on_error=seen.append).start()
    assert wait_for(lambda: n["i"] >= 4)
    t.stop()
    assert t.errors == 1 and isinstance(seen[0], RuntimeError)
    assert t.last_error is None  # cleared by the next good tick


def test_same_key_replaces_the_previous_timer() -> None:
    a = Ticker(lambda: None, interval=0.01, key="dup").start()
    b = Ticker(lambda: None, interval=0.01, key="dup").start()
    assert not a.running and b.running
    assert stop_all() >= 1 and not b.running


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


def test_tiles_and_tape_html() -> None:
    tile = KpiTile("Last price")
    tile.set(Decimal("65000.10"), "+1.5", "up")
    assert tile.value == "65000.1" and "#16a34a" in tile.html()  # exact, trailing zeros dropped
    row = KpiRow({"a": "A", "b": "B"})
    row["b"].set(None)
    assert row["b"].value == "–" and len(row.widget.children) == 2
    tape = Tape(rows=2)
    t = datetime(2024, 3, 5, 10, 0, 1, 234000, tzinfo=timezone.utc)
    tape.update(
        [
            {
                "trade_id": 9,
                "price": Decimal("1.10"),
                "qty": Decimal("0.5"),
                "is_buyer_maker": True,
                "trade_time": t,
            },
            {
                "trade_id": 8,
                "price": Decimal("1.20"),
                "qty": Decimal("2"),
                "is_buyer_maker": False,
                "trade_time": t,
            },
            {
                "trade_id": 7,
                "price": Decimal("1.30"),
                "qty": Decimal("1"),
                "is_buyer_maker": False,
                "trade_time": t,
            },
        ]
    )
    html = tape.html()
    assert tape.newest_id == 9 and ">1.1<" in html and "10:00:01.234" in html
    assert html.index('data-side="sell"') < html.index('data-side="buy"')  # newest (a taker sell) on top
    assert ">1.3<" not in html  # only `rows` rows


def test_view_static_outputs_for_reports() -> None:
    tile = KpiTile("x")
    chart = LiveChart(lambda fig: fig.add_subplot().plot([1, 2]), width=2, height=1)
    view = LiveView(lambda: tile.set(Decimal("3")), [tile, chart])
    view.tick()
    outs = view.static_outputs()
    assert "3" in outs[0].data and outs[1].data.startswith(b"\x89PNG")


# ---------------------------------------------------------------------------- real kernel
@pytest.fixture
def kernel() -> Any:
    from jupyter_client.manager import start_new_kernel

    from cryptolab.report.runner import ensure_kernel

    km, kc = start_new_kernel(kernel_name=ensure_kernel(), startup_timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc: Any, code: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Run code; return every iopub message until the kernel is idle again for it."""
    msg_id = kc.execute(code)
    msgs = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = kc.get_iopub_msg(timeout=timeout)
        msgs.append(m)
        if (
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id
        ):
            return msgs
    raise TimeoutError(code)


def test_background_updates_reach_frontend_while_a_cell_runs(kernel: Any) -> None:
    msgs = execute(
        kernel,
        """
from cryptolab.notebook import LiveChart, LiveView, KpiTile
import itertools
n = itertools.count()
tile = KpiTile('ticks')
chart = LiveChart(lambda fig: fig.add_subplot().plot([0, 1], [0, next(n)]), width=3, height=2)
view = LiveView(lambda: tile.set(next(n)), [tile, chart], interval=0.2, key='kernel-test')
view.show(live=True)
print('shown', chart.widget.model_id)
""",
    )
    errors = [m for m in msgs if m["msg_type"] == "error"]
    assert not errors, errors
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    image_id = out.split()[-1]
    assert any(m["msg_type"] == "display_data" for m in msgs)

    # a long cell (waiting, as on I/O): the view keeps updating meanwhile — the kernel is
    # not blocked by it and the updates reach the frontend as comm messages for the widget
    def image_updates(msgs: list[dict[str, Any]]) -> int:
        # a PNG image widget: an "update" of its value; an ipympl canvas: a binary diff image
        return sum(
            1
            for m in msgs
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == image_id
            and (
                (
                    m["content"]["data"].get("method") == "update"
                    and ["value"] in m["content"]["data"].get("buffer_paths", [])
                )
                or (
                    m["content"]["data"].get("method") == "custom"
                    and "binary" in str(m["content"]["data"].get("content", {}).get("data", ""))
                )
            )
        )

    busy = execute(kernel, "import time\ntime.sleep(2)\nprint('busy done')")
    assert image_updates(busy) >= 4, [m["msg_type"] for m in busy]
    # nothing leaked into the busy cell's own output but its print
    streams = [m["content"]["text"] for m in busy if m["msg_type"] == "stream"]
    assert streams == ["busy done\n"]
    # even a CPU-bound pure-Python cell (holding the GIL) does not stop the view
    cpu = execute(kernel, "t0 = time.time()\nwhile time.time() - t0 < 2: pass")
    assert image_updates(cpu) >= 1
    # pause stops updates; the same cell re-run replaces the timer instead of stacking
    msgs = execute(
        kernel,
        "view.ticker.pause(); import time; time.sleep(0.5); "
        "k = view.ticker.ticks; time.sleep(0.6); print(view.ticker.ticks - k, view.ticker.errors)",
    )
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert out.split() == ["0", "0"]
    msgs = execute(
        kernel,
        "import threading; print(sum(t.name.startswith('cryptolab-live') for t in threading.enumerate()))\n"
        "view2 = LiveView(lambda: None, [], interval=0.2, key='kernel-test').start()\n"
        "import time; time.sleep(0.3)\n"
        "print(sum(t.name.startswith('cryptolab-live') for t in threading.enumerate()), view.ticker.running)",
    )
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    assert out.split() == ["1", "1", "False"]


def test_charts_follow_jupyterlabs_dark_theme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptolab.notebook import plots

    monkeypatch.delenv("CRYPTOLAB_THEME", raising=False)
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path))
    assert not plots.dark_theme()  # no settings: light
    f = tmp_path / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    f.parent.mkdir(parents=True)
    f.write_text('{\n  // the Lab writes comments too\n  "theme": "JupyterLab Dark"\n}')
    assert plots.dark_theme()
    chart = LiveChart(
        lambda fig: fig.add_subplot().plot([0, 1], [0, 1]), width=3, height=2, interactive=False
    )
    assert chart.dark
    chart.render()
    assert chart.figure.get_facecolor()[:3] < (0.2, 0.2, 0.2)  # a dark page gets a dark chart
    monkeypatch.setenv("CRYPTOLAB_THEME", "light")
    assert not plots.dark_theme()


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


def test_key_figures_show_the_table_and_do_not_print_a_raw_dict(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.formatters import DisplayFormatter

    from cryptolab.notebook import key_figures

    got = key_figures(lambda: {"last_price": Decimal("65000.10000000"), "trades": 3}, live=False)
    assert got == {"last_price": Decimal("65000.10000000"), "trades": 3}  # the figures, exact
    assert DisplayFormatter().format(got) == ({}, {})  # as a cell's last value: nothing printed again
    assert "Decimal(" not in capsys.readouterr().out


def test_the_tape_is_as_wide_as_its_widest_row() -> None:
    tape = Tape(rows=2)
    layout = tape.widget.layout
    assert layout.width == "max-content" and layout.flex == "0 0 auto"  # never cut to a fixed width
