"""A hand-built market with known answers, and plain-Python references for the analyses.

Imported by the other tests/test_analysis_*.py files (fixture `market`). The trades cross
midnight UTC and hold, on purpose: empty minutes, a halt (150 s of silence with
consecutive ids), an id gap (ids 1500-1504 never stored), a trade whose time goes
backwards, a price outlier, same-time sweeps, a burst, timestamp-order violations, and
a second symbol. They are offered to the writer shuffled (out-of-order arrival) and
partly twice (duplicates), as a capture would.

Every reference below is computed from the Python `Trade` list only, with Decimal at
80 digits of precision — never from the database.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import psycopg
import pytest

from cryptolab.model import DeadLetter, Trade, datetime_to_us, us_to_datetime

UTC = timezone.utc
SYMBOL = "TESTUSDT"
OTHER = "OTHERUSDT"
START = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)
END = datetime(2024, 8, 9, 0, 10, tzinfo=UTC)
START_US = datetime_to_us(START)
END_US = datetime_to_us(END)
ORIGIN_US = datetime_to_us(datetime(2000, 1, 3, tzinfo=UTC))
SECOND = 1_000_000

GAP_IDS = range(1500, 1505)
HALT_AFTER_ID = 2000
HALT_US = 150 * SECOND
BACKWARDS_ID = 1200
OUTLIER_ID = 800
BAD_PUSH_ID = 300  # E < T
BAD_NETWORK_ID = 301  # received 2.5 s before E
BURST_FROM_US = START_US + 120 * SECOND
BURST_TO_US = START_US + 125 * SECOND


def D(x: Any) -> Decimal:
    return Decimal(str(x))


@dataclass
class Market:
    stored: list[Trade]
    batches: list[list[Trade]]
    dead: list[DeadLetter]
    by_symbol: dict[str, list[Trade]] = field(default_factory=dict)

    def trades(self, symbol: str = SYMBOL, start_us: int = START_US, end_us: int = END_US) -> list[Trade]:
        """Stored trades of `symbol` in [start, end), in id order."""
        return [t for t in self.by_symbol.get(symbol, []) if start_us <= t.trade_time_us < end_us]


def build_market(seed: int = 7) -> Market:
    rnd = random.Random(seed)
    out: list[Trade] = []
    t = START_US + 300_000
    price = 6_000_000  # 60000.00 in cents
    last_end = END_US - 10 * SECOND
    trade_id = 0
    while t < last_end:
        trade_id += 1
        if BURST_FROM_US <= t < BURST_TO_US:
            dt = int(rnd.expovariate(1 / 4_000))
        elif rnd.random() < 0.12:
            dt = 0  # a sweep: same T as the previous fill
        else:
            dt = int(rnd.expovariate(1 / 180_000))
        if trade_id == HALT_AFTER_ID + 1:
            dt = HALT_US
        t += dt
        price += rnd.choice((-3, -2, -1, 0, 0, 1, 2, 3))
        p = Decimal(price).scaleb(-2)
        if trade_id == OUTLIER_ID:
            p = (p * Decimal("1.05")).quantize(Decimal("0.01"))
        if rnd.random() < 0.05:
            q = Decimal(rnd.randint(1, 99_999_999)).scaleb(-8)  # 8-decimal lots
        else:
            q = Decimal(rnd.randint(1, 300_000)).scaleb(-5)
        tt = t
        if trade_id == BACKWARDS_ID:
            tt = t - 40_000  # stamped before its predecessor
        e = tt + rnd.randint(200, 3_000)
        r = e + rnd.randint(2_000, 8_000)
        if trade_id == BAD_PUSH_ID:
            e = tt - 1_000
        if trade_id == BAD_NETWORK_ID:
            r = e - 2_500_000
        if trade_id in GAP_IDS:
            continue
        out.append(Trade("binance", SYMBOL, trade_id, p, q, rnd.random() < 0.45, tt, e, r, "live"))
    # a second symbol in the same range, to prove the symbol filter
    t2 = START_US + 1_000_000
    for i in range(1, 61):
        t2 += 7 * SECOND
        out.append(Trade("binance", OTHER, i, Decimal("3000.5") + i, Decimal("0.1"), i % 2 == 0,
                         t2, t2 + 1000, t2 + 6000, "live"))
    stored = sorted(out, key=lambda x: (x.symbol, x.trade_id))
    offered = out[:]
    rnd.shuffle(offered)  # out-of-order arrival
    batches = [offered[i : i + 250] for i in range(0, len(offered), 250)]
    batches.append(rnd.sample(out, 120))  # offered again later: duplicates
    batches[0] = batches[0] + batches[0][:5]  # and twice inside one batch
    dead = [
        DeadLetter("bad_json", b"{not json", "live", "binance", None, START_US + 5 * SECOND),
        DeadLetter(
            "missing_field", b'{"e":"trade","s":"TESTUSDT"}', "live", "binance", SYMBOL, START_US + 6 * SECOND
        ),
        DeadLetter(
            "missing_field",
            b'{"e":"trade","s":"TESTUSDT","p":"1"}',
            "live",
            "binance",
            SYMBOL,
            START_US + 7 * SECOND,
        ),
        DeadLetter("bad_json", b"{", "live", "binance", OTHER, START_US + 8 * SECOND),
    ]
    m = Market(stored, batches, dead)
    for tr in stored:
        m.by_symbol.setdefault(tr.symbol, []).append(tr)
    return m


def write_market(dsn: str, market: Market) -> None:
    from cryptolab.storage import db
    from cryptolab.storage.writer import TradeWriter

    with db.connect(dsn) as conn:
        w = TradeWriter(conn)
        total = 0
        for i, batch in enumerate(market.batches):
            res = w.write(batch, market.dead if i == 1 else ())
            total += res.inserted
        assert total == len(market.stored)


@pytest.fixture(scope="module")
def market_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """One database per test module holding the hand-built market (tests only read it)."""
    name = f"cl_market_{os.getpid()}_{next(_COUNTER)}"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    write_market(url, MARKET)
    mp = pytest.MonkeyPatch()
    mp.setenv("CRYPTOLAB_DSN", url)
    yield url
    mp.undo()
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mconn(market_dsn: str) -> Iterator[psycopg.Connection]:
    from cryptolab.storage import db

    c = db.connect(market_dsn)
    yield c
    c.close()


MARKET = build_market()
_COUNTER = itertools.count()


# ------------------------------------------------------------------ references
def q(value: Decimal, places: int) -> Decimal:
    with localcontext() as c:
        c.prec = 80
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def bucket(us: int, iv_us: int, origin_us: int = ORIGIN_US) -> int:
    return origin_us + (us - origin_us) // iv_us * iv_us


def grid(start_us: int, end_us: int, iv_us: int, origin_us: int = ORIGIN_US) -> list[int]:
    if end_us <= start_us:
        return []
    return list(range(bucket(start_us, iv_us, origin_us), end_us, iv_us))


def pdisc(values: list[Any], p: float) -> Any:
    """PostgreSQL's percentile_disc: the value at ceil(p * n) in sorted order (float math, as PG)."""
    if not values:
        return None
    s = sorted(values)
    k = max(math.ceil(p * len(s)), 1)
    return s[k - 1]


