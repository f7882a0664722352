"""Running the analysis notebooks with papermill: the kernel, parameters, one run per
notebook and symbol, failures said with the cell and line that failed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import mask_secrets
from ..errors import ConfigError, CryptolabError
from ..notebook.records import read_records
from .html import _index_html, _shown_parameters, _thumbnail, _to_html
from .results import NotebookRun

__all__ = [
    "KERNEL_NAME",
    "NotebookRun",
    "ReportFailed",
    "ensure_kernel",
    "find_notebooks",
    "run_notebook",
    "run_reports",
]


KERNEL_NAME = "cryptolab"


LIVE_NOTEBOOK = "00_live_dashboard"


_kernel_lock = threading.Lock()


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
            raise ConfigError(
                f"kernelspec {name!r} at {spec.resource_dir} runs {spec.argv[:1]}, not {sys.executable}: "
                f"remove it (jupyter kernelspec remove {name}) and run again"
            )
    return name


# ---------------------------------------------------------------------- notebooks
DASHBOARD = "00_live_dashboard.ipynb"


def notebooks_dir() -> Path:
    """The project's notebooks/ (next to the package in a checkout, else ./notebooks)."""
    for cand in (Path(__file__).resolve().parents[2] / "notebooks", Path.cwd() / "notebooks"):
        if (cand / DASHBOARD).exists():
            return cand
    raise ConfigError("cannot find notebooks/00_live_dashboard.ipynb: run from the cryptolab checkout")


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
            d = directory or notebooks_dir()
            hits = sorted(d.glob(f"{name}.ipynb")) or sorted(d.glob(f"{name}*.ipynb"))
            if len(hits) != 1:
                have = ", ".join(x.stem for x in sorted(d.glob("[0-9]*.ipynb")))
                raise ConfigError(
                    f"notebook {name!r} {'is ambiguous' if hits else 'not found'} in {d}: choose from {have}"
                )
            out.append(hits[0])
        return out
    d = directory or notebooks_dir()
    return [p for p in sorted(d.glob("[0-9][0-9]_*.ipynb")) if not p.stem.startswith(LIVE_NOTEBOOK)]


def declared_parameters(path: Path) -> dict[str, Any]:
    """The names (and inferred defaults) of a notebook's `parameters` cell."""
    import papermill as pm

    return dict(pm.inspect_notebook(str(path)))


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
        return mask_secrets(f"{type(exc).__name__}: {exc}")
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
    return mask_secrets(f"cell {number} (In [{exc.exec_count}]) `{where[:100]}`: {exc.ename}: {exc.evalue}")


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


def run_notebook(
    source: Path,
    out_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel_name: str | None = None,
    cell_timeout: float | None = 900,
    to_html: bool = True,
    output_name: str | None = None,
) -> NotebookRun:
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
    result = NotebookRun(
        name=name,
        source=source,
        output=out_dir / f"{name}.ipynb",
        parameters={**params, **({"dsn": mask_secrets(str(dsn))} if dsn else {})},
    )
    extra: dict[str, Any] = {
        "kernel_manager_class": _kernel_manager({"CRYPTOLAB_DSN": str(dsn)} if dsn else {})
    }
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(source),
            str(result.output),
            parameters=params,
            kernel_name=kernel_name or ensure_kernel(),
            progress_bar=False,
            log_output=False,
            execution_timeout=cell_timeout,
            cwd=str(out_dir),
            **extra,
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


def report_symbols(parameters: Mapping[str, Any]) -> tuple[str | None, list[str | None], str]:
    """Which exchange and symbols a report covers: the given ones, else every symbol stored
    on the exchange that holds the data (real `binance` first). Returns (exchange, symbols, note)."""
    if parameters.get("symbol") is not None:
        return parameters.get("exchange"), [parameters["symbol"]], ""
    from ..analysis.scope import resolve_market, stored_markets
    from ..storage import db

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
    say(
        f"report → {out_dir} ({len(jobs_list)} notebook runs, kernel {kernel}, {max(1, jobs)} at a time"
        + (f"; {note}" if note else "")
        + ")"
    )
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
        r = run_notebook(
            path, out_dir, p, kernel_name=kernel, cell_timeout=cell_timeout, to_html=to_html, output_name=name
        )
        r.symbol = sym
        say(
            f"[{i}/{total}] {name}.ipynb {'ok' if r.ok else 'FAILED'} in {r.seconds:.1f} s"
            + ("" if r.ok else f" — {r.error}")
        )
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(one, enumerate(jobs_list, 1)))
    seconds = time.perf_counter() - t0
    index = out_dir / "index.html"
    index.write_text(_index_html(runs, params, started, seconds, note), encoding="utf-8")
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "generated_at": started.isoformat(),
                "seconds": round(seconds, 3),
                "parameters": _shown_parameters(params),
                "exchange": exchange,
                "symbols": [s for s in symbols if s is not None],
                "notebooks": [
                    {
                        "name": r.name,
                        "symbol": r.symbol,
                        "ok": r.ok,
                        "seconds": round(r.seconds, 3),
                        "error": r.error,
                        "records": r.records,
                        "thumbnail": r.thumbnail.name if r.thumbnail else None,
                    }
                    for r in runs
                ],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    say(f"index: {index} ({seconds:.1f} s)")
    if not all(r.ok for r in runs):
        raise ReportFailed(runs, index)
    return index
