"""Where the archive lives: a directory or an S3-compatible bucket, through `pyarrow.fs`.

`open_store(url)` takes a directory (`/data/archive`, `~/archive`, `file:///data/archive`)
or `s3://bucket/prefix`. For S3 the endpoint, region and credentials come from the usual
environment variables only (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, AWS_REGION or
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or the
AWS SDK's profile chain), never from source or from the URL.

Publishing is the one atomic step: a file is written whole under `.staging/` (outside the
`trades/` dataset that readers scan), then moved to its final key: `os.replace` on a disk
(same filesystem, then the directory is fsynced), a server-side copy on S3 (an object
appears whole or not at all). A crash before the move leaves only a staging file, which the
next run deletes; a crash after it leaves a whole file, which the next run checks and keeps.

On a disk the archive is private to its owner, like the journal: folders it makes are 0700,
files 0600 (widen them with chmod to share a copy).
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigError, one_line
from ..private import private_dirs
from .errors import ArchiveError

__all__ = ["ArchiveStore", "open_store", "archive_url", "STAGING", "DATASET"]

STAGING = ".staging"
"""Folder (under the archive root) where files are written before they are published."""
DATASET = "trades"
"""Folder (under the archive root) holding the raw-trade dataset, hive-partitioned."""


def archive_url() -> str:
    """`CRYPTOLAB_ARCHIVE`, else `CRYPTOLAB_HOME/archive`."""
    from ...config import settings

    raw = os.environ.get("CRYPTOLAB_ARCHIVE", "").strip()
    if raw:
        return raw
    return str(settings().home / "archive")


@dataclass
class ArchiveStore:
    """One archive root: `url` as the user wrote it, `fs` a pyarrow filesystem, `root` its path there."""

    url: str
    fs: Any
    root: str
    kind: str  # "dir" or "s3"

    # ------------------------------------------------------------------ paths
    def full(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def uri(self, rel: str = "") -> str:
        """A URL/path of `rel` for people and for other readers (no credentials)."""
        base = self.url.rstrip("/")
        return f"{base}/{rel}" if rel else base

    # ------------------------------------------------------------------ errors
    def _fail(self, action: str, rel: str, exc: BaseException) -> ArchiveError:
        where = self.uri(rel)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return ArchiveError(f"no space left while {action} {where}: free space or archive elsewhere "
                                "(--to / CRYPTOLAB_ARCHIVE); nothing was deleted from the database")
        text = one_line(exc)
        if self.kind == "s3":
            hint = "check the bucket name, AWS_ENDPOINT_URL and the AWS credentials"
            if "NO_SUCH_BUCKET" in text or "does not exist" in text.lower():
                hint = "the bucket does not exist: create it or fix the URL"
            elif "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text:
                hint = "the store refused the request: check the credentials and the bucket's policy"
            elif "curlCode" in text or "connect" in text.lower() or "timeout" in text.lower():
                hint = "the object store is unreachable: check AWS_ENDPOINT_URL and that the server is up"
        else:
            hint = "check the path and its permissions"
        return ArchiveError(f"archive {self.uri()}: {action} {where} failed ({text}); {hint}. "
                            "Nothing was deleted from the database; re-run when fixed")

    # ------------------------------------------------------------------ operations
    def check(self) -> None:
        """Make sure the root can be reached (and, for a directory, exists)."""
        import pyarrow.fs as pafs

        try:
            if self.kind == "dir":
                private_dirs(self.root)
                if not os.access(self.root, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "not writable", self.root)
            else:
                bucket = self.root.split("/", 1)[0]
                info = self.fs.get_file_info(bucket)
                if info.type == pafs.FileType.NotFound:
                    raise FileNotFoundError(errno.ENOENT, "NO_SUCH_BUCKET: the bucket does not exist", bucket)
        except OSError as exc:
            raise self._fail("opening", "", exc) from None

    def exists(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        try:
            return bool(self.fs.get_file_info(self.full(rel)).type == pafs.FileType.File)
        except OSError as exc:
            raise self._fail("looking up", rel, exc) from None

    def size(self, rel: str) -> int:
        try:
            return int(self.fs.get_file_info(self.full(rel)).size or 0)
        except OSError as exc:
            raise self._fail("looking up", rel, exc) from None

    def put(self, rel: str, data: bytes) -> None:
        """Write `data` as `rel` (whole; on a disk flushed to stable storage)."""
        path = self.full(rel)
        try:
            if self.kind == "dir":
                private_dirs(str(Path(path).parent))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.fchmod(fd, 0o600)
                    view = memoryview(data)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
        except OSError as exc:
            raise self._fail("writing", rel, exc) from None

    def get(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_file(self.full(rel)) as f:
                return bytes(f.read())
        except OSError as exc:
            raise self._fail("reading", rel, exc) from None

    def publish(self, staged: str, final: str) -> None:
        """Move a whole staged file to its final name in one atomic step."""
        src, dst = self.full(staged), self.full(final)
        try:
            if self.kind == "dir":
                private_dirs(str(Path(dst).parent))
                os.replace(src, dst)
                fd = os.open(str(Path(dst).parent), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                self.fs.copy_file(src, dst)  # CopyObject: the object appears whole
                self.fs.delete_file(src)
        except OSError as exc:
            raise self._fail("publishing", final, exc) from None

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.full(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail("deleting", rel, exc) from None

    def staging_name(self, final: str) -> str:
        return f"{STAGING}/{uuid.uuid4().hex}-{final.rsplit('/', 1)[-1]}"

    def leftovers(self) -> list[str]:
        """Staging files left by an interrupted run (relative paths)."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.full(STAGING), allow_not_found=True, recursive=True)
        try:
            infos = self.fs.get_file_info(sel)
        except OSError as exc:
            raise self._fail("listing", STAGING, exc) from None
        base = self.root.rstrip("/") + "/"
        return [i.path[len(base):] if i.path.startswith(base) else i.path
                for i in infos if i.type == pafs.FileType.File]

    def files(self, prefix: str) -> list[tuple[str, int]]:
        """(relative path, size) of every file under `prefix`."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.full(prefix), allow_not_found=True, recursive=True)
        try:
            infos = self.fs.get_file_info(sel)
        except OSError as exc:
            raise self._fail("listing", prefix, exc) from None
        base = self.root.rstrip("/") + "/"
        return [(i.path[len(base):] if i.path.startswith(base) else i.path, int(i.size or 0))
                for i in infos if i.type == pafs.FileType.File]


def _s3_filesystem() -> Any:
    import pyarrow.fs as pafs

    kw: dict[str, Any] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": 5.0,
        "request_timeout": 30.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "").strip()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"AWS_ENDPOINT_URL={endpoint!r} is not an http(s) URL: use e.g. http://127.0.0.1:9000")
        kw["endpoint_override"] = parts.netloc
        kw["scheme"] = parts.scheme
        kw["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**kw)


def open_store(url: str | None = None, *, check: bool = True) -> ArchiveStore:
    """The archive at `url` (default `archive_url()`), checked to be reachable unless `check=False`."""
    import pyarrow.fs as pafs

    raw = (url if url is not None else archive_url()).strip()
    if not raw:
        raise ConfigError(
            "the archive location is empty: pass --to DIR|s3://bucket/prefix or set CRYPTOLAB_ARCHIVE"
        )
    if "://" in raw:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme == "file":
            root = parts.path
            if not root.startswith("/"):
                raise ConfigError(
                    f"archive URL {raw!r}: a file:// URL needs an absolute path (file:///data/archive)"
                )
            store = ArchiveStore(raw, pafs.LocalFileSystem(), os.path.normpath(root), "dir")
        elif scheme in ("s3", "s3a"):
            bucket = parts.netloc
            if not bucket or "@" in bucket or ":" in bucket:
                raise ConfigError(
                    f"archive URL {raw!r} has no valid bucket: use s3://bucket/prefix "
                    "(endpoint and credentials come from AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID …)"
                )
            if parts.query or parts.fragment:
                raise ConfigError(
                    f"archive URL {raw!r}: no query or fragment allowed; endpoint and credentials "
                    "come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID …)"
                )
            prefix = parts.path.strip("/")
            root = f"{bucket}/{prefix}" if prefix else bucket
            store = ArchiveStore(f"s3://{root}", _s3_filesystem(), root, "s3")
        else:
            raise ConfigError(
                f"archive URL {raw!r}: unknown scheme {parts.scheme!r}: use a directory or s3://bucket/prefix"
            )
    else:
        path = Path(raw).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"archive {raw!r} is a file, not a directory: point --to / CRYPTOLAB_ARCHIVE at a directory"
            )
        resolved = str(path.resolve())
        store = ArchiveStore(resolved, pafs.LocalFileSystem(), resolved, "dir")
    if check:
        store.check()
    return store
