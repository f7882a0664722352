"""The market model: the `exchange` column carries the market (binance = spot, binance-usdm = USD-M)."""

from __future__ import annotations

import pytest

from cryptolab.errors import CryptolabError
from cryptolab.markets import MARKETS, base_of, exchange_for, market_of, spot_of, usdm_of


def test_exchange_names_of_each_market() -> None:
    assert MARKETS == ("spot", "usdm")
    assert exchange_for("spot") == "binance"
    assert exchange_for("usdm") == "binance-usdm"
    assert exchange_for("usdm", "simulator") == "simulator-usdm"
    assert exchange_for("spot", "simulator-usdm") == "simulator"
    assert exchange_for(" USDM ", "binance-usdm") == "binance-usdm"


def test_market_and_base_read_back_from_the_exchange_name() -> None:
    assert market_of("binance") == "spot" and market_of("binance-usdm") == "usdm"
    assert market_of("simulator-usdm") == "usdm" and market_of("simulator") == "spot"
    assert base_of("simulator-usdm") == "simulator" and base_of("binance") == "binance"
    assert spot_of("binance-usdm") == "binance" and usdm_of("simulator") == "simulator-usdm"


def test_an_unknown_market_is_one_clear_error() -> None:
    with pytest.raises(CryptolabError, match=r"unknown market 'coinm': use one of spot, usdm"):
        exchange_for("coinm")
    with pytest.raises(CryptolabError, match="not an exchange name"):
        exchange_for("usdm", " ")
