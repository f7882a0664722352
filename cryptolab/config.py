"""Settings from the environment (and a `.env` file), never from source.

| variable          | meaning                                                        |
|-------------------|----------------------------------------------------------------|
| `CRYPTOLAB_DSN`   | libpq DSN/URI of your own PostgreSQL; unset = embedded server  |
| `CRYPTOLAB_HOME`  | where local state lives (embedded data, journal); `~/.cryptolab`|
|                   | (as root: `/var/lib/cryptolab`, which the server's account can reach)|
| `PG*`             | the standard libpq variables, honoured by libpq itself         |

A `.env` in the current directory (or the one named by `CRYPTOLAB_ENV_FILE`) is read
first; real environment variables win over it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "settings", "default_home", "mask_dsn", "mask_secrets", "mask_url", "MASK"]

MASK = "***"
"""What a hidden password is shown as."""


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
    """Local state directory from `CRYPTOLAB_HOME` (default `~/.cryptolab`; as root `/var/lib/cryptolab`)."""
    fapi_url: str = "https://fapi.binance.com"
    """Binance USD-M futures REST root, from `CRYPTOLAB_FAPI_URL`."""
    fstream_url: str = "wss://fstream.binance.com"
    """Binance USD-M futures WebSocket root (routed `/public`, `/market`), from `CRYPTOLAB_FSTREAM_URL`."""

    @property
    def embedded(self) -> bool:
        """True when cryptolab runs its own PostgreSQL (no `CRYPTOLAB_DSN`)."""
        return self.dsn is None

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded server."""
        return self.home / "pgdata"

    def writable_home(self) -> Path:
        """CRYPTOLAB_HOME, created (0700) if missing; a ConfigError in one line if unusable."""
        home = self.home
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = home / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(
                f"CRYPTOLAB_HOME={home} is not a directory: point CRYPTOLAB_HOME at a directory"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"CRYPTOLAB_HOME={home} is not writable ({exc.strerror or exc}): "
                "point CRYPTOLAB_HOME at a directory you can write"
            ) from None
        return home

    @property
    def journal_dir(self) -> Path:
        """Where capture spills batches while the database is down."""
        return self.home / "journal"


def default_home() -> str:
    """`~/.cryptolab`; as root `/var/lib/cryptolab`.

    As root the embedded PostgreSQL runs as a system account that cannot enter `/root`
    (mode 0700), and cryptolab never widens directories above CRYPTOLAB_HOME.
    """
    return "/var/lib/cryptolab" if os.geteuid() == 0 else "~/.cryptolab"


def settings() -> Settings:
    """Read the settings now (cheap; re-read so tests and notebooks may change the env)."""
    _load_dotenv()
    dsn = os.environ.get("CRYPTOLAB_DSN", "").strip() or None
    home_raw = os.environ.get("CRYPTOLAB_HOME", "").strip() or default_home()
    home = Path(home_raw).expanduser()
    if (home.exists() or home.is_symlink()) and not home.is_dir():
        raise ConfigError(
            f"CRYPTOLAB_HOME={home_raw} is a file, not a directory: point CRYPTOLAB_HOME at a directory"
        )
    urls = {
        k: v
        for k, v in (
            ("fapi_url", os.environ.get("CRYPTOLAB_FAPI_URL", "").strip()),
            ("fstream_url", os.environ.get("CRYPTOLAB_FSTREAM_URL", "").strip()),
        )
        if v
    }
    return Settings(dsn=dsn, home=home.resolve(), **urls)


def mask_url(url: str) -> str:
    """`url` with the password of its userinfo replaced by `***` (`ws://u:tok@h/` -> `ws://u:***@h/`).

    Works for any `scheme://user:password@host…` URL (ws, wss, http, postgresql); a
    URL without a password, or text that is not a URL, comes back unchanged. Query
    parameters named `password`/`token`/`key`/`secret` are masked too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or any(c in scheme for c in "/?#@ "):
        return url
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if i != -1:
            end = min(end, i)
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    tail = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}={MASK}", tail)
    return f"{scheme}://{netloc}{tail}"


_SECRET_QUERY = re.compile(r"(?i)(?<=[?&])(password|passwd|token|secret|api_?key|key)=([^&]*)")
# libpq keyword/value form: a bare value, a single-quoted one (spaces inside), escaped quotes
_SECRET_KV = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)")


def mask_dsn(dsn: str) -> str:
    """`dsn` with its password replaced by `***`, for display, logs and error messages.

    Handles both libpq forms: a URI (`postgresql://user:pw@host/db?password=pw`) and
    keyword/value (`host=h password=pw`, or the value single-quoted). A DSN without a password
    comes back unchanged.
    """
    if "://" in dsn:
        return mask_url(dsn)
    return _SECRET_KV.sub(lambda m: f"{m.group(1)}{MASK}", dsn)


_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def mask_secrets(text: str) -> str:
    """`text` (an error message, a parameter) with the password of any DSN or URL inside it
    replaced by `***`; `mask_dsn` is for a text that is one DSN."""
    return _SECRET_KV.sub(r"\1***", _URI_PASSWORD.sub(r"\1***\3", text))
