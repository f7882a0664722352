"""Every sql/*.sql module runs in psql as is (ON_ERROR_STOP), and agrees with the Python API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cryptolab import analysis as an
from cryptolab.storage import embedded
from cryptolab.storage.db import SQL_DIR
from tests.analysis.test_data import END, MARKET, START, SYMBOL, market_dsn  # noqa: F401  (fixture)

MODULES = sorted(p.name for p in Path(SQL_DIR).glob("*.sql"))


def psql(dsn: str, path: Path, *variables: str, csv: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [str(embedded.bin_dir() / "psql"), dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for v in variables:
        cmd += ["-v", v]
    if csv:
        cmd.append("--csv")
    cmd += ["-f", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_all_five_modules_are_there() -> None:
    assert {
        "price_analysis.sql",
        "traffic_analysis.sql",
        "quality_check.sql",
        "volume_stored.sql",
        "latency.sql",
    } <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_runs_in_psql_with_variables(market_dsn: str, module: str) -> None:
    r = psql(
        market_dsn,
        SQL_DIR / module,
        f"symbol={SYMBOL.lower()}",
        f"start={START.isoformat()}",
        f"end={END.isoformat()}",
    )
    assert r.returncode == 0, r.stderr
    assert "ERROR" not in r.stderr
    assert r.stdout.count("row") >= 2  # every query printed a result


@pytest.mark.parametrize("module", MODULES)
def test_module_runs_in_psql_with_its_defaults(dsn: str, module: str) -> None:
    r = psql(dsn, SQL_DIR / module)  # empty database, no variables: the file's defaults
    assert r.returncode == 0, r.stderr


def test_psql_and_python_give_the_same_numbers(market_dsn: str) -> None:
    r = psql(
        market_dsn,
        SQL_DIR / "price_analysis.sql",
        f"symbol={SYMBOL}",
        f"start={START.isoformat()}",
        f"end={END.isoformat()}",
        "interval=5m",
        csv=True,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines.index(
        "open_time,open,high,low,close,volume,quote_volume,taker_buy_volume,taker_buy_quote,"
        "trades,first_trade_id,last_trade_id"
    )
    block = lines[header + 1 : header + 4]
    py = an.ohlcv(SYMBOL, START, END, "5m").to_dicts()
    for line, row in zip(block, py):
        cells = line.split(",")
        assert (
            cells[1] == str(row["open"]) and cells[5] == str(row["volume"]) and int(cells[9]) == row["trades"]
        )
    assert len(block) == 3 and MARKET.stored
