-- quality_check.sql: is what we stored complete and sane? Duplicates across sources, nulls,
-- timestamp order (T <= E <= received <= ingested), ids whose time goes backwards, id gaps
-- (losses) and halts (silences with consecutive ids: not a loss), price outliers, dead letters,
-- capture runs, and the 1 s bars checked against the raw trades.
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08 -v end=2024-08-09 -f sql/quality_check.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC; defaults follow the stored data as in
-- cryptolab.analysis: see defaults.psql), max_skew (clock skew allowed between the exchange, the capture and the database,
-- '1 second'), min_halt (shortest silence reported as a halt, '30 seconds'), outlier_window
-- (seconds of history for the rolling median price, 60), outlier_threshold (relative distance
-- from it that makes an outlier, 0.01).
\if :{?max_skew} \else \set max_skew '1 second' \endif
\if :{?min_halt} \else \set min_halt '30 seconds' \endif
\if :{?outlier_window} \else \set outlier_window 60 \endif
\if :{?outlier_threshold} \else \set outlier_threshold 0.01 \endif
\ir defaults.psql


-- name: source_counts
-- Stored trades per source (live, backfill, replay, simulator) in the range.
SELECT t.source, count(*) AS trades, min(t.trade_id) AS first_trade_id, max(t.trade_id) AS last_trade_id,
       min(t.trade_time) AS first_time, max(t.trade_time) AS last_time
FROM trades t
WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
  AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
GROUP BY t.source
ORDER BY t.source;


-- name: duplicates
-- Trade ids stored more than once (possible only with different trade times, e.g. a live and a
-- backfilled copy that disagree), with their sources and whether price, qty and side agree.
SELECT t.trade_id, count(*) AS copies,
       string_agg(t.source, ',' ORDER BY t.trade_time) AS sources,
       min(t.trade_time) AS first_time, max(t.trade_time) AS last_time,
       count(DISTINCT (t.price, t.qty, t.is_buyer_maker)) = 1 AS same_content
FROM trades t
WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
  AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
GROUP BY t.trade_id
HAVING count(*) > 1
ORDER BY t.trade_id;


-- name: nulls
-- Null count per column of the stored trades in the range (event_time and received_at may be
-- null for backfilled and loaded rows; the other columns never are).
WITH t AS (
    SELECT * FROM trades t
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
), c AS (
    SELECT count(*) AS n,
           count(*) - count(price) AS price, count(*) - count(qty) AS qty,
           count(*) - count(is_buyer_maker) AS is_buyer_maker, count(*) - count(trade_time) AS trade_time,
           count(*) - count(event_time) AS event_time, count(*) - count(received_at) AS received_at,
           count(*) - count(ingested_at) AS ingested_at, count(*) - count(source) AS source
    FROM t
)
SELECT v.column_name, v.nulls, c.n AS rows
FROM c CROSS JOIN LATERAL (VALUES
    (1, 'price', c.price), (2, 'qty', c.qty), (3, 'is_buyer_maker', c.is_buyer_maker),
    (4, 'trade_time', c.trade_time), (5, 'event_time', c.event_time), (6, 'received_at', c.received_at),
    (7, 'ingested_at', c.ingested_at), (8, 'source', c.source)
) AS v (ord, column_name, nulls)
ORDER BY v.ord;


-- name: timestamp_checks
-- The order every stored trade's times must keep: T <= E (same exchange clock, no slack),
-- E <= received and received <= ingested (different clocks: max_skew allowed). Per rule: rows
-- checked (both times present), violations, the worst excess and one offending trade id.
WITH t AS (
    SELECT t.trade_id, t.trade_time, t.event_time, t.received_at, t.ingested_at
    FROM trades t
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
), c AS (
    SELECT count(event_time) AS te_checked,
           count(*) FILTER (WHERE event_time < trade_time) AS te_bad,
           max(trade_time - event_time) FILTER (WHERE event_time < trade_time) AS te_worst,
           min(trade_id) FILTER (WHERE event_time < trade_time) AS te_example,
           count(*) FILTER (WHERE event_time IS NOT NULL AND received_at IS NOT NULL) AS er_checked,
           count(*) FILTER (WHERE received_at + :'max_skew'::interval < event_time) AS er_bad,
           max(event_time - received_at) FILTER (WHERE received_at + :'max_skew'::interval < event_time) AS er_worst,
           min(trade_id) FILTER (WHERE received_at + :'max_skew'::interval < event_time) AS er_example,
           count(received_at) AS ri_checked,
           count(*) FILTER (WHERE ingested_at + :'max_skew'::interval < received_at) AS ri_bad,
           max(received_at - ingested_at) FILTER (WHERE ingested_at + :'max_skew'::interval < received_at) AS ri_worst,
           min(trade_id) FILTER (WHERE ingested_at + :'max_skew'::interval < received_at) AS ri_example
    FROM t
)
SELECT v.rule, v.checked, v.violations, v.worst, v.example_trade_id, :'max_skew'::interval AS allowed_skew
FROM c CROSS JOIN LATERAL (VALUES
    (1, 'trade_time <= event_time', c.te_checked, c.te_bad, c.te_worst, c.te_example),
    (2, 'event_time <= received_at', c.er_checked, c.er_bad, c.er_worst, c.er_example),
    (3, 'received_at <= ingested_at', c.ri_checked, c.ri_bad, c.ri_worst, c.ri_example)
) AS v (ord, rule, checked, violations, worst, example_trade_id)
ORDER BY v.ord;


