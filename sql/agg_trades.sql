-- agg_trades.sql: the analyses that have a raw-trade form (OHLCV, trades per second, CVD, id
-- gaps) computed from Binance aggregate trades (`agg_trades`: one row per aggregate, with the
-- range of trade ids it covers), exactly, plus which kind of data a range holds.
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08 -v end=2024-08-09 -v interval=1m \
--        -f sql/agg_trades.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC; defaults follow the stored aggregates as
-- in cryptolab.analysis: binance first, the newest symbol, the last stored hour), interval (OHLCV / CVD
-- buckets, 1m).
--
-- An aggregate is trades of one taker order at one price and one time: trade_count =
-- last_trade_id - first_trade_id + 1 trades, qty the sum of theirs. So per-bucket trade counts are
-- sums of trade_count, volumes and quote volumes exact NUMERIC sums (price * qty), open / close
-- follow agg_id order, the aggressor side is is_buyer_maker (false: the taker bought, +qty), and
-- ids covered by an aggregate are never gaps. As for the 1 s bars of raw trades, time resolves to
-- whole seconds in ohlcv, tps, tps_stats and cvd: a second is in the range when it starts in it.
\if :{?interval} \else \set interval 1m \endif
SET TIME ZONE 'UTC';
\set cl_pick true
\if :{?exchange} \if :{?symbol} \set cl_pick false \endif \endif
\if :cl_pick
  WITH RECURSIVE s AS (  -- every (exchange, symbol) with aggregates; binance first, then the newest
      (SELECT exchange, symbol FROM agg_trades ORDER BY exchange, symbol LIMIT 1)
      UNION ALL
      SELECT n.exchange, n.symbol
      FROM s CROSS JOIN LATERAL (
          SELECT a.exchange, a.symbol FROM agg_trades a
          WHERE (a.exchange, a.symbol) > (s.exchange, s.symbol)
          ORDER BY a.exchange, a.symbol LIMIT 1
      ) AS n
  ), m AS (
      SELECT s.exchange, s.symbol,
             (SELECT max(trade_time) FROM agg_trades a WHERE a.exchange = s.exchange AND a.symbol = s.symbol) AS last_time
      FROM s
      WHERE true
  \if :{?exchange}
        AND s.exchange = :'exchange'
  \endif
  \if :{?symbol}
        AND s.symbol = upper(:'symbol')
  \endif
  ), e AS (
      SELECT m.exchange FROM m ORDER BY m.exchange = 'binance' DESC, m.last_time DESC LIMIT 1
  )
  SELECT 1 AS cl_one  -- one row always (a null leaves the variable unset: the fallback below)
  \if :{?exchange} \else
         , x.exchange
  \endif
  \if :{?symbol} \else
         , x.symbol
  \endif
  FROM (SELECT 1) AS one
  LEFT JOIN (SELECT m.exchange, m.symbol FROM m JOIN e USING (exchange) ORDER BY m.last_time DESC LIMIT 1) AS x ON true \gset
  \unset cl_one
\endif
\unset cl_pick
\if :{?exchange} \else \set exchange binance \endif
\if :{?symbol} \else \set symbol BTCUSDT \endif
\if :{?end} \else
SELECT coalesce(date_bin(interval '1 second', max(trade_time), timestamptz '2000-01-03 00:00:00+00')
                + interval '1 second', date_trunc('second', now())) AS "end"
FROM agg_trades WHERE exchange = :'exchange' AND symbol = upper(:'symbol') \gset
\endif
\if :{?start} \else
SELECT CASE WHEN f.first_second > :'end'::timestamptz - interval '1 hour' AND f.first_second < :'end'::timestamptz
            THEN f.first_second ELSE :'end'::timestamptz - interval '1 hour' END AS "start"
FROM (SELECT date_bin(interval '1 second', min(trade_time), timestamptz '2000-01-03 00:00:00+00') AS first_second
      FROM agg_trades WHERE exchange = :'exchange' AND symbol = upper(:'symbol')) AS f \gset
\endif


-- name: data_kind
-- Which kind of data [start, end) holds: raw trades (through their 1 s bars) and / or aggregates.
SELECT EXISTS (SELECT 1 FROM bars_1s b
               WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
                 AND b.ts >= :'start'::timestamptz AND b.ts < :'end'::timestamptz) AS trades,
       EXISTS (SELECT 1 FROM agg_trades a
               WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
                 AND a.trade_time >= :'start'::timestamptz AND a.trade_time < :'end'::timestamptz) AS agg_trades;


