"""Fault injection for the local exchange: the kinds, their counters and the schedule syntax.

Faults are off by default. A test injects one at a time (`LocalExchange.inject(kind,
**params)`); the CLI takes a schedule (`--faults SPEC`). Every fault that fires adds to
a counter, so a test can assert that what it meant to happen did happen.

Kinds (parameters in brackets, defaults after `=`), what happens, and what each adds to its counter:

- `reset`: TCP reset of every open connection (RST, no close frame); counted +1 per connection
- `close`: clean close (close frame 1000) of every open connection; counted +1 per connection
- `stall` [seconds=5]: connections stay open but send nothing (trades, pings) for a while; what
  was printed meanwhile never reaches them; counted +1 per connection
- `duplicate` [n=1]: the next n trade frames of every connection are sent twice; counted +1 per
  duplicated frame
- `reorder` [n=2]: the next n trade frames of every connection are sent in reverse order;
  counted +1 per reversed group
- `malformed` [variant=bad_json]: one *extra* frame to every connection: `bad_json`,
  `missing_field` (no `q`), `wrong_type` (`p` a number), `huge` (a `p` of `size=300000`
  digits), `unknown_event` (`"e":"mysteryEvent"`), `absurd_value` (negative `q`); counted +1
  per frame, and `malformed_<variant>`
- `gap` [n=10, symbol=all]: the next n trades of a symbol are left out of every stream (REST
  still has them); counted +1 per symbol, `gap_trades` +n
- `rest_429` [n=1]: the next n REST calls answer 429 with `Retry-After: 1`; counted +1 per call
- `rest_500` [n=1]: the next n REST calls answer 500; counted +1 per call
- `rest_timeout` [n=1, seconds=30]: the next n REST calls get no answer for `seconds`; counted
  +1 per call
- `dump_404` / `dump_500` [n=1]: the next n dump-file (zip) requests answer 404 / 500; counted
  +1 per request
- `dump_truncate` [n=1]: the next n zips: full Content-Length, half the body, then the
  connection drops; counted +1 per request
- `dump_checksum` [n=1]: the next n `.CHECKSUM` files hold a wrong sha256; counted +1 per
  request
- `dump_slow` [n=1, seconds=2]: the next n zips are sent in 20 pieces over `seconds`; counted
  +1 per request
- `depth_drop` [n=1]: the next n depth diffs (`@depth`, `@depth@100ms`) are left out of every
  stream; counted +1 per diff
- `depth_duplicate` [n=1]: the next n depth diffs are sent twice; counted +1 per diff
- `depth_reorder` [n=2]: the next n depth diffs of a stream are sent in reverse order; counted
  +1 per reversed group
- `snapshot_stale` [n=1]: the next n `GET /api/v3/depth` answer the book of ~3 s ago (a
  `lastUpdateId` older than the stream); counted +1 per call
- `snapshot_429` / `snapshot_500` [n=1]: the next n `GET /api/v3/depth` answer 429
  (`Retry-After: 1`) / 500; counted +1 per call
- `burst_reset`: every connection with a book stream gets half of its next burst of book
  messages, then a TCP reset; counted +1 per connection

Schedule syntax (`--faults`): comma-separated items `KIND[=VALUE][@TRIGGER]`.
VALUE is the kind's main parameter (stall: a duration; malformed: the variant; the
others: n). TRIGGER is `every=DURATION` (repeat), `at=DURATION` (once, after start),
or `p=PROBABILITY` (per trade frame and connection for duplicate/reorder/malformed,
per trade for gap, per REST call for rest_*, per dump request for dump_*, per depth diff for
depth_*, per depth snapshot for snapshot_*, per second for reset/close/stall/burst_reset).
Durations follow `cryptolab.durations` (`500ms`, `3s`, `2m`, `1h`; a bare number is seconds). Example::

    reset@every=30s,stall=3s@at=20s,duplicate@p=0.01,malformed=huge@every=10s,rest_429=2@every=60s
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..durations import parse_seconds
from ..errors import ConfigError

__all__ = [
    "KINDS",
    "MALFORMED_VARIANTS",
    "FaultItem",
    "FaultPlan",
    "parse_faults",
    "check_fault",
]

KINDS = (
    "reset",
    "close",
    "stall",
    "duplicate",
    "reorder",
    "malformed",
    "gap",
    "rest_429",
    "rest_500",
    "rest_timeout",
    "dump_404",
    "dump_500",
    "dump_truncate",
    "dump_checksum",
    "dump_slow",
    "depth_drop",
    "depth_duplicate",
    "depth_reorder",
    "snapshot_stale",
    "snapshot_429",
    "snapshot_500",
    "burst_reset",
)
MALFORMED_VARIANTS = ("bad_json", "missing_field", "wrong_type", "huge", "unknown_event", "absurd_value")
CONNECTION_KINDS = ("reset", "close", "stall", "burst_reset")
FRAME_KINDS = ("duplicate", "reorder", "malformed")
REST_KINDS = ("rest_429", "rest_500", "rest_timeout")
DUMP_KINDS = ("dump_404", "dump_500", "dump_truncate", "dump_checksum", "dump_slow")
DEPTH_KINDS = ("depth_drop", "depth_duplicate", "depth_reorder")
SNAPSHOT_KINDS = ("snapshot_stale", "snapshot_429", "snapshot_500")

def check_fault(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate one fault and fill its defaults; raise ConfigError saying what is allowed."""
    if kind not in KINDS:
        raise ConfigError(f"unknown fault {kind!r}: use one of {', '.join(KINDS)}")
    p = dict(params)
    allowed: dict[str, tuple[str, ...]] = {
        "reset": (),
        "close": (),
        "stall": ("seconds",),
        "duplicate": ("n",),
        "reorder": ("n",),
        "malformed": ("variant", "size"),
        "gap": ("n", "symbol"),
        "rest_429": ("n",),
        "rest_500": ("n",),
        "rest_timeout": ("n", "seconds"),
        "dump_404": ("n",),
        "dump_500": ("n",),
        "dump_truncate": ("n",),
        "dump_checksum": ("n",),
        "dump_slow": ("n", "seconds"),
        "depth_drop": ("n",),
        "depth_duplicate": ("n",),
        "depth_reorder": ("n",),
        "snapshot_stale": ("n",),
        "snapshot_429": ("n",),
        "snapshot_500": ("n",),
        "burst_reset": (),
    }
    extra = set(p) - set(allowed[kind])
    if extra:
        raise ConfigError(
            f"fault {kind} takes {', '.join(allowed[kind]) or 'no parameters'}, not "
            f"{', '.join(sorted(extra))}"
        )
    if kind == "stall":
        p["seconds"] = float(p.get("seconds", 5.0))
    elif kind in ("rest_timeout", "dump_slow"):
        p["n"] = int(p.get("n", 1))
        p["seconds"] = float(p.get("seconds", 30.0 if kind == "rest_timeout" else 2.0))
    elif kind == "malformed":
        p["variant"] = str(p.get("variant", "bad_json"))
        if p["variant"] not in MALFORMED_VARIANTS:
            raise ConfigError(
                f"unknown malformed variant {p['variant']!r}: use one of {', '.join(MALFORMED_VARIANTS)}"
            )
        p["size"] = int(p.get("size", 300_000))
    elif kind == "gap":
        p["n"] = int(p.get("n", 10))
        if p.get("symbol") is not None:
            p["symbol"] = str(p["symbol"]).upper()
    elif kind in (
        "duplicate",
        "rest_429",
        "rest_500",
        "dump_404",
        "dump_500",
        "dump_truncate",
        "dump_checksum",
        "depth_drop",
        "depth_duplicate",
        *SNAPSHOT_KINDS,
    ):
        p["n"] = int(p.get("n", 1))
    elif kind in ("reorder", "depth_reorder"):
        p["n"] = int(p.get("n", 2))
    if "n" in p and p["n"] < 1:
        raise ConfigError(f"fault {kind}: n must be >= 1")
    if kind in ("reorder", "depth_reorder") and p["n"] < 2:
        raise ConfigError(f"fault {kind}: n must be >= 2 (one frame cannot be out of order)")
    return p


