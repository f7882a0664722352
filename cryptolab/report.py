"""Run the analysis notebooks with papermill into a report: executed notebooks, HTML, an index.

`cryptolab report [--out DIR] [-p name value …] [--notebooks 01 03 …]` runs each
notebook non-live (`live=False` is injected), writes `NAME.ipynb` and `NAME.html` under
DIR plus `index.html` linking them with each notebook's key figures, prints one progress
line per notebook, and exits non-zero naming the notebook and the cell that failed.

Key figures: a notebook calls `record(name, value)`; the value is stored in the
executed notebook as a display output of MIME type `application/vnd.cryptolab.record+json`
(papermill/scrapbook-style glue) and read back with `read_records()` — for the index
page and for tests that compare a notebook's figures with the analysis API.

The kernel: papermill starts the kernelspec `cryptolab`, which this module installs into
the running environment (`sys.prefix`) pointing at this very Python, so a report run from
a fresh venv executes the notebooks in that venv whatever other kernels exist.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import ConfigError, CryptolabError

__all__ = [
    "RECORD_MIME",
    "KERNEL_NAME",
    "NotebookRun",
    "NotebookContext",
    "notebook_context",
    "record_all",
    "show_figures",
    "mask_dsn",
    "ReportFailed",
    "record",
    "read_records",
    "ensure_kernel",
    "find_notebooks",
    "run_notebook",
    "run_reports",
    "configure",
    "run",
]

RECORD_MIME = "application/vnd.cryptolab.record+json"
KERNEL_NAME = "cryptolab"
LIVE_NOTEBOOK = "00_live_dashboard"
_kernel_lock = threading.Lock()


# ---------------------------------------------------------------------- records (glue)
def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # exact, as a decimal string
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def record(name: str, value: Any, *, quiet: bool = False) -> None:
    """Record a key figure of a notebook (Decimal kept exact as a string), read back by
    `read_records()`. Shown as `name = value` rounded for people (`quiet`: shown nowhere,
    e.g. when `record_all` shows the figures as one table)."""
    from IPython.display import display

    from .analysis.display import format_value

    data = _jsonable(value)
    bundle: dict[str, Any] = {RECORD_MIME: {"name": name, "value": data}}
    bundle["text/plain"] = "" if quiet else f"{name} = {format_value(value)}"
    display(bundle, raw=True, metadata={RECORD_MIME: {"name": name}})  # type: ignore[no-untyped-call]


def read_records(notebook: str | Path | Any) -> dict[str, Any]:
    """Every `record()`ed figure of an executed notebook (path or nbformat node)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook  # type: ignore[no-untyped-call]
    out: dict[str, Any] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            rec = o.get("data", {}).get(RECORD_MIME)
            if rec is not None:
                out[rec["name"]] = rec["value"]
    return out


# ---------------------------------------------------------------------- notebook setup
@dataclass
class NotebookContext:
    """What an analysis notebook resolves from its parameters: a connection, the exchange
    and symbol (from the data when not given) and how they were chosen."""

    conn: Any
    symbol: str
    exchange: str
    chosen: str = ""
    """How exchange and symbol were picked, for people ('' when both were given)."""

    @property
    def kw(self) -> dict[str, Any]:
        """Keyword arguments every `cryptolab.analysis` call takes: exchange and conn."""
        return {"exchange": self.exchange, "conn": self.conn}

    def __repr__(self) -> str:
        info = self.conn.info
        text = (f"{self.symbol} on exchange {self.exchange!r} · database {info.dbname!r} on "
                f"{info.host or 'localhost'}")
        return text + (f"\n{self.chosen}" if self.chosen else "")


