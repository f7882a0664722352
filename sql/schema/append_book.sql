-- cryptolab_append_book: the book writer's diffs, quotes and tops in one call
-- (cryptolab/storage/book.py, docs/capture.md "A real pace").
--
-- Idempotent (CREATE OR REPLACE); runs in psql as is:
--   psql "$CRYPTOLAB_DSN" -f sql/schema/append_book.sql
-- The writer uses it when the database has it and takes its statement-by-statement path
-- otherwise (a savepoint and a COPY per table: the same rows, more round trips).
--
-- One batch of book rows as parallel arrays, one set per table (an empty set for a table the
-- batch has no rows of): prices and quantities as their exact decimal digits, a diff's levels
-- as one array literal per row ('{61837.63,61837.5}', cast to numeric[] here: diffs carry
-- different numbers of levels), times as integer microseconds; and per table (diffs, quotes,
-- tops) the writer's decision, `p_append`:
--   true: the append. The caller found the batch's ids of that table strictly increasing per
--     symbol and above the highest id it knows stored: the rows go in as they are;
--   false: the merge the writer's staging path runs, under a per-symbol lock
--     ('cryptolab.book/<exchange>/<symbol>', pg_advisory_xact_lock, sorted; two merging writers
--     take turns): each (exchange, symbol, id) once (a quote: the earliest received), rows already
--     stored left out (a quote: stored within a day of it), ON CONFLICT DO NOTHING.
-- Returns {diffs inserted, quotes inserted, tops inserted, tables appended, tables merged}.
-- An append that meets a stored key (another writer stored some of the ids) raises
-- unique_violation: the caller rolls back and stores the batch again, merging.

CREATE OR REPLACE FUNCTION cryptolab_append_book(
    d_exchange text[], d_symbol text[], d_first bigint[], d_last bigint[], d_prev bigint[],
    d_event_us bigint[], d_received_us bigint[], d_bid_price text[], d_bid_qty text[],
    d_ask_price text[], d_ask_qty text[], d_source text[],
    q_exchange text[], q_symbol text[], q_update bigint[], q_received_us bigint[], q_event_us bigint[],
    q_bid_price numeric[], q_bid_qty numeric[], q_ask_price numeric[], q_ask_qty numeric[], q_source text[],
    t_exchange text[], t_symbol text[], t_update bigint[], t_event_us bigint[], t_bid_price numeric[],
    t_bid_qty numeric[], t_ask_price numeric[], t_ask_qty numeric[], t_source text[],
    p_append boolean[]
) RETURNS integer[]
LANGUAGE plpgsql AS $fn$
DECLARE
    n_diffs   integer := 0;
    n_quotes  integer := 0;
    n_tops    integer := 0;
    appended  integer := 0;
    merged    integer := 0;