-- name: time_backwards
-- Trades stamped earlier than the trade with the next lower stored id (ids are the exchange's
-- sequence, so their times should never go back).
WITH t AS (
    SELECT t.trade_id, t.trade_time,
           lag(t.trade_id) OVER (ORDER BY t.trade_id) AS prev_trade_id,
           lag(t.trade_time) OVER (ORDER BY t.trade_id) AS prev_trade_time
    FROM trades t
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
)
SELECT trade_id, trade_time, prev_trade_id, prev_trade_time, prev_trade_time - trade_time AS backwards_by
FROM t
WHERE trade_time < prev_trade_time
ORDER BY trade_id;


-- name: gaps
-- Missing trade ids between consecutive stored ids in the range, the last trade before start
-- included (a hole that began before the range and ends in it counts): a loss (compare halts). With
-- the times around the hole and what the capture recorded about it (capture_gaps), if anything.
WITH prior AS (
    -- the last trade before start (found through its 1 s bar): a gap or halt that began
    -- before the range and ends inside it is reported too
    SELECT tr.trade_id, tr.trade_time
    FROM (SELECT b.ts, b.last_trade_id FROM bars_1s b
          WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol') AND b.ts < :'start'::timestamptz
          ORDER BY b.ts DESC LIMIT 1) AS b
    JOIN trades tr ON tr.exchange = :'exchange' AND tr.symbol = upper(:'symbol') AND tr.trade_id = b.last_trade_id
                  AND tr.trade_time >= b.ts AND tr.trade_time < b.ts + interval '1 second'
                  AND tr.trade_time < :'start'::timestamptz
), t AS (
    SELECT x.trade_id, x.trade_time,
           lag(x.trade_id) OVER (ORDER BY x.trade_id) AS prev_id,
           lag(x.trade_time) OVER (ORDER BY x.trade_id) AS prev_time
    FROM (SELECT trade_id, trade_time FROM prior
          UNION ALL
          SELECT t.trade_id, t.trade_time FROM trades t
          WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
            AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz) AS x
), g AS (
    SELECT prev_id + 1 AS first_missing_id, trade_id - 1 AS last_missing_id,
           trade_id - prev_id - 1 AS missing, prev_time AS time_before, trade_time AS time_after
    FROM t WHERE trade_id > prev_id + 1 AND trade_time >= :'start'::timestamptz
)
SELECT g.*, g.time_after - g.time_before AS duration,
       (SELECT string_agg(DISTINCT c.status, ',') FROM capture_gaps c
        WHERE c.exchange = :'exchange' AND upper(c.symbol) = upper(:'symbol')
          AND c.first_missing_id <= g.last_missing_id AND c.last_missing_id >= g.first_missing_id) AS recorded_status
FROM g
ORDER BY g.first_missing_id;


