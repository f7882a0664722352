"""`cryptolab report`: -p values are read as papermill reads them, records kept as exact JSON text."""

from __future__ import annotations

from decimal import Decimal

from cryptolab.cli.report import _coerce
from cryptolab.notebook.records import _jsonable


def test_coerce_like_papermill() -> None:
    assert _coerce("3") == 3 and _coerce("2.5") == 2.5
    assert _coerce("False") is False and _coerce("None") is None
    assert _coerce('["a", "b"]') == ["a", "b"] and _coerce("BTCUSDT") == "BTCUSDT"
    assert _jsonable({"a": Decimal("1.50"), "b": [Decimal("2")]}) == {"a": "1.50", "b": ["2"]}
