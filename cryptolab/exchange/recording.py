"""Raw stream recordings with the book: written by the local exchange, replayed by it.

The format is the one of the team's real recordings (hftbacktest's, `../shared/data/binance/`):
one message per line, `<local receive time, ns> <raw JSON>`; the JSON is a combined-stream
frame (`{"stream":"btcusdt@depth@100ms","data":{…}}`) of `@trade`, `@depth@100ms` or
`@bookTicker`, or a bare REST depth snapshot (`{"lastUpdateId":…,"bids":…,"asks":…}`) where the
recorder fetched one. A snapshot line names no symbol: it belongs to the symbol of the depth
line before it (the recorder writes it right after one), or to the only symbol. `.gz` files
are gzipped, others plain text.

* `Recorder` writes what the exchange publishes (before stream faults), one snapshot of 1000
  levels per symbol after its first diff (then every `snapshot_every` seconds, if set).
* `RecordingReplay` is the replay source for such files: every line in file order (several
  files merged by their receive times), paced by the receive times (`speed`, 0 = as fast as the
  clients read), trades into the trade logs as any replay, depth and bookTicker frames relayed
  byte for byte, and each snapshot served by `GET /api/v3/depth` from the moment its line is
  passed (before the first one is passed, the first one).
"""

from __future__ import annotations

import gzip
import heapq
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..binance.dumps import open_text
from ..errors import DataError
from .bookfeed import Named, book_stream_kind
from .tradelog import SymbolLog, encode_trade, to_units

__all__ = ["Recorder", "RecordingReplay", "has_book_lines", "Run"]

Run = tuple[str, list[Any]]
"""A run of messages to send in order: ("trades", [(log, index)…]) or ("named", [Named…])."""

_SCAN_LINES = 5000


def has_book_lines(path: str | Path) -> bool:
    """True when a stream recording holds depth, bookTicker or snapshot lines (in its first lines)."""
    try:
        with open_text(Path(path)) as fh:
            for n, line in enumerate(fh):
                if n >= _SCAN_LINES:
                    break
                if '"depthUpdate"' in line or "@bookTicker" in line or '"lastUpdateId"' in line:
                    return True
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    return False


