"""A capture stopped in the middle of its history join (`--since`): it says what is missing
(ids, count), exits 1, and records the unfinished span so the next capture of the symbols
fills it, whatever its look-back. Real sockets (the local exchange), real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from cryptolab.capture import Capture
from tests.e2e.test_capture import FAST, wait_until

pytestmark = pytest.mark.usefixtures("not_at_midnight")  # plans by UTC day


def _ids(dsn: str, symbol: str) -> list[int]:
    with psycopg.connect(dsn) as c:
        return [
            r[0]
            for r in c.execute("SELECT trade_id FROM trades WHERE symbol = %s ORDER BY trade_id", (symbol,))
        ]


def test_a_stop_during_the_history_join_says_what_is_missing_and_the_next_capture_fills_it(
    dsn: str, exchange, tmp_path
) -> None:
    ex = exchange(
        symbols=["btcusdt", "ethusdt"], rate=20.0, history_days=1, history_rate=0.2, weight_budget=100_000
    )
    ex.inject("dump_slow", n=2, seconds=120)  # the day's dumps take minutes: the join cannot finish
    since = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            "btcusdt,ethusdt",
            "--source",
            ex.ws_url,
            "--since",
            since,
            "--seconds",
            "2",
            "--quiet",
            "--option",
            "start_timeout=4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # a home of its own: the history cache is keyed by the dump's path, not the site
        env={**os.environ, "CRYPTOLAB_DSN": dsn, "CRYPTOLAB_HOME": str(tmp_path / "home")},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "history join of BTCUSDT, ETHUSDT did not finish" in r.stderr
    with psycopg.connect(dsn) as c:
        gaps = c.execute(
            "SELECT symbol, first_missing_id, last_missing_id, missing FROM capture_gaps "
            "WHERE status = 'open' AND reason LIKE 'history join from %%' ORDER BY symbol, 2"
        ).fetchall()
    for sym in ("BTCUSDT", "ETHUSDT"):
        first = ex.trade_log(sym)[0].trade_id
        mine = [g for g in gaps if g[0] == sym]
        assert mine and mine[0][1] == first  # from the first trade of `since`
        missing = sum(g[3] for g in mine)
        line = next(
            ln for ln in r.stdout.splitlines() if ln.strip().startswith(f"{sym}: history join unfinished")
        )
        assert f"{missing:,} trades of {since}" in line and f"ids {first}…" in line
    # the next capture, without --since (the hole begins a day back, far past the 6 h look-back), fills it
    cap = Capture(["btcusdt", "ethusdt"], source=ex.ws_url, **FAST).start()
    try:
        time.sleep(1.5)  # live trades after the restart
        ex.stop_market()
        for sym in ("BTCUSDT", "ETHUSDT"):
            total = len(ex.trade_log(sym))
            wait_until(lambda sym=sym, total=total: len(_ids(dsn, sym)) >= total, 90, f"all {sym} trades")
    finally:
        st = cap.stop()
    assert st.gaps_lost == 0
    for sym in ("BTCUSDT", "ETHUSDT"):
        log = ex.trade_log(sym)
        assert _ids(dsn, sym) == [t.trade_id for t in log]
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM capture_gaps WHERE status = 'open'").fetchone() == (0,)
