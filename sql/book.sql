-- book.sql: the stored quotes (bookTicker) and what they say about spreads, and the recorded
-- breaks of the stored order book (docs/book_analysis.md).
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-08-08T23:54Z -v end=2024-08-09T00:05Z \
--        -v interval=1m -f sql/book.sql
--
-- Variables: exchange, symbol, start, end ([start, end), UTC, on the quotes' received time),
-- interval (buckets of quote_stats and effective_spread, 1m), horizon (price impact, 1s).
-- Defaults follow the stored quotes: the exchange and symbol with the newest quote (real
-- `binance` first), the last hour before the newest quote. The book itself (book_at, book_top)
-- is rebuilt by cryptolab.analysis from book_snapshots and book_diffs.
--
-- Formulas (prices exact NUMERIC; ratios float8, in basis points where named *_bps):
--   mid = (bid + ask) / 2; spread = ask - bid; spread_bps = spread / mid * 1e4;
--   microprice = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty), 12 decimals;
--   imbalance = (bid_qty - ask_qty) / (bid_qty + ask_qty);
--   effective spread of a trade = 2 * side * (price - mid) / mid * 1e4 against the last quote
--   received at or before the trade (side +1 taker buy, -1 taker sell); price impact =
--   side * (mid(t + horizon) - mid(t)) / mid(t) * 1e4. Quotes and trades are matched on the
--   local receive time (spot bookTicker carries no exchange time): trades without one are left out.
SET TIME ZONE 'UTC';
\if :{?interval} \else \set interval 1m \endif
\if :{?horizon} \else \set horizon 1s \endif
\if :{?exchange} \if :{?symbol} \else
  SELECT coalesce((SELECT symbol FROM quotes WHERE exchange = :'exchange' ORDER BY received_at DESC LIMIT 1), 'BTCUSDT') AS symbol \gset
\endif \else
  \if :{?symbol}
    SELECT coalesce((SELECT exchange FROM quotes WHERE symbol = upper(:'symbol')
                     ORDER BY exchange = 'binance' DESC, received_at DESC LIMIT 1), 'binance') AS exchange \gset
  \else
    SELECT coalesce((SELECT exchange FROM quotes ORDER BY exchange = 'binance' DESC, received_at DESC LIMIT 1), 'binance') AS exchange,
           coalesce((SELECT symbol FROM quotes ORDER BY exchange = 'binance' DESC, received_at DESC LIMIT 1), 'BTCUSDT') AS symbol \gset
  \endif
\endif
\if :{?end} \else
  SELECT coalesce(max(received_at) + interval '1 microsecond', now()) AS "end"
  FROM quotes WHERE exchange = :'exchange' AND symbol = upper(:'symbol') \gset
\endif
\if :{?start} \else
  SELECT greatest(:'end'::timestamptz - interval '1 hour',
                  least(coalesce(min(received_at), :'end'::timestamptz), :'end'::timestamptz - interval '1 hour')) AS "start"
  FROM quotes WHERE exchange = :'exchange' AND symbol = upper(:'symbol') \gset
\endif


-- name: quotes
-- The stored bookTicker rows received in [start, end), in update-id order.
SELECT update_id, received_at, bid_price, bid_qty, ask_price, ask_qty
FROM quotes
WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
  AND received_at >= :'start'::timestamptz AND received_at < :'end'::timestamptz
ORDER BY update_id, received_at;


-- name: book_gaps
-- The recorded breaks of the book detected in [start, end): a gap (diffs missed), a crossed
-- book (after_update_id: the diff that crossed it), a restart; healed by snapshot_update_id.
SELECT reason, after_update_id, before_update_id, missing, detected_at, snapshot_update_id, healed_at
FROM book_gaps
WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
  AND detected_at >= :'start'::timestamptz AND detected_at < :'end'::timestamptz
ORDER BY after_update_id, reason;


