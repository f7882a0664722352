"""A notebook's context: the connection, the market and which kind of data it reads, said once."""

from __future__ import annotations

from cryptolab.notebook import notebook_context


def test_notebook_context_says_which_kind_of_data_it_reads(dsn: str) -> None:
    import psycopg

    from cryptolab.model import now_us, us_to_datetime

    t = us_to_datetime(now_us() - 60_000_000)
    with psycopg.connect(dsn) as c:
        c.execute(
            "INSERT INTO agg_trades (exchange, symbol, agg_id, price, qty, first_trade_id, last_trade_id, "
            "trade_time, is_buyer_maker, source) VALUES ('binance', 'AGGUSDT', 1, 10.5, 2, 1, 3, %s, true, "
            "'backfill')",
            (t,),
        )
    ctx = notebook_context(dsn, symbol="AGGUSDT", exchange="binance")
    try:
        assert "reading aggregate trades" in ctx.chosen
    finally:
        ctx.conn.close()