def notebook_context(dsn: str | None = None, exchange: str | None = None, symbol: str | None = None) -> NotebookContext:
    """Connect (autocommit: a live refresh thread never holds a transaction open) and pick
    the exchange and symbol: the given ones, else those holding the data (real `binance`
    first when several exchanges hold it; the symbol with the newest stored trade)."""
    from . import db
    from .analysis.common import resolve_market, stored_markets

    conn = db.connect(dsn, autocommit=True)
    try:
        exch, sym = resolve_market(conn, symbol, exchange)
        chosen = ""
        if exchange is None or symbol is None:
            markets = stored_markets(conn)
            holders = sorted({m.exchange for m in markets if m.symbol == sym})
            what = []
            if exchange is None:
                what.append(f"exchange {exch!r}" + (f" (also stored: {', '.join(h for h in holders if h != exch)}; "
                                                       "binance, real data, comes first)" if len(holders) > 1
                                                       else " (the one holding the data)"))
            if symbol is None:
                others = [m.symbol for m in markets if m.exchange == exch and m.symbol != sym]
                what.append(f"symbol {sym} (newest stored trade" + (f"; also stored: {', '.join(others)})" if others
                                                                    else ")"))
            chosen = "chosen from the data: " + "; ".join(what) + " — set exchange / symbol to choose"
        from .analysis.common import data_kind
        from .errors import DataError

        try:
            kind = data_kind(sym, exchange=exch, conn=conn)
        except DataError:
            kind = ""
        if kind:
            reads = ("raw trades" if kind == "trades" else
                     "aggregate trades (aggTrades: counts are last − first + 1; functions without `kind` need raw trades)")
            chosen = (chosen + "\n" if chosen else "") + f"reading {reads}"
    except Exception:
        conn.close()
        raise
    return NotebookContext(conn=conn, symbol=sym, exchange=exch, chosen=chosen)


def show_figures(figures: Mapping[str, Any]) -> Any:
    """Key figures as a readable table (rounded, aligned); the exact values stay in `figures`."""
    from IPython.display import HTML

    from .analysis.display import figures_html

    return HTML(figures_html(figures))  # type: ignore[no-untyped-call]


def record_all(figures: Mapping[str, Any], *, show: bool = True) -> None:
    """`record()` every figure (exact, for reports and tests), shown once as one readable table."""
    from IPython.display import display

    for name, value in figures.items():
        record(name, value, quiet=show)
    if show:
        display(show_figures(figures))  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------- secrets
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(text: str) -> str:
    """`text` with any password of a libpq DSN / URI in it replaced by ***."""
    return _KV_PASSWORD.sub(r"\1***", _URI_PASSWORD.sub(r"\1***\3", text))


# ---------------------------------------------------------------------- kernel
_KERNEL_QUIET = "--IPKernelApp.log_level=ERROR"  # no per-kernel TCP warning in the report's progress


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install (or refresh) a kernelspec `name` that runs *this* Python; returns its name."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def ours(spec: Any) -> bool:
        return bool(spec.argv) and Path(spec.argv[0]) == Path(sys.executable) and _KERNEL_QUIET in spec.argv

    with _kernel_lock:
        try:
            if ours(KernelSpecManager().get_kernel_spec(name)):
                return name
        except NoSuchKernel:
            pass
        from ipykernel.kernelspec import install

        try:
            where = install(kernel_name=name, display_name="Python (cryptolab)", prefix=sys.prefix)
        except OSError:
            where = install(kernel_name=name, display_name="Python (cryptolab)", user=True)
        spec_file = Path(where) / "kernel.json"
        data = json.loads(spec_file.read_text())
        data["argv"] = [*data["argv"], _KERNEL_QUIET]
        spec_file.write_text(json.dumps(data, indent=1))
        spec = KernelSpecManager().get_kernel_spec(name)
        if not ours(spec):
            raise ConfigError(f"kernelspec {name!r} at {spec.resource_dir} runs {spec.argv[:1]}, not {sys.executable}: "
                              f"remove it (jupyter kernelspec remove {name}) and run again")
    return name


# ---------------------------------------------------------------------- notebooks
def _notebooks_dir() -> Path:
    from .lab import notebooks_dir

    return notebooks_dir()


