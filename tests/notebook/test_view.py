"""The live view: static outputs for reports, key figures shown once as a table, and, in a real
ipykernel (the one pinned in the venv), updates from the background thread that reach the frontend
while another cell is busy."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from cryptolab.notebook.charts import LiveChart
from cryptolab.notebook.tiles import KpiTile
from cryptolab.notebook.view import LiveView


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


def test_key_figures_show_the_table_and_do_not_print_a_raw_dict(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.formatters import DisplayFormatter

    from cryptolab.notebook import key_figures

    got = key_figures(lambda: {"last_price": Decimal("65000.10000000"), "trades": 3}, live=False)
    assert got == {"last_price": Decimal("65000.10000000"), "trades": 3}  # the figures, exact
    assert DisplayFormatter().format(got) == ({}, {})  # as a cell's last value: nothing printed again
    assert "Decimal(" not in capsys.readouterr().out
