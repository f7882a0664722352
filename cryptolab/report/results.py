"""What one notebook run of a report produced (shared by the runner and the HTML pages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NotebookRun"]


@dataclass
class NotebookRun:
    """The outcome of one notebook."""

    name: str
    source: Path
    output: Path
    html: Path | None = None
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None
    """`In [n]` + the failing line of the cell + the exception, when it failed."""
    thumbnail: Path | None = None
    """The first chart of the executed notebook (PNG), for the index."""
    symbol: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