-- name: markets
-- Every (exchange, symbol) with stored aggregates and the first and last second holding one
-- (a loose index scan on the primary key: one probe per pair).
WITH RECURSIVE s AS (
    (SELECT exchange, symbol FROM agg_trades ORDER BY exchange, symbol LIMIT 1)
    UNION ALL
    SELECT n.exchange, n.symbol
    FROM s CROSS JOIN LATERAL (
        SELECT a.exchange, a.symbol FROM agg_trades a
        WHERE (a.exchange, a.symbol) > (s.exchange, s.symbol)
        ORDER BY a.exchange, a.symbol LIMIT 1
    ) AS n
)
SELECT s.exchange, s.symbol,
       date_bin(interval '1 second', (SELECT min(trade_time) FROM agg_trades a
                                      WHERE a.exchange = s.exchange AND a.symbol = s.symbol),
                timestamptz '2000-01-03 00:00:00+00') AS first_second,
       date_bin(interval '1 second', (SELECT max(trade_time) FROM agg_trades a
                                      WHERE a.exchange = s.exchange AND a.symbol = s.symbol),
                timestamptz '2000-01-03 00:00:00+00') AS last_second
FROM s
ORDER BY s.exchange, s.symbol;


-- name: stored_span
-- First and last second holding an aggregate of one symbol (both null when none is stored).
SELECT date_bin(interval '1 second', min(trade_time), timestamptz '2000-01-03 00:00:00+00') AS first_second,
       date_bin(interval '1 second', max(trade_time), timestamptz '2000-01-03 00:00:00+00') AS last_second
FROM agg_trades
WHERE exchange = :'exchange' AND symbol = upper(:'symbol');


-- name: ohlcv
-- One row per interval in [start, end), empty intervals included (OHLC null, volume 0), the
-- columns of price_analysis.ohlcv: open/close by agg_id order, trades = sum of trade_count.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), s AS (
    -- the first instant of the first whole second starting in [t0, t1), and of the one after
    SELECT p.*,
           date_bin(interval '1 second', p.t0 - interval '1 microsecond', p.origin) + interval '1 second' AS s0,
           date_bin(interval '1 second', p.t1 - interval '1 microsecond', p.origin) + interval '1 second' AS s1
    FROM p
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), agg AS (
    SELECT date_bin(s.iv, a.trade_time, s.origin)                                 AS open_time,
           (array_agg(a.price ORDER BY a.agg_id))[1]                              AS open,
           max(a.price)                                                           AS high,
           min(a.price)                                                           AS low,
           (array_agg(a.price ORDER BY a.agg_id DESC))[1]                         AS close,
           sum(a.qty)                                                             AS volume,
           sum(a.price * a.qty)                                                   AS quote_volume,
           coalesce(sum(a.qty) FILTER (WHERE NOT a.is_buyer_maker), 0)            AS taker_buy_volume,
           coalesce(sum(a.price * a.qty) FILTER (WHERE NOT a.is_buyer_maker), 0)  AS taker_buy_quote,
           sum(a.trade_count)::bigint                                             AS trades,
           min(a.first_trade_id)                                                  AS first_trade_id,
           max(a.last_trade_id)                                                   AS last_trade_id
    FROM agg_trades a, s
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
      AND a.trade_time >= s.s0 AND a.trade_time < s.s1
    GROUP BY 1
)
SELECT g.open_time, a.open, a.high, a.low, a.close,
       coalesce(a.volume, 0)           AS volume,
       coalesce(a.quote_volume, 0)     AS quote_volume,
       coalesce(a.taker_buy_volume, 0) AS taker_buy_volume,
       coalesce(a.taker_buy_quote, 0)  AS taker_buy_quote,
       coalesce(a.trades, 0)           AS trades,
       a.first_trade_id, a.last_trade_id
FROM grid g LEFT JOIN agg a USING (open_time)
ORDER BY g.open_time;


-- name: tps
-- Trades per second as a dense series (every second of [start, end), zero when nothing traded):
-- trades = sum of trade_count, volume and quote_volume exact sums.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(interval '1 second', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
), sec AS (
    SELECT date_bin(interval '1 second', a.trade_time, p.origin) AS ts,
           sum(a.trade_count)::bigint AS trades, sum(a.qty) AS volume, sum(a.price * a.qty) AS quote_volume
    FROM agg_trades a, p
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
      AND a.trade_time >= date_bin(interval '1 second', p.t0, p.origin)
      AND a.trade_time < date_bin(interval '1 second', p.t1 - interval '1 microsecond', p.origin) + interval '1 second'
    GROUP BY 1
)
SELECT g.ts, coalesce(s.trades, 0)::bigint AS trades,
       coalesce(s.volume, 0) AS volume, coalesce(s.quote_volume, 0) AS quote_volume
FROM grid g
LEFT JOIN sec s USING (ts)
ORDER BY g.ts;


