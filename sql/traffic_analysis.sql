-- traffic_analysis.sql: trades per second (dense), its percentiles, bursts, the inter-arrival
-- time distribution and the ingest throughput of the capture.
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08T23:00Z -v end=2024-08-09T00:00Z \
--        -f sql/traffic_analysis.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC; defaults follow the stored data as in
-- cryptolab.analysis: see defaults.psql), burst_window (seconds of history for the rolling median, 60), burst_factor (a
-- second is hot above factor x max(median, 1) trades, 3).
--
-- Percentiles are percentile_disc: always a value that occurred (for the median of an even
-- count, the lower middle one).
\if :{?burst_window} \else \set burst_window 60 \endif
\if :{?burst_factor} \else \set burst_factor 3 \endif
\ir defaults.psql


-- name: tps
-- Trades per second as a dense series: every second of [start, end), zero when nothing traded.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(interval '1 second', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
)
SELECT g.ts, coalesce(b.trade_count, 0)::bigint AS trades,
       coalesce(b.volume, 0) AS volume, coalesce(b.quote_volume, 0) AS quote_volume
FROM grid g
LEFT JOIN bars_1s b ON b.exchange = :'exchange' AND b.symbol = upper(:'symbol') AND b.ts = g.ts
ORDER BY g.ts;


