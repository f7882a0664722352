"""Concurrent, resumable, verified download of dump files into a cache.

Each file goes to `<cache>/<its path on the site>.part` first. A dropped connection or a
5xx is retried (bounded backoff) and resumes where the `.part` ends (HTTP `Range`); a
`.part` is never taken for a whole file: only once its SHA-256 equals the one in the
file's `.CHECKSUM` is it renamed to its final name. A mismatch is retried once from
scratch (checksum and file); a second mismatch is a DataError naming the file. A 404 is
not an error here: the caller decides (a day not published yet, or a hole REST fills).
A cached file is verified again before it is used.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import DataError, SourceError
from ..storage.private import private_dirs
from .plan import DumpFile

__all__ = ["Downloader", "Fetched", "Progress", "sha256_of", "DEFAULT_DUMPS_URL", "MAX_FILE_BYTES"]

DEFAULT_DUMPS_URL = "https://data.binance.vision"
MAX_FILE_BYTES = 16 * 1024**3
"""Largest dump accepted (a month of BTCUSDT trades is ~2-3 GB zipped)."""
MAX_CHECKSUM_BYTES = 4096
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while True:
            b = fh.read(_CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@dataclass
class Fetched:
    """One planned file after the download: `path` is a verified zip, or None (404)."""

    file: DumpFile
    path: Path | None
    sha256: str | None
    size: int
    url: str
    cached: bool = False


class Progress:
    """Files, bytes and rows so far: a tqdm bar on a terminal, plain lines otherwise, or nothing."""

    def __init__(self, enabled: bool = True, files: int = 0) -> None:
        self.enabled = enabled
        self.files_total = files
        self.files_done = 0
        self.bytes = 0
        self.rows = 0
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=files, unit="file", file=sys.stderr, desc="history")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        self._refresh()

    def file_done(self, name: str, rows: int | None = None, note: str = "") -> None:
        self.files_done += 1
        if rows:
            self.rows += rows
        if self._bar is not None:
            self._bar.update(1)
            self._refresh()
        elif self.enabled:
            print(f"history: {self.files_done}/{self.files_total} files, {self.bytes / 1e6:,.1f} MB, "
                  f"{self.rows:,} rows — {name}{(' ' + note) if note else ''}", file=sys.stderr, flush=True)

    def add_rows(self, n: int) -> None:
        self.rows += n
        self._refresh()

    def say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(MB=f"{self.bytes / 1e6:,.1f}", rows=f"{self.rows:,}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _disk_error(exc: OSError, path: Path) -> DataError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(f"disk full while writing {path}: free some space (or give --cache on another disk) "
                         "and run again — the download resumes where it stopped")
    return DataError(f"{path}: {exc.strerror or exc}")


class _Retry(Exception):
    """A transient failure of one attempt (5xx, dropped connection, timeout)."""


def _private_file(path: str, flags: int) -> int:
    """Cache files are the owner's only (0600), like the journal."""
    return os.open(path, flags, 0o600)


