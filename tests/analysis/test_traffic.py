"""Traffic analyses against plain-Python references on the hand-built market."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, localcontext

import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import us_to_datetime
from tests.analysis.test_data import (  # noqa: F401  (fixtures)
    BURST_FROM_US,
    BURST_TO_US,
    END,
    END_US,
    MARKET,
    SECOND,
    START,
    START_US,
    SYMBOL,
    market_dsn,
    mconn,
    pdisc,
    per_second_counts,
    q,
)


def test_tps_is_dense_and_exact(mconn) -> None:
    got = an.tps(SYMBOL, START, END, conn=mconn)
    want = per_second_counts(MARKET.trades(), START_US, END_US)
    assert got.height == 900
    assert [(r["ts"], r["trades"]) for r in got.to_dicts()] == [(us_to_datetime(s), n) for s, n in want]
    assert (got["trades"] == 0).sum() > 100  # quiet seconds are there, as zeros
    with localcontext() as c:
        c.prec = 80
        assert sum(got["volume"].to_list()) == sum(t.qty for t in MARKET.trades())


def test_tps_stats_percentiles(mconn) -> None:
    got = an.tps_stats(SYMBOL, START, END, conn=mconn).to_dicts()[0]
    counts = [n for _, n in per_second_counts(MARKET.trades(), START_US, END_US)]
    assert got["seconds"] == len(counts) == 900
    assert got["active_seconds"] == sum(1 for n in counts if n)
    assert got["trades"] == sum(counts)
    assert got["mean_tps"] == q(Decimal(sum(counts)) / len(counts), 6)
    for p, key in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")):
        assert got[key] == pdisc(counts, p), key
    assert got["max_tps"] == max(counts)


@pytest.mark.parametrize("window,factor", [(60, 3), (30, "2.5")])
def test_bursts_match_reference(mconn, window: int, factor) -> None:
    got = an.bursts(SYMBOL, START, END, window=window, factor=factor, conn=mconn)
    dense = dict(per_second_counts(MARKET.by_symbol[SYMBOL], START_US - window * SECOND, END_US))
    k = Decimal(str(factor))
    first = (min(t.trade_time_us for t in MARKET.by_symbol[SYMBOL]) // SECOND) * SECOND
    hot = []
    for s in range(START_US, END_US, SECOND):
        # history: the window before, from the first stored second on, at least min(window, 10) s of it
        prev = [dense[s - i * SECOND] for i in range(window, 0, -1) if s - i * SECOND >= first]
        if len(prev) < min(window, 10):
            continue
        med = pdisc(prev, 0.5)
        if dense[s] > k * max(med, 1):
            hot.append((s, dense[s], med))
    runs: list[list[tuple[int, int, int]]] = []
    for h in hot:
        if runs and runs[-1][-1][0] + SECOND == h[0]:
            runs[-1].append(h)
        else:
            runs.append([h])
    want = [(us_to_datetime(r[0][0]), us_to_datetime(r[-1][0] + SECOND), len(r), sum(x[1] for x in r),
             max(x[1] for x in r), r[0][2]) for r in runs]
    assert [(b["burst_start"], b["burst_end"], b["seconds"], b["trades"], b["peak_tps"], b["median_before"])
            for b in got.to_dicts()] == want
    # the burst we planted is found
    assert any(
        b["burst_start"] <= us_to_datetime(BURST_FROM_US + SECOND) < b["burst_end"] for b in got.to_dicts()
    )


def _gaps() -> list[int]:
    ts = sorted(MARKET.trades(), key=lambda t: t.trade_id)
    return [b.trade_time_us - a.trade_time_us for a, b in zip(ts, ts[1:])]


def test_inter_arrival_histogram(mconn) -> None:
    got = an.inter_arrival(SYMBOL, START, END, conn=mconn).to_dicts()
    gaps = _gaps()
    edges = [
        None,
        0,
        1,
        1000,
        2000,
        5000,
        10000,
        20000,
        50000,
        100000,
        200000,
        500000,
        1000000,
        2000000,
        5000000,
        10000000,
        60000000,
        None,
    ]
    assert len(got) == 17
    total = len(gaps)
    cum = 0
    for i, row in enumerate(got):
        lo, hi = edges[i], edges[i + 1]
        n = sum(1 for g in gaps if (lo is None or g >= lo) and (hi is None or g < hi))
        cum += n
        assert (row["lower_us"], row["upper_us"], row["gaps"]) == (lo, hi, n), row["label"]
        assert row["share"] == q(Decimal(n) / total, 6)
        assert row["cumulative_share"] == q(Decimal(cum) / total, 6)
    assert got[0]["label"] == "negative" and got[0]["gaps"] == 1  # the trade stamped before its predecessor
    assert got[1]["label"] == "same time" and got[1]["gaps"] > 50  # sweeps
    assert got[-1]["gaps"] == 1  # the 150 s halt


def test_inter_arrival_stats(mconn) -> None:
    got = an.inter_arrival_stats(SYMBOL, START, END, conn=mconn).to_dicts()[0]
    gaps = _gaps()
    assert got["gaps"] == len(gaps)
    assert got["same_time"] == sum(1 for g in gaps if g == 0)
    assert got["negative"] == sum(1 for g in gaps if g < 0)
    assert got["mean_us"] == q(Decimal(sum(gaps)) / len(gaps), 3)
    for p, key in ((0.1, "p10_us"), (0.5, "p50_us"), (0.9, "p90_us"), (0.99, "p99_us")):
        assert got[key] == pdisc(gaps, p), key
    assert got["max_us"] == max(gaps)


def test_ingest_throughput_counts_every_row_once(mconn) -> None:
    row = mconn.execute(
        "SELECT min(ingested_at), max(ingested_at) FROM trades WHERE symbol = %s", (SYMBOL,)
    ).fetchone()
    mconn.rollback()
    lo, hi = row[0].replace(microsecond=0), row[1].replace(microsecond=0) + timedelta(seconds=1)
    got = an.ingest_throughput(SYMBOL, lo, hi, conn=mconn)
    assert got.height == int((hi - lo).total_seconds())
    assert int(got["rows"].sum()) == len(MARKET.by_symbol[SYMBOL])
    assert 1 <= int(got["commits"].sum()) <= len(MARKET.batches)  # one writer transaction per batch


def test_bad_traffic_arguments(mconn) -> None:
    with pytest.raises(DataError, match="window"):
        an.bursts(SYMBOL, START, END, window=0, conn=mconn)
    with pytest.raises(DataError, match="factor"):
        an.bursts(SYMBOL, START, END, factor="-1", conn=mconn)
    with pytest.raises(DataError, match="unknown symbol"):
        an.tps("ZZZUSDT", START, END, conn=mconn)
    assert an.tps(SYMBOL, START, START, conn=mconn).height == 0
    assert an.inter_arrival_stats(SYMBOL, START, START, conn=mconn)["gaps"][0] == 0
    assert an.bursts(SYMBOL, START, START, conn=mconn).height == 0
    _ = BURST_TO_US
