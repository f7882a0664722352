"""What one history request did (`HistoryResult`): files planned, loaded, skipped and missing,
rows from dumps and from REST, and its one-paragraph summary."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HistoryResult"]


@dataclass
class HistoryResult:
    """What one history request did."""

    exchange: str
    kind: str
    symbols: tuple[str, ...]
    files_planned: int = 0
    files_loaded: int = 0
    files_skipped: int = 0  # already in the database (history_files)
    files_missing: list[str] = field(default_factory=list)  # 404: optional days and holes
    holes: list[str] = field(default_factory=list)  # 404 inside the range (filled from REST)
    bulk_files: int = 0
    rows: int = 0  # rows read from dumps
    stored: int = 0  # rows stored from dumps
    rest_rows: int = 0
    rest_stored: int = 0
    bytes: int = 0
    seconds: float = 0.0
    last_ids: dict[str, int] = field(default_factory=dict)
    checksum_retries: int = 0
    archived: int = 0  # rows not stored again: their ids live in the archive (days archived and dropped)

    @property
    def total_stored(self) -> int:
        return self.stored + self.rest_stored

    def summary(self) -> str:
        what = {"trades": "trades", "aggTrades": "aggregate trades", "klines": "klines",
                "markPriceKlines": "mark price klines", "fundingRate": "funding rates",
                "metrics": "open interest rows"}[self.kind]
        parts = [f"history {','.join(self.symbols)} ({self.exchange}): {self.total_stored:,} {what} stored "
                 f"({self.stored:,} from {self.files_loaded} dump file(s), {self.rest_stored:,} from REST)"]
        if self.files_skipped:
            parts.append(f"{self.files_skipped} file(s) already loaded")
        if self.holes:
            parts.append(f"{len(self.holes)} missing dump(s) filled from REST: {', '.join(self.holes[:4])}"
                         + (" …" if len(self.holes) > 4 else ""))
        if self.archived:
            parts.append(
                f"{self.archived:,} not stored again: their ids live in the archive (days archived and "
                "dropped)"
            )
        rate = (self.rows + self.rest_rows) / self.seconds if self.seconds else 0.0
        parts.append(f"{self.bytes / 1e6:,.1f} MB downloaded, {self.seconds:.1f} s, {rate:,.0f} rows/s")
        return "; ".join(parts)
