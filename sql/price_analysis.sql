-- price_analysis.sql: OHLCV, moving averages, VWAP (session / anchored / rolling) with
-- volume-weighted sigma bands, the volume profile and swing pivots.
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08T23:00Z -v end=2024-08-09T00:00Z \
--        -v interval=1m -f sql/price_analysis.sql
--
-- Variables (psql -v name=value; cryptolab binds the same names as query parameters):
--   exchange, symbol, start, end (the range is [start, end), UTC; defaults follow the stored data
--   as in cryptolab.analysis: see defaults.psql), interval (1s 5s 1m 15m 1h 4h 1d 1w; default 1m), window (SMA bars, 20),
--   span (EMA span, 20), session_start (time of day a VWAP session starts, 00:00), anchor (anchored
--   VWAP start time; default start), vwap_window (rolling VWAP window, 5m), bands (true/false),
--   bin_size (volume profile bin in price units; empty: automatic tick multiple), bins (automatic
--   bin count target, 100), value_area (share of volume, 0.70), pivot_bars (bars each side, 3).
--
-- Buckets are aligned to UTC (origin Monday 2000-01-03 00:00 UTC) and labelled by their start.
-- Queries on bars_1s resolve time to whole seconds: a second is in the range when it starts in it.
-- Ratios are rounded once, at 20 decimals (prices, VWAP) or 12 (averages, sigma), after an exact
-- NUMERIC sum; the cast to numeric(1000, 40) makes PostgreSQL divide at 40 decimals first.
\if :{?interval} \else \set interval 1m \endif
\if :{?window} \else \set window 20 \endif
\if :{?span} \else \set span 20 \endif
\if :{?session_start} \else \set session_start 00:00 \endif
\if :{?vwap_window} \else \set vwap_window 5m \endif
\if :{?bands} \else \set bands true \endif
\if :{?bin_size} \else \set bin_size '' \endif
\if :{?bins} \else \set bins 100 \endif
\if :{?value_area} \else \set value_area 0.70 \endif
\if :{?pivot_bars} \else \set pivot_bars 3 \endif
\ir defaults.psql
\if :{?anchor} \else \set anchor :start \endif