class Downloader:
    """Downloads `DumpFile`s from `base_url` into `cache` (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        cache: Path,
        *,
        workers: int = 4,
        timeout: float = 60.0,
        retries: int = 6,
        max_file_bytes: int = MAX_FILE_BYTES,
        progress: Progress | None = None,
    ) -> None:
        if workers < 1:
            raise DataError("--workers must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.cache = Path(cache)
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.max_file_bytes = max_file_bytes
        self.progress = progress or Progress(False)
        self.retried = 0
        self.checksum_mismatches = 0

    def url(self, f: DumpFile, checksum: bool = False) -> str:
        return f"{self.base_url}/{f.checksum_path if checksum else f.path}"

    def local_path(self, f: DumpFile) -> Path:
        return self.cache / f.path

    async def fetch_all(self, files: Sequence[DumpFile]) -> list[Fetched]:
        """Every file (in the given order), `workers` at a time; the first error stops the rest."""
        sem = asyncio.Semaphore(self.workers)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.workers * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def one(f: DumpFile) -> Fetched:
                async with sem:
                    return await self.fetch(session, f)

            tasks = [asyncio.ensure_future(one(f)) for f in files]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch(self, session: aiohttp.ClientSession, f: DumpFile) -> Fetched:
        dest = self.local_path(f)
        url = self.url(f)
        sums = dest.with_name(dest.name + ".CHECKSUM")
        if dest.is_file() and sums.is_file():
            want = self._parse_checksum(sums.read_bytes(), f)
            digest = await asyncio.to_thread(sha256_of, dest)
            if digest == want:
                return Fetched(f, dest, digest, dest.stat().st_size, url, cached=True)
            dest.unlink()  # damaged in the cache: fetch again
        try:
            private_dirs(dest.parent)
        except OSError as exc:
            raise _disk_error(exc, dest.parent) from None
        part = dest.with_name(dest.name + ".part")
        last: tuple[str, str] | None = None
        for attempt in range(2):
            raw_sum = await self._get_small(session, self.url(f, checksum=True))
            if raw_sum is None:
                return Fetched(f, None, None, 0, url)
            want = self._parse_checksum(raw_sum, f)
            if not await self._download(session, url, part):
                return Fetched(f, None, None, 0, url)
            digest = await asyncio.to_thread(sha256_of, part)
            if digest == want:
                try:
                    with open(sums, "wb", opener=_private_file) as out:
                        out.write(raw_sum)
                    os.replace(part, dest)
                except OSError as exc:
                    raise _disk_error(exc, dest) from None
                return Fetched(f, dest, digest, dest.stat().st_size, url)
            self.checksum_mismatches += 1
            last = (digest, want)
            part.unlink(missing_ok=True)
            if attempt == 0:
                self.progress.say(
                    f"history: {f.name}: SHA-256 does not match its .CHECKSUM — downloading it again"
                )
        assert last is not None
        raise DataError(
            f"{f.name}: its SHA-256 ({last[0][:16]}…) does not match its .CHECKSUM ({last[1][:16]}…), twice "
            f"— the file is damaged at {self.base_url} or on the way; it was not loaded (run again later)"
        )

    def _parse_checksum(self, raw: bytes, f: DumpFile) -> str:
        token = raw.decode("ascii", "replace").strip().split()[:1]
        if not token or not _HEX64.match(token[0]):
            raise DataError(f"{f.checksum_path}: not a SHA-256 checksum file (starts {raw[:40]!r})")
        return token[0].lower()

    async def _get_small(self, session: aiohttp.ClientSession, url: str) -> bytes | None:
        """A .CHECKSUM file (None on 404), retried on transient errors."""
        for attempt in range(self.retries + 1):
            try:
                async with session.get(url) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status == 429 or resp.status >= 500:
                        raise _Retry(f"HTTP {resp.status}")
                    if resp.status != 200:
                        raise SourceError(
                            f"{url}: HTTP {resp.status} — is {self.base_url} a Binance dump site?"
                        )
                    body = await resp.content.read(MAX_CHECKSUM_BYTES + 1)
                    if len(body) > MAX_CHECKSUM_BYTES:
                        raise DataError(f"{url}: a .CHECKSUM longer than {MAX_CHECKSUM_BYTES} bytes")
                    return body
            except (_Retry, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if attempt >= self.retries:
                    raise SourceError(f"{url}: {exc or type(exc).__name__} ({attempt + 1} tries)") from None
                self.retried += 1
                await asyncio.sleep(min(8.0, 0.25 * 2**attempt))
        return None

    async def _download(self, session: aiohttp.ClientSession, url: str, part: Path) -> bool:
        """Fill `part` with the whole file (resuming what it holds); False on 404."""
        for attempt in range(self.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 404:
                        part.unlink(missing_ok=True)
                        return False
                    if resp.status == 416 and have:
                        part.unlink(missing_ok=True)  # our part is longer than the file: start over
                        raise _Retry("HTTP 416")
                    if resp.status == 429 or resp.status >= 500:
                        raise _Retry(f"HTTP {resp.status}")
                    if resp.status not in (200, 206):
                        raise SourceError(f"{url}: HTTP {resp.status}")
                    mode = "ab"
                    if resp.status == 200 or not have:
                        mode, have = "wb", 0
                    elif not (resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")):
                        part.unlink(missing_ok=True)
                        raise _Retry("a Range answer that does not start where the partial file ends")
                    total = have + (resp.content_length or 0)
                    if total > self.max_file_bytes:
                        raise DataError(
                            f"{url}: {total:,} bytes is more than the {self.max_file_bytes:,} a dump may have"
                        )
                    try:
                        with open(part, mode, opener=_private_file) as out:
                            async for chunk in resp.content.iter_chunked(_CHUNK):
                                have += len(chunk)
                                if have > self.max_file_bytes:
                                    raise DataError(
                                        f"{url}: more than {self.max_file_bytes:,} bytes: not a dump"
                                    )
                                out.write(chunk)
                                self.progress.add_bytes(len(chunk))
                    except OSError as exc:
                        raise _disk_error(exc, part) from None
                    if resp.content_length is not None and have < total:
                        raise _Retry("the answer ended early")
                    return True
            except (_Retry, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if attempt >= self.retries:
                    raise SourceError(
                        f"{url}: {exc or type(exc).__name__} ({attempt + 1} tries); "
                        "run again to resume the download"
                    ) from None
                self.retried += 1
                await asyncio.sleep(min(8.0, 0.25 * 2**attempt))
        return False