def find_notebooks(names: Sequence[str] | None = None, directory: Path | None = None) -> list[Path]:
    """Notebooks to run: by default every numbered analysis notebook (not the live dashboard);
    `names` may be paths, file names, stems or number prefixes ('01', '03_quality_check')."""
    if names:
        out = []
        for name in names:
            p = Path(name)
            if p.suffix == ".ipynb" and p.exists():
                out.append(p.resolve())
                continue
            d = directory or _notebooks_dir()
            hits = sorted(d.glob(f"{name}.ipynb")) or sorted(d.glob(f"{name}*.ipynb"))
            if len(hits) != 1:
                have = ", ".join(x.stem for x in sorted(d.glob("[0-9]*.ipynb")))
                raise ConfigError(f"notebook {name!r} {'is ambiguous' if hits else 'not found'} in {d}: choose from {have}")
            out.append(hits[0])
        return out
    d = directory or _notebooks_dir()
    return [p for p in sorted(d.glob("[0-9][0-9]_*.ipynb")) if not p.stem.startswith(LIVE_NOTEBOOK)]


def declared_parameters(path: Path) -> dict[str, Any]:
    """The names (and inferred defaults) of a notebook's `parameters` cell."""
    import papermill as pm

    return dict(pm.inspect_notebook(str(path)))


@dataclass
class NotebookRun:
    """The outcome of one notebook."""

    name: str
    source: Path
    output: Path
    html: Path | None = None
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None
    """`In [n]` + the failing line of the cell + the exception, when it failed."""
    thumbnail: Path | None = None
    """The first chart of the executed notebook (PNG), for the index."""
    symbol: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


class ReportFailed(CryptolabError):
    """One or more notebooks failed; the report (with the failed notebooks) was still written."""

    def __init__(self, runs: Sequence[NotebookRun], index: Path) -> None:
        self.runs = list(runs)
        self.index = index
        failed = [r for r in runs if not r.ok]
        lines = "; ".join(f"{r.name}.ipynb: {r.error}" for r in failed)
        super().__init__(f"{len(failed)} of {len(runs)} notebooks failed — {lines} (see {index})")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"(?:Cell In\[\d*\]|<ipython-input-[^>]*>), line (\d+)")


def _failing_line(source: str, traceback: Sequence[str]) -> str:
    """The line of the cell that raised: the last `Cell In[n], line k` of the traceback
    (the innermost frame in the cell), else the cell's first line."""
    lines = source.splitlines()
    hits = [int(m.group(1)) for part in traceback for m in _CELL_LINE.finditer(_ANSI.sub("", part))]
    if hits and 1 <= hits[-1] <= len(lines):
        return f"line {hits[-1]}: {lines[hits[-1] - 1].strip()}"
    return next((ln.strip() for ln in lines if ln.strip()), "")


def _cell_error(exc: Exception, executed: Path) -> str:
    """'cell 3 (In [4]) `line 5: the failing line`: Error: message' — cell 3 counted in the
    source notebook (papermill's injected-parameters cell left out), In [4] as the executed
    copy shows it, the line the one that raised."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return mask_dsn(f"{type(exc).__name__}: {exc}")
    where = _failing_line(exc.source or "", exc.traceback or [])
    number = exc.cell_index + 1
    try:
        import nbformat

        cells = nbformat.read(str(executed), as_version=4).cells  # type: ignore[no-untyped-call]
        added = ("injected-parameters", "papermill-error-cell-tag")  # papermill's own cells
        source_cells = [c for c in cells if not any(t in c.metadata.get("tags", []) for t in added)]
        hits = [i for i, c in enumerate(source_cells, 1) if c.cell_type == "code" and c.source == exc.source]
        if hits:
            number = hits[0]
    except (OSError, ValueError):
        pass
    return mask_dsn(f"cell {number} (In [{exc.exec_count}]) `{where[:100]}`: {exc.ename}: {exc.evalue}")


def _kernel_manager(env: Mapping[str, str]) -> type:
    """A kernel manager class whose kernels get `env` on top of ours: how a DSN reaches the
    notebooks without being written into them as a parameter. Its shutdown (after the last
    cell) asks the kernel to stop without first interrupting it: the SIGINT jupyter_client
    sends then only made a kernel busy with a late message print a stray
    "KeyboardInterrupt caught in kernel." into the report's progress."""
    from jupyter_client.manager import AsyncKernelManager

    extra = dict(env)

    class EnvKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            kw["env"] = {**os.environ, **kw.get("env", {}), **extra}
            return await super()._async_pre_start_kernel(**kw)

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return  # nothing runs any more: the shutdown request follows (then SIGTERM, SIGKILL)
            await super()._async_interrupt_kernel()

    return EnvKernelManager