-- name: ohlcv
-- One row per interval in [start, end), empty intervals included (OHLC null, volume 0).
-- open/close follow trade-id order; volumes are exact sums of the stored bars.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), agg AS (
    SELECT date_bin(p.iv, b.ts, p.origin)                       AS open_time,
           (array_agg(b.open ORDER BY b.first_trade_id))[1]     AS open,
           max(b.high)                                          AS high,
           min(b.low)                                           AS low,
           (array_agg(b.close ORDER BY b.last_trade_id DESC))[1] AS close,
           sum(b.volume)                                        AS volume,
           sum(b.quote_volume)                                  AS quote_volume,
           sum(b.taker_buy_volume)                              AS taker_buy_volume,
           sum(b.taker_buy_quote)                               AS taker_buy_quote,
           sum(b.trade_count)::bigint                           AS trades,
           min(b.first_trade_id)                                AS first_trade_id,
           max(b.last_trade_id)                                 AS last_trade_id
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 AND b.ts < p.t1
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


-- name: live_bars
-- The stored 1 s bars of [start, end) with what a live chart draws beside them, in one cheap
-- query (the dashboard's refresh): delta = taker-buy minus taker-sell volume, cvd = running
-- delta from start, vwap = running sum(price*qty) / sum(qty) from start (VWAP anchored at
-- start, 20 decimals). Seconds without trades have no bar.
SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trade_count::bigint AS trades,
       2 * b.taker_buy_volume - b.volume AS delta,
       sum(2 * b.taker_buy_volume - b.volume) OVER w AS cvd,
       round((sum(b.quote_volume) OVER w)::numeric(1000, 40) / (sum(b.volume) OVER w), 20) AS vwap
FROM bars_1s b
WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
  AND b.ts >= :'start'::timestamptz AND b.ts < :'end'::timestamptz
WINDOW w AS (ORDER BY b.ts)
ORDER BY b.ts;

-- name: moving_averages
-- Close per interval (forward-filled over empty intervals: the last traded price), its simple
-- moving average over `window` intervals (null until that many are known) and its exponential
-- moving average: ema = ema_prev + (price - ema_prev) * 2 / (span + 1), rounded to 12 decimals at
-- each step, seeded with the first price.
WITH RECURSIVE p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin,
           :'window'::int AS win, :'span'::int AS span
), grid AS (
    SELECT generate_series(date_bin(p.iv, p.t0, p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), agg AS (
    SELECT date_bin(p.iv, b.ts, p.origin) AS open_time,
           (array_agg(b.close ORDER BY b.last_trade_id DESC))[1] AS close
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 AND b.ts < p.t1
    GROUP BY 1
), filled AS (
    SELECT g.open_time, a.close, count(a.close) OVER (ORDER BY g.open_time) AS grp
    FROM grid g LEFT JOIN agg a USING (open_time)
), series AS (
    SELECT open_time, close,
           first_value(close) OVER (PARTITION BY grp ORDER BY open_time) AS price,
           row_number() OVER (ORDER BY open_time) AS n
    FROM filled
), sma AS (
    SELECT s.*,
           CASE WHEN count(s.price) OVER w = p.win
                THEN round((sum(s.price) OVER w)::numeric(1000, 40) / p.win, 12) END AS sma
    FROM series s, p
    WINDOW w AS (ORDER BY s.n ROWS BETWEEN :'window'::int - 1 PRECEDING AND CURRENT ROW)
), ema (n, ema) AS (
    SELECT n, price FROM series
    WHERE n = (SELECT min(n) FROM series WHERE price IS NOT NULL)
    UNION ALL
    SELECT s.n, round(e.ema + (s.price - e.ema)::numeric(1000, 40) * 2 / (p.span + 1), 12)
    FROM ema e JOIN series s ON s.n = e.n + 1, p
)
SELECT s.open_time, s.close, s.price, s.sma, e.ema
FROM sma s LEFT JOIN ema e USING (n)
ORDER BY s.open_time;


-- name: vwap_session
-- VWAP that restarts each UTC day at `session_start` (time of day): cumulative exact
-- sum(price*qty) / sum(qty) at the end of each interval, counted from the session's start even
-- when `start` is later. With bands, sigma is the volume-weighted standard deviation of trade
-- prices in the session (sqrt(sum(q*p^2)/sum(q) - vwap^2), from the 1 s bars' sum(q*p^2)) and the bands are
-- vwap +/- 1 and 2 sigma.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' + :'session_start'::interval AS origin,
           :'bands'::boolean AS bands
), d AS (  -- data from the start of the first session in range
    SELECT p.*, date_bin(interval '1 day', p.t0, p.origin) AS d0 FROM p
), grid AS (
    SELECT generate_series(date_bin(d.iv, d.d0, d.origin), d.t1 - interval '1 microsecond', d.iv) AS open_time
    FROM d WHERE d.t1 > d.t0
), bars AS (
    SELECT date_bin(d.iv, b.ts, d.origin) AS open_time,
           (array_agg(b.close ORDER BY b.last_trade_id DESC))[1] AS close,
           sum(b.volume) AS volume, sum(b.quote_volume) AS quote_volume,
           sum(b.price_sq_volume) AS pq2
    FROM bars_1s b, d
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= d.d0 AND b.ts < d.t1
    GROUP BY 1
), c AS (
    SELECT g.open_time, date_bin(interval '1 day', g.open_time, d.origin) AS anchor, b.close,
           coalesce(b.volume, 0) AS volume, coalesce(b.quote_volume, 0) AS quote_volume,
           sum(coalesce(b.volume, 0)) OVER w AS cum_volume,
           sum(coalesce(b.quote_volume, 0)) OVER w AS cum_quote_volume,
           sum(coalesce(b.pq2, 0)) OVER w AS cum_pq2,
           d.t0, d.iv, d.bands, d.origin
    FROM grid g CROSS JOIN d
    LEFT JOIN bars b USING (open_time)
    WINDOW w AS (PARTITION BY date_bin(interval '1 day', g.open_time, d.origin) ORDER BY g.open_time)
), v AS (
    SELECT c.*,
           CASE WHEN cum_volume > 0 THEN round(cum_quote_volume::numeric(1000, 40) / cum_volume, 20) END AS vwap,
           CASE WHEN bands AND cum_volume > 0
                THEN round(sqrt(greatest(cum_volume * cum_pq2 - cum_quote_volume * cum_quote_volume, 0))::numeric(1000, 40)
                           / cum_volume, 12) END AS sigma
    FROM c
)
SELECT open_time, anchor, close, volume, quote_volume, cum_volume, cum_quote_volume, vwap, sigma,
       vwap + sigma AS upper_1, vwap - sigma AS lower_1, vwap + 2 * sigma AS upper_2, vwap - 2 * sigma AS lower_2
FROM v
WHERE open_time >= date_bin(iv, t0, origin)
ORDER BY open_time;


-- name: vwap_anchored
-- VWAP accumulated from `anchor` (a time; seconds before it are left out) to the end of each
-- interval; intervals before the anchor have no VWAP. Bands as in vwap_session.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1, :'anchor'::timestamptz AS a0,
           timestamptz '2000-01-03 00:00:00+00' AS origin,
           :'bands'::boolean AS bands
), grid AS (
    SELECT generate_series(date_bin(p.iv, least(p.t0, p.a0), p.origin), p.t1 - interval '1 microsecond', p.iv) AS open_time
    FROM p WHERE p.t1 > p.t0
), bars AS (
    SELECT date_bin(p.iv, b.ts, p.origin) AS open_time,
           (array_agg(b.close ORDER BY b.last_trade_id DESC))[1] AS close,
           sum(b.volume) AS volume, sum(b.quote_volume) AS quote_volume,
           sum(b.price_sq_volume) AS pq2
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.a0 AND b.ts < p.t1
    GROUP BY 1
), c AS (
    SELECT g.open_time, p.a0 AS anchor, b.close,
           coalesce(b.volume, 0) AS volume, coalesce(b.quote_volume, 0) AS quote_volume,
           sum(coalesce(b.volume, 0)) OVER w AS cum_volume,
           sum(coalesce(b.quote_volume, 0)) OVER w AS cum_quote_volume,
           sum(coalesce(b.pq2, 0)) OVER w AS cum_pq2,
           p.t0, p.a0, p.iv, p.bands, p.origin
    FROM grid g CROSS JOIN p
    LEFT JOIN bars b USING (open_time)
    WINDOW w AS (ORDER BY g.open_time)
), v AS (
    SELECT c.*,
           CASE WHEN open_time + iv > a0 AND cum_volume > 0
                THEN round(cum_quote_volume::numeric(1000, 40) / cum_volume, 20) END AS vwap,
           CASE WHEN bands AND open_time + iv > a0 AND cum_volume > 0
                THEN round(sqrt(greatest(cum_volume * cum_pq2 - cum_quote_volume * cum_quote_volume, 0))::numeric(1000, 40)
                           / cum_volume, 12) END AS sigma
    FROM c
)
SELECT open_time, anchor, close, volume, quote_volume, cum_volume, cum_quote_volume, vwap, sigma,
       vwap + sigma AS upper_1, vwap - sigma AS lower_1, vwap + 2 * sigma AS upper_2, vwap - 2 * sigma AS lower_2
FROM v
WHERE open_time >= date_bin(iv, t0, origin)
ORDER BY open_time;


-- name: vwap_rolling
-- VWAP over the trailing `vwap_window` (a duration, a multiple of the interval: '5m' = the
-- last five 1m intervals including the current one). Bands as in vwap_session.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           regexp_replace(:'vwap_window', '^(\d+)([smhdw])$', '\1 \2')::interval AS win,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin,
           :'bands'::boolean AS bands
), d AS (
    SELECT p.*, date_bin(p.iv, p.t0, p.origin) - p.win AS d0 FROM p
), grid AS (
    SELECT generate_series(d.d0, d.t1 - interval '1 microsecond', d.iv) AS open_time
    FROM d WHERE d.t1 > d.t0
), bars AS (
    SELECT date_bin(d.iv, b.ts, d.origin) AS open_time,
           (array_agg(b.close ORDER BY b.last_trade_id DESC))[1] AS close,
           sum(b.volume) AS volume, sum(b.quote_volume) AS quote_volume,
           sum(b.price_sq_volume) AS pq2
    FROM bars_1s b, d
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= d.d0 AND b.ts < d.t1
    GROUP BY 1
), c AS (
    SELECT g.open_time, g.open_time + d.iv - d.win AS anchor, b.close,
           coalesce(b.volume, 0) AS volume, coalesce(b.quote_volume, 0) AS quote_volume,
           sum(coalesce(b.volume, 0)) OVER w AS cum_volume,
           sum(coalesce(b.quote_volume, 0)) OVER w AS cum_quote_volume,
           sum(coalesce(b.pq2, 0)) OVER w AS cum_pq2,
           d.t0, d.iv, d.bands, d.origin
    FROM grid g CROSS JOIN d
    LEFT JOIN bars b USING (open_time)
    WINDOW w AS (ORDER BY g.open_time
                 RANGE BETWEEN regexp_replace(:'vwap_window', '^(\d+)([smhdw])$', '\1 \2')::interval
                               - interval '1 microsecond' PRECEDING AND CURRENT ROW)
), v AS (
    SELECT c.*,
           CASE WHEN cum_volume > 0 THEN round(cum_quote_volume::numeric(1000, 40) / cum_volume, 20) END AS vwap,
           CASE WHEN bands AND cum_volume > 0
                THEN round(sqrt(greatest(cum_volume * cum_pq2 - cum_quote_volume * cum_quote_volume, 0))::numeric(1000, 40)
                           / cum_volume, 12) END AS sigma
    FROM c
)
SELECT open_time, anchor, close, volume, quote_volume, cum_volume, cum_quote_volume, vwap, sigma,
       vwap + sigma AS upper_1, vwap - sigma AS lower_1, vwap + 2 * sigma AS upper_2, vwap - 2 * sigma AS lower_2
FROM v
WHERE open_time >= date_bin(iv, t0, origin)
ORDER BY open_time;


-- name: volume_profile
-- Traded volume per price bin over [start, end), from raw trades. Bins are multiples of
-- `bin_size` (empty: the smallest multiple of the price tick giving at most `bins` bins; the tick
-- is the finest price step seen), dense between the lowest and highest price. The point of
-- control (poc) is the bin with the most volume (ties: the lower price); the value area grows
-- from it one bin at a time toward the neighbour with more volume (ties: upward) until it holds
-- `value_area` of the volume. A high-volume node (hvn) is a bin with more volume than the bin
-- below it, at least as much as the bin above, and 1.5 x the mean bin volume or more; a
-- low-volume node (lvn) is an inner bin with less volume than the bin below, at most as much as
-- the bin above, and half the mean bin volume or less.
WITH RECURSIVE p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           nullif(:'bin_size', '')::numeric AS bin_size, :'bins'::int AS bins,
           :'value_area'::numeric AS va
), t AS (
    SELECT t.price, t.qty, t.is_buyer_maker
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
), span AS (
    SELECT min(price) AS lo, max(price) AS hi, sum(qty) AS total,
           trim_scale(power(10::numeric, -max(min_scale(price)))) AS tick
    FROM t
), size AS (
    SELECT trim_scale(coalesce(p.bin_size,
                               greatest(ceil((s.hi - s.lo) / s.tick / p.bins), 1) * s.tick)) AS bs,
           s.lo, s.hi, s.total, s.tick, p.va
    FROM p, span s WHERE s.total IS NOT NULL
), per_bin AS (
    SELECT floor(t.price / z.bs) AS idx,
           sum(t.qty) AS volume,
           coalesce(sum(t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS buy_volume,
           sum(t.price * t.qty) AS quote_volume,
           count(*) AS trades
    FROM t, size z
    GROUP BY 1
), dense AS (
    SELECT g.idx, row_number() OVER (ORDER BY g.idx) AS i,
           coalesce(b.volume, 0) AS volume, coalesce(b.buy_volume, 0) AS buy_volume,
           coalesce(b.quote_volume, 0) AS quote_volume, coalesce(b.trades, 0) AS trades
    FROM (SELECT generate_series(floor(z.lo / z.bs), floor(z.hi / z.bs)) AS idx FROM size z) g
    LEFT JOIN per_bin b USING (idx)
), poc AS (
    SELECT i, volume FROM dense ORDER BY volume DESC, idx LIMIT 1
), area (lo_i, hi_i, acc) AS (
    SELECT i, i, volume FROM poc
    UNION ALL
    SELECT CASE WHEN x.up >= x.down THEN a.lo_i ELSE a.lo_i - 1 END,
           CASE WHEN x.up >= x.down THEN a.hi_i + 1 ELSE a.hi_i END,
           a.acc + greatest(x.up, x.down)
    FROM area a
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT volume FROM dense WHERE i = a.hi_i + 1), -1) AS up,
               coalesce((SELECT volume FROM dense WHERE i = a.lo_i - 1), -1) AS down
    ) x
    WHERE a.acc < (SELECT total * va FROM size) AND greatest(x.up, x.down) >= 0
), value_area AS (
    SELECT lo_i, hi_i FROM area ORDER BY acc DESC, hi_i - lo_i LIMIT 1
), nodes AS (
    SELECT d.*,
           lag(d.volume) OVER (ORDER BY d.i) AS prev_v,
           lead(d.volume) OVER (ORDER BY d.i) AS next_v,
           sum(d.volume) OVER () AS sum_v, count(*) OVER () AS n_bins
    FROM dense d
)
SELECT trim_scale(n.idx * z.bs) AS price_low, trim_scale((n.idx + 1) * z.bs) AS price_high,
       n.volume, n.buy_volume, n.volume - n.buy_volume AS sell_volume, n.quote_volume, n.trades,
       round(n.volume::numeric(1000, 40) / z.total, 12) AS volume_share,
       n.i = (SELECT i FROM poc) AS is_poc,
       n.i BETWEEN va.lo_i AND va.hi_i AS in_value_area,
       CASE WHEN n.volume > coalesce(n.prev_v, -1) AND n.volume >= coalesce(n.next_v, -1)
                 AND n.volume * n.n_bins >= 1.5 * n.sum_v THEN 'hvn'
            WHEN n.prev_v IS NOT NULL AND n.next_v IS NOT NULL
                 AND n.volume < n.prev_v AND n.volume <= n.next_v AND n.volume * n.n_bins <= 0.5 * n.sum_v THEN 'lvn'
       END AS node,
       z.bs AS bin_size, z.tick
