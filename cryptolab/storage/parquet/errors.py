"""The archive's one error: what failed, where, and that nothing was deleted."""

from __future__ import annotations

from ...errors import CryptolabError

__all__ = ["ArchiveError"]


class ArchiveError(CryptolabError):
    """The archive cannot be written, read or trusted as asked (the database keeps its rows)."""
