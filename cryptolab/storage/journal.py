"""An append-only local journal: where capture puts batches while the database is away.

Segments are files of checksummed JSON lines under one directory
(`CRYPTOLAB_HOME/journal/…`), named by a rising sequence number. `append()` writes one
batch and fsyncs; `replay()` hands segments back oldest first and deletes each only
after the caller's `store` returns. A crash between storing and deleting replays that
segment again, which the writer's idempotent insert absorbs.

Nothing read back is trusted: every record carries a CRC-32 of its JSON and is
validated as data (names, ids, decimals, times, source). A record that fails either
check (a flipped digit, a letter in a price, an unknown source, a torn last line) is
never given to `store`: it is listed in `Segment.bad` with the reason and, once the
segment's good rows are stored, written to `<dir>/quarantine/records.jsonl` for
inspection and never retried. So an exception from `store` always means the store
failed (an outage), never that the journal holds bad data.

Files are the owner's only (directories 0700, files 0600), a directory is used by
one process at a time (an flock), appends stop at a byte cap with `JournalFullError`,
and `Journal.all_under(root)` finds every journal left under a parent directory,
whatever symbols named it. The format and guarantees: docs/journal.md.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ..book.model import BookRow
from ..errors import ConfigError
from ..model import DeadLetter, Trade
from .journal_format import (
    BadRecord,
    JournalError,
    Segment,
    _book_line,
    _dead_line,
    _trade_line,
    read_segment,
)
from .private import private_dirs

__all__ = [
    "Journal",
    "Replayed",
    "JournalFullError",
    "JournalBusyError",
    "default_max_bytes",
    "SEGMENT_BYTES",
    "DEFAULT_MAX_MB",
]


#: A new segment is started once the current one is larger than this.
SEGMENT_BYTES = 32 * 1024 * 1024


#: Default cap of one journal directory, in MiB (`CRYPTOLAB_JOURNAL_MAX_MB` overrides).
DEFAULT_MAX_MB = 4096


MAX_MB_ENV = "CRYPTOLAB_JOURNAL_MAX_MB"


_SEG_RE = re.compile(r"^seg-([0-9]{1,18})\.jsonl$")


_QUARANTINE = "quarantine"


_QUARANTINE_FILE = "records.jsonl"


_LOCK_FILE = ".lock"


class JournalFullError(JournalError):
    """`append` refused a batch: the journal's byte cap (or the disk) is full. Nothing was written."""

    def __init__(self, message: str, directory: Path, max_bytes: int, needed: int) -> None:
        super().__init__(message)
        self.directory = directory
        self.max_bytes = max_bytes
        self.needed = needed


class JournalBusyError(JournalError):
    """Another process holds this journal directory."""


class Replayed(NamedTuple):
    """What one `replay()` did: rows handed to `store` (and deleted), bad records set aside."""

    rows: int
    bad: int


def default_max_bytes() -> int:
    """The journal cap from `CRYPTOLAB_JOURNAL_MAX_MB` (MiB, > 0), else `DEFAULT_MAX_MB`."""
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MB * 1024 * 1024
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not (mb > 0 and mb < 2**40):
        raise ConfigError(f"{MAX_MB_ENV}={raw!r} is not a size in MiB > 0; set it to e.g. {DEFAULT_MAX_MB}")
    return max(1, int(mb * 1024 * 1024))


