-- futures.sql: Binance USD-M perpetual futures beside spot — funding, basis, liquidations, open
-- interest (docs/futures.md).
--
--   psql "$CRYPTOLAB_DSN" -v symbol=BTCUSDT -v start=2024-07-18 -v end=2024-07-20 -v interval=1h \
--        -f sql/futures.sql
--
-- Variables: exchange (the futures market, default binance-usdm; simulator-usdm for the local
-- exchange's synthetic perp), spot_exchange (default: exchange without "-usdm"), symbol (BTCUSDT),
-- start, end ([start, end), UTC; default the last stored day of the symbol's futures rows),
-- interval (basis and liquidation buckets, 1h).
--
-- The market is the exchange column: SQL of your own reads WHERE exchange = 'binance-usdm'.
-- Funding: longs pay shorts funding_rate × mark price per unit of position at each settlement
-- when the rate is positive (receive it when negative). Basis: perp − spot of each bucket's last
-- trade; annualised as a funding rate is: the premium of one 8-hour funding period × 3 × 365.
-- Binance sends at most one liquidation per symbol per second (the latest of that second): counts,
-- quantities and notionals of liquidations are lower bounds in busy seconds.
\if :{?interval} \else \set interval 1h \endif
\if :{?exchange} \else \set exchange binance-usdm \endif
\if :{?symbol} \else \set symbol BTCUSDT \endif
SET TIME ZONE 'UTC';
\if :{?spot_exchange} \else
SELECT regexp_replace(:'exchange', '-usdm$', '') AS spot_exchange \gset
\endif
\if :{?end} \else
SELECT coalesce(date_bin(interval '1 second', max(t), timestamptz '2000-01-03 00:00:00+00') + interval '1 second',
                date_trunc('second', now())) AS "end"
FROM (SELECT max(trade_time) AS t FROM agg_trades WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
      UNION ALL SELECT max(funding_time) FROM funding_rates WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
      UNION ALL SELECT max(ts) FROM open_interest WHERE exchange = :'exchange' AND symbol = upper(:'symbol')) AS x \gset
\endif
\if :{?start} \else
SELECT :'end'::timestamptz - interval '1 day' AS "start" \gset
\endif


-- name: markets
-- Every (exchange, symbol) holding USD-M futures rows, with its first and last stored time.
SELECT exchange, symbol, min(first_time) AS first_time, max(last_time) AS last_time
FROM (
    SELECT exchange, symbol, min(trade_time) AS first_time, max(trade_time) AS last_time
    FROM agg_trades WHERE exchange LIKE '%-usdm' GROUP BY 1, 2
    UNION ALL
    SELECT exchange, symbol, min(funding_time), max(funding_time) FROM funding_rates GROUP BY 1, 2
    UNION ALL
    SELECT exchange, symbol, min(event_time), max(event_time) FROM mark_prices GROUP BY 1, 2
    UNION ALL
    SELECT exchange, symbol, min(trade_time), max(trade_time) FROM liquidations GROUP BY 1, 2
    UNION ALL
    SELECT exchange, symbol, min(ts), max(ts) FROM open_interest GROUP BY 1, 2
) AS m
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: spot_holders
-- The spot exchanges holding trades or aggregates of the symbol (a symbol asked on futures that
-- has spot data only is said so).
SELECT DISTINCT exchange FROM (
    SELECT exchange FROM bars_1s WHERE symbol = upper(:'symbol') AND exchange <> :'exchange'
    UNION ALL
    SELECT exchange FROM agg_trades WHERE symbol = upper(:'symbol') AND exchange <> :'exchange'
) AS s
WHERE exchange NOT LIKE '%-usdm'
ORDER BY 1;

-- name: funding
-- One row per funding settlement in [start, end): the rate settled (fundingRate dumps / REST, source
-- 'fundingRate') or, where none is stored, the last rate the markPrice stream announced for it
-- (source 'markPrice'; `settled` false while the settlement is still ahead); the mark price of the
-- settlement (REST's, else the stream's at or just before it, else the mark kline opening then);
-- funding_per_unit = funding_rate × mark_price, what one unit long paid (negative: received);
-- cumulative_per_unit its running sum; rate_annualised = rate × 365 × settlements a day.
WITH settled AS (
    SELECT funding_time, funding_rate, mark_price, interval_hours
    FROM funding_rates
    WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
      AND funding_time >= :'start'::timestamptz AND funding_time < :'end'::timestamptz
), live AS (
    SELECT DISTINCT ON (next_funding_time) next_funding_time AS funding_time, funding_rate
    FROM mark_prices
    WHERE exchange = :'exchange' AND symbol = upper(:'symbol') AND funding_rate IS NOT NULL
      AND next_funding_time >= :'start'::timestamptz AND next_funding_time < :'end'::timestamptz
      AND event_time <= next_funding_time
    ORDER BY next_funding_time, event_time DESC
), rates AS (
    SELECT coalesce(s.funding_time, l.funding_time) AS funding_time,
           CASE WHEN s.funding_time IS NOT NULL THEN 'fundingRate' ELSE 'markPrice' END AS source,
           coalesce(s.funding_rate, l.funding_rate) AS funding_rate,
           s.mark_price AS rest_mark, s.interval_hours
    FROM settled s FULL JOIN live l ON l.funding_time = s.funding_time
), marked AS (
    SELECT r.*, m.mark_price AS live_mark, k.open AS kline_mark
    FROM rates r
    LEFT JOIN LATERAL (
        SELECT mp.mark_price FROM mark_prices mp
        WHERE mp.exchange = :'exchange' AND mp.symbol = upper(:'symbol')
          AND mp.event_time <= r.funding_time AND mp.event_time > r.funding_time - interval '1 minute'
        ORDER BY mp.event_time DESC LIMIT 1
    ) AS m ON true
    LEFT JOIN LATERAL (
        SELECT mk.open FROM mark_klines mk
        WHERE mk.exchange = :'exchange' AND mk.symbol = upper(:'symbol') AND mk.open_time = r.funding_time
        ORDER BY mk.interval = '1m' DESC, mk.interval LIMIT 1
    ) AS k ON true
), paid AS (
    SELECT funding_time, source, funding_rate,
           coalesce(rest_mark, live_mark, kline_mark) AS mark_price,
           CASE WHEN rest_mark IS NOT NULL THEN 'fundingRate' WHEN live_mark IS NOT NULL THEN 'markPrice'
                WHEN kline_mark IS NOT NULL THEN 'markPriceKlines' END AS mark_source,
           coalesce(interval_hours, 8) AS interval_hours,
           source = 'fundingRate' OR funding_time <= now() AS settled
    FROM marked
)
SELECT funding_time, source, settled, funding_rate, mark_price, mark_source, interval_hours,
       CASE WHEN settled THEN funding_rate * mark_price END AS funding_per_unit,
       sum(CASE WHEN settled THEN funding_rate * mark_price END) OVER (ORDER BY funding_time) AS cumulative_per_unit,
       funding_rate * 365 * (24 / interval_hours) AS rate_annualised
FROM paid
ORDER BY funding_time;

-- name: basis
-- Perp against spot per interval: the price of each side's last trade in the bucket (perp from its
-- aggregate trades, spot from its 1 s bars, else its aggregates), basis = perp − spot (exact),
-- basis_bps = basis / spot × 10,000 (6 decimals), basis_annualised = basis / spot × 3 × 365 (the
-- premium of one 8-hour funding period over a year; 10 decimals). Buckets where either side has
-- no trade are left out.
WITH perp AS (
    SELECT date_bin(regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval, trade_time,
                    timestamptz '2000-01-03 00:00:00+00') AS open_time,
           (array_agg(price ORDER BY agg_id DESC))[1] AS perp_close
    FROM agg_trades
    WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
      AND trade_time >= :'start'::timestamptz AND trade_time < :'end'::timestamptz
    GROUP BY 1
), spot_bars AS (
    SELECT date_bin(regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval, ts,
                    timestamptz '2000-01-03 00:00:00+00') AS open_time,
           (array_agg(close ORDER BY ts DESC))[1] AS spot_close
    FROM bars_1s
    WHERE exchange = :'spot_exchange' AND symbol = upper(:'symbol')
      AND ts >= :'start'::timestamptz AND ts < :'end'::timestamptz
    GROUP BY 1
), spot_agg AS (
    SELECT date_bin(regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval, trade_time,
                    timestamptz '2000-01-03 00:00:00+00') AS open_time,
           (array_agg(price ORDER BY agg_id DESC))[1] AS spot_close
    FROM agg_trades
    WHERE exchange = :'spot_exchange' AND symbol = upper(:'symbol')
      AND trade_time >= :'start'::timestamptz AND trade_time < :'end'::timestamptz
    GROUP BY 1
), spot AS (
    SELECT coalesce(b.open_time, a.open_time) AS open_time, coalesce(b.spot_close, a.spot_close) AS spot_close
    FROM spot_bars b FULL JOIN spot_agg a ON a.open_time = b.open_time
)
SELECT p.open_time, p.perp_close, s.spot_close, p.perp_close - s.spot_close AS basis,
       round(((p.perp_close - s.spot_close) * 10000)::numeric(1000, 40) / s.spot_close, 6) AS basis_bps,
       round(((p.perp_close - s.spot_close) * 1095)::numeric(1000, 40) / s.spot_close, 10) AS basis_annualised
FROM perp p JOIN spot s ON s.open_time = p.open_time
ORDER BY p.open_time;

-- name: liquidations
-- Liquidations per interval and side: side SELL = longs liquidated, BUY = shorts; count, the filled
-- quantity and its notional (average price × filled quantity, exact). Binance sends at most one
-- liquidation per symbol per second (the latest of that second): busy seconds are undercounted,
-- as the `note` column says.
SELECT date_bin(regexp_replace(:'interval', '^(\d+)([smhdw])$', '\1 \2')::interval, trade_time,
                timestamptz '2000-01-03 00:00:00+00') AS open_time,
       side,
       CASE side WHEN 'SELL' THEN 'long' ELSE 'short' END AS liquidated,
       count(*) AS count,
       sum(filled_qty) AS qty,
       sum(avg_price * filled_qty) AS notional,
       'Binance sends at most one liquidation per symbol per second: a lower bound'::text AS note
FROM liquidations
WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
  AND trade_time >= :'start'::timestamptz AND trade_time < :'end'::timestamptz
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: open_interest
-- Open interest in [start, end) (contracts; value in quote where the source gives it), with its
-- change since the previous row (absolute, and in percent with 6 decimals).
SELECT ts, open_interest, open_interest_value,
       open_interest - lag(open_interest) OVER w AS oi_change,
       round(((open_interest - lag(open_interest) OVER w) * 100)::numeric(1000, 40)
             / nullif(lag(open_interest) OVER w, 0), 6) AS oi_change_pct,
       source
FROM open_interest
WHERE exchange = :'exchange' AND symbol = upper(:'symbol')
  AND ts >= :'start'::timestamptz AND ts < :'end'::timestamptz
WINDOW w AS (ORDER BY ts)
ORDER BY ts;
