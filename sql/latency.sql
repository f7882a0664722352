-- latency.sql: where time goes between a trade and its row: exchange push (E - T), network and
-- client (received - E), pipeline (ingested - received), end to end (ingested - T).
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v limit=20 -f sql/latency.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC; defaults follow the stored data as in
-- cryptolab.analysis: see defaults.psql), interval (buckets of latency_stats, 1m), limit (latest_trades rows, 50).
--
-- Latency applies to trades a capture took from the stream (source 'live' or 'simulator'),
-- received within a day of their trade time. Not to rows fetched from REST (source 'backfill':
-- no E, and received when fetched), loaded dumps or stream recordings (source 'replay': a
-- recording loaded later was ingested when the file was loaded), nor history replayed through a
-- stream (received long after its trade time): a "pipeline time" of 845 days is an age, not a
-- delay. Their latencies are null and left out of the percentiles (latency_stats counts them
-- as `history`). received - E mixes the
-- network delay with the offset between our clock and the exchange's (see clock_offset).
\if :{?interval} \else \set interval 1m \endif
\if :{?limit} \else \set limit 50 \endif
\ir defaults.psql


-- name: latest_trades
-- The newest `limit` trades before `end` with their latency breakdown (newest first).
SELECT t.trade_id, t.trade_time, t.event_time, t.received_at, t.ingested_at, t.source,
       t.price, t.qty, t.is_buyer_maker,
       CASE WHEN l.live THEN t.event_time - t.trade_time END   AS exchange_push,
       CASE WHEN l.live THEN t.received_at - t.event_time END  AS network,
       CASE WHEN l.live THEN t.ingested_at - t.received_at END AS pipeline,
       CASE WHEN l.live THEN t.ingested_at - t.trade_time END  AS total
FROM trades t
CROSS JOIN LATERAL (SELECT t.received_at - t.trade_time < interval '1 day'
                           AND t.source IN ('live', 'simulator') AS live) AS l
WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
  AND t.trade_time < :'end'::timestamptz AND t.trade_time >= :'start'::timestamptz
ORDER BY t.trade_id DESC
LIMIT :'limit'::int;


-- name: latency_stats
-- Per interval: p50 / p95 / p99 / max of each latency component (percentile_disc: observed
-- values), over the trades that carry the times.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), t AS (
    SELECT date_bin(p.iv, t.trade_time, p.origin) AS open_time, l.live,
           CASE WHEN l.live THEN t.event_time - t.trade_time END AS push,
           CASE WHEN l.live THEN t.received_at - t.event_time END AS network,
           CASE WHEN l.live THEN t.ingested_at - t.received_at END AS pipeline,
           CASE WHEN l.live THEN t.ingested_at - t.trade_time END AS total
    FROM trades t CROSS JOIN p
    CROSS JOIN LATERAL (SELECT coalesce(t.received_at - t.trade_time < interval '1 day', false)
                               AND t.source IN ('live', 'simulator') AS live) AS l
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
)
SELECT open_time, count(*) AS trades, count(*) FILTER (WHERE live) AS streamed,
       count(*) FILTER (WHERE NOT live) AS history,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY push)      AS push_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY push)     AS push_p95,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY push)     AS push_p99,
       max(push)                                               AS push_max,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY network)   AS network_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY network)  AS network_p95,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY network)  AS network_p99,
       max(network)                                            AS network_max,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY pipeline)  AS pipeline_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY pipeline) AS pipeline_p95,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY pipeline) AS pipeline_p99,
       max(pipeline)                                           AS pipeline_max,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY total)     AS total_p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY total)    AS total_p95,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY total)    AS total_p99,
       max(total)                                              AS total_max
FROM t
GROUP BY open_time
ORDER BY open_time;


-- name: clock_offset
-- What the stored times say about our clock against the exchange's: the smallest received - E
-- is the offset plus the fastest one-way trip, so a negative value proves our clock is behind by
-- at least that much; compare with cryptolab.analysis.clock_skew (asks /api/v3/time).
SELECT count(*) AS streamed,
       min(t.received_at - t.event_time) AS min_network,
       percentile_disc(0.01) WITHIN GROUP (ORDER BY t.received_at - t.event_time) AS p1_network,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY t.received_at - t.event_time) AS p50_network
FROM trades t
WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
  AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
  AND t.received_at IS NOT NULL AND t.event_time IS NOT NULL;
