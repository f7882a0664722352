"""`Capture(market="usdm", since=…)` / `cryptolab capture --market usdm --since`: the perp's past
joined to its live stream with no gap.

The local exchange (markets spot and usdm) has a past of two days; its perp's aggregates run on
from that past into the live stream under one aggregate id sequence, served as `futures/um` dumps,
`/fapi/v1/aggTrades` and `@aggTrade`, like Binance. Real sockets, real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from cryptolab.capture import Capture
from tests.e2e.test_capture import FAST, wait_until
from tests.e2e.test_capture_usdm import USDM, q, stored_aggs

pytestmark = pytest.mark.usefixtures("not_at_midnight", "own_home")  # plans by UTC day


@pytest.fixture
def own_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home of each test's own: the dump cache is keyed by the dump's path, not the site, and each
    test's exchange makes a past of its own under the same paths."""
    monkeypatch.setenv("CRYPTOLAB_HOME", str(tmp_path / "home"))


def want_aggs(ex: Any, sym: str) -> list[tuple[Any, ...]]:
    return [(a.agg_id, a.price, a.qty, a.first_trade_id, a.last_trade_id, a.trade_time_us, a.is_buyer_maker)
            for a in ex.usdm_log("agg", sym)]


def test_usdm_since_joins_dumps_rest_and_live_with_the_aggregate_ids_whole(dsn: str, exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=40.0, history_days=2, history_rate=1.0, markets=["spot", "usdm"])
    today = datetime.now(timezone.utc).date()
    since = today - timedelta(days=2)
    t0 = time.perf_counter()
    cap = Capture(
        ["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", since=since.isoformat(), **FAST
    ).start()
    try:
        wait_until(
            lambda: cap.status().history.get("BTCUSDT", "").startswith("history joined"),
            120,
            "the futures history to be joined",
        )
        joined_s = time.perf_counter() - t0
        time.sleep(1.5)  # live aggregates after the join
        ex.stop_market()
        n = len(ex.usdm_log("agg", "btcusdt"))
        wait_until(lambda: len(stored_aggs(dsn, "BTCUSDT")) >= n, 60, f"{n} aggregates stored")
    finally:
        st = cap.stop()
    assert not st.failed and st.gaps_lost == 0
    log = want_aggs(ex, "BTCUSDT")
    got = stored_aggs(dsn, "BTCUSDT")
    # from the first aggregate of `since` to the live end: the exchange's own log, each once, ids whole
    assert (
        log[0][5]
        >= int(datetime(since.year, since.month, since.day, tzinfo=timezone.utc).timestamp()) * 10**6
    )
    assert got == log
    ids = [r[0] for r in got]
    assert ids == list(range(log[0][0], log[-1][0] + 1))
    edge = int(st.history["BTCUSDT"].rsplit(" ", 1)[-1])  # "history joined: … up to id N"
    assert got[-1][0] > edge  # live aggregates after the edge
    # the two whole days came from the futures dumps, the rest (today up to the edge) from /fapi REST
    files = q(
        dsn,
        "SELECT period, first_day, last_day, file_name, first_id, last_id, stored FROM history_files "
        "WHERE exchange = %s AND symbol = 'BTCUSDT' AND kind = 'aggTrades' ORDER BY first_id",
        USDM,
    )
    dumps = [f for f in files if f[0] == "daily"]
    rest = [f for f in files if f[0] == "rest"]
    assert [(f[1], f[2]) for f in dumps] == [
        (since, since),
        (since + timedelta(days=1), since + timedelta(days=1)),
    ]
    assert all(f[3].endswith(".zip") for f in dumps)
    day_end_us = int(datetime(today.year, today.month, today.day, tzinfo=timezone.utc).timestamp()) * 10**6
    in_dumps = [r for r in log if r[5] < day_end_us]
    assert dumps[0][4] == log[0][0] and dumps[-1][5] == in_dumps[-1][0]
    assert sum(f[6] for f in dumps) == len(in_dumps)
    assert rest and rest[0][4] == dumps[-1][5] + 1 and max(f[5] for f in rest) == edge
    assert all(f[3].startswith("rest:aggTrades:") for f in rest)
    lost = q(
        dsn,
        "SELECT first_missing_id, last_missing_id, reason FROM capture_gaps WHERE exchange = %s "
        "AND status <> 'filled'",
        USDM,
    )
    assert not lost
    print(
        f"\nusdm join: {len(in_dumps):,} aggregates from {len(dumps)} dump files, "
        f"{sum(f[6] for f in rest):,} from REST up to id {edge}, {len(got) - (edge - log[0][0] + 1):,} live "
        f"after; joined in {joined_s:.1f} s"
    )


def test_usdm_join_run_twice_stores_nothing_twice(dsn: str, exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=20.0, history_days=2, history_rate=0.5, markets=["spot", "usdm"])
    since = (datetime.now(timezone.utc).date() - timedelta(days=2)).isoformat()
    for _ in range(2):
        cap = Capture(["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", since=since, **FAST).start()
        try:
            wait_until(
                lambda cap=cap: cap.status().history.get("BTCUSDT", "").startswith("history joined"),
                120,
                "the futures history to be joined",
            )
        finally:
            st = cap.stop()
        assert not st.failed
    ex.stop_market()
    got = stored_aggs(dsn, "BTCUSDT")
    ids = [r[0] for r in got]
    assert len(ids) == len(set(ids))
    log = {r[0]: r for r in want_aggs(ex, "BTCUSDT")}
    bad = [(r, log.get(r[0])) for r in got if log.get(r[0]) != r]
    assert not bad, bad[:3]  # exactly as printed, once
    assert ids == list(range(ids[0], ids[-1] + 1)) and ids[0] == min(log)


def test_usdm_join_stopped_early_is_said_recorded_and_fetched_next_time(dsn: str, exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=20.0, history_days=1, history_rate=0.5, markets=["spot", "usdm"])
    since = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    ex.inject("dump_slow", n=2, seconds=120)  # the futures dumps crawl: the stop comes first
    cap = Capture(
        ["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", since=since, **{**FAST, "start_timeout": 4.0}
    ).start()
    wait_until(lambda: cap.status().history.get("BTCUSDT", "").startswith("joining"), 30, "the join to begin")
    time.sleep(0.5)
    st = cap.stop()
    line = st.history["BTCUSDT"]
    assert line.startswith("history join unfinished at stop") and "aggregates" in line, line
    opened = q(
        dsn,
        "SELECT first_missing_id, last_missing_id FROM capture_gaps WHERE exchange = %s AND status = 'open'",
        USDM,
    )
    assert opened, "the unfinished join was not recorded"
    # the next capture (no --since) fetches what was recorded from /fapi by id
    cap = Capture(["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", **FAST).start()
    try:
        want = {a for lo, hi in opened for a in range(lo, hi + 1)}
        wait_until(
            lambda: want <= {r[0] for r in stored_aggs(dsn, "BTCUSDT")},
            120,
            "the recorded aggregates fetched",
        )
    finally:
        cap.stop()
    assert not q(dsn, "SELECT 1 FROM capture_gaps WHERE exchange = %s AND status = 'open'", USDM)
    got = stored_aggs(dsn, "BTCUSDT")
    log = want_aggs(ex, "BTCUSDT")
    assert opened[0][0] == log[0][0]  # recorded from the first aggregate of `since`
    assert got == log[: len(got)]  # from there on whole and exact, each once


def test_cli_usdm_since_is_offered(dsn: str, exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=20.0, history_days=1, history_rate=0.5, markets=["spot", "usdm"])
    since = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    env = {**os.environ, "CRYPTOLAB_DSN": dsn}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--market",
            "usdm",
            "--symbols",
            "btcusdt",
            "--source",
            ex.fws_url,
            "--since",
            since,
            "--seconds",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == 0 and "history joined" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    with psycopg.connect(dsn) as c:
        n = c.execute(
            "SELECT count(*) FROM history_files WHERE exchange = %s AND period = 'daily'", (USDM,)
        ).fetchone()
    assert n is not None and n[0] == 1, r.stdout[-2000:] + r.stderr[-2000:]