-- name: quote_stats
-- Per interval (by received time): quotes; the last quote (update id, bid, ask, quantities,
-- mid, spread, microprice); the spread's min / max / mean (exact, 12 decimals) and mean in
-- bps; the mean top-of-book imbalance.
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), q AS (
    SELECT date_bin(p.iv, q.received_at, p.origin) AS open_time, q.update_id, q.received_at,
           q.bid_price, q.bid_qty, q.ask_price, q.ask_qty,
           q.ask_price - q.bid_price AS spread, (q.bid_price + q.ask_price) / 2 AS mid
    FROM quotes q CROSS JOIN p
    WHERE q.exchange = :'exchange' AND q.symbol = upper(:'symbol')
      AND q.received_at >= p.t0 AND q.received_at < p.t1
), b AS (
    SELECT open_time, count(*) AS quotes,
           (array_agg(update_id ORDER BY update_id DESC, received_at DESC))[1] AS update_id,
           (array_agg(bid_price ORDER BY update_id DESC, received_at DESC))[1] AS bid_price,
           (array_agg(bid_qty ORDER BY update_id DESC, received_at DESC))[1] AS bid_qty,
           (array_agg(ask_price ORDER BY update_id DESC, received_at DESC))[1] AS ask_price,
           (array_agg(ask_qty ORDER BY update_id DESC, received_at DESC))[1] AS ask_qty,
           min(spread) AS min_spread, max(spread) AS max_spread,
           round(avg(spread)::numeric(1000, 40), 12) AS avg_spread,
           avg((spread / mid)::float8 * 10000) AS avg_spread_bps,
           avg(((bid_qty - ask_qty) / nullif(bid_qty + ask_qty, 0))::float8) AS avg_imbalance
    FROM q GROUP BY open_time
)
SELECT open_time, quotes, update_id, bid_price, bid_qty, ask_price, ask_qty,
       (bid_price + ask_price) / 2 AS mid, ask_price - bid_price AS spread,
       ((ask_price - bid_price) / ((bid_price + ask_price) / 2))::float8 * 10000 AS spread_bps,
       round((bid_price * ask_qty + ask_price * bid_qty)::numeric(1000, 40) / nullif(bid_qty + ask_qty, 0), 12)
           AS microprice,
       min_spread, max_spread, avg_spread, avg_spread_bps, avg_imbalance
FROM b
ORDER BY open_time;


-- name: effective_spread
-- Per interval (by the trades' received time): trades matched to the quote prevailing when they
-- were received, volume, the mean effective spread (bps, and volume-weighted), the mean price
-- impact and realized spread after `horizon` (bps).
WITH p AS (
    SELECT regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval AS iv,
           regexp_replace(:'horizon', '^(\d+)([smhdw])$', '\1 \2')::interval AS h,
           :'start'::timestamptz AS t0, :'end'::timestamptz AS t1,
           timestamptz '2000-01-03 00:00:00+00' AS origin
), ev AS (
    SELECT q.received_at AS ts, 0 AS kind, q.update_id AS id, (q.bid_price + q.ask_price) / 2 AS mid,
           NULL::numeric AS price, NULL::numeric AS qty, NULL::int AS side
    FROM quotes q CROSS JOIN p
    WHERE q.exchange = :'exchange' AND q.symbol = upper(:'symbol')
      AND q.received_at >= p.t0 - interval '1 minute' AND q.received_at < p.t1 + p.h
    UNION ALL
    SELECT t.received_at, 1, t.trade_id, NULL, t.price, t.qty, CASE WHEN t.is_buyer_maker THEN -1 ELSE 1 END
    FROM trades t CROSS JOIN p
    WHERE t.exchange = :'exchange' AND t.symbol = upper(:'symbol')
      AND t.received_at >= p.t0 AND t.received_at < p.t1
      AND t.trade_time >= p.t0 - interval '1 day' AND t.trade_time < p.t1 + interval '1 day'
), g AS (
    SELECT ev.*, count(mid) OVER (ORDER BY ts, kind, id) AS grp FROM ev
), f AS (
    SELECT g.*, first_value(mid) OVER (PARTITION BY grp ORDER BY ts, kind, id) AS quote_mid FROM g
), t AS (
    SELECT f.ts, f.price, f.qty, f.side, f.quote_mid,
           (SELECT (q.bid_price + q.ask_price) / 2 FROM quotes q
            WHERE q.exchange = :'exchange' AND q.symbol = upper(:'symbol')
              AND q.received_at <= f.ts + p.h AND q.received_at > f.ts + p.h - interval '1 minute'
            ORDER BY q.received_at DESC, q.update_id DESC LIMIT 1) AS mid_after
    FROM f CROSS JOIN p
    WHERE f.kind = 1 AND f.quote_mid IS NOT NULL
)
SELECT date_bin(p.iv, t.ts, p.origin) AS open_time, count(*) AS trades, sum(t.qty) AS volume,
       avg((2 * t.side * (t.price - t.quote_mid) / t.quote_mid)::float8 * 10000) AS effective_spread_bps,
       (sum(t.qty * 2 * t.side * (t.price - t.quote_mid) / t.quote_mid) / sum(t.qty))::float8 * 10000
           AS vw_effective_spread_bps,
       avg((t.side * (t.mid_after - t.quote_mid) / t.quote_mid)::float8 * 10000) AS impact_bps,
       avg((2 * t.side * (t.price - t.mid_after) / t.quote_mid)::float8 * 10000) AS realized_spread_bps
FROM t CROSS JOIN p
GROUP BY 1
ORDER BY 1;
