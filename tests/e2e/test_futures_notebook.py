"""Notebook 07 (USD-M futures) under papermill on history loaded from the local exchange's
futures/um dump tree: its key figures equal the analysis API; on spot-only data it says why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import cryptolab.analysis as an
from cryptolab.notebook.records import read_records
from cryptolab.report.runner import run_reports
from tests.history.test_futures import load_futures_days, two_days_in_last_whole_month


@pytest.mark.usefixtures("not_at_midnight")
def test_futures_notebook_runs_on_loaded_history_and_records_match_the_api(
        dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=63, history_rate=0.004)
    days = two_days_in_last_whole_month()
    load_futures_days(ex, dsn, tmp_path / "cache", days)
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=timezone.utc)
    end = start + timedelta(days=2)
    params = {
        "symbol": "BTCUSDT",
        "exchange": "simulator",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "interval": "1h",
        "dsn": dsn,
    }
    lines: list[str] = []
    index = run_reports(tmp_path / "report", params, ["07"], progress=lines.append)
    assert "1/1 notebooks ok" in index.read_text(), lines
    rec = read_records(tmp_path / "report" / "07_futures.ipynb")
    assert (tmp_path / "report" / "07_futures.html").stat().st_size > 10_000
    with psycopg.connect(dsn) as c:
        fund = an.funding("BTCUSDT", start, end, exchange="simulator-usdm", conn=c)
        basis = an.basis("BTCUSDT", start, end, "1h", exchange="simulator-usdm", conn=c)
        oi = an.open_interest("BTCUSDT", start, end, exchange="simulator-usdm", conn=c)
    assert rec["exchange"] == "simulator-usdm" and rec["settlements"] == fund.height == 6
    assert Decimal(rec["realised_funding_per_unit"]) == fund["cumulative_per_unit"][-1]
    assert Decimal(rec["last_basis"]) == basis["basis"][-1]
    assert Decimal(rec["last_basis_bps"]) == basis["basis_bps"][-1]
    assert Decimal(rec["open_interest_change"]) == oi["open_interest"][-1] - oi["open_interest"][0]
    assert rec["liquidations"] == 0


def test_futures_notebook_on_spot_only_data_says_why(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    index = run_reports(
        tmp_path / "report", {"symbol": "BTCUSDT", "exchange": "binance", "dsn": dsn}, ["07"], progress=None
    )
    assert "1/1 notebooks ok" in index.read_text()
    rec = read_records(tmp_path / "report" / "07_futures.ipynb")
    assert rec["futures"].startswith("nothing to show: no USD-M futures rows of BTCUSDT on binance-usdm")
