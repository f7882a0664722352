"""The exchange server's trade ids: start-time µs without a seed (never shared), 1 with one, or as given."""

from __future__ import annotations

import time

from cryptolab.exchange import LocalExchange


def test_independent_synthetic_exchanges_never_share_ids() -> None:
    """Without a seed, ids start at the start time in µs: two exchanges never collide.
    With a seed (tests), ids start at 1 and a seed prints the same trades."""
    with LocalExchange(symbols=["btcusdt"], rate=2000) as a:
        time.sleep(0.01)
        with LocalExchange(symbols=["btcusdt"], rate=2000) as b:
            time.sleep(0.5)
            a.stop_market()
            b.stop_market()
            ids_a = [t.trade_id for t in a.trade_log("btcusdt")]
            ids_b = [t.trade_id for t in b.trade_log("btcusdt")]
    assert ids_a and ids_b
    assert ids_a[0] < ids_b[0] and ids_a[-1] < ids_b[0]
    assert ids_b[0] > 1_600_000_000_000_000  # a µs timestamp: far above Binance's real ids (~1e10)
    assert ids_b[-1] < 2**53  # still exact in a float64 (pandas, JSON readers)
    with LocalExchange(symbols=["btcusdt"], rate=500, seed=3, max_trades=20) as c:
        time.sleep(0.5)
        assert [t.trade_id for t in c.trade_log("btcusdt")][:3] == [1, 2, 3]
    with LocalExchange(symbols=["btcusdt"], rate=500, first_id=1000, max_trades=20) as d:
        time.sleep(0.5)
        assert d.trade_log("btcusdt")[0].trade_id == 1000
