"""The one exception root of cryptolab and its few documented subclasses.

Every error a user can cause or meet carries a message that says what to do next;
the CLI prints it on one line (no traceback wall) and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "CryptolabError",
    "ConfigError",
    "DatabaseError",
    "SourceError",
    "DataError",
    "TradeConflict",
    "first_line",
    "one_line",
]


class CryptolabError(Exception):
    """Root of every error cryptolab raises on purpose."""


class ConfigError(CryptolabError):
    """A setting (environment variable, `.env`, argument) is missing or wrong."""


class DatabaseError(CryptolabError):
    """The database cannot be reached, started or used as asked."""


class SourceError(CryptolabError):
    """A market data source (exchange, endpoint, file) cannot be used as asked."""


class DataError(CryptolabError):
    """Input data (a query argument, a file, a payload) is not what it should be."""


class TradeConflict(DataError):
    """Offered trades contradict what is stored under the same trade ids: refused, nothing stored."""


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (what an error line quotes of a driver's or library's
    error), or the exception's class name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip() if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """All of `exc`'s message on one line (whitespace folded), or its class name when empty: for
    errors whose detail is on a later line (an object store's error code)."""
    return " ".join(str(exc).split()) or type(exc).__name__