FROM nodes n CROSS JOIN size z CROSS JOIN value_area va
ORDER BY n.idx;


-- name: price_range
-- Lowest and highest traded price in [start, end) (from the 1 s bars).
SELECT min(b.low) AS low, max(b.high) AS high
FROM bars_1s b
WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
  AND b.ts >= :'start'::timestamptz AND b.ts < :'end'::timestamptz;

-- name: pivots
-- Swing highs and lows on the interval's bars: a swing high is a bar whose high is above the
-- `pivot_bars` non-empty bars before it and not below the ones after it (lows mirrored). Bars
-- closer than `pivot_bars` to either end of the range cannot be pivots.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin, :'pivot_bars'::int AS k
), bars AS (
    SELECT date_bin(p.iv, b.ts, p.origin) AS open_time, max(b.high) AS high, min(b.low) AS low
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 AND b.ts < p.t1
    GROUP BY 1
), w AS (
    SELECT b.*,
           max(high) OVER (ORDER BY open_time ROWS BETWEEN :'pivot_bars'::int PRECEDING AND 1 PRECEDING) AS high_before,
           max(high) OVER (ORDER BY open_time ROWS BETWEEN 1 FOLLOWING AND :'pivot_bars'::int FOLLOWING) AS high_after,
           min(low)  OVER (ORDER BY open_time ROWS BETWEEN :'pivot_bars'::int PRECEDING AND 1 PRECEDING) AS low_before,
           min(low)  OVER (ORDER BY open_time ROWS BETWEEN 1 FOLLOWING AND :'pivot_bars'::int FOLLOWING) AS low_after,
           count(*)  OVER (ORDER BY open_time ROWS BETWEEN :'pivot_bars'::int PRECEDING AND :'pivot_bars'::int FOLLOWING) AS n
    FROM bars b
)
SELECT open_time, 'high' AS kind, high AS price FROM w, p
WHERE n = 2 * p.k + 1 AND high > high_before AND high >= high_after
UNION ALL
SELECT open_time, 'low' AS kind, low AS price FROM w, p
WHERE n = 2 * p.k + 1 AND low < low_before AND low <= low_after
ORDER BY open_time, kind;