def run_notebook(source: Path, out_dir: Path, parameters: Mapping[str, Any] | None = None, *,
                 kernel_name: str | None = None, cell_timeout: float | None = 900, to_html: bool = True,
                 output_name: str | None = None) -> NotebookRun:
    """Execute one notebook with papermill (non-live) into `out_dir`; never raises for a cell
    error — the result says which cell and line failed, and the executed notebook shows it.

    A `dsn` parameter reaches the kernel as CRYPTOLAB_DSN in its environment, never as an
    injected parameter: a password in it is written nowhere."""
    import papermill as pm

    declared = declared_parameters(source)
    given = dict(parameters or {})
    dsn = given.pop("dsn", None)
    params = {k: v for k, v in {"live": False, **given}.items() if k in declared}
    out_dir.mkdir(parents=True, exist_ok=True)
    name = output_name or source.stem
    result = NotebookRun(name=name, source=source, output=out_dir / f"{name}.ipynb",
                         parameters={**params, **({"dsn": mask_dsn(str(dsn))} if dsn else {})})
    extra: dict[str, Any] = {"kernel_manager_class": _kernel_manager({"CRYPTOLAB_DSN": str(dsn)} if dsn else {})}
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(source), str(result.output), parameters=params,
            kernel_name=kernel_name or ensure_kernel(), progress_bar=False, log_output=False,
            execution_timeout=cell_timeout, cwd=str(out_dir), **extra,
        )
        result.ok = True
    except Exception as exc:
        result.error = _cell_error(exc, result.output)
    result.seconds = time.perf_counter() - t0
    if result.output.exists():
        result.records = read_records(result.output)
        result.thumbnail = _thumbnail(result.output)
        if to_html:
            result.html = _to_html(result.output)
    return result


def _thumbnail(executed: Path) -> Path | None:
    """The executed notebook's first chart, saved beside it as NAME.png (for the index)."""
    import base64

    import nbformat

    try:
        nb = nbformat.read(str(executed), as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {}).get("image/png")
            if data:
                out = executed.with_suffix(".png")
                out.write_bytes(base64.b64decode(data if isinstance(data, str) else "".join(data)))
                return out
    return None


