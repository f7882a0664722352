-- The trade writer's append fast path (cryptolab/storage/writer.py, docs/capture.md "Commits"):
-- cryptolab_append_trades, one call for a batch; cryptolab_trades_appendable and
-- cryptolab_fold_trades around the binary COPY of a large batch.
--
-- Idempotent (CREATE OR REPLACE); runs in psql as is:
--   psql "$CRYPTOLAB_DSN" -f sql/schema/append_trades.sql
-- The writer uses it when the database has it and takes its statement-by-statement
-- path otherwise (same rows, same bars; more round trips).

-- cryptolab_upsert_bars: 1 s bars folded into bars_1s by the one fold rule (writer.BARS_ON_CONFLICT:
-- open from the lower first id, close from the higher last id, extremes, sums and counts added).
-- The two appends below fold through it. Returns the bars touched.
CREATE OR REPLACE FUNCTION cryptolab_upsert_bars(p_bars bars_1s[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    touched integer;
BEGIN
    WITH bars AS (
INSERT INTO bars_1s AS b (exchange, symbol, ts, open, high, low, close, volume, quote_volume,
                          taker_buy_volume, taker_buy_quote, trade_count,
                          first_trade_id, last_trade_id, price_sq_volume)
SELECT * FROM unnest(p_bars)
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

-- cryptolab_trades_appendable: steps 1-2 of an append, for the append below and for the writer's
-- binary COPY of a large batch (cryptolab/storage/trade_copy.py). Given each symbol's id range
-- in the batch ([lo, hi], the time of its first trade in µs), in the caller's transaction: takes
-- the per-symbol write locks (sorted) and returns whether none of those ids is stored (from a day
-- before the range's first trade on) or lies in a day archived and dropped: true = the batch may
-- go in as it is, false = merge it.
CREATE OR REPLACE FUNCTION cryptolab_trades_appendable(
    p_exchange text[], p_symbol text[], p_lo bigint[], p_hi bigint[], p_t0_us bigint[]
) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('cryptolab.trades/' || k, 0))
    FROM (SELECT DISTINCT e || '/' || s AS k FROM unnest(p_exchange, p_symbol) AS u(e, s)) AS keys
    ORDER BY k;
    RETURN NOT EXISTS (
        SELECT 1
        FROM unnest(p_exchange, p_symbol, p_lo, p_hi, p_t0_us) AS r(e, s, lo, hi, t0)
        WHERE EXISTS (SELECT 1 FROM trades x
                      WHERE x.exchange = r.e AND x.symbol = r.s AND x.trade_id BETWEEN r.lo AND r.hi
                        AND x.trade_time >= timestamptz 'epoch' + r.t0 * interval '1 microsecond'
                                            - interval '1 day')
           OR EXISTS (SELECT 1 FROM archive_days a
                      WHERE a.dropped_at IS NOT NULL AND a.exchange = r.e AND a.symbol = r.s
                        AND a.last_trade_id >= r.lo AND a.first_trade_id <= r.hi)
    );
END
$fn$;

-- cryptolab_fold_trades: the 1 s bars of trades just appended (by the binary COPY), folded into
-- bars_1s by the one fold rule. Each symbol's appended rows are those of its id range [lo, hi]
-- with trade times in [t_min, t_max] (µs): cryptolab_trades_appendable said, under the lock,
-- that none of them was stored before. Open and close are the prices of the second's first and
-- last trade id; sums over the stored quote_qty (= price * qty, exact). Returns the bars touched.
CREATE OR REPLACE FUNCTION cryptolab_fold_trades(
    p_exchange text[], p_symbol text[], p_lo bigint[], p_hi bigint[], p_tmin_us bigint[],
    p_tmax_us bigint[]
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    touched integer;
BEGIN
    WITH g AS (
        SELECT t.exchange, t.symbol, date_bin('1 second', t.trade_time, timestamptz 'epoch') AS ts,
               max(t.price) AS high, min(t.price) AS low, sum(t.qty) AS volume,
               sum(t.quote_qty) AS quote_volume,
               coalesce(sum(t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS taker_buy_volume,
               coalesce(sum(t.quote_qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS taker_buy_quote,
               count(*)::integer AS trade_count, min(t.trade_id) AS first_trade_id,
               max(t.trade_id) AS last_trade_id, sum(t.quote_qty * t.price) AS price_sq_volume
        FROM unnest(p_exchange, p_symbol, p_lo, p_hi, p_tmin_us, p_tmax_us) AS r(e, s, lo, hi, t0, t1)
        JOIN trades t ON t.exchange = r.e AND t.symbol = r.s AND t.trade_id BETWEEN r.lo AND r.hi
         AND t.trade_time BETWEEN timestamptz 'epoch' + r.t0 * interval '1 microsecond'
                              AND timestamptz 'epoch' + r.t1 * interval '1 microsecond'
        GROUP BY 1, 2, 3
    ), agg AS (
        SELECT g.exchange, g.symbol, g.ts,
               (SELECT o.price FROM trades o
                WHERE o.exchange = g.exchange AND o.symbol = g.symbol AND o.trade_id = g.first_trade_id
                  AND o.trade_time >= g.ts AND o.trade_time < g.ts + interval '1 second') AS open,
               g.high, g.low,
               (SELECT c.price FROM trades c
                WHERE c.exchange = g.exchange AND c.symbol = g.symbol AND c.trade_id = g.last_trade_id
                  AND c.trade_time >= g.ts AND c.trade_time < g.ts + interval '1 second') AS close,
               g.volume, g.quote_volume, g.taker_buy_volume, g.taker_buy_quote, g.trade_count,
               g.first_trade_id, g.last_trade_id, g.price_sq_volume
        FROM g
    )
    SELECT cryptolab_upsert_bars(array_agg(ROW(a.*)::bars_1s)) INTO touched FROM agg AS a;
    RETURN touched;
END
$fn$;

-- cryptolab_append_trades: the append in one call.
-- One batch of trades as parallel arrays (text array literals from the writer: prices and
-- quantities as their exact decimal digits, times as integer microseconds). Whose ids, per
-- (exchange, symbol), strictly increase: the caller checks that (storage/append.py).
-- In the caller's transaction:
--   1. takes the per-symbol write lock every writer of `trades` takes (writer.lock_symbols:
--      pg_advisory_xact_lock of 'cryptolab.trades/<exchange>/<symbol>', in sorted order);
--   2. under it, in a new snapshot, asks whether any id of a symbol's range is stored (from a
--      day before its earliest trade on) or lies in a day archived and dropped: then it stores
--      nothing and returns NULL (the caller merges the batch instead) — steps 1-2 are
--      cryptolab_trades_appendable (above);
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
    IF NOT (
        SELECT cryptolab_trades_appendable(array_agg(e), array_agg(s), array_agg(lo), array_agg(hi),
                                           array_agg(t0))
        FROM (SELECT e, s, min(i) AS lo, max(i) AS hi, min(t) AS t0
              FROM unnest(p_exchange, p_symbol, p_trade_id, p_trade_time_us) AS u(e, s, i, t)
              GROUP BY e, s) AS r
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
    )
    SELECT cryptolab_upsert_bars(array_agg(ROW(a.*)::bars_1s)) INTO touched FROM agg AS a;
    RETURN touched;
END
$fn$;