def ref_ohlcv(trades: list[Trade], start_us: int, end_us: int, iv_us: int) -> list[dict[str, Any]]:
    rows = []
    per: dict[int, list[Trade]] = {}
    for t in trades:
        if start_us <= t.trade_time_us < end_us:
            per.setdefault(bucket(t.trade_time_us, iv_us), []).append(t)
    with localcontext() as c:
        c.prec = 80
        for b in grid(start_us, end_us, iv_us):
            ts = sorted(per.get(b, []), key=lambda x: x.trade_id)
            if ts:
                rows.append(
                    {
                        "open_time": us_to_datetime(b),
                        "open": ts[0].price,
                        "close": ts[-1].price,
                        "high": max(x.price for x in ts),
                        "low": min(x.price for x in ts),
                        "volume": sum(x.qty for x in ts),
                        "quote_volume": sum(x.price * x.qty for x in ts),
                        "taker_buy_volume": sum((x.qty for x in ts if not x.is_buyer_maker), Decimal(0)),
                        "taker_buy_quote": sum(
                            (x.price * x.qty for x in ts if not x.is_buyer_maker), Decimal(0)
                        ),
                        "trades": len(ts),
                        "first_trade_id": ts[0].trade_id,
                        "last_trade_id": ts[-1].trade_id,
                    }
                )
            else:
                rows.append(
                    {
                        "open_time": us_to_datetime(b),
                        "open": None,
                        "close": None,
                        "high": None,
                        "low": None,
                        "volume": Decimal(0),
                        "quote_volume": Decimal(0),
                        "taker_buy_volume": Decimal(0),
                        "taker_buy_quote": Decimal(0),
                        "trades": 0,
                        "first_trade_id": None,
                        "last_trade_id": None,
                    }
                )
    return rows


