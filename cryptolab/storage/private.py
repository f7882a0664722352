"""Owner-only folders for what cryptolab writes on disk (journal, archive, history cache).

Folders made here are 0700, as the journal's files are 0600: trades a user captured are
theirs alone until they share a copy. Folders that already exist keep their mode.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dirs"]


def private_dirs(path: str | Path) -> Path:
    """Make `path` and its missing parents 0700 (existing folders keep their mode); return it."""
    d = Path(path)
    missing = []
    p = d
    while not p.exists():
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        try:
            m.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(m, 0o700)  # mkdir's mode is filtered by the umask
    return d
