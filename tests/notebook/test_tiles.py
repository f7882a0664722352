"""Key-figure tiles (exact values, colour by direction) and the trade tape's HTML."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from cryptolab.notebook.tape import Tape
from cryptolab.notebook.tiles import KpiRow, KpiTile


def test_tiles_and_tape_html() -> None:
    tile = KpiTile("Last price")
    tile.set(Decimal("65000.10"), "+1.5", "up")
    assert tile.value == "65000.1" and "#16a34a" in tile.html()  # exact, trailing zeros dropped
    row = KpiRow({"a": "A", "b": "B"})
    row["b"].set(None)
    assert row["b"].value == "–" and len(row.widget.children) == 2
    tape = Tape(rows=2)
    t = datetime(2024, 3, 5, 10, 0, 1, 234000, tzinfo=timezone.utc)
    tape.update(
        [
            {
                "trade_id": 9,
                "price": Decimal("1.10"),
                "qty": Decimal("0.5"),
                "is_buyer_maker": True,
                "trade_time": t,
            },
            {
                "trade_id": 8,
                "price": Decimal("1.20"),
                "qty": Decimal("2"),
                "is_buyer_maker": False,
                "trade_time": t,
            },
            {
                "trade_id": 7,
                "price": Decimal("1.30"),
                "qty": Decimal("1"),
                "is_buyer_maker": False,
                "trade_time": t,
            },
        ]
    )
    html = tape.html()
    assert tape.newest_id == 9 and ">1.1<" in html and "10:00:01.234" in html
    assert html.index('data-side="sell"') < html.index('data-side="buy"')  # newest (a taker sell) on top
    assert ">1.3<" not in html  # only `rows` rows