def _to_html(path: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)  # type: ignore[no-untyped-call]
    out = path.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _shown_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as they may be shown or stored: a DSN with its password masked."""
    return {k: (mask_dsn(str(v)) if k == "dsn" and v is not None else _jsonable(v)) for k, v in parameters.items()}


def _index_html(runs: Sequence[NotebookRun], parameters: Mapping[str, Any], started: datetime, seconds: float,
                note: str = "") -> str:
    from .analysis.display import format_value
    from .plots import DOWN, UP

    def fig(v: Any) -> str:
        text = format_value(v)
        return html.escape(text if len(text) < 160 else text[:157] + "…")

    rows = []
    for r in runs:
        status = ('<span class="ok">ok</span>' if r.ok
                  else f'<span class="bad">failed</span><br><small>{html.escape(r.error or "")}</small>')
        links = " · ".join(x for x in (
            f'<a href="{html.escape(r.html.name)}">HTML</a>' if r.html else "",
            f'<a href="{html.escape(r.output.name)}">notebook</a>' if r.output.exists() else "") if x)
        thumb = ""
        if r.thumbnail is not None:
            target = html.escape(r.html.name if r.html else r.thumbnail.name)
            thumb = f'<a href="{target}"><img class="thumb" src="{html.escape(r.thumbnail.name)}" alt="{html.escape(r.name)}"></a>'
        figs = "".join(f'<tr><td>{html.escape(k)}</td><td class="num">{fig(v)}</td></tr>' for k, v in r.records.items())
        rows.append(f"<tr><td><b>{html.escape(r.name)}</b><br>{links}</td><td>{thumb}</td><td>{status}</td>"
                    f'<td class="num">{r.seconds:.1f} s</td><td><table class="figs">{figs}</table></td></tr>')
    shown = _shown_parameters(parameters)
    params = ", ".join(f"{html.escape(k)}={html.escape(json.dumps(v))}" for k, v in shown.items()) or "defaults"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cryptolab report {started:%Y-%m-%d %H:%M} UTC</title>
<style>
:root{{color-scheme:light dark}}
body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #8884;padding:6px 10px;text-align:left;vertical-align:top}}
table.figs td{{border:none;padding:1px 10px 1px 0;font-size:13px}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
table.figs td.num{{max-width:34em}}
img.thumb{{width:260px;border:1px solid #8884;border-radius:4px;background:#fff}} .ok{{color:{UP}}} .bad{{color:{DOWN}}}
</style></head><body>
<h1>cryptolab report</h1>
<p>Generated {started:%Y-%m-%d %H:%M:%S} UTC in {seconds:.1f} s · parameters: {params} ·
{sum(r.ok for r in runs)}/{len(runs)} notebooks ok{(" · " + html.escape(note)) if note else ""}</p>
<table><tr><th>notebook</th><th>chart</th><th>status</th><th>time</th><th>key figures</th></tr>
{''.join(rows)}
</table></body></html>
"""


def report_symbols(parameters: Mapping[str, Any]) -> tuple[str | None, list[str | None], str]:
    """Which exchange and symbols a report covers: the given ones, else every symbol stored
    on the exchange that holds the data (real `binance` first). Returns (exchange, symbols, note)."""
    if parameters.get("symbol") is not None:
        return parameters.get("exchange"), [parameters["symbol"]], ""
    from . import db
    from .analysis.common import resolve_market, stored_markets

    try:
        with db.connect(parameters.get("dsn")) as conn:
            exch, _ = resolve_market(conn, None, parameters.get("exchange"))
            syms = [m.symbol for m in stored_markets(conn, exch)]
            others = sorted({m.exchange for m in stored_markets(conn)} - {exch})
    except CryptolabError:
        return parameters.get("exchange"), [None], ""  # the notebooks say what is missing
    note = f"exchange {exch}" + (f" (also stored: {', '.join(others)})" if others else "")
    note += f", {len(syms)} symbol{'s' if len(syms) != 1 else ''}: {', '.join(syms)}"
    return exch, list(syms) or [None], note


