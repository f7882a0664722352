"""The types of the public analyses: what they take and what they return, as mypy sees them."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from mypy import api as mypy_api

import cryptolab.analysis as an
from cryptolab.analysis import args
from cryptolab.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cryptolab" / "analysis"
PUBLIC = sorted(n for n in an.__all__ if callable(getattr(an, n)))


def test_no_public_analysis_takes_or_returns_any() -> None:
    loose = [
        f"{name}({p.name}: {p.annotation})"
        for name in PUBLIC
        for p in inspect.signature(getattr(an, name)).parameters.values()
        if re.search(r"\bAny\b", str(p.annotation))
    ]
    assert loose == []
    assert args.Frame == "pl.DataFrame | pd.DataFrame"


def _defs() -> dict[str, list[ast.FunctionDef]]:
    """Every top-level def of a public analysis name in the package, overloads first as written."""
    out: dict[str, list[ast.FunctionDef]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in PUBLIC:
                out.setdefault(node.name, []).append(node)
    return out


def _shape(fn: ast.FunctionDef) -> list[tuple[str, str]]:
    a = fn.args
    return [(p.arg, "pos") for p in a.posonlyargs + a.args] + [(p.arg, "kw") for p in a.kwonlyargs]


def test_every_analysis_with_as_has_a_polars_and_a_pandas_overload_of_its_own_parameters() -> None:
    for name, defs in _defs().items():
        *overloads, impl = defs
        takes_as = any(p.arg == "as_" for p in impl.args.kwonlyargs)
        assert len(overloads) == (2 if takes_as else 0), name
        for ov in overloads:
            assert _shape(ov) == _shape(impl), f"{name}: an overload's parameters differ from the function's"
        if takes_as:
            literals = [ast.unparse(next(p for p in ov.args.kwonlyargs if p.arg == "as_").annotation)
                        for ov in overloads]
            assert literals == ["Literal['polars']", "Literal['pandas']"], name


def _mypy(tmp_path: Path, code: str) -> str:
    source = tmp_path / "user_code.py"
    source.write_text(code)
    stdout, stderr, _ = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
        "--no-error-summary", "--hide-error-context", str(source),
    ])
    assert stderr == ""
    return stdout


def test_mypy_types_a_call_polars_by_default_pandas_on_request_and_refuses_inexact_arguments(
    tmp_path: Path,
) -> None:
    code = [
        "from datetime import date, datetime, timedelta",
        "from decimal import Decimal",
        "import cryptolab.analysis as an",
        "reveal_type(an.ohlcv())",
        "reveal_type(an.ohlcv('BTCUSDT', '2024-08-08T23:00:00Z', date(2024, 8, 9), '1m', as_='pandas'))",
        "reveal_type(an.reconcile_or_skip())",
        "reveal_type(an.sma(window=5).height)",
        "an.quality_report(max_skew=0.5, min_halt='30s')",
        "an.book_stats(depth_bps=(5, '10', Decimal('2.5')))",
        "an.trade_costs(horizon=timedelta(seconds=2))",
        "an.book_at('BTCUSDT', datetime(2024, 8, 9))",
        "an.ohlcv(start=1722)  # refused: a number is not a time",
        "an.volume_profile(bin_size=0.5)  # refused: a float is not exact",
        "an.trade_costs(horizon=3)  # refused: a horizon needs its unit",
    ]
    out = _mypy(tmp_path, "\n".join(code) + "\n")
    lines = out.splitlines()
    revealed = [line.split("Revealed type is ")[1] for line in lines if "Revealed type" in line]
    assert revealed == [
        '"polars.dataframe.frame.DataFrame"',
        '"pandas.core.frame.DataFrame"',
        '"tuple[polars.dataframe.frame.DataFrame | None, str]"',
        '"int"',
    ]
    errors = sorted({int(line.split(":")[1]) for line in lines if ": error:" in line})
    assert errors == [i for i, line in enumerate(code, 1) if "# refused" in line], out


def test_as_frame_hands_back_the_polars_frame_or_its_pandas_copy() -> None:
    frame = pl.DataFrame({"x": [1, 2]})
    assert args.as_frame(frame, "polars") is frame
    converted = args.as_frame(frame, "pandas")
    assert isinstance(converted, pd.DataFrame)
    assert converted["x"].tolist() == [1, 2]


def test_sma_and_ema_refuse_an_unknown_as_before_any_connection() -> None:
    for fn in (an.sma, an.ema):
        with pytest.raises(DataError, match="as_ must be 'polars' or 'pandas', not 'arrow'"):
            fn("BTCUSDT", as_="arrow")


def test_intervals_outside_the_documented_list_raise() -> None:
    for bad in ("7m", "2s", "90s", "3d"):
        with pytest.raises(DataError, match="not an interval: use one of 1s, 5s"):
            an.ohlcv("BTCUSDT", interval=bad)
    assert "1m" in an.INTERVALS and "1w" in an.INTERVALS