def ref_vwap(trades: list[Trade], buckets: list[int], iv_us: int, window_of: Any) -> list[dict[str, Any]]:
    """window_of(bucket_start) -> (from_us, to_us): the trades accumulated at that bucket's end."""
    out = []
    with localcontext() as c:
        c.prec = 80
        for b in buckets:
            lo, hi = window_of(b)
            sel = [t for t in trades if lo <= t.trade_time_us < hi]
            v = sum((t.qty for t in sel), Decimal(0))
            qv = sum((t.price * t.qty for t in sel), Decimal(0))
            s = sum((t.qty * t.price * t.price for t in sel), Decimal(0))
            if v > 0:
                vw = q(qv / v, 20)
                sigma = (v * s - qv * qv).sqrt() / v
            else:
                vw = sigma = None
            out.append(
                {
                    "open_time": us_to_datetime(b),
                    "cum_volume": v,
                    "cum_quote_volume": qv,
                    "vwap": vw,
                    "sigma": sigma,
                }
            )
    return out


def ref_moving_averages(
    trades: list[Trade], start_us: int, end_us: int, iv_us: int, window: int, span: int
) -> list[dict[str, Any]]:
    bars = ref_ohlcv(trades, start_us, end_us, iv_us)
    out = []
    last = None
    prices: list[Decimal | None] = []
    ema = None
    with localcontext() as c:
        c.prec = 80
        for b in bars:
            if b["close"] is not None:
                last = b["close"]
            prices.append(last)
            win = prices[-window:]
            sma = q(sum(win) / window, 12) if len(win) == window and all(p is not None for p in win) else None  # type: ignore[arg-type]
            if last is not None:
                ema = last if ema is None else q(ema + (last - ema) * 2 / (span + 1), 12)
            out.append(
                {"open_time": b["open_time"], "close": b["close"], "price": last, "sma": sma, "ema": ema}
            )
    return out


def min_scale(d: Decimal) -> int:
    n = d.normalize()
    return max(0, -n.as_tuple().exponent)  # type: ignore[operator]


def ref_volume_profile(
    trades: list[Trade], bins: int = 100, bin_size: Decimal | None = None, va: Decimal = Decimal("0.70")
) -> dict[str, Any]:
    with localcontext() as c:
        c.prec = 80
        lo = min(t.price for t in trades)
        hi = max(t.price for t in trades)
        total = sum(t.qty for t in trades)
        tick = Decimal(1).scaleb(-max(min_scale(t.price) for t in trades))
        if bin_size is None:
            n = ((hi - lo) / tick / bins).to_integral_value(rounding="ROUND_CEILING")
            bs = max(n, Decimal(1)) * tick
        else:
            bs = bin_size
        idx = lambda p: int((p / bs).to_integral_value(rounding=ROUND_FLOOR))  # noqa: E731
        first, last = idx(lo), idx(hi)
        vol = {i: Decimal(0) for i in range(first, last + 1)}
        buy = {i: Decimal(0) for i in range(first, last + 1)}
        cnt = {i: 0 for i in range(first, last + 1)}
        for t in trades:
            vol[idx(t.price)] += t.qty
            cnt[idx(t.price)] += 1
            if not t.is_buyer_maker:
                buy[idx(t.price)] += t.qty
        keys = list(range(first, last + 1))
        poc = max(keys, key=lambda i: (vol[i], -i))
        a, b, acc = poc, poc, vol[poc]
        while acc < total * va:
            up = vol.get(b + 1, Decimal(-1))
            down = vol.get(a - 1, Decimal(-1))
            if max(up, down) < 0:
                break
            if up >= down:
                b, acc = b + 1, acc + up
            else:
                a, acc = a - 1, acc + down
        n_bins = len(keys)
        nodes = {}
        for j, i in enumerate(keys):
            prev = vol[keys[j - 1]] if j > 0 else None
            nxt = vol[keys[j + 1]] if j + 1 < n_bins else None
            v = vol[i]
            if (
                v > (prev if prev is not None else -1)
                and v >= (nxt if nxt is not None else -1)
                and v * n_bins >= Decimal("1.5") * total
            ):
                nodes[i] = "hvn"
            elif (
                prev is not None
                and nxt is not None
                and v < prev
                and v <= nxt
                and v * n_bins <= Decimal("0.5") * total
            ):
                nodes[i] = "lvn"
        rows = [
            {
                "price_low": i * bs,
                "price_high": (i + 1) * bs,
                "volume": vol[i],
                "buy_volume": buy[i],
                "sell_volume": vol[i] - buy[i],
                "trades": cnt[i],
                "volume_share": q(vol[i] / total, 12),
                "is_poc": i == poc,
                "in_value_area": a <= i <= b,
                "node": nodes.get(i),
            }
            for i in keys
        ]
    return {"rows": rows, "tick": tick, "bin_size": bs}


