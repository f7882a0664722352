"""A hand-back is make-before-break: the symbol always has an owner while it changes hands.

When a capturer (re)joins and has been up for the settle time, the others hand it the
symbols it prefers. The lease goes straight from the old owner to the new one (the old one
streams on until its next renewal, the new one starts at its own), so at no moment is a
symbol without an unexpired lease: a standby or third capturer never sees it free, and
nothing relies on a takeover's grace. Real captures, a real local exchange, a real PostgreSQL.
"""

from __future__ import annotations

import time

import psycopg

from cryptolab.capture import Capture
from tests.e2e.test_capture import FAST, assert_exact, printed_total, stored_count, wait_until

SIX = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt", "adausdt"]
CLUSTER = dict(FAST, lease_seconds=3.0, lease_renew_seconds=1.0, takeover_grace=1.0, handoff_settle=2.0)


def test_a_hand_back_never_leaves_a_symbol_without_an_owner(dsn: str, exchange) -> None:
    ex = exchange(symbols=SIX, rate=120, seed=7)
    ids = {s.upper(): 1 for s in SIX}
    first = Capture(SIX, source=ex.ws_url, dsn=dsn, from_ids=ids, **CLUSTER).start()
    second = None
    unowned: list[tuple[float, set[str]]] = []
    try:
        wait_until(
            lambda: set(first.status().symbols) == {s.upper() for s in SIX}, 20, "the first to own all six"
        )
        second = Capture(SIX, source=ex.ws_url, dsn=dsn, from_ids=ids, **CLUSTER).start()
        me = second.status().member_id
        everything = {s.upper() for s in SIX}
        with psycopg.connect(dsn, autocommit=True) as c:
            end = time.monotonic() + 25
            handed = None
            while time.monotonic() < end:
                rows = c.execute(
                    "SELECT symbol, owner FROM capture_leases WHERE expires_at > clock_timestamp()"
                ).fetchall()
                held = {str(s) for s, _ in rows}
                if held != everything:
                    unowned.append((time.monotonic(), everything - held))
                if handed is None and any(o == me for _, o in rows):
                    handed = time.monotonic()
                if handed is not None and time.monotonic() - handed > 3.0:
                    break
                time.sleep(0.02)
        assert handed is not None, "the second capturer never got a symbol back"
        assert unowned == [], f"symbols without an owner during the hand-back: {unowned[:5]}"
        wait_until(
            lambda: not (set(first.status().symbols) & set(second.status().symbols)),
            10,
            "each symbol captured by one capturer once the hand-back is done",
        )
        ex.stop_market()
        total = printed_total(ex, SIX)
        wait_until(lambda: stored_count(dsn, SIX) >= total, 60, f"{total} trades stored")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert_exact(dsn, ex, SIX)
