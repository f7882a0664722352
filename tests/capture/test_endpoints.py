"""Where a source lives: Binance's names resolve to their hosts, a local exchange's URL to its ws/http
pair."""

from __future__ import annotations

import pytest

from cryptolab.capture.endpoints import resolve_source
from cryptolab.errors import SourceError


def test_known_sources_resolve_to_their_hosts_and_say_their_time_unit() -> None:
    binance = resolve_source("binance")
    assert (binance.ws, binance.rest) == ("wss://stream.binance.com:9443", "https://api.binance.com")
    assert binance.time_unit == "MICROSECOND" and not binance.local
    assert resolve_source("binance.us").time_unit is None  # no µs option there: its default ms


def test_a_local_exchange_url_gives_its_ws_and_http_pair_and_is_local() -> None:
    for url in ("ws://127.0.0.1:9100", "http://127.0.0.1:9100/"):
        e = resolve_source(url)
        assert (e.ws, e.rest, e.local) == ("ws://127.0.0.1:9100", "http://127.0.0.1:9100", True)
    secure = resolve_source("wss://example.test:443")
    assert (secure.ws, secure.rest) == ("wss://example.test:443", "https://example.test:443")
    assert not secure.local


def test_an_unknown_source_is_one_error_that_lists_the_choices() -> None:
    for bad in ("nonsense", "ftp://127.0.0.1:21", "ws://"):
        with pytest.raises(SourceError, match="unknown source .* use binance, binance.us, binance-data"):
            resolve_source(bad)
