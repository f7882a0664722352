-- volume_stored.sql: what is stored (symbols, daily totals), cumulative volume delta from the
-- aggressor side with the tick rule beside it, and reconciliation against the exchange's klines.
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08 -v end=2024-08-09 -f sql/volume_stored.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC; defaults follow the stored data as in
-- cryptolab.analysis: see defaults.psql), interval (CVD buckets, 1m).
--
-- Aggressor side: is_buyer_maker = false means the taker bought (+qty to CVD); true means the
-- taker sold (-qty). Everything here is an exact NUMERIC sum.
\if :{?interval} \else \set interval 1m \endif
\ir defaults.psql


-- name: symbols
-- Symbols with stored trades on the exchange, with their first and last stored second
-- (a loose index scan: one index probe per symbol, however many rows are stored).
WITH RECURSIVE s AS (
    SELECT min(symbol) AS symbol FROM bars_1s WHERE exchange = :'exchange'
    UNION ALL
    SELECT (SELECT min(b.symbol) FROM bars_1s b WHERE b.exchange = :'exchange' AND b.symbol > s.symbol)
    FROM s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol,
       (SELECT min(ts) FROM bars_1s b WHERE b.exchange = :'exchange' AND b.symbol = s.symbol) AS first_second,
       (SELECT max(ts) FROM bars_1s b WHERE b.exchange = :'exchange' AND b.symbol = s.symbol) AS last_second
FROM s WHERE s.symbol IS NOT NULL
ORDER BY s.symbol;


-- name: markets
-- Every (exchange, symbol) with stored bars and its first and last stored second, over all
-- exchanges (a loose index scan on the primary key: one probe per pair). Analyses called
-- without an exchange or a symbol pick from these.
WITH RECURSIVE s AS (
    (SELECT exchange, symbol FROM bars_1s ORDER BY exchange, symbol LIMIT 1)
    UNION ALL
    SELECT n.exchange, n.symbol
    FROM s CROSS JOIN LATERAL (
        SELECT b.exchange, b.symbol FROM bars_1s b
        WHERE (b.exchange, b.symbol) > (s.exchange, s.symbol)
        ORDER BY b.exchange, b.symbol LIMIT 1
    ) AS n
)
SELECT s.exchange, s.symbol,
       (SELECT min(ts) FROM bars_1s b WHERE b.exchange = s.exchange AND b.symbol = s.symbol) AS first_second,
       (SELECT max(ts) FROM bars_1s b WHERE b.exchange = s.exchange AND b.symbol = s.symbol) AS last_second
FROM s
ORDER BY s.exchange, s.symbol;


-- name: stored_span
-- First and last stored second of one symbol (both null when nothing is stored).
SELECT min(ts) AS first_second, max(ts) AS last_second
FROM bars_1s
WHERE exchange = :'exchange' AND symbol = upper(:'symbol');


-- name: daily_totals
-- Stored totals per UTC day: trades, base and quote volume, taker-buy and taker-sell parts,
-- the id span and how many ids inside it are not stored (missing_ids > 0 means an id gap).
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
)
SELECT (date_bin(interval '1 day', b.ts, p.origin) AT TIME ZONE 'UTC')::date AS day,
       sum(b.trade_count)::bigint                       AS trades,
       sum(b.volume)                                    AS volume,
       sum(b.quote_volume)                              AS quote_volume,
       sum(b.taker_buy_volume)                          AS taker_buy_volume,
       sum(b.taker_buy_quote)                           AS taker_buy_quote,
       sum(b.volume - b.taker_buy_volume)               AS taker_sell_volume,
       sum(b.quote_volume - b.taker_buy_quote)          AS taker_sell_quote,
       min(b.first_trade_id)                            AS first_trade_id,
       max(b.last_trade_id)                             AS last_trade_id,
       max(b.last_trade_id) - min(b.first_trade_id) + 1 - sum(b.trade_count)::bigint AS missing_ids,
       count(*)                                         AS active_seconds
FROM bars_1s b, p
WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
  AND b.ts >= p.t0 AND b.ts < p.t1
GROUP BY p.origin, 1
ORDER BY 1;


