-- cryptolab_append_trades: the trade writer's append fast path in one call
-- (cryptolab/storage/writer.py, docs/capture.md "Commits").
--
-- Idempotent (CREATE OR REPLACE); runs in psql as is:
--   psql "$CRYPTOLAB_DSN" -f sql/schema/append_trades.sql
-- The writer uses it when the database has it and takes its statement-by-statement
-- path otherwise (same rows, same bars; more round trips).
--
-- One batch of trades as parallel arrays (text array literals from the writer: prices and
-- quantities as their exact decimal digits, times as integer microseconds). Whose ids, per
-- (exchange, symbol), strictly increase: the caller checks that (storage/append.py).
-- In the caller's transaction:
--   1. takes the per-symbol write lock every writer of `trades` takes (writer.lock_symbols:
--      pg_advisory_xact_lock of 'cryptolab.trades/<exchange>/<symbol>', in sorted order);
--   2. under it, in a new snapshot, asks whether any id of a symbol's range is stored (from a
--      day before its earliest trade on) or lies in a day archived and dropped: then it stores
--      nothing and returns NULL (the caller merges the batch instead);
--   3. else inserts the rows as they are and folds their 1 s bars into bars_1s (the one fold
--      rule: writer.BARS_ON_CONFLICT) and returns how many bars it touched.
-- A duplicate key (a writer that does not lock stored some ids after all) raises
-- unique_violation: the caller rolls back and merges.

CREATE OR REPLACE FUNCTION cryptolab_append_trades(
    p_exchange text[], p_symbol text[], p_trade_id bigint[], p_price numeric[], p_qty numeric[],
    p_is_buyer_maker boolean[], p_trade_time_us bigint[], p_event_time_us bigint[],
    p_received_at_us bigint[], p_source text[]
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    touched integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('cryptolab.trades/' || k, 0))
    FROM (SELECT DISTINCT e || '/' || s AS k FROM unnest(p_exchange, p_symbol) AS u(e, s)) AS keys
    ORDER BY k;
    IF EXISTS (
        SELECT 1
        FROM (SELECT e, s, min(i) AS lo, max(i) AS hi, min(t) AS t0
              FROM unnest(p_exchange, p_symbol, p_trade_id, p_trade_time_us) AS u(e, s, i, t)
              GROUP BY e, s) AS r
        WHERE EXISTS (SELECT 1 FROM trades x
                      WHERE x.exchange = r.e AND x.symbol = r.s AND x.trade_id BETWEEN r.lo AND r.hi
                        AND x.trade_time >= timestamptz 'epoch' + r.t0 * interval '1 microsecond'
                                            - interval '1 day')
           OR EXISTS (SELECT 1 FROM archive_days a
                      WHERE a.dropped_at IS NOT NULL AND a.exchange = r.e AND a.symbol = r.s
                        AND a.last_trade_id >= r.lo AND a.first_trade_id <= r.hi)
    ) THEN
        RETURN NULL;
    END IF;
    WITH src AS (
        SELECT * FROM unnest(p_exchange, p_symbol, p_trade_id, p_price, p_qty, p_is_buyer_maker,
                             p_trade_time_us, p_event_time_us, p_received_at_us, p_source)
            AS s(exchange, symbol, trade_id, price, qty, is_buyer_maker,
                 trade_time_us, event_time_us, received_at_us, source)
    ), ins AS (
        INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker,
                            trade_time, event_time, received_at, source)
        SELECT exchange, symbol, trade_id, price, qty, is_buyer_maker,
               timestamptz 'epoch' + trade_time_us * interval '1 microsecond',
               timestamptz 'epoch' + event_time_us * interval '1 microsecond',
               timestamptz 'epoch' + received_at_us * interval '1 microsecond',
               source
        FROM src
    ), agg AS (
    SELECT exchange, symbol,
           date_trunc('second', timestamptz 'epoch' + trade_time_us * interval '1 microsecond') AS ts,
           (array_agg(price ORDER BY trade_id))[1]      AS open,
           max(price)                                    AS high,
           min(price)                                    AS low,
           (array_agg(price ORDER BY trade_id DESC))[1] AS close,
           sum(qty)                                      AS volume,
           sum(price * qty)                              AS quote_volume,
           coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0)         AS taker_buy_volume,
           coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0) AS taker_buy_quote,
           count(*)::integer                             AS trade_count,
           min(trade_id)                                 AS first_trade_id,
           max(trade_id)                                 AS last_trade_id,
           sum(qty * price * price)                      AS price_sq_volume
    FROM src
    GROUP BY 1, 2, 3
    ), bars AS (
INSERT INTO bars_1s AS b (exchange, symbol, ts, open, high, low, close, volume, quote_volume,
                          taker_buy_volume, taker_buy_quote, trade_count,
                          first_trade_id, last_trade_id, price_sq_volume)
SELECT * FROM agg
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open  = CASE WHEN EXCLUDED.first_trade_id < b.first_trade_id THEN EXCLUDED.open ELSE b.open END,
    close = CASE WHEN EXCLUDED.last_trade_id > b.last_trade_id THEN EXCLUDED.close ELSE b.close END,
    high  = greatest(b.high, EXCLUDED.high),
    low   = least(b.low, EXCLUDED.low),
    volume           = b.volume + EXCLUDED.volume,
    quote_volume     = b.quote_volume + EXCLUDED.quote_volume,
    taker_buy_volume = b.taker_buy_volume + EXCLUDED.taker_buy_volume,
    taker_buy_quote  = b.taker_buy_quote + EXCLUDED.taker_buy_quote,
    trade_count      = b.trade_count + EXCLUDED.trade_count,
    first_trade_id   = least(b.first_trade_id, EXCLUDED.first_trade_id),
    last_trade_id    = greatest(b.last_trade_id, EXCLUDED.last_trade_id),
    price_sq_volume  = b.price_sq_volume + EXCLUDED.price_sq_volume
RETURNING 1
    )
    SELECT count(*) INTO touched FROM bars;
    RETURN touched;
END
$fn$;
