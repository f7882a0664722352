"""Replay of real data through the local exchange: dumps and recordings, at any speed.

The files (data.binance.vision trades/aggTrades dumps, zip or plain; raw stream
recordings, gz or plain; see `cryptolab.binance.dumps`) are merged by trade time and printed
with their real ids, prices, quantities, sides and times (`T`, and `E` where the
recording has it, else `T`). Pace: `speed=1` real time, `speed=N` N× faster, `speed=0`
as fast as the clients read (the exchange waits while a client's send buffer is full).
The replay starts when the first client subscribes to one of its symbols, so that
client sees it from its first trade.
A trade whose id is not above the last one printed for its symbol (a duplicated line
in a recording) is skipped, so ids on the stream always increase.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..binance.dumps import DumpReader, open_text
from ..errors import DataError
from ..model import Trade
from .market import symbol_spec
from .tradelog import SymbolLog, to_units

__all__ = ["ReplaySource", "scan_symbols"]

_S_RE = re.compile(r'"s"\s*:\s*"([A-Za-z0-9]+)"')


def scan_symbols(paths: Sequence[str | Path]) -> list[str]:
    """The symbols the files hold (upper case, in first-seen order)."""
    seen: dict[str, None] = {}
    for p in paths:
        reader = DumpReader(Path(p))
        if reader.symbol:
            seen.setdefault(reader.symbol, None)
            continue
        with open_text(Path(p)) as fh:  # a recording: look at its trade events
            for line in fh:
                if '"trade"' in line:
                    m = _S_RE.search(line)
                    if m:
                        seen.setdefault(m.group(1).upper(), None)
    if not seen:
        raise DataError(f"no trades found in {', '.join(str(p) for p in paths)}")
    return list(seen)


class ReplaySource:
    """Prints the trades of files, merged by time, at `speed` (0 = as fast as possible)."""

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
        self._it = self._merged()
        self._head: Trade | None = None
        self._t0: int | None = None  # first trade time, µs
        self._w0: float = 0.0  # wall time of the first trade, µs
        self._out: list[tuple[SymbolLog, int]] = []
        self.finished = False
        self.started = False
        self.skipped = 0
        self.throttled = False  # set by the server while a client's buffer is full

    def _merged(self) -> Iterator[Trade]:
        iters = [self._one(p) for p in self.paths]
        return heapq.merge(*iters, key=lambda t: (t.trade_time_us, t.trade_id))

    def _one(self, path: Path) -> Iterator[Trade]:
        for t in DumpReader(path, source="replay"):
            if t.symbol in self.logs:
                yield t

    def start(self, now_us: int) -> None:
        self.started = True
        self._w0 = float(now_us)

    def shift(self, dt_us: int) -> None:
        self._w0 += dt_us

    def set_rate(self, rate: float) -> None:
        """Replays keep their own pace (use speed); the rate does not apply."""

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
                    self._t0 = self._head.trade_time_us
            t = self._head
            t0 = self._t0 if self._t0 is not None else t.trade_time_us
            if self.speed > 0 and self._w0 + (t.trade_time_us - t0) / self.speed > now_us:
                return
            self._head = None
            log = self.logs[t.symbol]
            last = log.last_id
            if last is not None and t.trade_id <= last:
                self.skipped += 1
                continue
            if self.max_trades is not None and len(log) >= self.max_trades:
                if all(len(lg) >= self.max_trades for lg in self.logs.values()):
                    self.finished = True
                    return
                continue
            e = t.event_time_us if t.event_time_us is not None else t.trade_time_us
            idx = log.append(
                t.trade_id, to_units(t.price), to_units(t.qty), t.trade_time_us, e, t.is_buyer_maker
            )
            self._out.append((log, idx))
            budget -= 1

    def release(self, now_us: int) -> list[tuple[SymbolLog, int]]:
        out, self._out = self._out, []
        return out

    def pending_count(self) -> int:
        return len(self._out)


def replay_logs(paths: Sequence[str | Path], symbols: Sequence[str] | None) -> dict[str, SymbolLog]:
    """One empty log per replayed symbol (all symbols in the files, or the ones asked)."""
    found = scan_symbols(paths)
    if symbols:
        want = [s.upper() for s in symbols]
        missing = [s for s in want if s not in found]
        if missing:
            raise DataError(
                f"no trades of {', '.join(missing)} in the replay files (they hold {', '.join(found)})"
            )
        found = want
    return {s: SymbolLog(symbol_spec(s), source="replay") for s in found}