@dataclass(frozen=True)
class FaultItem:
    """One scheduled fault: what, with which parameters, and when."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    every: float | None = None  # seconds
    at: float | None = None  # seconds after start
    p: float | None = None  # probability (see module doc)


@dataclass
class FaultPlan:
    """A parsed `--faults` schedule."""

    items: list[FaultItem] = field(default_factory=list)

    @property
    def timed(self) -> list[FaultItem]:
        return [i for i in self.items if i.p is None]

    def probability(self, kind: str) -> float:
        """The per-frame / per-call probability of a kind (0 when not scheduled)."""
        return sum(i.p for i in self.items if i.kind == kind and i.p is not None)

    def probabilistic(self, kind: str) -> list[FaultItem]:
        return [i for i in self.items if i.kind == kind and i.p is not None]

    @property
    def frame_faults(self) -> bool:
        """True when some trade frames may be altered per connection (slow path)."""
        return any(i.p is not None and i.kind in FRAME_KINDS for i in self.items)


def _main_param(kind: str, value: str) -> dict[str, Any]:
    if kind == "stall" or (kind in ("rest_timeout", "dump_slow") and not value.isdigit()):
        return {"seconds": parse_seconds(value, name=f"fault {kind}", zero=True)}
    if kind == "malformed":
        return {"variant": value}
    if kind in ("reset", "close", "burst_reset"):
        raise ConfigError(f"fault {kind} takes no value (write {kind}@every=10s)")
    if not value.isdigit():
        raise ConfigError(f"fault {kind}={value}: the value is a count (e.g. {kind}=3)")
    return {"n": int(value)}


def parse_faults(spec: str | None) -> FaultPlan:
    """Parse the schedule syntax of the module doc; ConfigError with the bad item otherwise."""
    plan = FaultPlan()
    if not spec or not spec.strip():
        return plan
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        head, _, trig = item.partition("@")
        kind, _, value = head.partition("=")
        kind = kind.strip()
        params = _main_param(kind, value.strip()) if value.strip() else {}
        params = check_fault(kind, params)
        every = at = p = None
        if not trig:
            raise ConfigError(f"fault {item!r} needs a trigger: @every=10s, @at=20s or @p=0.01")
        tname, _, tval = trig.partition("=")
        tname = tname.strip()
        if tname == "every":
            every = parse_seconds(tval, name=f"fault {kind}@every", zero=True)
            if every <= 0:
                raise ConfigError(f"fault {item!r}: every= must be > 0")
        elif tname == "at":
            at = parse_seconds(tval, name=f"fault {kind}@at", zero=True)
        elif tname == "p":
            try:
                p = float(tval)
            except ValueError:
                raise ConfigError(f"fault {item!r}: p= takes a probability like 0.01") from None
            if not 0 < p <= 1:
                raise ConfigError(f"fault {item!r}: p= must be in (0, 1]")
        else:
            raise ConfigError(f"fault {item!r}: unknown trigger {tname!r} (use every=, at= or p=)")
        plan.items.append(FaultItem(kind, params, every, at, p))
    return plan
