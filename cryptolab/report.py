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


def record(name: str, value: Any) -> None:
    """Record a key figure of a notebook (Decimal kept exact as a string), shown as
    `name = value` in the notebook and the HTML, read back by `read_records()`."""
    from IPython.display import display

    data = _jsonable(value)
    display({RECORD_MIME: {"name": name, "value": data}, "text/plain": f"{name} = {json.dumps(data)}"},
            raw=True, metadata={RECORD_MIME: {"name": name}})


def read_records(notebook: str | Path | Any) -> dict[str, Any]:
    """Every `record()`ed figure of an executed notebook (path or nbformat node)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
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
    """What an analysis notebook resolves from its parameters: a connection and a symbol."""

    conn: Any
    symbol: str
    exchange: str

    @property
    def kw(self) -> dict[str, Any]:
        """Keyword arguments every `cryptolab.analysis` call takes: exchange and conn."""
        return {"exchange": self.exchange, "conn": self.conn}

    def __repr__(self) -> str:
        info = self.conn.info
        return f"NotebookContext(symbol={self.symbol!r}, exchange={self.exchange!r}, database={info.dbname!r} on {info.host or 'localhost'})"


def notebook_context(dsn: str | None = None, exchange: str = "binance", symbol: str | None = None) -> NotebookContext:
    """Connect (autocommit: a live refresh thread never holds a transaction open) and pick
    the symbol: the given one, else the one with the newest stored trade."""
    from . import analysis, db
    from .errors import DataError

    conn = db.connect(dsn, autocommit=True)
    if symbol is None:
        stored = analysis.stored_symbols(exchange=exchange, conn=conn)
        if stored.height == 0:
            conn.close()
            raise DataError(f"nothing is stored for {exchange} yet: run `cryptolab demo` or `cryptolab capture` first, "
                            "or point dsn / CRYPTOLAB_DSN at a database with trades")
        symbol = stored.sort("last_second").get_column("symbol")[-1]
    return NotebookContext(conn=conn, symbol=str(symbol).upper(), exchange=exchange)


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
    """`In [n]` + first line of the failing cell + the exception, when it failed."""
    records: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


class ReportFailed(CryptolabError):
    """One or more notebooks failed; the report (with the failed notebooks) was still written."""

    def __init__(self, runs: Sequence[NotebookRun], index: Path) -> None:
        self.runs = list(runs)
        self.index = index
        failed = [r for r in runs if not r.ok]
        lines = "; ".join(f"{r.source.name}: {r.error}" for r in failed)
        super().__init__(f"{len(failed)} of {len(runs)} notebooks failed — {lines} (see {index})")


def _cell_error(exc: Exception, executed: Path) -> str:
    """'cell 3 (In [4]) `first line`: Error: message' — cell 3 counted in the source notebook
    (papermill's injected-parameters cell left out), In [4] as the executed copy shows it."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return f"{type(exc).__name__}: {exc}"
    first = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "").strip()
    number = exc.cell_index + 1
    try:
        import nbformat

        cells = nbformat.read(str(executed), as_version=4).cells[: exc.cell_index]
        number -= sum("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    except (OSError, ValueError):
        pass
    return f"cell {number} (In [{exc.exec_count}]) `{first[:80]}`: {exc.ename}: {exc.evalue}"


def run_notebook(source: Path, out_dir: Path, parameters: Mapping[str, Any] | None = None, *,
                 kernel_name: str | None = None, cell_timeout: float | None = 900, to_html: bool = True) -> NotebookRun:
    """Execute one notebook with papermill (non-live) into `out_dir`; never raises for a cell
    error — the result says which cell failed, and the executed notebook shows it."""
    import papermill as pm

    declared = declared_parameters(source)
    params = {k: v for k, v in {"live": False, **(parameters or {})}.items() if k in declared}
    out_dir.mkdir(parents=True, exist_ok=True)
    result = NotebookRun(name=source.stem, source=source, output=out_dir / source.name, parameters=params)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(source), str(result.output), parameters=params,
            kernel_name=kernel_name or ensure_kernel(), progress_bar=False, log_output=False,
            execution_timeout=cell_timeout, cwd=str(out_dir),
        )
        result.ok = True
    except Exception as exc:
        result.error = _cell_error(exc, result.output)
    result.seconds = time.perf_counter() - t0
    if result.output.exists():
        result.records = read_records(result.output)
        if to_html:
            result.html = _to_html(result.output)
    return result


