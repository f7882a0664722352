"""What notebooks import: live widgets (charts, KPI tiles, a trade tape) that refresh on a
timer, the dashboard, figures, and the notebook context and records of a report.

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

from .charts import LiveChart, interactive_available, render_png
from .context import NotebookContext, notebook_context, record_all, show_figures
from .dashboard import Dashboard
from .records import read_records, record
from .tables import status_table, table, to_html
from .tape import Tape
from .ticker import Ticker, stop_all
from .tiles import KpiRow, KpiTile
from .view import LiveHTML, LiveView, key_figures, panel

__all__ = [
    "Dashboard",
    "KpiRow",
    "KpiTile",
    "LiveChart",
    "LiveHTML",
    "LiveView",
    "NotebookContext",
    "Tape",
    "Ticker",
    "interactive_available",
    "key_figures",
    "notebook_context",
    "panel",
    "read_records",
    "record",
    "record_all",
    "render_png",
    "show_figures",
    "status_table",
    "stop_all",
    "table",
    "to_html",
]