def ref_cvd(
    trades: list[Trade], all_trades: list[Trade], start_us: int, end_us: int, iv_us: int
) -> list[dict[str, Any]]:
    sel = sorted((t for t in trades if start_us <= t.trade_time_us < end_us), key=lambda t: t.trade_id)
    by_id = {t.trade_id: t for t in all_trades}
    side_tick = []
    last_side = 0
    for i, t in enumerate(sel):
        prev = sel[i - 1] if i else by_id.get(t.trade_id - 1)  # the previous trade: the adjacent id only
        if prev is None or prev.trade_id != t.trade_id - 1:
            last_side = 0  # unknown after a gap: unclassified until the price moves
        elif t.price != prev.price:
            last_side = 1 if t.price > prev.price else -1
        side_tick.append(last_side)
    per: dict[int, dict[str, Any]] = {}
    for t, ts in zip(sel, side_tick):
        d = per.setdefault(
            bucket(t.trade_time_us, iv_us),
            {"buy": Decimal(0), "sell": Decimal(0), "tick": Decimal(0), "n": 0, "classified": 0, "agree": 0},
        )
        agg = -1 if t.is_buyer_maker else 1
        d["buy" if agg > 0 else "sell"] += t.qty
        d["tick"] += ts * t.qty
        d["n"] += 1
        d["classified"] += ts != 0
        d["agree"] += ts == agg
    out = []
    cvd = tick_cvd = Decimal(0)
    for b in grid(start_us, end_us, iv_us):
        d = per.get(
            b,
            {"buy": Decimal(0), "sell": Decimal(0), "tick": Decimal(0), "n": 0, "classified": 0, "agree": 0},
        )
        delta = d["buy"] - d["sell"]
        cvd += delta
        tick_cvd += d["tick"]
        out.append(
            {
                "open_time": us_to_datetime(b),
                "trades": d["n"],
                "buy_volume": d["buy"],
                "sell_volume": d["sell"],
                "delta": delta,
                "cvd": cvd,
                "tick_delta": d["tick"],
                "tick_cvd": tick_cvd,
                "classified": d["classified"],
                "agree": d["agree"],
            }
        )
    return out


def per_second_counts(trades: list[Trade], start_us: int, end_us: int) -> list[tuple[int, int]]:
    counts: dict[int, int] = {}
    for t in trades:
        s = t.trade_time_us // SECOND * SECOND
        counts[s] = counts.get(s, 0) + 1
    return [(s, counts.get(s, 0)) for s in range(start_us // SECOND * SECOND, end_us, SECOND)]


def to_rows(frame: Any) -> list[dict[str, Any]]:
    return frame.to_dicts()


def same(a: Any, b: Any) -> bool:
    """Exact equality that treats Decimal('1.50') and Decimal('1.5') as equal, None as None."""
    if a is None or b is None:
        return a is None and b is None
    return a == b


def assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], keys: list[str]) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        for k in keys:
            assert same(g[k], w[k]), f"row {i} ({w.get('open_time', '')}) {k}: got {g[k]!r}, want {w[k]!r}"


# ------------------------------------------------------------------ sanity of the data set itself
def test_market_has_the_features_the_tests_rely_on() -> None:
    m = MARKET
    ids = [t.trade_id for t in m.by_symbol[SYMBOL]]
    assert set(GAP_IDS).isdisjoint(ids) and min(GAP_IDS) - 1 in ids and max(GAP_IDS) + 1 in ids
    by_id = {t.trade_id: t for t in m.by_symbol[SYMBOL]}
    assert by_id[HALT_AFTER_ID + 1].trade_time_us - by_id[HALT_AFTER_ID].trade_time_us >= HALT_US
    assert by_id[BACKWARDS_ID].trade_time_us < by_id[BACKWARDS_ID - 1].trade_time_us
    times = [t.trade_time_us for t in m.by_symbol[SYMBOL]]
    assert min(times) < datetime_to_us(datetime(2024, 8, 9, tzinfo=UTC)) < max(times)  # crosses midnight
    assert any(a == b for a, b in zip(times, times[1:]))  # same-time sweeps
    offered = sum(len(b) for b in m.batches)
    assert offered > len(m.stored) + 100  # duplicates offered
    assert re.fullmatch(r"[A-Z]+", SYMBOL)
    minutes = {t.trade_time_us // 60_000_000 for t in m.by_symbol[SYMBOL]}
    span = range(min(minutes), max(minutes) + 1)
    assert any(mm not in minutes for mm in span)  # an empty minute inside the data


def test_market_is_stored_once_whatever_the_order(market_dsn: str) -> None:
    with psycopg.connect(market_dsn) as c:
        n = c.execute("SELECT count(*) FROM trades").fetchone()[0]  # type: ignore[index]
        bars = c.execute("SELECT sum(trade_count) FROM bars_1s").fetchone()[0]  # type: ignore[index]
    assert n == len(MARKET.stored) == bars