def _make_private_dir(d: Path) -> None:
    """Create `d` (and missing parents) 0700; existing parents keep their mode, `d` itself becomes 0700."""
    private_dirs(d)
    if not d.is_dir():
        raise JournalError(
            f"journal path {d} exists and is not a directory; move it away or choose another CRYPTOLAB_HOME"
        )
    if d.stat().st_mode & 0o777 != 0o700:
        os.chmod(d, 0o700)


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DirLock:
    """One flock per journal directory per process, shared by this process's Journal objects."""

    _held: dict[str, tuple[int, int]] = {}  # realpath -> (fd, users)
    _mutex = (
        threading.RLock()
    )  # re-entrant: a Journal finalized by the GC inside acquire() releases its own directory

    @classmethod
    def acquire(cls, d: Path, *, shared_in_process: bool = True) -> bool:
        key = os.path.realpath(d)
        with cls._mutex:
            if key in cls._held:
                if not shared_in_process:
                    return False
                fd, users = cls._held[key]
                cls._held[key] = (fd, users + 1)
                return True
            fd = _open_private(d / _LOCK_FILE, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            cls._held[key] = (fd, 1)
            return True

    @classmethod
    def release(cls, d: Path) -> None:
        key = os.path.realpath(d)
        with cls._mutex:
            if key not in cls._held:
                return
            fd, users = cls._held[key]
            if users > 1:
                cls._held[key] = (fd, users - 1)
            else:
                del cls._held[key]
                os.close(fd)  # drops the flock

    @staticmethod
    def holder(d: Path) -> str:
        try:
            pid = (d / _LOCK_FILE).read_text().strip()
        except OSError:
            return "another process"
        return f"pid {pid}" if pid.isdigit() else "another process"


def _seg_no(p: Path) -> int:
    m = _SEG_RE.match(p.name)
    return int(m.group(1)) if m else -1


class Journal:
    """Append-only spill files in one directory. Not shared between threads.

    `Journal(directory, max_bytes=None)` creates the directory (0700) and takes it for
    this process (`JournalBusyError` if another process has it) until `close()`.
    `max_bytes` caps the segments' total size (None: `default_max_bytes()`).
    """

    def __init__(self, directory: Path | str, max_bytes: int | None = None) -> None:
        self.dir = Path(directory)
        _make_private_dir(self.dir)
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)
        if self.max_bytes <= 0:
            raise ConfigError(f"journal max_bytes must be > 0, got {max_bytes}")
        self._locked = False
        self._lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self.quarantined = 0
        """Bad records this object set aside (written to the quarantine file)."""
        self.rows = 0
        """Lines (trades, dead letters, bad lines not yet set aside) currently in the journal."""
        self.bytes = 0
        """Bytes currently held in segments (what `max_bytes` caps)."""
        for p in self.segments():
            if p.stat().st_mode & 0o777 != 0o600:
                os.chmod(p, 0o600)
            data = p.read_bytes()
            self.bytes += len(data)
            self.rows += data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)

    # -- ownership

    def _lock(self) -> None:
        if self._locked:
            return
        if not _DirLock.acquire(self.dir):
            raise JournalBusyError(
                f"the journal {self.dir} is in use by {_DirLock.holder(self.dir)}; stop that capture first "
                "(its rows are replayed by whichever capture next opens this journal)"
            )
        self._locked = True

    def close(self) -> None:
        """Close the segment being written and give the directory back (append/replay take it again)."""
        self._close_segment()
        if self._locked:
            self._locked = False
            _DirLock.release(self.dir)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @classmethod
    def all_under(cls, root: Path | str, max_bytes: int | None = None) -> list[Journal]:
        """Every journal directory under `root` (at any depth) that no one is using, opened.

        Finds leftovers whatever named them (symbol order, symbol set): the capture
        replays each and then `close()`s it. Directories held by another process, or by
        an open Journal of this process, are skipped. Sorted by path.
        """
        root = Path(root)
        found: list[Journal] = []
        if not root.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(n for n in dirnames if n != _QUARANTINE)
            if not any(_SEG_RE.match(f) for f in filenames):
                continue
            d = Path(dirpath)
            if not _DirLock.acquire(d, shared_in_process=False):
                continue
            try:
                j = cls(d, max_bytes=max_bytes)
            finally:
                _DirLock.release(d)  # the Journal took its own share
            found.append(j)
        return found

    # -- segments

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted((p for p in self.dir.glob("seg-*.jsonl") if _SEG_RE.match(p.name)), key=_seg_no)

    @property
    def quarantine_file(self) -> Path:
        """Where bad records go: JSON lines {at, reason, segment, line_no, raw, raw_b64}."""
        return self.dir / _QUARANTINE / _QUARANTINE_FILE

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._path = None

    def append(
        self,
        trades: Sequence[Trade],
        dead_letters: Iterable[DeadLetter] = (),
        book: Sequence[BookRow] = (),
        futures: Sequence[Any] = (),
    ) -> int:
        """Append one batch (trades, dead letters, book rows) durably (fsync); return the rows written.

        All or nothing: if the batch would pass `max_bytes`, or the disk is full,
        `JournalFullError` is raised and no byte of the batch stays in the journal.
        """
        lines = (
            [_trade_line(t) for t in trades]
            + [_book_line(r) for r in book]
            + [_dead_line(d) for d in dead_letters]
        )
        if futures:
            from .futures_journal import futures_line

            lines += [futures_line(r) for r in futures]
        if not lines:
            return 0
        data = b"\n".join(lines) + b"\n"
        if self.bytes + len(data) > self.max_bytes:
            raise self._full(len(data), "is full")
        self._lock()
        if self._fd is None or self._size > SEGMENT_BYTES:
            self._close_segment()
            segs = self.segments()
            self._path = self.dir / f"seg-{(_seg_no(segs[-1]) + 1 if segs else 1):09d}.jsonl"
            self._fd = _open_private(self._path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
            _fsync_dir(self.dir)
        fd = self._fd
        start = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError:  # pragma: no cover - nothing more can be done
                pass
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._full(len(data), f"cannot grow: the disk is full ({exc.strerror})") from exc
            raise
        self._size += len(data)
        self.bytes += len(data)
        self.rows += len(lines)
        return len(lines)

    def _full(self, needed: int, what: str) -> JournalFullError:
        mb = self.max_bytes / 1024 / 1024
        return JournalFullError(
            f"the capture journal {self.dir} {what}: {self.bytes:,} bytes held, cap {self.max_bytes:,} bytes "
            f"({mb:g} MiB), this batch needs {needed:,} more. Start the database (cryptolab db start, or "
            f"check CRYPTOLAB_DSN) so the journal drains, or raise {MAX_MB_ENV}.",
            self.dir,
            self.max_bytes,
            needed,
        )

    # -- reading back

    def read(self, path: Path) -> Segment:
        """Read one segment (no side effects): valid rows, and bad lines with reasons."""
        return read_segment(path)

    def replay(self, store: Callable[[Segment], None]) -> Replayed:
        """Give each segment's valid rows to `store`, oldest first; then set bad lines aside and delete it.

        `store` sees only rows that passed the checksum and validation (`seg.bad`
        lists the others, for information). A segment with no valid row is not given
        to `store`. If `store` raises, the exception propagates unchanged, that segment
        and the later ones stay (to be replayed again) and nothing of it is quarantined:
        an exception from `store` is the caller's (an outage), never a bad record.
        `store` may call `set_aside(seg, reason)` for rows it judges unstorable as data.
        Returns (rows given to `store` and deleted, bad records set aside).
        """
        self._lock()
        self._close_segment()
        done = bad = 0
        for path in self.segments():
            data_size = path.stat().st_size
            seg = read_segment(path)
            n = seg.rows
            if n:
                store(seg)
                if not path.exists():
                    continue  # `store` set it aside (`set_aside` did the accounting)
            if seg.bad:
                self._quarantine(seg.bad)
            path.unlink()
            _fsync_dir(self.dir)
            done += n
            bad += len(seg.bad)
            self.bytes = max(0, self.bytes - data_size)
            self.rows = max(0, self.rows - n - len(seg.bad))
        return Replayed(done, bad)

    def set_aside(self, seg: Segment, reason: str) -> int:
        """Quarantine a whole segment with `reason` (the caller judged its rows unstorable) and delete it.

        For a store that refuses valid-looking rows as data (not as an outage). Bad
        lines keep their own reason. Returns the number of lines set aside.
        """
        self._lock()
        if self._path == seg.path:
            self._close_segment()
        fresh = read_segment(seg.path)
        bad_at = {b.line_no: b for b in fresh.bad}
        lines = seg.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        records = [
            bad_at.get(i) or BadRecord(reason, seg.path.name, i, line) for i, line in enumerate(lines, 1)
        ]
        self._quarantine(records)
        size = seg.path.stat().st_size
        seg.path.unlink()
        _fsync_dir(self.dir)
        self.bytes = max(0, self.bytes - size)
        self.rows = max(0, self.rows - len(records))
        return len(records)

    def _quarantine(self, records: Sequence[BadRecord]) -> None:
        qdir = self.dir / _QUARANTINE
        _make_private_dir(qdir)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = b"".join(
            orjson.dumps(
                {
                    "at": at,
                    "reason": r.reason,
                    "segment": r.segment,
                    "line_no": r.line_no,
                    "raw": r.raw.decode("utf-8", "replace"),
                    "raw_b64": base64.b64encode(r.raw).decode(),
                }
            )
            + b"\n"
            for r in records
        )
        fd = _open_private(self.quarantine_file, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(out)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.quarantined += len(records)

    def __len__(self) -> int:
        return self.rows