-- name: cvd
-- Cumulative volume delta per interval from the stored 1 s bars (dense: empty intervals are
-- zero): buy = taker-buy volume, sell = the rest, delta = buy - sell, cvd = running sum of
-- delta from `start`; the same in quote currency.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), agg AS (
    SELECT date_bin(p.iv, b.ts, p.origin) AS open_time,
           sum(b.taker_buy_volume) AS buy_volume, sum(b.volume - b.taker_buy_volume) AS sell_volume,
           sum(b.taker_buy_quote) AS buy_quote, sum(b.quote_volume - b.taker_buy_quote) AS sell_quote,
           sum(b.trade_count)::bigint AS trades
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 AND b.ts < p.t1
    GROUP BY 1
), d AS (
    SELECT g.open_time, coalesce(a.trades, 0) AS trades,
           coalesce(a.buy_volume, 0) AS buy_volume, coalesce(a.sell_volume, 0) AS sell_volume,
           coalesce(a.buy_volume - a.sell_volume, 0) AS delta,
           coalesce(a.buy_quote - a.sell_quote, 0) AS quote_delta
    FROM grid g LEFT JOIN agg a USING (open_time)
)
SELECT open_time, trades, buy_volume, sell_volume, delta,
       sum(delta) OVER (ORDER BY open_time) AS cvd,
       quote_delta,
       sum(quote_delta) OVER (ORDER BY open_time) AS cvd_quote
FROM d
ORDER BY open_time;


-- name: cvd_tick_rule
-- CVD from the aggressor side beside the tick-rule CVD, per interval, from raw trades in id
-- order. Tick rule: a trade above the previous trade's price is a buy, below is a sell, at the
-- same price keeps the previous trade's side. The previous trade is the one with the adjacent
-- id (trade_id - 1; for the first trade in the range it is looked up before `start`) and only
-- that one: after an id gap, or when that trade is not stored, the side is unknown, and the
-- trade and those after it at the same price are unclassified (0) until the price moves.
-- agree = trades where both rules give the same side, classified = trades the tick rule
-- could classify.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), t AS (
    SELECT t.trade_id, t.trade_time, t.price, t.qty, t.is_buyer_maker
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
), before AS (  -- the trade with the id just below the range's first, if it is stored
    SELECT b.trade_id, b.price FROM trades b
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.trade_id = (SELECT min(trade_id) FROM t) - 1
    ORDER BY b.trade_time DESC LIMIT 1
), ticks AS (
    SELECT t.*,
           CASE WHEN coalesce(lag(t.trade_id) OVER w, (SELECT trade_id FROM before)) = t.trade_id - 1
                THEN sign(t.price - coalesce(lag(t.price) OVER w, (SELECT price FROM before))) END AS tick
    FROM t
    WINDOW w AS (ORDER BY t.trade_id)
), runs AS (
    SELECT ticks.*, count(*) FILTER (WHERE tick IS DISTINCT FROM 0) OVER (ORDER BY trade_id) AS grp FROM ticks
), sides AS (
    SELECT runs.*,
           coalesce(first_value(tick) OVER (PARTITION BY grp ORDER BY trade_id), 0) AS tick_side,
           CASE WHEN is_buyer_maker THEN -1 ELSE 1 END AS aggressor_side
    FROM runs
), agg AS (
    SELECT date_bin(p.iv, s.trade_time, p.origin) AS open_time,
           count(*) AS trades,
           sum(s.aggressor_side * s.qty) AS delta,
           sum(s.tick_side * s.qty) AS tick_delta,
           count(*) FILTER (WHERE s.tick_side <> 0) AS classified,
           count(*) FILTER (WHERE s.tick_side = s.aggressor_side) AS agree
    FROM sides s, p
    GROUP BY 1
), d AS (
    SELECT g.open_time, coalesce(a.trades, 0) AS trades, coalesce(a.delta, 0) AS delta,
           coalesce(a.tick_delta, 0) AS tick_delta,
           coalesce(a.classified, 0) AS classified, coalesce(a.agree, 0) AS agree
    FROM grid g LEFT JOIN agg a USING (open_time)
)
SELECT open_time, trades, delta, sum(delta) OVER (ORDER BY open_time) AS cvd,
       tick_delta, sum(tick_delta) OVER (ORDER BY open_time) AS tick_cvd,
       classified, agree
FROM d
ORDER BY open_time;


