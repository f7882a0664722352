"""The archive's plan (pure): which closed days to export, which whole partitions to drop, what to leave."""

from __future__ import annotations

from datetime import date

from cryptolab.archive.plan import Group, Recorded, make_plan


def test_plan_exports_closed_days_and_drops_only_whole_selected_partitions() -> None:
    parts = {
        date(2024, 1, 1): [("binance", "BTCUSDT"), ("binance", "ETHUSDT")],
        date(2024, 1, 2): [("binance", "BTCUSDT")],
        date(2024, 1, 3): [("binance", "BTCUSDT")],  # today: open, never touched
        date(2023, 12, 31): [],
    }
    today = date(2024, 1, 3)
    p = make_plan(parts, {}, set(), today=today, location="/a")
    assert p.export == [
        Group(date(2024, 1, 1), "binance", "BTCUSDT"),
        Group(date(2024, 1, 1), "binance", "ETHUSDT"),
        Group(date(2024, 1, 2), "binance", "BTCUSDT"),
    ]
    assert p.drop == []
    p = make_plan(parts, {}, set(), today=today, location="/a", drop=True, symbols=["btcusdt"])
    assert [g.day for g in p.export] == [date(2024, 1, 1), date(2024, 1, 2)]
    assert p.drop == [date(2024, 1, 2)] and p.kept[0][0] == date(2024, 1, 1)  # ETHUSDT not archived
    p = make_plan(parts, {}, set(), today=today, location="/a", keep_days=1)
    assert p.drop == [date(2024, 1, 1)]
    done = Group(date(2024, 1, 2), "binance", "BTCUSDT")
    p = make_plan(
        parts, {done: Recorded("/a", False)}, {done}, today=today, location="/a", before=date(2024, 1, 2)
    )
    assert done not in p.export and [g.day for g in p.export] == [date(2024, 1, 1)] * 2
    p = make_plan(parts, {done: Recorded("/a", False)}, {done}, today=today, location="/a")
    assert p.done == [done]
    p = make_plan(parts, {done: Recorded("/elsewhere", False)}, {done}, today=today, location="/a")
    assert done in p.export  # recorded at another location: written here too
    p = make_plan(parts, {done: Recorded("/a", True)}, {done}, today=today, location="/a", drop=True)
    assert p.conflicts and date(2024, 1, 2) not in p.drop  # dropped before, rows again: left alone
