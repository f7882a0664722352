"""The local exchange: a Binance-spot-compatible server on 127.0.0.1.

A synthetic market (or a replay of real dumps/recordings) printed over Binance's
WebSocket streams and REST API, with fault injection for reliability tests. Use
`LocalExchange` in Python, or `cryptolab exchange` / `cryptolab replay` on the CLI.
"""

from __future__ import annotations

from .faults import FaultPlan, parse_faults
from .local import LocalExchange

__all__ = ["LocalExchange", "FaultPlan", "parse_faults"]
