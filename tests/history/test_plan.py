"""The history planner: pure, no I/O — monthly dumps for whole months, daily for the edges, REST for today."""

from __future__ import annotations

from datetime import date

import pytest

from cryptolab.errors import DataError
from cryptolab.history import plan_history


def test_months_in_the_middle_days_at_the_edges_rest_for_today() -> None:
    p = plan_history(["btcusdt"], "2025-01-30", None, today=date(2025, 4, 3))
    names = [f.path for f in p.files]
    assert names[:2] == ["data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-30.zip",
                         "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-31.zip"]
    assert names[2:4] == ["data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2025-02.zip",
                          "data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2025-03.zip"]
    assert names[4:] == ["data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-04-01.zip",
                         "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-04-02.zip"]
    assert [f.optional for f in p.files] == [False] * 5 + [True]  # yesterday may not be published yet
    assert p.files[2].checksum_path.endswith("BTCUSDT-trades-2025-02.zip.CHECKSUM")
    assert [(r.first_day, r.last_day) for r in p.rest] == [(date(2025, 4, 3), date(2025, 4, 3))]
    # every day of the range exactly once
    days = sum(f.days for f in p.files) + 1
    assert days == (date(2025, 4, 3) - date(2025, 1, 30)).days + 1


def test_a_month_that_just_ended_is_fetched_as_days() -> None:
    # on April 1st March's monthly file is not surely out: its days come as daily files
    p = plan_history(["ETHUSDT"], "2025-03-01", "2025-03-31", today=date(2025, 4, 1))
    assert {f.period for f in p.files} == {"daily"} and len(p.files) == 31 and not p.rest
    p = plan_history(["ETHUSDT"], "2025-03-01", "2025-03-31", today=date(2025, 4, 2))
    assert [f.name for f in p.files] == ["ETHUSDT-trades-2025-03.zip"]


def test_klines_and_aggtrades_paths() -> None:
    p = plan_history(["BTCUSDT", "ethusdt"], "2025-01-05", "2025-01-05", today=date(2025, 2, 1),
                     kind="klines", interval="1m")
    assert [f.path for f in p.files] == ["data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-05.zip",
                                         "data/spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2025-01-05.zip"]
    p = plan_history(["BTCUSDT"], "2024-12-01", "2024-12-31", today=date(2025, 2, 1), kind="aggTrades")
    assert [f.path for f in p.files] == ["data/spot/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-12.zip"]


def test_to_in_the_future_is_today_and_only_today_is_rest() -> None:
    p = plan_history(["BTCUSDT"], "2025-01-05", "2030-01-01", today=date(2025, 1, 5))
    assert not p.files and len(p.rest) == 1


@pytest.mark.parametrize(("args", "kw", "match"), [
    (("BTCUSDT", "2025-02-01", "2025-01-01"), {}, "after --to"),
    (("BTCUSDT", "2025-02-30"), {}, "not a date"),
    (("BTCUSDT", "2026-01-01"), {}, "in the future"),
    (("BTCUSDT", "2015-01-01"), {}, "before Binance's first trade"),
    (("BTC/USDT", "2025-01-01"), {}, "not a symbol"),
    (("BTCUSDT", "2025-01-01"), {"kind": "bookTicker"}, "--kind"),
    (("BTCUSDT", "2025-01-01"), {"kind": "klines", "interval": "7m"}, "--interval"),
])
def test_bad_input(args: tuple[str, ...], kw: dict[str, str], match: str) -> None:
    with pytest.raises(DataError, match=match):
        plan_history([args[0]], *args[1:], today=date(2025, 6, 1), **kw)  # type: ignore[arg-type]