-- name: halts
-- Silences of at least min_halt between trades whose ids are consecutive: the market paused,
-- nothing was lost. Every halt that overlaps [start, end) is reported: the last trade before
-- start and the first one at or after end are looked at too, so a range that starts, ends or
-- lies wholly inside a halt reports it; extends_before / extends_after say that the halt
-- began before start / ends at or after end (halt_start and halt_end are then outside the range).
WITH prior AS (
    -- the last trade before start (found through its 1 s bar)
    SELECT tr.trade_id, tr.trade_time
    FROM (SELECT b.ts, b.last_trade_id FROM bars_1s b
          WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol') AND b.ts < :'start'::timestamptz
          ORDER BY b.ts DESC LIMIT 1) AS b
    JOIN trades tr ON tr.exchange = :'exchange' AND tr.symbol = upper(:'symbol') AND tr.trade_id = b.last_trade_id
                  AND tr.trade_time >= b.ts AND tr.trade_time < b.ts + interval '1 second'
                  AND tr.trade_time < :'start'::timestamptz
), after AS (
    -- the first trade at or after end (through the first two 1 s bars that can hold one)
    SELECT tr.trade_id, tr.trade_time
    FROM (SELECT b.ts, b.first_trade_id, b.last_trade_id FROM bars_1s b
          WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
            AND b.ts > :'end'::timestamptz - interval '1 second'
          ORDER BY b.ts LIMIT 2) AS b
    JOIN trades tr ON tr.exchange = :'exchange' AND tr.symbol = upper(:'symbol')
                  AND tr.trade_id BETWEEN b.first_trade_id AND b.last_trade_id
                  AND tr.trade_time >= b.ts AND tr.trade_time < b.ts + interval '1 second'
                  AND tr.trade_time >= :'end'::timestamptz
    ORDER BY tr.trade_time, tr.trade_id LIMIT 1
), t AS (
    SELECT x.trade_id, x.trade_time,
           lag(x.trade_id) OVER (ORDER BY x.trade_id) AS prev_id,
           lag(x.trade_time) OVER (ORDER BY x.trade_id) AS prev_time
    FROM (SELECT trade_id, trade_time FROM prior
          UNION ALL
          SELECT t.trade_id, t.trade_time FROM trades t
          WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
            AND t.trade_time >= :'start'::timestamptz AND t.trade_time < :'end'::timestamptz
          UNION ALL
          SELECT trade_id, trade_time FROM after) AS x
)
SELECT prev_id AS last_id_before, trade_id AS first_id_after,
       prev_time AS halt_start, trade_time AS halt_end, trade_time - prev_time AS duration,
       prev_time < :'start'::timestamptz AS extends_before,
       trade_time >= :'end'::timestamptz AS extends_after
FROM t
WHERE trade_id = prev_id + 1 AND trade_time - prev_time >= :'min_halt'::interval
  AND trade_time >= :'start'::timestamptz AND prev_time < :'end'::timestamptz
ORDER BY trade_id;


-- name: price_outliers
-- Trades whose price is further than outlier_threshold (relative) from the median of the 1 s
-- closes of the outlier_window seconds before their second (the trade's own second excluded).
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           :'outlier_window'::int * interval '1 second' AS w, :'outlier_threshold'::numeric AS k,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), b AS (
    SELECT b.ts, b.high, b.low,
           array_agg(b.close) OVER (ORDER BY b.ts RANGE BETWEEN :'outlier_window'::int * interval '1 second' PRECEDING
                                                     AND interval '1 microsecond' PRECEDING) AS prev
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 - p.w AND b.ts < p.t1
), m AS (
    SELECT b.ts, b.high, b.low,
           (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(b.prev) AS x) AS median
    FROM b, p
    WHERE b.ts >= p.t0
), flagged AS (
    SELECT m.* FROM m, p
    WHERE m.median IS NOT NULL AND (m.high > m.median * (1 + p.k) OR m.low < m.median * (1 - p.k))
)
SELECT t.trade_id, t.trade_time, t.price, f.median,
       round((t.price - f.median)::numeric(1000, 40) / f.median, 12) AS deviation, t.source
FROM trades t
JOIN flagged f ON date_bin(interval '1 second', t.trade_time, timestamptz '2000-01-03 00:00:00+00') = f.ts
CROSS JOIN p
WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
  AND t.trade_time >= p.t0 AND t.trade_time < p.t1
  AND abs(t.price - f.median) > f.median * p.k
ORDER BY t.trade_id;


-- name: dead_letters
-- Messages that could not become trades, by reason, in the range (by received time): those of
-- the symbol and those that could not be attributed to any symbol (symbol null).
SELECT d.reason, d.symbol, count(*) AS messages, sum(d.payload_bytes)::bigint AS bytes,
       min(d.received_at) AS first_at, max(d.received_at) AS last_at
FROM dead_letters d
WHERE (d.exchange = :'exchange' OR d.exchange IS NULL)
  AND (upper(d.symbol) = upper(:'symbol') OR d.symbol IS NULL)
  AND d.received_at >= :'start'::timestamptz AND d.received_at < :'end'::timestamptz
GROUP BY d.reason, d.symbol
ORDER BY messages DESC, d.reason;


