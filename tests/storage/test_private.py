"""Owner-only folders: what cryptolab makes on disk is 0700 whatever the umask; folders that exist keep
their mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptolab.storage.private import private_dirs


def test_missing_folders_are_made_owner_only_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    old = os.umask(0o002)  # a permissive umask must not widen what is made
    try:
        made = private_dirs(shared / "a" / "b")
        again = private_dirs(shared / "a" / "b")  # already there: nothing changes, no error
    finally:
        os.umask(old)
    assert made == again == shared / "a" / "b" and made.is_dir()
    assert stat.S_IMODE((shared / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