BEGIN
    IF NOT (coalesce(p_append[1], false) AND coalesce(p_append[2], false) AND coalesce(p_append[3], false)) THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('cryptolab.book/' || k, 0))
    FROM (SELECT e || '/' || s AS k FROM unnest(d_exchange, d_symbol) AS u(e, s)
          UNION SELECT e || '/' || s FROM unnest(q_exchange, q_symbol) AS u(e, s)
          UNION SELECT e || '/' || s FROM unnest(t_exchange, t_symbol) AS u(e, s)) AS keys
    ORDER BY k;
    END IF;

    IF cardinality(d_last) > 0 THEN
        IF NOT coalesce(p_append[1], false) THEN
            INSERT INTO book_diffs (exchange, symbol, first_update_id, last_update_id, prev_update_id,
                                    event_time, received_at, bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT DISTINCT ON (exchange, symbol, last_update_id)
                   exchange, symbol, first_update_id, last_update_id, prev_update_id, event_time,
                   received_at, bid_price, bid_qty, ask_price, ask_qty, source
            FROM (SELECT e AS exchange, s AS symbol, f AS first_update_id, l AS last_update_id,
                         p AS prev_update_id,
                         timestamptz 'epoch' + ev * interval '1 microsecond' AS event_time,
                         timestamptz 'epoch' + rc * interval '1 microsecond' AS received_at,
                         bp::numeric[] AS bid_price, bq::numeric[] AS bid_qty,
                         ap::numeric[] AS ask_price, aq::numeric[] AS ask_qty, src AS source
                  FROM unnest(d_exchange, d_symbol, d_first, d_last, d_prev, d_event_us, d_received_us,
                              d_bid_price, d_bid_qty, d_ask_price, d_ask_qty, d_source)
                       AS u(e, s, f, l, p, ev, rc, bp, bq, ap, aq, src)) AS st
            WHERE NOT EXISTS (SELECT 1 FROM book_diffs d WHERE d.exchange = st.exchange
                              AND d.symbol = st.symbol AND d.last_update_id = st.last_update_id)
            ORDER BY exchange, symbol, last_update_id
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS n_diffs = ROW_COUNT;
            merged := merged + 1;
        ELSE
            INSERT INTO book_diffs (exchange, symbol, first_update_id, last_update_id, prev_update_id,
                                    event_time, received_at, bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT e, s, f, l, p,
                   timestamptz 'epoch' + ev * interval '1 microsecond',
                   timestamptz 'epoch' + rc * interval '1 microsecond',
                   bp::numeric[], bq::numeric[], ap::numeric[], aq::numeric[], src
            FROM unnest(d_exchange, d_symbol, d_first, d_last, d_prev, d_event_us, d_received_us,
                        d_bid_price, d_bid_qty, d_ask_price, d_ask_qty, d_source)
                 AS u(e, s, f, l, p, ev, rc, bp, bq, ap, aq, src);
            GET DIAGNOSTICS n_diffs = ROW_COUNT;
            appended := appended + 1;
        END IF;
    END IF;

    IF cardinality(q_update) > 0 THEN
        IF NOT coalesce(p_append[2], false) THEN
            INSERT INTO quotes (exchange, symbol, update_id, received_at, event_time,
                                bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT DISTINCT ON (exchange, symbol, update_id)
                   exchange, symbol, update_id, received_at, event_time,
                   bid_price, bid_qty, ask_price, ask_qty, source
            FROM (SELECT e AS exchange, s AS symbol, i AS update_id,
                         timestamptz 'epoch' + rc * interval '1 microsecond' AS received_at,
                         timestamptz 'epoch' + ev * interval '1 microsecond' AS event_time,
                         bp AS bid_price, bq AS bid_qty, ap AS ask_price, aq AS ask_qty, src AS source
                  FROM unnest(q_exchange, q_symbol, q_update, q_received_us, q_event_us,
                              q_bid_price, q_bid_qty, q_ask_price, q_ask_qty, q_source)
                       AS u(e, s, i, rc, ev, bp, bq, ap, aq, src)) AS st
            WHERE NOT EXISTS (SELECT 1 FROM quotes q WHERE q.exchange = st.exchange AND q.symbol = st.symbol
                              AND q.update_id = st.update_id
                              AND q.received_at BETWEEN st.received_at - interval '1 day'
                                                    AND st.received_at + interval '1 day')
            ORDER BY exchange, symbol, update_id, received_at
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS n_quotes = ROW_COUNT;
            merged := merged + 1;
        ELSE
            INSERT INTO quotes (exchange, symbol, update_id, received_at, event_time,
                                bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT e, s, i,
                   timestamptz 'epoch' + rc * interval '1 microsecond',
                   timestamptz 'epoch' + ev * interval '1 microsecond',
                   bp, bq, ap, aq, src
            FROM unnest(q_exchange, q_symbol, q_update, q_received_us, q_event_us,
                        q_bid_price, q_bid_qty, q_ask_price, q_ask_qty, q_source)
                 AS u(e, s, i, rc, ev, bp, bq, ap, aq, src);
            GET DIAGNOSTICS n_quotes = ROW_COUNT;
            appended := appended + 1;
        END IF;
    END IF;

    IF cardinality(t_update) > 0 THEN
        IF NOT coalesce(p_append[3], false) THEN
            INSERT INTO book_tops (exchange, symbol, update_id, event_time,
                                   bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT DISTINCT ON (exchange, symbol, update_id)
                   exchange, symbol, update_id, event_time, bid_price, bid_qty, ask_price, ask_qty, source
            FROM (SELECT e AS exchange, s AS symbol, i AS update_id,
                         timestamptz 'epoch' + ev * interval '1 microsecond' AS event_time,
                         bp AS bid_price, bq AS bid_qty, ap AS ask_price, aq AS ask_qty, src AS source
                  FROM unnest(t_exchange, t_symbol, t_update, t_event_us,
                              t_bid_price, t_bid_qty, t_ask_price, t_ask_qty, t_source)
                       AS u(e, s, i, ev, bp, bq, ap, aq, src)) AS st
            WHERE NOT EXISTS (SELECT 1 FROM book_tops t WHERE t.exchange = st.exchange
                              AND t.symbol = st.symbol AND t.update_id = st.update_id)
            ORDER BY exchange, symbol, update_id
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS n_tops = ROW_COUNT;
            merged := merged + 1;
        ELSE
            INSERT INTO book_tops (exchange, symbol, update_id, event_time,
                                   bid_price, bid_qty, ask_price, ask_qty, source)
            SELECT e, s, i, timestamptz 'epoch' + ev * interval '1 microsecond', bp, bq, ap, aq, src
            FROM unnest(t_exchange, t_symbol, t_update, t_event_us,
                        t_bid_price, t_bid_qty, t_ask_price, t_ask_qty, t_source)
                 AS u(e, s, i, ev, bp, bq, ap, aq, src);
            GET DIAGNOSTICS n_tops = ROW_COUNT;
            appended := appended + 1;
        END IF;
    END IF;

    RETURN ARRAY[n_diffs, n_quotes, n_tops, appended, merged];
END
$fn$;
