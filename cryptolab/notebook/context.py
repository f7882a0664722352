"""What a notebook's first cell asks for: the database, exchange and symbol to show
(defaults follow the data), and helpers to show and record its figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import record

__all__ = ["NotebookContext", "notebook_context", "record_all", "show_figures"]


# ---------------------------------------------------------------------- notebook setup
@dataclass
class NotebookContext:
    """What an analysis notebook resolves from its parameters: a connection, the exchange
    and symbol (from the data when not given) and how they were chosen."""

    conn: Any
    symbol: str
    exchange: str
    chosen: str = ""
    """How exchange and symbol were picked, for people ('' when both were given)."""

    @property
    def kw(self) -> dict[str, Any]:
        """Keyword arguments every `cryptolab.analysis` call takes: exchange and conn."""
        return {"exchange": self.exchange, "conn": self.conn}

    def __repr__(self) -> str:
        info = self.conn.info
        text = (f"{self.symbol} on exchange {self.exchange!r} · database {info.dbname!r} on "
                f"{info.host or 'localhost'}")
        return text + (f"\n{self.chosen}" if self.chosen else "")


def notebook_context(
    dsn: str | None = None, exchange: str | None = None, symbol: str | None = None
) -> NotebookContext:
    """Connect (autocommit: a live refresh thread never holds a transaction open) and pick
    the exchange and symbol: the given ones, else those holding the data (real `binance`
    first when several exchanges hold it; the symbol with the newest stored trade)."""
    from ..analysis.scope import resolve_market, stored_markets
    from ..storage import db

    conn = db.connect(dsn, autocommit=True)
    try:
        exch, sym = resolve_market(conn, symbol, exchange)
        chosen = ""
        if exchange is None or symbol is None:
            markets = stored_markets(conn)
            holders = sorted({m.exchange for m in markets if m.symbol == sym})
            what = []
            if exchange is None:
                what.append(
                    f"exchange {exch!r}"
                    + (
                        f" (also stored: {', '.join(h for h in holders if h != exch)}; "
                        "binance, real data, comes first)"
                        if len(holders) > 1
                        else " (the one holding the data)"
                    )
                )
            if symbol is None:
                others = [m.symbol for m in markets if m.exchange == exch and m.symbol != sym]
                what.append(
                    f"symbol {sym} (newest stored trade"
                    + (f"; also stored: {', '.join(others)})" if others else ")")
                )
            chosen = "chosen from the data: " + "; ".join(what) + " — set exchange / symbol to choose"
        from ..analysis.scope import data_kind
        from ..errors import DataError

        try:
            kind = data_kind(sym, exchange=exch, conn=conn)
        except DataError:
            kind = ""
        if kind:
            reads = (
                "raw trades"
                if kind == "trades"
                else "aggregate trades (aggTrades: counts are last − first + 1; "
                "functions without `kind` need raw trades)"
            )
            chosen = (chosen + "\n" if chosen else "") + f"reading {reads}"
    except Exception:
        conn.close()
        raise
    return NotebookContext(conn=conn, symbol=sym, exchange=exch, chosen=chosen)


def show_figures(figures: Mapping[str, Any]) -> Any:
    """Key figures as a readable table (rounded, aligned); the exact values stay in `figures`."""
    from IPython.display import HTML

    from ..analysis.display import figures_html

    return HTML(figures_html(figures))  # type: ignore[no-untyped-call]


def record_all(figures: Mapping[str, Any], *, show: bool = True) -> None:
    """`record()` every figure (exact, for reports and tests), shown once as one readable table."""
    from IPython.display import display

    for name, value in figures.items():
        record(name, value, quiet=show)
    if show:
        display(show_figures(figures))  # type: ignore[no-untyped-call]
