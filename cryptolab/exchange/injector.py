"""The fault injector: fires the faults of a `FaultPlan` (see `faults`) on the local exchange.

Connection faults (reset, close, stall, duplicate, reorder, malformed) act on the stream
hub's connections; `gap` drops the next n trades of a symbol from every stream (REST still
has them, as after a real stream gap); dump faults arm the dump tree; REST faults answer
the next n REST calls. Faults with a probability are drawn where they apply (per second,
per frame, per REST call, per dump file). Every fault fired is counted (`counts`).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigError
from . import faults as F
from .bookfeed import Named
from .dumptree import DumpTree
from .tradelog import SymbolLog

__all__ = ["Connections", "FaultInjector"]


class Connections(Protocol):
    """Where connection faults land (the stream hub)."""

    def fault(self, kind: str, p: dict[str, Any]) -> int: ...

HUB_KINDS = (*F.CONNECTION_KINDS, "duplicate", "reorder", "malformed")
"""Faults that act on the stream hub's open connections."""


class _NoHub:
    def fault(self, kind: str, p: dict[str, Any]) -> int:
        return 0


class FaultInjector:
    """Fault state of one exchange: counts, pending gaps and REST faults, the plan's draws."""

    def __init__(
        self, plan: F.FaultPlan, rng: random.Random, logs: dict[str, SymbolLog], dumps: DumpTree
    ) -> None:
        self.plan = plan
        self.rng = rng
        self.logs = logs
        self.dumps = dumps
        self.counts: dict[str, int] = {}
        self._gap_left: dict[str, int] = {}
        self._rest_faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._depth_left: dict[str, int] = {}
        self._reorder_n = 0
        self._held: dict[str, list[Named]] = {}  # depth_reorder: diffs held per stream
        self._held_n: dict[str, int] = {}
        self._snapshot_faults: deque[str] = deque()

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def inject(self, hub: Connections, kind: str, **params: Any) -> int:
        """Fire one fault now; return how many connections/calls/symbols it affects."""
        p = F.check_fault(kind, params)
        if kind in HUB_KINDS:
            return hub.fault(kind, p)
        if kind == "gap":
            targets = [p["symbol"]] if p.get("symbol") else list(self.logs)
            unknown = [s for s in targets if s not in self.logs]
            if unknown:
                raise ConfigError(
                    f"gap: the exchange does not list {', '.join(unknown)} (it lists {', '.join(self.logs)})"
                )
            for s in targets:
                self._gap_left[s] = self._gap_left.get(s, 0) + p["n"]
                self.count("gap")
            return len(targets)
        if kind in F.DUMP_KINDS:
            self.dumps.arm(kind, p)
            return int(p["n"])
        if kind in F.DEPTH_KINDS:
            if kind == "depth_reorder":
                self._reorder_n = max(self._reorder_n, int(p["n"]))
            else:
                self._depth_left[kind] = self._depth_left.get(kind, 0) + int(p["n"])
            return int(p["n"])
        if kind in F.SNAPSHOT_KINDS:
            self._snapshot_faults.extend([kind] * int(p["n"]))
            return int(p["n"])
        n = int(p["n"])  # REST faults: the next n calls
        for _ in range(n):
            self._rest_faults.append((kind, p))
        return n

    async def scheduled(self, item: F.FaultItem, fire: Callable[..., int]) -> None:
        """A fault planned at a time (`reset@at=5`) or every so often (`gap@every=10`)."""
        if item.at is not None:
            await asyncio.sleep(item.at)
            fire(item.kind, **item.params)
            return
        assert item.every is not None
        while True:
            await asyncio.sleep(item.every)
            fire(item.kind, **item.params)

    def has_per_second(self) -> bool:
        return any(i.kind in F.CONNECTION_KINDS for i in self.plan.items if i.p is not None)

    async def per_second(self, fire: Callable[..., int]) -> None:
        """Connection faults with a probability, drawn once a second."""
        items = [i for i in self.plan.items if i.p is not None and i.kind in F.CONNECTION_KINDS]
        while True:
            await asyncio.sleep(1.0)
            for i in items:
                if self.rng.random() < (i.p or 0):
                    fire(i.kind, **i.params)

    def apply_gaps(self, batch: list[tuple[SymbolLog, int]]) -> list[tuple[SymbolLog, int]]:
        """The batch without the trades a stream gap drops (armed, or drawn per trade)."""
        p_gap = self.plan.probabilistic("gap")
        if not self._gap_left and not p_gap:
            return batch
        out: list[tuple[SymbolLog, int]] = []
        for item in batch:
            sym = item[0].spec.symbol
            for pi in p_gap:
                if self.rng.random() < (pi.p or 0) and (pi.params.get("symbol") in (None, sym)):
                    self._gap_left[sym] = self._gap_left.get(sym, 0) + pi.params["n"]
                    self.count("gap")
            left = self._gap_left.get(sym, 0)
            if left:
                self._gap_left[sym] = left - 1
                self.count("gap_trades")
                continue
            out.append(item)
        return out

    def apply_depth(self, msgs: list[Named]) -> list[Named]:
        """Depth diffs dropped, doubled or held back and reversed (armed, or drawn per diff)."""
        plan = self.plan
        if not (
            self._depth_left
            or self._reorder_n
            or self._held
            or any(i.p is not None and i.kind in F.DEPTH_KINDS for i in plan.items)
        ):
            return msgs
        out: list[Named] = []
        for m in msgs:
            if m.kind not in ("diff", "diff1000"):
                out.append(m)
                continue
            for item in plan.items:
                if item.p is not None and item.kind in F.DEPTH_KINDS and self.rng.random() < item.p:
                    self.inject(_NoHub(), item.kind, **item.params)
            held = self._held.get(m.stream)
            if held is not None or self._reorder_n:
                if held is None:
                    held = self._held[m.stream] = []
                    self._held_n[m.stream], self._reorder_n = self._reorder_n, 0
                held.append(m)
                if len(held) >= self._held_n[m.stream]:
                    out.extend(reversed(held))
                    del self._held[m.stream]
                    self.count("depth_reorder")
                continue
            if self._take("depth_drop"):
                continue
            out.append(m)
            if self._take("depth_duplicate"):
                out.append(m)
        return out

    def _take(self, kind: str) -> bool:
        left = self._depth_left.get(kind, 0)
        if not left:
            return False
        if left == 1:
            del self._depth_left[kind]
        else:
            self._depth_left[kind] = left - 1
        self.count(kind)
        return True

    def next_snapshot_fault(self) -> str | None:
        """The fault this depth snapshot meets (snapshot_stale/429/500), armed or drawn."""
        if self._snapshot_faults:
            return self._snapshot_faults.popleft()
        for kind in F.SNAPSHOT_KINDS:
            for item in self.plan.probabilistic(kind):
                if self.rng.random() < (item.p or 0):
                    return kind
        return None

    def next_rest_fault(self) -> tuple[str, dict[str, Any]] | None:
        """The fault this REST call meets: one armed by `inject`, else one drawn from the plan."""
        if self._rest_faults:
            return self._rest_faults.popleft()
        for kind in F.REST_KINDS:
            for item in self.plan.probabilistic(kind):
                if self.rng.random() < (item.p or 0):
                    return kind, item.params
        return None

    def draw_dump_faults(self) -> None:
        """Dump faults planned with a probability, drawn for one dump file."""
        for kind in F.DUMP_KINDS:
            for item in self.plan.probabilistic(kind):
                if self.rng.random() < (item.p or 0):
                    self.dumps.arm(kind, {**item.params, "n": 1})