def run_reports(
    out: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    notebooks: Sequence[str] | None = None,
    *,
    jobs: int = 2,
    cell_timeout: float | None = 900,
    to_html: bool = True,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Run the notebooks (non-live) into `out`, write `index.html`, return its path.

    Without a `symbol` parameter every symbol stored on the exchange holding the data is
    reported (each notebook once per symbol, `NN_name-SYMBOL`). Raises ReportFailed (after
    writing everything) when a notebook fails, and ConfigError when a parameter is declared
    by none of the chosen notebooks. A `dsn` goes to the kernels through their environment
    and is shown masked: its password is written nowhere.
    """
    started = datetime.now(timezone.utc)
    out_dir = Path(out or f"reports/{started:%Y%m%dT%H%M%SZ}").resolve()
    paths = find_notebooks(notebooks)
    if not paths:
        raise ConfigError("no notebooks to run: check --notebooks")
    params = dict(parameters or {})
    declared = {p: declared_parameters(p) for p in paths}
    unknown = [k for k in params if not any(k in d for d in declared.values())]
    if unknown:
        known = sorted({k for d in declared.values() for k in d})
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}: the notebooks take {', '.join(known)}")
    kernel = ensure_kernel()
    if all("symbol" in d and "exchange" in d for d in declared.values()):  # analysis notebooks: per symbol
        exchange, symbols, note = report_symbols(params)
    else:
        exchange, symbols, note = None, [params.get("symbol")], ""
    jobs_list: list[tuple[Path, str | None, str]] = []
    for sym in symbols:
        for path in paths:
            name = path.stem if len(symbols) == 1 or sym is None else f"{path.stem}-{sym}"
            jobs_list.append((path, sym, name))
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _s: None)
    say(f"report → {out_dir} ({len(jobs_list)} notebook runs, kernel {kernel}, {max(1, jobs)} at a time"
        + (f"; {note}" if note else "") + ")")
    t0 = time.perf_counter()
    total = len(jobs_list)

    def one(item: tuple[int, tuple[Path, str | None, str]]) -> NotebookRun:
        i, (path, sym, name) = item
        p = dict(params)
        if sym is not None:
            p["symbol"] = sym
        if exchange is not None:
            p["exchange"] = exchange
        say(f"[{i}/{total}] {name}.ipynb …")
        r = run_notebook(path, out_dir, p, kernel_name=kernel, cell_timeout=cell_timeout, to_html=to_html,
                         output_name=name)
        r.symbol = sym
        say(f"[{i}/{total}] {name}.ipynb {'ok' if r.ok else 'FAILED'} in {r.seconds:.1f} s"
            + ("" if r.ok else f" — {r.error}"))
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(one, enumerate(jobs_list, 1)))
    seconds = time.perf_counter() - t0
    index = out_dir / "index.html"
    index.write_text(_index_html(runs, params, started, seconds, note), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps({
        "generated_at": started.isoformat(), "seconds": round(seconds, 3), "parameters": _shown_parameters(params),
        "exchange": exchange, "symbols": [s for s in symbols if s is not None],
        "notebooks": [{"name": r.name, "symbol": r.symbol, "ok": r.ok, "seconds": round(r.seconds, 3),
                       "error": r.error, "records": r.records,
                       "thumbnail": r.thumbnail.name if r.thumbnail else None} for r in runs],
    }, indent=2), encoding="utf-8")
    say(f"index: {index} ({seconds:.1f} s)")
    if not all(r.ok for r in runs):
        raise ReportFailed(runs, index)
    return index


# ---------------------------------------------------------------------- CLI
def _coerce(text: str) -> Any:
    """A -p value as papermill's CLI reads it: int, float, bool, None, JSON list/object, else text."""
    low = text.strip()
    if low in ("True", "true"):
        return True
    if low in ("False", "false"):
        return False
    if low in ("None", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(low)
        except ValueError:
            pass
    if low[:1] in "[{":
        try:
            return json.loads(low)
        except ValueError:
            pass
    return text


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None, help="report directory (default reports/<UTC time>)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="notebook parameter, e.g. -p symbol BTCUSDT -p start 2024-03-05T00:00Z (repeatable)")
    p.add_argument("--notebooks", nargs="+", metavar="NB", default=None,
                   help="which notebooks: names, number prefixes (01 03) or paths (default: all analysis notebooks)")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    p.add_argument("--cell-timeout", type=float, default=900, help="seconds one cell may run (default 900)")
    p.add_argument("--no-html", action="store_true", help="executed notebooks only, no HTML")
    p.add_argument("--list", action="store_true", help="list the notebooks and their parameters, run nothing")


def run(args: argparse.Namespace) -> int:
    params = {name: _coerce(value) for name, value in args.parameter}
    if args.list:
        for path in find_notebooks(args.notebooks):
            decl = declared_parameters(path)
            print(f"{path.name}: " + ", ".join(f"{k}={v.get('default')}" for k, v in decl.items()))
        return 0
    try:
        run_reports(args.out, params, args.notebooks, jobs=args.jobs, cell_timeout=args.cell_timeout,
                    to_html=not args.no_html, progress=lambda s: print(s, flush=True))
    except ReportFailed as exc:
        for r in exc.runs:
            if not r.ok:
                print(f"cryptolab report: {r.name}.ipynb failed at {r.error}", file=sys.stderr)
        print(f"cryptolab report: see {exc.index}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="cryptolab report")
    configure(ap)
    sys.exit(run(ap.parse_args()))