-- name: klines_reconcile
-- Minute by minute, the stored trades against the exchange's own 1m klines (table klines,
-- filled by cryptolab.analysis.fetch_klines). Stored values are computed from raw trades (the
-- ground truth, not the derived bars). status: 'match' when trades, volume, quote volume
-- (ours rounded to the kline's 8 decimals), taker-buy volume and quote, and OHLC all agree
-- (OHLC only for minutes with trades: the exchange repeats the last close in empty minutes);
-- 'incomplete' when there is no kline for the minute, or it differs but the kline was fetched
-- before the minute closed (fetch again); 'mismatch' otherwise, with the differences
-- (stored - exchange). 'archived' for the minutes of a day whose raw trades were archived and
-- dropped from PostgreSQL (archive_days) and that this session cannot read: psql sees only the
-- database (cryptolab.analysis reads those days back from the archive and reconciles them).
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), archived AS (  -- dropped days; none when the session's `trades` holds them (a TEMP table, cryptolab.archive)
    SELECT a.day FROM archive_days a
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol') AND a.dropped_at IS NOT NULL
      AND to_regclass('pg_temp.trades') IS NULL
), grid AS (
    SELECT generate_series(date_bin(interval '1 minute', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 minute') AS open_time
    FROM p WHERE p.t1 > p.t0
), s AS (
    SELECT date_bin(interval '1 minute', t.trade_time, p.origin) AS open_time,
           (array_agg(t.price ORDER BY t.trade_id))[1]      AS open,
           max(t.price)                                      AS high,
           min(t.price)                                      AS low,
           (array_agg(t.price ORDER BY t.trade_id DESC))[1] AS close,
           sum(t.qty)                                        AS volume,
           sum(t.price * t.qty)                              AS quote_volume,
           count(*)                                          AS trades,
           coalesce(sum(t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0)           AS taker_buy_volume,
           coalesce(sum(t.price * t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS taker_buy_quote
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= date_bin(interval '1 minute', p.t0, p.origin) AND t.trade_time < p.t1
    GROUP BY 1
), k AS (
    SELECT k.* FROM klines k, p
    WHERE k.exchange = :'exchange' AND k.symbol = upper(:'symbol') AND k.interval = '1m'
      AND k.open_time >= date_bin(interval '1 minute', p.t0, p.origin) AND k.open_time < p.t1
), c AS (
    SELECT g.open_time,
           coalesce(s.trades, 0) AS trades, k.trade_count AS kline_trades,
           coalesce(s.volume, 0) AS volume, k.volume AS kline_volume,
           coalesce(s.quote_volume, 0) AS quote_volume, k.quote_volume AS kline_quote_volume,
           coalesce(s.taker_buy_volume, 0) AS taker_buy_volume, k.taker_buy_volume AS kline_taker_buy_volume,
           coalesce(s.taker_buy_quote, 0) AS taker_buy_quote, k.taker_buy_quote AS kline_taker_buy_quote,
           s.open, s.high, s.low, s.close,
           k.open AS kline_open, k.high AS kline_high, k.low AS kline_low, k.close AS kline_close,
           k.open_time IS NOT NULL AS has_kline,
           k.fetched_at > k.close_time AS kline_final,
           (g.open_time AT TIME ZONE 'UTC')::date IN (SELECT day FROM archived) AS is_archived
    FROM grid g LEFT JOIN s USING (open_time) LEFT JOIN k USING (open_time)
), e AS (
    SELECT c.*,
           has_kline
           AND trades = kline_trades AND volume = kline_volume
           AND round(quote_volume, 8) = kline_quote_volume
           AND taker_buy_volume = kline_taker_buy_volume
           AND round(taker_buy_quote, 8) = kline_taker_buy_quote
           AND (trades = 0 OR (open = kline_open AND high = kline_high AND low = kline_low AND close = kline_close))
           AS equal
    FROM c
)
SELECT open_time,
       CASE WHEN is_archived THEN 'archived'
            WHEN equal THEN 'match'
            WHEN NOT has_kline OR NOT kline_final THEN 'incomplete'
            ELSE 'mismatch' END AS status,
       trades, kline_trades, trades - kline_trades AS trades_diff,
       volume, kline_volume, volume - kline_volume AS volume_diff,
       quote_volume, kline_quote_volume, quote_volume - kline_quote_volume AS quote_volume_diff,
       taker_buy_volume - kline_taker_buy_volume AS taker_buy_volume_diff,
       taker_buy_quote - kline_taker_buy_quote AS taker_buy_quote_diff,
       open, kline_open, high, kline_high, low, kline_low, close, kline_close,
       CASE WHEN trades > 0 THEN open - kline_open END AS open_diff,
       CASE WHEN trades > 0 THEN high - kline_high END AS high_diff,
       CASE WHEN trades > 0 THEN low - kline_low END AS low_diff,
       CASE WHEN trades > 0 THEN close - kline_close END AS close_diff
FROM e
ORDER BY open_time;