class Recorder:
    """Writes the exchange's trade, depth@100ms and bookTicker messages in the recording format."""

    def __init__(self, path: str | Path, *, snapshot_every: float | None = None) -> None:
        self.path = Path(path)
        # held open while the exchange serves; closed by close()
        self._fh: IO[bytes] = (gzip.open(self.path, "wb") if self.path.suffix == ".gz"  # type: ignore[assignment]  # noqa: SIM115
                               else open(self.path, "wb"))  # noqa: SIM115
        self.snapshot_every = snapshot_every
        self._snap_at: dict[str, float] = {}
        self.lines = 0
        self._flushed = time.monotonic()

    def write_runs(self, runs: list[Run], snapshot: Any) -> None:
        """One tick's messages, in the order they were sent; `snapshot(sym)` gives a 1000-level snapshot."""
        out: list[bytes] = []
        ns = time.time_ns()
        for kind, items in runs:
            if kind == "trades":
                for log, i in items:
                    pl = encode_trade(log.spec.symbol.encode(), log.ids[i], log.prices[i], log.qtys[i],
                                      log.times[i] // 1000, log.events[i] // 1000, bool(log.makers[i]))
                    out.append(b'%d {"stream":"%s@trade","data":%s}\n' % (ns, log.spec.stream.encode(), pl))
                continue
            for m in items:
                if m.kind not in ("diff", "quote"):
                    continue
                out.append(b'%d {"stream":"%s","data":%s}\n' % (ns, m.stream.encode(), m.ms))
                if m.kind == "diff":
                    sym = m.stream.partition("@")[0].upper()
                    last = self._snap_at.get(sym)
                    now = time.monotonic()
                    if last is None or (
                        self.snapshot_every is not None and now - last >= self.snapshot_every
                    ):
                        self._snap_at[sym] = now
                        snap = json.dumps(snapshot(sym), separators=(",", ":")).encode()
                        out.append(b"%d %s\n" % (ns, snap))
        if out:
            self._fh.write(b"".join(out))
            self.lines += len(out)
        if time.monotonic() - self._flushed > 1.0:
            self._fh.flush()
            self._flushed = time.monotonic()

    def close(self) -> None:
        self._fh.close()


def _lines(path: Path, order: int) -> Iterator[tuple[int, int, int, str]]:
    """(receive ns, file order, line number, JSON text) of each line; a line without a time
    takes the one before it."""
    last = 0
    with open_text(path) as fh:
        for n, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            head, _, rest = line.partition(" ")
            if head.isdigit():
                last = int(head)
                text = rest
            else:
                text = line
            yield last, order, n, text


class RecordingReplay:
    """Replays recordings with the book (see the module doc); the server's market source."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        logs: dict[str, SymbolLog],
        *,
        speed: float = 1.0,
        max_trades: int | None = None,
        chunk: int = 20_000,
    ) -> None:
        if speed < 0:
            raise DataError("replay speed must be >= 0 (0 = as fast as possible)")
        self.paths = [Path(p) for p in paths]
        self.logs = logs
        self.speed = float(speed)
        self.max_trades = max_trades
        self.chunk = chunk
        self._it = heapq.merge(*(_lines(p, k) for k, p in enumerate(self.paths)))
        self._head: tuple[int, int, int, str] | None = None
        self._t0: int | None = None
        self._w0 = 0.0
        self._runs: list[Run] = []
        self.finished = False
        self.started = False
        self.throttled = False
        self.skipped = 0
        self.snapshots: dict[str, dict[str, Any]] = {}
        """The latest snapshot passed, per symbol."""
        self._first_snap = self._scan_first_snapshots()
        self._last_depth_sym: str | None = next(iter(logs), None) if len(logs) == 1 else None

    def _scan_first_snapshots(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in self.paths:
            sym: str | None = next(iter(self.logs)) if len(self.logs) == 1 else None
            for n, (_, _, _, text) in enumerate(_lines(p, 0)):
                if n >= _SCAN_LINES:
                    break
                if text.startswith('{"lastUpdateId"'):
                    if sym is not None and sym not in out:
                        out[sym] = json.loads(text)
                elif '"depthUpdate"' in text:
                    s = text.partition('"s":"')[2][:30].partition('"')[0].upper()
                    sym = s or sym
        return out

    # ------------------------------------------------------------------ the source interface
    def start(self, now_us: int) -> None:
        self.started = True
        self._w0 = float(now_us)

    def shift(self, dt_us: int) -> None:
        self._w0 += dt_us

    def set_rate(self, rate: float) -> None:
        """Replays keep their own pace (use speed)."""

    def pending_count(self) -> int:
        return sum(len(items) for _, items in self._runs)

    def release(self, now_us: int) -> list[tuple[SymbolLog, int]]:
        """Trades only (the server takes `release_runs` from this source)."""
        runs = self.release_runs(now_us)
        return [t for kind, items in runs if kind == "trades" for t in items]

    def release_runs(self, now_us: int) -> list[Run]:
        out, self._runs = self._runs, []
        return out

    def _add(self, kind: str, item: Any) -> None:
        if self._runs and self._runs[-1][0] == kind:
            self._runs[-1][1].append(item)
        else:
            self._runs.append((kind, [item]))

    def generate(self, now_us: int) -> None:
        if self.finished or (self.speed == 0 and self.throttled):
            return
        budget = self.chunk
        while budget > 0:
            if self._head is None:
                self._head = next(self._it, None)
                if self._head is None:
                    self.finished = True
                    return
                if self._t0 is None:
                    self._t0 = self._head[0]
            ns, _, n, text = self._head
            t0 = self._t0 if self._t0 is not None else ns
            if self.speed > 0 and self._w0 + (ns - t0) / 1000 / self.speed > now_us:
                return
            self._head = None
            budget -= self._line(text)

    def _line(self, text: str) -> int:
        """One line of a recording; 1 when it will be sent."""
        if text.startswith('{"lastUpdateId"'):
            sym = self._last_depth_sym
            if sym is not None:
                self.snapshots[sym] = json.loads(text)
            return 0
        if not text.startswith('{"stream":"'):
            self.skipped += 1
            return 0
        end = text.find('"', 11)
        stream = text[11:end]
        sym_l, _, kind = stream.partition("@")
        sym = sym_l.upper()
        if sym not in self.logs:
            return 0
        if kind == "trade":
            return self._trade(sym, text)
        bk = book_stream_kind(kind)
        if bk is None:
            self.skipped += 1
            return 0
        if bk in ("diff", "diff1000"):
            self._last_depth_sym = sym
        start = text.find('"data":', end) + 7
        data = text[start : text.rfind("}")].encode()
        self._add("named", Named(stream, bk, data, data))
        return 1

    def _trade(self, sym: str, text: str) -> int:
        try:
            d = json.loads(text)["data"]
        except ValueError:
            self.skipped += 1  # e.g. a line cut short when the recorder was killed
            return 0
        try:
            tid, t, e = int(d["t"]), int(d["T"]), int(d.get("E", d["T"]))
            p, q, m = to_units(str(d["p"])), to_units(str(d["q"])), d["m"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"malformed trade line in a recording: {text[:160]!r}") from None
        log = self.logs[sym]
        last = log.last_id
        if last is not None and tid <= last:
            self.skipped += 1
            return 0
        if self.max_trades is not None and len(log) >= self.max_trades:
            if all(len(lg) >= self.max_trades for lg in self.logs.values()):
                self.finished = True
            return 0
        k = 1 if t >= 10**15 else 1000  # µs or ms
        idx = log.append(tid, p, q, t * k, e * (1 if e >= 10**15 else 1000), bool(m))
        self._add("trades", (log, idx))
        return 1

    # ------------------------------------------------------------------ REST
    def snapshot(self, symbol: str, limit: int, stale: bool = False) -> dict[str, Any]:
        """The recording's snapshot for `GET /api/v3/depth`: the latest passed (else the first)."""
        sym = symbol.upper()
        snap = self.snapshots.get(sym) or self._first_snap.get(sym)
        if snap is None:
            raise LookupError(f"the replayed recording holds no depth snapshot of {sym}")
        return {
            "lastUpdateId": snap["lastUpdateId"],
            "bids": snap["bids"][:limit],
            "asks": snap["asks"][:limit],
        }