-- name: capture_runs
-- Capture sessions that covered the symbol during the range, with their counters and the id
-- gaps they recorded (filled by backfill, unrecoverable, or still open).
SELECT r.run_id, r.started_at, r.stopped_at, r.heartbeat_at, r.status, r.endpoint, r.host,
       r.messages, r.trades_stored, r.duplicates, r.dead_letters, r.reconnects,
       r.gaps_found, r.gaps_filled, r.backfilled,
       count(g.id) AS gaps_recorded,
       count(g.id) FILTER (WHERE g.status = 'filled') AS gaps_filled_recorded,
       count(g.id) FILTER (WHERE g.status = 'unrecoverable') AS gaps_unrecoverable,
       count(g.id) FILTER (WHERE g.status = 'open') AS gaps_open,
       coalesce(sum(g.missing) FILTER (WHERE g.status <> 'filled'), 0)::bigint AS ids_not_recovered,
       r.note
FROM capture_runs r
LEFT JOIN capture_gaps g ON g.run_id = r.run_id AND upper(g.symbol) = upper(:'symbol')
WHERE r.exchange = :'exchange'
  AND upper(:'symbol') IN (SELECT upper(s) FROM unnest(r.symbols) AS s)
  AND r.started_at < :'end'::timestamptz
  AND coalesce(r.stopped_at, r.heartbeat_at, now()) >= :'start'::timestamptz
GROUP BY r.run_id
ORDER BY r.started_at;


-- name: bars_consistency
-- Seconds where the stored 1 s bar does not equal the aggregate of the stored trades (the
-- writer keeps them equal in one transaction; a difference means rows were changed by hand).
-- A day whose raw trades were archived and dropped from PostgreSQL (archive_days) cannot be
-- checked here (psql sees only the database): it is one row, problem 'archived: …' with the
-- check's result from before the drop (archive_quality), bar_trades its bars' trade count.
-- cryptolab.analysis reads those days back from the archive and checks them like any other.
WITH p AS (
    SELECT :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), archived AS (  -- dropped days; none when the session's `trades` holds them (a TEMP table, cryptolab.archive)
    SELECT a.day FROM archive_days a
    WHERE a.exchange = :'exchange' AND a.symbol = upper(:'symbol') AND a.dropped_at IS NOT NULL
      AND to_regclass('pg_temp.trades') IS NULL
), s AS (
    SELECT date_bin(interval '1 second', t.trade_time, p.origin) AS ts,
           (array_agg(t.price ORDER BY t.trade_id))[1] AS open, max(t.price) AS high, min(t.price) AS low,
           (array_agg(t.price ORDER BY t.trade_id DESC))[1] AS close,
           sum(t.qty) AS volume, sum(t.price * t.qty) AS quote_volume,
           coalesce(sum(t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS taker_buy_volume,
           coalesce(sum(t.price * t.qty) FILTER (WHERE NOT t.is_buyer_maker), 0) AS taker_buy_quote,
           count(*)::integer AS trade_count, min(t.trade_id) AS first_trade_id, max(t.trade_id) AS last_trade_id
    FROM trades t, p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.trade_time >= p.t0 AND t.trade_time < p.t1
    GROUP BY 1
), b AS (
    SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.quote_volume, b.taker_buy_volume,
           b.taker_buy_quote, b.trade_count, b.first_trade_id, b.last_trade_id
    FROM bars_1s b, p
    WHERE b.exchange = :'exchange' AND b.symbol = upper(:'symbol')
      AND b.ts >= p.t0 AND b.ts < p.t1
)
SELECT coalesce(b.ts, s.ts) AS ts,
       CASE WHEN b.ts IS NULL THEN 'bar missing' WHEN s.ts IS NULL THEN 'bar without trades' ELSE 'bar differs' END AS problem,
       b.trade_count AS bar_trades, s.trade_count AS trades,
       b.volume AS bar_volume, s.volume AS volume,
       b.quote_volume AS bar_quote_volume, s.quote_volume AS quote_volume
FROM b FULL JOIN s ON b.ts = s.ts
WHERE (b.ts IS NULL OR s.ts IS NULL OR (b.*) IS DISTINCT FROM (s.*))
  AND (coalesce(b.ts, s.ts) AT TIME ZONE 'UTC')::date NOT IN (SELECT day FROM archived)
UNION ALL
SELECT min(b.ts) AS ts,
       'archived: trades not in PostgreSQL; before the drop this check was '
       || coalesce((SELECT q.status || ' (' || q.detail || ')' FROM archive_quality q
                    WHERE q.exchange = :'exchange' AND q.symbol = upper(:'symbol') AND q.day = a.day
                      AND q.check_name = 'bars vs trades'), 'not recorded') AS problem,
       sum(b.trade_count)::integer AS bar_trades, NULL, sum(b.volume), NULL, sum(b.quote_volume), NULL
FROM archived a JOIN b ON (b.ts AT TIME ZONE 'UTC')::date = a.day
GROUP BY a.day
ORDER BY 1;