-- name: tps_stats
-- Percentiles of trades per second (sum of trade_count) over the dense series (quiet seconds
-- count as zero); the columns of traffic_analysis.tps_stats.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(interval '1 second', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
), sec AS (
    SELECT date_bin(interval '1 second', a.trade_time, p.origin) AS ts, sum(a.trade_count)::bigint AS n
    FROM agg_trades a, p
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
      AND a.trade_time >= date_bin(interval '1 second', p.t0, p.origin)
      AND a.trade_time < date_bin(interval '1 second', p.t1 - interval '1 microsecond', p.origin) + interval '1 second'
    GROUP BY 1
), d AS (
    SELECT g.ts, coalesce(s.n, 0)::bigint AS n
    FROM grid g LEFT JOIN sec s USING (ts)
)
SELECT count(*)                                         AS seconds,
       count(*) FILTER (WHERE n > 0)                    AS active_seconds,
       coalesce(sum(n), 0)::bigint                      AS trades,
       round(coalesce(sum(n), 0)::numeric / nullif(count(*), 0), 6) AS mean_tps,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY n)  AS p50,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY n)  AS p90,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY n) AS p95,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY n) AS p99,
       max(n)                                           AS max_tps
FROM d;


-- name: cvd
-- Cumulative volume delta per interval from the aggregates (dense; the columns of
-- volume_stored.cvd): buy = qty of aggregates whose taker bought (is_buyer_maker false), sell =
-- the rest, delta = buy - sell, cvd = running sum of delta from `start`; the same in quote.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), s AS (
    SELECT p.*,
           date_bin(interval '1 second', p.t0 - interval '1 microsecond', p.origin) + interval '1 second' AS s0,
           date_bin(interval '1 second', p.t1 - interval '1 microsecond', p.origin) + interval '1 second' AS s1
    FROM p
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), agg AS (
    SELECT date_bin(s.iv, a.trade_time, s.origin) AS open_time,
           coalesce(sum(a.qty) FILTER (WHERE NOT a.is_buyer_maker), 0)           AS buy_volume,
           coalesce(sum(a.qty) FILTER (WHERE a.is_buyer_maker), 0)               AS sell_volume,
           coalesce(sum(a.price * a.qty) FILTER (WHERE NOT a.is_buyer_maker), 0) AS buy_quote,
           coalesce(sum(a.price * a.qty) FILTER (WHERE a.is_buyer_maker), 0)     AS sell_quote,
           sum(a.trade_count)::bigint AS trades
    FROM agg_trades a, s
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
      AND a.trade_time >= s.s0 AND a.trade_time < s.s1
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


-- name: gaps
-- Trade ids no aggregate covers: where the aggregates (agg_id order, the last one before start
-- included) do not tile the id range, i.e. an aggregate's first_trade_id is above every earlier
-- aggregate's last_trade_id + 1. Ids inside an aggregate are never gaps. The columns of
-- quality_check.gaps, with what the capture recorded about the hole (capture_gaps), if anything.
WITH prior AS (
    SELECT a.agg_id, a.first_trade_id, a.last_trade_id, a.trade_time
    FROM agg_trades a
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol') AND a.trade_time < :'start'::timestamptz
    ORDER BY a.trade_time DESC, a.agg_id DESC LIMIT 1
), t AS (
    SELECT x.agg_id, x.first_trade_id, x.trade_time,
           max(x.last_trade_id) OVER w AS prev_last_id,
           lag(x.trade_time) OVER (ORDER BY x.agg_id) AS prev_time
    FROM (SELECT * FROM prior
          UNION ALL
          SELECT a.agg_id, a.first_trade_id, a.last_trade_id, a.trade_time FROM agg_trades a
          WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol')
            AND a.trade_time >= :'start'::timestamptz AND a.trade_time < :'end'::timestamptz) AS x
    WINDOW w AS (ORDER BY x.agg_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), g AS (
    SELECT prev_last_id + 1 AS first_missing_id, first_trade_id - 1 AS last_missing_id,
           first_trade_id - prev_last_id - 1 AS missing, prev_time AS time_before, trade_time AS time_after
    FROM t WHERE first_trade_id > prev_last_id + 1 AND trade_time >= :'start'::timestamptz
)
SELECT g.*, g.time_after - g.time_before AS duration,
       (SELECT string_agg(DISTINCT c.status, ',') FROM capture_gaps c
        WHERE c.exchange = :'exchange' AND upper(c.symbol) = upper(:'symbol')
          AND c.first_missing_id <= g.last_missing_id AND c.last_missing_id >= g.first_missing_id) AS recorded_status
FROM g
ORDER BY g.first_missing_id;


-- name: agg_trades
-- The stored aggregates of [start, end) in agg_id order, exact.
SELECT agg_id, trade_time, price, qty, quote_qty, first_trade_id, last_trade_id, trade_count,
       is_buyer_maker, source
FROM agg_trades
WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
  AND trade_time >= :'start'::timestamptz AND trade_time < :'end'::timestamptz
ORDER BY agg_id;
