"""A symbol's past from Binance's public dumps (verified) and REST, loaded fast and exactly once.

    from cryptolab.history import fetch_history
    res = fetch_history(["BTCUSDT"], "2025-01-01", "2025-01-31")            # trades
    fetch_history("BTCUSDT", "2025-01-01", kind="klines", interval="1m")     # klines up to now
    fetch_history("BTCUSDT", "2025-01-01", kind="fundingRate", market="usdm")  # USD-M futures (binance-usdm)

`cryptolab history SYMBOL… --from DATE` on the command line; `backfill_until()` is the join a
live capture uses (history up to its stream's first id). See docs/history.md.
"""

from __future__ import annotations

from .core import DEFAULT_REST_URL, backfill_until, fetch_history, fetch_history_async
from .download import DEFAULT_DUMPS_URL
from .plan import DumpFile, HistoryPlan, RestSpan, plan_history
from .result import HistoryResult

__all__ = [
    "fetch_history",
    "fetch_history_async",
    "backfill_until",
    "HistoryResult",
    "plan_history",
    "HistoryPlan",
    "DumpFile",
    "RestSpan",
    "DEFAULT_DUMPS_URL",
    "DEFAULT_REST_URL",
]