-- name: tps_stats
-- Percentiles of trades per second over the dense series (quiet seconds count as zero).
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(interval '1 second', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
), d AS (
    SELECT g.ts, coalesce(b.trade_count, 0)::bigint AS n
    FROM grid g
    LEFT JOIN bars_1s b ON b.exchange = :'exchange' AND b.symbol = upper(:'symbol') AND b.ts = g.ts
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


-- name: bursts
-- Runs of consecutive hot seconds: a second is hot when its trades exceed burst_factor x
-- max(median, 1), the median being that of the burst_window seconds before it (zeros included;
-- seconds before the symbol's first stored second are not history, and a second needs at least
-- min(burst_window, 10) seconds of history to be judged).
-- One row per burst: start, end (exclusive), length, trades, peak, the median just before it.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           :'burst_window'::int AS w, :'burst_factor'::numeric AS k,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    -- the window before a second starts no earlier than the symbol's first stored second:
    -- the quiet before a capture began is not history
    SELECT generate_series(greatest(date_bin(interval '1 second', p.t0, p.origin) - p.w * interval '1 second',
                                    (SELECT min(b.ts) FROM bars_1s b
                                     WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol'))),
                           p.t1 - interval '1 microsecond', interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
), d AS (
    SELECT g.ts, coalesce(b.trade_count, 0)::bigint AS n
    FROM grid g
    LEFT JOIN bars_1s b ON b.exchange = :'exchange' AND b.symbol = upper(:'symbol') AND b.ts = g.ts
), hist AS (
    SELECT ts, n, array_agg(n) OVER (ORDER BY ts ROWS BETWEEN :'burst_window'::int PRECEDING AND 1 PRECEDING) AS prev
    FROM d
), med AS (
    SELECT h.ts, h.n, (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(h.prev) AS x) AS median
    FROM hist h, p
    WHERE h.ts >= p.t0 AND coalesce(cardinality(h.prev), 0) >= least(p.w, 10)  -- enough history to compare
), hot AS (
    SELECT m.*, m.ts - row_number() OVER (ORDER BY m.ts) * interval '1 second' AS grp
    FROM med m, p
    WHERE m.n > p.k * greatest(m.median, 1)
)
SELECT min(ts) AS burst_start, max(ts) + interval '1 second' AS burst_end,
       count(*) AS seconds, sum(n)::bigint AS trades, max(n) AS peak_tps,
       (array_agg(median ORDER BY ts))[1] AS median_before,
       round(max(n)::numeric / greatest((array_agg(median ORDER BY ts))[1], 1), 2) AS peak_ratio
FROM hot
GROUP BY grp
ORDER BY burst_start;


-- name: inter_arrival
-- Distribution of the time between consecutive trades (id order, trade time T, microseconds),
-- in bins [lower_us, upper_us); 'same time' is a zero gap (one order filling several makers),
-- 'negative' a trade stamped before its predecessor.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1
), gaps AS (
    SELECT (extract(epoch FROM t.trade_time - lag(t.trade_time) OVER (ORDER BY t.trade_id)) * 1000000)::bigint AS dt
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
), edges (i, lower_us, upper_us, label) AS (
    VALUES (0, NULL::bigint, 0::bigint, 'negative'),
           (1, 0, 1, 'same time'),
           (2, 1, 1000, '< 1 ms'),
           (3, 1000, 2000, '1-2 ms'),
           (4, 2000, 5000, '2-5 ms'),
           (5, 5000, 10000, '5-10 ms'),
           (6, 10000, 20000, '10-20 ms'),
           (7, 20000, 50000, '20-50 ms'),
           (8, 50000, 100000, '50-100 ms'),
           (9, 100000, 200000, '100-200 ms'),
           (10, 200000, 500000, '200-500 ms'),
           (11, 500000, 1000000, '0.5-1 s'),
           (12, 1000000, 2000000, '1-2 s'),
           (13, 2000000, 5000000, '2-5 s'),
           (14, 5000000, 10000000, '5-10 s'),
           (15, 10000000, 60000000, '10-60 s'),
           (16, 60000000, NULL, '>= 60 s')
), counted AS (
    SELECT width_bucket(dt, ARRAY[0, 1, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000,
                                  1000000, 2000000, 5000000, 10000000, 60000000]::bigint[]) AS i,
           count(*) AS gaps
    FROM gaps WHERE dt IS NOT NULL
    GROUP BY 1
)
SELECT e.label, e.lower_us, e.upper_us, coalesce(c.gaps, 0) AS gaps,
       round(coalesce(c.gaps, 0)::numeric / nullif(sum(coalesce(c.gaps, 0)) OVER (), 0), 6) AS share,
       round(sum(coalesce(c.gaps, 0)) OVER (ORDER BY e.i)::numeric / nullif(sum(coalesce(c.gaps, 0)) OVER (), 0), 6) AS cumulative_share
FROM edges e LEFT JOIN counted c USING (i)
ORDER BY e.i;


-- name: inter_arrival_stats
-- Quantiles of the inter-arrival time (microseconds) between consecutive trades in id order.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1
), gaps AS (
    SELECT (extract(epoch FROM t.trade_time - lag(t.trade_time) OVER (ORDER BY t.trade_id)) * 1000000)::bigint AS dt
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
)
SELECT count(dt)                                          AS gaps,
       count(*) FILTER (WHERE dt = 0)                     AS same_time,
       count(*) FILTER (WHERE dt < 0)                     AS negative,
       round(avg(dt), 3)                                  AS mean_us,
       percentile_disc(0.1) WITHIN GROUP (ORDER BY dt)   AS p10_us,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY dt)   AS p50_us,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY dt)   AS p90_us,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY dt)  AS p99_us,
       max(dt)                                            AS max_us
FROM gaps;


-- name: ingest_throughput
-- Rows written per second by the capture (by ingested_at, dense over [start, end)), and the
-- number of distinct committing transactions behind them.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), grid AS (
    SELECT generate_series(date_bin(interval '1 second', p.t0, p.origin), p.t1 - interval '1 microsecond',
                           interval '1 second') AS ts
    FROM p WHERE p.t1 > p.t0
), w AS (
    SELECT date_bin(interval '1 second', t.ingested_at, p.origin) AS ts,
           count(*) AS rows, count(DISTINCT t.xmin::text) AS commits
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.ingested_at >= p.t0 AND t.ingested_at < p.t1
      AND t.trade_time < p.t1 + interval '1 minute'  -- a trade is stored after it happens (1 min clock slack)
    GROUP BY 1
)
SELECT g.ts, coalesce(w.rows, 0) AS rows, coalesce(w.commits, 0) AS commits
FROM grid g LEFT JOIN w USING (ts)
ORDER BY g.ts;
