"""Zero-loss capture of Binance trades into PostgreSQL, from a background thread.

    from cryptolab.capture import Capture
    with Capture(["btcusdt"], source="simulator") as cap:
        ...
        print(cap.status())

The package has one room per concern (see docs/capture.md):

* `facade`    — `Capture`: start/stop/status, threads, wiring;
* `options`   — `CaptureOptions`, `CaptureStatus`, typed `Counters`;
* `endpoints` — source names and URLs → `Endpoint`;
* `sequencer` — pure: ids seen, missing ranges, the gap policy;
* `backoff`   — pure: reconnect delays and the connect budget;
* `batching`  — pure: the writer's per-turn decisions;
* `streams`   — WebSocket connections, the decode → sequence → queue hot path, rotation;
* `backfill`  — REST paging for missing ranges;
* `sink`      — the writer thread, the database link, journal spill and replay;
* `runs`      — `capture_runs` / `capture_gaps` SQL and resume points;
* `ownership` — pure: which capturer owns which symbol (rendezvous, takeover, hand-back);
* `cluster`   — membership and symbol leases in the shared database;
* `roster`    — the symbols streamed now: adopt/drop as leases change, `since` history joins;
* `workers`   — `cryptolab capture --workers N`: shard processes and one summary.
"""

from __future__ import annotations

from .endpoints import KNOWN_SOURCES, Endpoint, resolve_source
from .facade import Capture
from .options import CaptureOptions, CaptureStatus, Counters

__all__ = [
    "KNOWN_SOURCES",
    "Capture",
    "CaptureOptions",
    "CaptureStatus",
    "Counters",
    "Endpoint",
    "resolve_source",
]
