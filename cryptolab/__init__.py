"""cryptolab: a research workbench for live crypto market data.

Capture Binance trades into PostgreSQL without losing one, analyse them with plain
SQL modules, watch them live in Jupyter, and publish the same notebooks as reports.
Heavy parts are imported on first use, so `import cryptolab` stays cheap.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, CryptolabError, DatabaseError, DataError, SourceError
from .model import DeadLetter, Trade

__version__ = "0.1.0"

__all__ = [
    "Capture",
    "CaptureOptions",
    "CaptureStatus",
    "CryptolabError",
    "ConfigError",
    "DatabaseError",
    "DataError",
    "SourceError",
    "DeadLetter",
    "Trade",
    "connect",
    "settings",
    "__version__",
]

_LAZY = {
    "Capture": ("cryptolab.capture", "Capture"),
    "CaptureOptions": ("cryptolab.capture", "CaptureOptions"),
    "CaptureStatus": ("cryptolab.capture", "CaptureStatus"),
    "connect": ("cryptolab.storage.db", "connect"),
    "settings": ("cryptolab.config", "settings"),
}


def __dir__() -> list[str]:
    """The public API (what `from cryptolab import *` gives), not the import machinery."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'cryptolab' has no attribute {name!r}")