def _to_html(path: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    out = path.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _index_html(runs: Sequence[NotebookRun], parameters: Mapping[str, Any], started: datetime, seconds: float) -> str:
    def fig(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v)
        return html.escape(text if len(text) < 160 else text[:157] + "…")

    rows = []
    for r in runs:
        status = ('<span style="color:#16a34a">ok</span>' if r.ok
                  else f'<span style="color:#dc2626">failed</span><br><small>{html.escape(r.error or "")}</small>')
        links = " · ".join(x for x in (
            f'<a href="{html.escape(r.html.name)}">HTML</a>' if r.html else "",
            f'<a href="{html.escape(r.output.name)}">notebook</a>' if r.output.exists() else "") if x)
        figs = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{fig(v)}</code></td></tr>" for k, v in r.records.items())
        rows.append(f"<tr><td><b>{html.escape(r.name)}</b><br>{links}</td><td>{status}</td><td>{r.seconds:.1f} s</td>"
                    f'<td><table class="figs">{figs}</table></td></tr>')
    params = ", ".join(f"{html.escape(k)}={html.escape(json.dumps(_jsonable(v)))}" for k, v in parameters.items()) or "defaults"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cryptolab report {started:%Y-%m-%d %H:%M} UTC</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#111827}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #e5e7eb;padding:6px 10px;text-align:left;vertical-align:top}}
table.figs td{{border:none;padding:1px 8px 1px 0;font-size:13px}} code{{font-size:12px}}
</style></head><body>
<h1>cryptolab report</h1>
<p>Generated {started:%Y-%m-%d %H:%M:%S} UTC in {seconds:.1f} s · parameters: {params} ·
{sum(r.ok for r in runs)}/{len(runs)} notebooks ok</p>
<table><tr><th>notebook</th><th>status</th><th>time</th><th>key figures</th></tr>
{''.join(rows)}
</table></body></html>
"""


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

    Raises ReportFailed (after writing everything) when a notebook fails, and
    ConfigError when a parameter is declared by none of the chosen notebooks.
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
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _s: None)
    say(f"report → {out_dir} ({len(paths)} notebooks, kernel {kernel}, {max(1, jobs)} at a time)")
    t0 = time.perf_counter()
    total = len(paths)

    def one(i_path: tuple[int, Path]) -> NotebookRun:
        i, path = i_path
        say(f"[{i}/{total}] {path.name} …")
        r = run_notebook(path, out_dir, params, kernel_name=kernel, cell_timeout=cell_timeout, to_html=to_html)
        say(f"[{i}/{total}] {path.name} {'ok' if r.ok else 'FAILED'} in {r.seconds:.1f} s"
            + ("" if r.ok else f" — {r.error}"))
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(one, enumerate(paths, 1)))
    seconds = time.perf_counter() - t0
    index = out_dir / "index.html"
    index.write_text(_index_html(runs, params, started, seconds), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps({
        "generated_at": started.isoformat(), "seconds": round(seconds, 3), "parameters": _jsonable(params),
        "notebooks": [{"name": r.name, "ok": r.ok, "seconds": round(r.seconds, 3), "error": r.error,
                       "records": r.records} for r in runs],
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
                print(f"cryptolab report: {r.source.name} failed at {r.error}", file=sys.stderr)
        print(f"cryptolab report: see {exc.index}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="cryptolab report")
    configure(ap)
    sys.exit(run(ap.parse_args()))
