"""Settings from the environment (and a `.env` file), never from source.

| variable          | meaning                                                        |
|-------------------|----------------------------------------------------------------|
| `CRYPTOLAB_DSN`   | libpq DSN/URI of your own PostgreSQL; unset = embedded server  |
| `CRYPTOLAB_HOME`  | where local state lives (embedded data, journal); `~/.cryptolab`|
| `PG*`             | the standard libpq variables, honoured by libpq itself         |

A `.env` in the current directory (or the one named by `CRYPTOLAB_ENV_FILE`) is read
first; real environment variables win over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "settings"]


def _load_dotenv() -> None:
    from dotenv import load_dotenv

    path = os.environ.get("CRYPTOLAB_ENV_FILE") or Path.cwd() / ".env"
    if Path(path).is_file():
        load_dotenv(path, override=False)


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one process."""

    dsn: str | None
    """libpq DSN/URI from `CRYPTOLAB_DSN`, or None for the embedded server."""
    home: Path
    """Local state directory from `CRYPTOLAB_HOME` (default `~/.cryptolab`)."""

    @property
    def embedded(self) -> bool:
        """True when cryptolab runs its own PostgreSQL (no `CRYPTOLAB_DSN`)."""
        return self.dsn is None

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded server."""
        return self.home / "pgdata"

    @property
    def journal_dir(self) -> Path:
        """Where capture spills batches while the database is down."""
        return self.home / "journal"


def settings() -> Settings:
    """Read the settings now (cheap; re-read so tests and notebooks may change the env)."""
    _load_dotenv()
    dsn = os.environ.get("CRYPTOLAB_DSN", "").strip() or None
    home_raw = os.environ.get("CRYPTOLAB_HOME", "").strip() or "~/.cryptolab"
    home = Path(home_raw).expanduser()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"CRYPTOLAB_HOME={home_raw} is a file, not a directory: point CRYPTOLAB_HOME at a directory")
    return Settings(dsn=dsn, home=home.resolve())
