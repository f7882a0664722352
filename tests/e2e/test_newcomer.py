"""The newcomer's first hour, end to end: `cryptolab demo`, then everything with no
parameters — `cryptolab report`, the notebooks, the analysis API — finds the demo's data
(exchange `simulator`) by itself and shows every captured symbol; and a DSN's password
is written into no report file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

import cryptolab.analysis as an
from cryptolab.notebook.records import read_records
from cryptolab.report.runner import run_notebook, run_reports

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cryptolab.cli.main"]
pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, timeout=600
    )


def test_demo_then_everything_without_parameters_finds_the_data(dsn: str, tmp_path: Path) -> None:
    demo = _cli("demo", "--seconds", "6", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["exchange"] == "simulator" and summary["symbols"] == ["BTCUSDT", "ETHUSDT"]
    reports = sorted(
        p.stem for p in (Path(__file__).resolve().parents[2] / "notebooks").glob("0[1-9]_*.ipynb")
    )
    assert all(n["ok"] for n in summary["notebooks"])
    assert sorted(n["name"] for n in summary["notebooks"]) == sorted(
        f"{r}-{s}" for r in reports for s in ("BTCUSDT", "ETHUSDT")
    )

    # `cryptolab report` with no parameters at all: finds simulator, reports both symbols
    rep = _cli("report", "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert rep.returncode == 0, rep.stdout[-2000:] + rep.stderr[-2000:]
    s = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert s["exchange"] == "simulator" and sorted(n["symbol"] for n in s["notebooks"]).count(
        "ETHUSDT"
    ) == len(reports)
    by = {n["name"]: n for n in s["notebooks"]}
    price = by["01_price_analysis-BTCUSDT"]["records"]
    assert price["symbol"] == "BTCUSDT" and 5 <= price["bars"] <= 120  # range and interval from the data
    traffic = by["02_traffic_analysis-BTCUSDT"]["records"]
    assert traffic["seconds"] < 60 and traffic["tps_percentiles"]["p50"] > 0  # not an hour of zeros
    assert traffic["bursts"] <= 1  # not the whole capture as one burst
    assert str(by["04_volume-BTCUSDT"]["records"]["reconciliation"]).startswith("skipped")
    assert by["05_latency-BTCUSDT"]["records"]["latency"] == "applies"
    index = (tmp_path / "report" / "index.html").read_text()
    assert index.count('class="thumb"') == len(by) == 2 * len(reports)  # a chart thumbnail per notebook run
    assert all((tmp_path / "report" / f"{n}.png").read_bytes().startswith(b"\x89PNG") for n in by)

    # a notebook run directly with no parameters (papermill defaults: exchange/symbol None)
    run = run_notebook(ROOT / "notebooks" / "03_quality_check.ipynb", tmp_path / "direct")
    assert run.ok, run.error
    assert read_records(run.output)["symbol"] in ("BTCUSDT", "ETHUSDT")

    # the analysis API with no parameters
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one exchange holds the data: no ambiguity to warn about
        bars = an.ohlcv()
        assert 5 <= bars.height <= 120 and int(bars["trades"].sum()) > 0
        assert an.tps_stats()["p50"][0] > 0
        assert an.latest_trades(limit=3).height == 3
        assert an.load_trades(engine="copy").height > 100
        assert set(an.stored_symbols()["exchange"].to_list()) == {"simulator"}


def test_a_dsn_password_is_written_into_no_report_file(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    from cryptolab.model import Trade
    from cryptolab.storage.writer import TradeWriter

    TradeWriter(conn).write(
        [
            Trade(
                "binance",
                "PWUSDT",
                i,
                Decimal("1.5"),
                Decimal("2"),
                i % 2 == 0,
                1_735_689_600_000_000 + i * 1000,
            )
            for i in range(1, 50)
        ]
    )
    conn.commit()
    secret = "s3cret-Pw-4711"
    role = "cl_pw_user"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{secret}'")
    conn.commit()
    pw_dsn = psycopg.conninfo.make_conninfo(dsn, user=role, password=secret)
    with psycopg.connect(pw_dsn) as c:  # the DSN works (password checked or trusted)
        c.execute("SELECT 1")
    os.environ.pop("CRYPTOLAB_DSN", None)  # only the parameter may carry the database
    try:
        index = run_reports(tmp_path / "out", {"dsn": pw_dsn}, ["02"], progress=None)
    finally:
        os.environ["CRYPTOLAB_DSN"] = dsn
    out = index.parent
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.suffix for p in files} >= {".ipynb", ".html", ".json", ".png"}
    for p in files:
        assert secret.encode() not in p.read_bytes(), f"the DSN password leaked into {p.name}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["notebooks"][0]["ok"], summary["notebooks"][0]["error"]
    assert "***" in summary["parameters"]["dsn"] and role in summary["parameters"]["dsn"]
