"""`cryptolab report` mechanics on small notebooks made here: papermill runs them in the
project's own kernel, writes executed notebooks + HTML + an index, records key figures,
and fails naming the notebook and the cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cryptolab.errors import ConfigError
from cryptolab.notebook import read_records
from cryptolab.report import runner as report


def make_nb(path: Path, params: str, *cells: str) -> Path:
    first = new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[first, *(new_code_cell(c) for c in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    d = tmp_path / "nbs"
    d.mkdir()
    make_nb(d / "01_ok.ipynb", "symbol = 'BTCUSDT'\nlive = True\nn = 3",
            "import sys\nfrom decimal import Decimal\nfrom cryptolab.notebook import record",
            "assert live is False  # reports are never live\n"
            "record('symbol', symbol)\nrecord('total', Decimal('0.1') * n)\nrecord('python', sys.executable)",
            "print('done', n)")
    make_nb(d / "02_boom.ipynb", "symbol = 'BTCUSDT'\nlive = True",
            "x = 1", "y = 1 / 0  # the failing cell", "print('never')")
    make_nb(d / "03_deep.ipynb", "symbol = 'BTCUSDT'\nlive = True",
            "a = 1\nb = 2\n\nc = b / (a - 1)  # line 4 fails, not line 1\nprint(c)")
    return d


def test_runs_into_notebooks_html_and_index(nbdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    index = report.run_reports(
        out, {"symbol": "ETHUSDT", "n": 4}, [str(nbdir / "01_ok.ipynb")], progress=lines.append
    )
    assert index == (out / "index.html").resolve()
    executed = out / "01_ok.ipynb"
    recs = read_records(executed)
    # parameters injected, Decimal kept exact as a string, run by this very Python (the venv)
    assert recs == {"symbol": "ETHUSDT", "total": "0.4", "python": sys.executable}
    html = (out / "01_ok.html").read_text()
    assert "done 4" in html and "total = " in html
    page = index.read_text()
    assert "01_ok.html" in page and "ETHUSDT" in page and "1/1 notebooks ok" in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["notebooks"][0]["records"]["total"] == "0.4"
    assert any("[1/1] 01_ok.ipynb ok" in s for s in lines)
    # committed-style source is untouched; the executed copy carries outputs
    assert not any(c.get("outputs") for c in nbformat.read(str(nbdir / "01_ok.ipynb"), 4).cells)


def test_failure_names_notebook_and_cell_but_writes_everything(nbdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(report.ReportFailed) as info:
        report.run_reports(
            out, None, [str(nbdir / "01_ok.ipynb"), str(nbdir / "02_boom.ipynb")], progress=None
        )
    msg = str(info.value)
    assert "02_boom.ipynb" in msg and "ZeroDivisionError" in msg and "y = 1 / 0" in msg
    assert "01_ok" not in msg.split("—")[1]
    assert (out / "02_boom.html").exists() and (out / "01_ok.html").exists()
    assert "failed" in (out / "index.html").read_text()


def test_cli_exit_code_and_message(nbdir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab.cli.main",
            "report",
            "--out",
            str(tmp_path / "r"),
            "--notebooks",
            str(nbdir / "02_boom.ipynb"),
            "-p",
            "symbol",
            "SOLUSDT",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr
    assert "02_boom.ipynb failed at cell 3 (In [4]) `line 1: y = 1 / 0" in proc.stderr
    assert "ZeroDivisionError" in proc.stderr
    assert "[1/1] 02_boom.ipynb FAILED" in proc.stdout


def test_unknown_parameter_and_notebook_are_config_errors(nbdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown parameter.*symbl"):
        report.run_reports(tmp_path / "x", {"symbl": "BTCUSDT"}, [str(nbdir / "01_ok.ipynb")], progress=None)
    with pytest.raises(ConfigError, match="not found"):
        report.find_notebooks(["99"], nbdir)
    assert [p.name for p in report.find_notebooks(["01"], nbdir)] == ["01_ok.ipynb"]
    assert [p.name for p in report.find_notebooks(None, nbdir)] == [
        "01_ok.ipynb",
        "02_boom.ipynb",
        "03_deep.ipynb",
    ]


def test_kernel_spec_points_at_this_python() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    name = report.ensure_kernel()
    spec = KernelSpecManager().get_kernel_spec(name)
    assert Path(spec.argv[0]) == Path(sys.executable)


def test_failure_names_the_failing_line_not_the_first(nbdir: Path, tmp_path: Path) -> None:
    run = report.run_notebook(nbdir / "03_deep.ipynb", tmp_path / "out")
    assert not run.ok and run.error is not None
    assert "cell 2 (In [3]) `line 4: c = b / (a - 1)" in run.error and "ZeroDivisionError" in run.error


def test_a_finished_notebook_kernel_is_stopped_without_an_interrupt(tmp_path: Path) -> None:
    # jupyter_client interrupts (SIGINT) a kernel before asking it to shut down; a kernel busy
    # with a late message then printed "KeyboardInterrupt caught in kernel." into the demo's
    # output. The notebook's kernel records any SIGINT it gets in a file.
    marker = tmp_path / "interrupted"
    nb = make_nb(
        tmp_path / "01_sig.ipynb",
        f"marker = {str(marker)!r}\nlive = True",
        "import signal\n"
        "def mark(*a):\n    open(marker, 'w').write('SIGINT')\n"
        "get_ipython().kernel.post_handler_hook = lambda: signal.signal(signal.SIGINT, mark)",
        "print('done')",
    )
    r = report.run_notebook(nb, tmp_path / "out", {}, to_html=False)
    assert r.ok, r.error
    assert not marker.exists()  # shut down by request, never interrupted
