-- cryptolab schema. Idempotent: run it any number of times (cryptolab db init, or
--   psql "$CRYPTOLAB_DSN" -f schema.sql).
-- Versioned: each change is appended as a numbered, idempotent step and recorded in
-- schema_version, so an existing database migrates forward without loss.
-- All timestamps are timestamptz (microsecond precision); run in UTC.

SET client_min_messages = warning;

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- version 1
-- Every trade the exchange printed, stored once. Prices and quantities are exact
-- NUMERIC; quote_qty is their exact product. Range-partitioned by UTC day on
-- trade_time (the exchange's T); partitions are made ahead by
-- cryptolab_ensure_partitions(). The primary key holds the partition key, as
-- PostgreSQL requires; one trade always carries the same T within a source.
CREATE TABLE IF NOT EXISTS trades (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    trade_id        bigint      NOT NULL,
    price           numeric     NOT NULL CHECK (price > 0),
    qty             numeric     NOT NULL CHECK (qty > 0),
    quote_qty       numeric     GENERATED ALWAYS AS (price * qty) STORED,
    is_buyer_maker  boolean     NOT NULL,
    trade_time      timestamptz NOT NULL,
    event_time      timestamptz,
    received_at     timestamptz,
    ingested_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    source          text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
    PRIMARY KEY (exchange, symbol, trade_id, trade_time)
) PARTITION BY RANGE (trade_time);

-- BRIN on time: tiny, and trades arrive in time order. Time-range scans per
-- symbol use it; "latest N trades" uses the primary key.
CREATE INDEX IF NOT EXISTS trades_trade_time_brin ON trades USING brin (trade_time);

CREATE OR REPLACE FUNCTION cryptolab_ensure_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('trades_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(quote_ident(current_schema()) || '.' || part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('cryptolab_ensure_partition'));
    IF to_regclass(quote_ident(current_schema()) || '.' || part) IS NOT NULL THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF trades FOR VALUES FROM (%L) TO (%L)',
                       part,
                       (day::timestamp AT TIME ZONE 'UTC'),
                       ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    EXCEPTION WHEN duplicate_table THEN
        -- made meanwhile by a transaction whose snapshot predates ours (two loaders racing)
        RETURN false;
    END;
    RETURN true;
END $$;

-- Make the partitions for every UTC day touched by [first, last]; returns how many were new.
CREATE OR REPLACE FUNCTION cryptolab_ensure_partitions(first timestamptz, last timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE cryptolab_ensure_partition(d::date))::integer
    FROM generate_series((first AT TIME ZONE 'UTC')::date,
                         (last  AT TIME ZONE 'UTC')::date,
                         interval '1 day') AS d
$$;

-- One row per (exchange, symbol, UTC second), maintained by the writer in the same
-- transaction as the trades it summarizes. open/close follow trade-id order.
CREATE TABLE IF NOT EXISTS bars_1s (
    exchange          text        NOT NULL,
    symbol            text        NOT NULL,
    ts                timestamptz NOT NULL,
    open              numeric     NOT NULL,
    high              numeric     NOT NULL,
    low               numeric     NOT NULL,
    close             numeric     NOT NULL,
    volume            numeric     NOT NULL,
    quote_volume      numeric     NOT NULL,
    taker_buy_volume  numeric     NOT NULL,
    taker_buy_quote   numeric     NOT NULL,
    trade_count       integer     NOT NULL,
    first_trade_id    bigint      NOT NULL,
    last_trade_id     bigint      NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
);

-- Messages that could not become trades: kept with the reason, never dropped.
CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial   PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    source        text        NOT NULL,
    exchange      text,
    symbol        text,
    reason        text        NOT NULL,
    payload       text        NOT NULL,
    payload_bytes integer     NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received_at ON dead_letters (received_at);

-- One row per capture session.
CREATE TABLE IF NOT EXISTS capture_runs (
    run_id          bigserial   PRIMARY KEY,
    exchange        text        NOT NULL,
    symbols         text[]      NOT NULL,
    endpoint        text        NOT NULL,
    host            text,
    pid             integer,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at    timestamptz,
    stopped_at      timestamptz,
    status          text        NOT NULL DEFAULT 'running',
    messages        bigint      NOT NULL DEFAULT 0,
    trades_stored   bigint      NOT NULL DEFAULT 0,
    duplicates      bigint      NOT NULL DEFAULT 0,
    dead_letters    bigint      NOT NULL DEFAULT 0,
    reconnects      integer     NOT NULL DEFAULT 0,
    gaps_found      integer     NOT NULL DEFAULT 0,
    gaps_filled     integer     NOT NULL DEFAULT 0,
    backfilled      bigint      NOT NULL DEFAULT 0,
    note            text
);

-- Trade-id gaps seen by a capture: filled by REST backfill, or recorded as lost.
CREATE TABLE IF NOT EXISTS capture_gaps (
    id               bigserial   PRIMARY KEY,
    run_id           bigint      REFERENCES capture_runs(run_id) ON DELETE SET NULL,
    exchange         text        NOT NULL,
    symbol           text        NOT NULL,
    first_missing_id bigint      NOT NULL,
    last_missing_id  bigint      NOT NULL,
    missing          bigint      GENERATED ALWAYS AS (last_missing_id - first_missing_id + 1) STORED,
    detected_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at      timestamptz,
    status           text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'filled', 'unrecoverable')),
    reason           text
);

-- The exchange's own klines, fetched for reconciliation against stored trades.
CREATE TABLE IF NOT EXISTS klines (
    exchange         text        NOT NULL,
    symbol           text        NOT NULL,
    interval         text        NOT NULL,
    open_time        timestamptz NOT NULL,
    close_time       timestamptz NOT NULL,
    open             numeric     NOT NULL,
    high             numeric     NOT NULL,
    low              numeric     NOT NULL,
    close            numeric     NOT NULL,
    volume           numeric     NOT NULL,
    quote_volume     numeric     NOT NULL,
    trade_count      bigint      NOT NULL,
    taker_buy_volume numeric     NOT NULL,
    taker_buy_quote  numeric     NOT NULL,
    fetched_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (exchange, symbol, interval, open_time)
);

-- Read-only role for analysis, made when the connecting user may make roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptolab_reader') THEN
        CREATE ROLE cryptolab_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO cryptolab_reader', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO cryptolab_reader', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO cryptolab_reader', current_schema());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cryptolab_reader not created: the connecting user may not create roles';
END $$;

INSERT INTO schema_version (version, description)
VALUES (1, 'trades (partitioned), bars_1s, dead_letters, capture_runs, capture_gaps, klines, cryptolab_reader')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- version 2
-- bars_1s.price_sq_volume = Σ qty·price² of the second, so VWAP σ bands come from the
-- bars instead of raw trades. An existing database gets the column filled exactly from
-- its stored trades, once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 2) THEN
        ALTER TABLE bars_1s ADD COLUMN IF NOT EXISTS price_sq_volume numeric;
        UPDATE bars_1s b SET price_sq_volume = s.pq2
        FROM (SELECT exchange, symbol,
                     date_trunc('second', trade_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS ts,
                     sum(qty * price * price) AS pq2
              FROM trades GROUP BY 1, 2, 3) s
        WHERE b.exchange = s.exchange AND b.symbol = s.symbol AND b.ts = s.ts;
        UPDATE bars_1s SET price_sq_volume = 0 WHERE price_sq_volume IS NULL;
        ALTER TABLE bars_1s ALTER COLUMN price_sq_volume SET NOT NULL;
        INSERT INTO schema_version (version, description)
        VALUES (2, 'bars_1s.price_sq_volume (sum of qty*price^2) for VWAP bands from bars');
    END IF;
END $$;

-- ---------------------------------------------------------------- version 3
-- History (issue 9). agg_trades keeps Binance aggregate trades as what they are: one
-- row per aggregate with the range of trade ids it covers, so per-minute counts are
-- last_trade_id - first_trade_id + 1, volume/OHLC stay exact and ids inside an
-- aggregate are never gaps. Not partitioned: an aggregate row stands for ~5 trades.
-- history_files records every dump file loaded (one transaction per file, this row
-- in the same transaction), so a day is in or out and a re-run skips what is in.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 3) THEN
        CREATE TABLE IF NOT EXISTS agg_trades (
            exchange        text        NOT NULL,
            symbol          text        NOT NULL,
            agg_id          bigint      NOT NULL,
            price           numeric     NOT NULL CHECK (price > 0),
            qty             numeric     NOT NULL CHECK (qty > 0),
            quote_qty       numeric     GENERATED ALWAYS AS (price * qty) STORED,
            first_trade_id  bigint      NOT NULL,
            last_trade_id   bigint      NOT NULL,
            trade_count     bigint      GENERATED ALWAYS AS (last_trade_id - first_trade_id + 1) STORED,
            trade_time      timestamptz NOT NULL,
            is_buyer_maker  boolean     NOT NULL,
            is_best_match   boolean,
            source          text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
            ingested_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (exchange, symbol, agg_id),
            CHECK (last_trade_id >= first_trade_id)
        );
        CREATE INDEX IF NOT EXISTS agg_trades_time ON agg_trades (exchange, symbol, trade_time);

        CREATE TABLE IF NOT EXISTS history_files (
            id          bigserial   PRIMARY KEY,
            exchange    text        NOT NULL,
            symbol      text        NOT NULL,
            kind        text        NOT NULL CHECK (kind IN ('trades', 'aggTrades', 'klines')),
            interval    text        NOT NULL DEFAULT '',
            period      text        NOT NULL CHECK (period IN ('daily', 'monthly', 'rest')),
            first_day   date        NOT NULL,
            last_day    date        NOT NULL,
            file_name   text        NOT NULL,
            url         text        NOT NULL,
            sha256      text,
            bytes       bigint,
            rows        bigint      NOT NULL,
            stored      bigint      NOT NULL,
            first_id    bigint,
            last_id     bigint,
            mode        text        NOT NULL CHECK (mode IN ('bulk', 'idempotent')),
            loaded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (exchange, symbol, kind, interval, file_name)
        );

        INSERT INTO schema_version (version, description)
        VALUES (3, 'agg_trades (aggregates with first/last trade id), history_files (dump files loaded)');
    END IF;
END $$;

-- ---------------------------------------------------------------- version 4
-- The archive (cryptolab archive, docs/archive.md). archive_days: one row per
-- (exchange, symbol, closed UTC day) of raw trades written to Parquet, with what the
-- file holds (rows, first/last id, exact sums; checked against the database before any
-- drop) and whether the database partition has been dropped since (dropped_at): the
-- readers then take that day from the archive. archive_quality: the quality report of
-- each archived day, computed before the drop and kept here for good.
CREATE TABLE IF NOT EXISTS archive_days (
    exchange       text        NOT NULL,
    symbol         text        NOT NULL,
    day            date        NOT NULL,
    location       text        NOT NULL,
    path           text        NOT NULL,
    rows           bigint      NOT NULL,
    first_trade_id bigint,
    last_trade_id  bigint,
    sum_qty        numeric     NOT NULL,
    sum_quote      numeric     NOT NULL,
    bytes          bigint      NOT NULL,
    exported_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    verified_at    timestamptz,
    dropped_at     timestamptz,
    PRIMARY KEY (exchange, symbol, day)
);

CREATE TABLE IF NOT EXISTS archive_quality (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    day          date        NOT NULL,
    check_name   text        NOT NULL,
    status       text        NOT NULL,
    count        bigint,
    detail       text,
    computed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (exchange, symbol, day, check_name)
);

INSERT INTO schema_version (version, description)
VALUES (4, 'archive_days (raw trade days written to Parquet, verified, dropped), archive_quality')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- version 5
-- Capture across processes and hosts. Capturers sharing this database register in
-- capture_members (heartbeats) and own symbols through capture_leases: a lease is
-- renewed every second and expires `lease_seconds` after its last renewal on the
-- server's clock, so a dead owner's symbols are free again within a bounded time,
-- whatever killed it (kill -9, a host gone, a cut connection). Leases rather than
-- advisory locks: they work through connection poolers and on distributed
-- PostgreSQL, a cut connection cannot hold a lock for a TCP timeout, and the
-- ownership is plain data a psql user can read (capture_status).
CREATE TABLE IF NOT EXISTS capture_members (
    member_id     text        PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    home          text,
    standby       boolean     NOT NULL DEFAULT false,
    requested     text[]      NOT NULL,
    exchange      text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    rows_stored   bigint      NOT NULL DEFAULT 0,
    lag_ms        double precision,
    state         text        NOT NULL DEFAULT 'running'
);

CREATE TABLE IF NOT EXISTS capture_leases (
    exchange      text        NOT NULL,
    symbol        text        NOT NULL,
    owner         text        NOT NULL,
    epoch         bigint      NOT NULL DEFAULT 1,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol)
);

CREATE OR REPLACE VIEW capture_status AS
SELECT m.member_id, m.host, m.pid, m.standby, m.exchange,
       coalesce((SELECT array_agg(l.symbol ORDER BY l.symbol) FROM capture_leases l
                 WHERE l.owner = m.member_id AND l.expires_at > clock_timestamp()), '{}') AS symbols,
       m.requested,
       round(extract(epoch FROM clock_timestamp() - m.heartbeat_at)::numeric, 1) AS heartbeat_age_s,
       m.lag_ms, m.rows_stored, m.state, m.started_at
FROM capture_members m
ORDER BY m.host, m.pid;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 5) THEN
        INSERT INTO schema_version (version, description)
        VALUES (5, 'capture_members, capture_leases, capture_status: capture across processes and hosts');
    END IF;
END $$;

-- ---------------------------------------------------------------- version 6
-- The archive describes and checks itself (docs/archive.md): each archived day also records
-- the SHA-256 of its file (every read checks it; `cryptolab archive --verify` checks them all)
-- and the version of the archive's schema contract the file follows (1: before the contract).
ALTER TABLE archive_days ADD COLUMN IF NOT EXISTS sha256 text;
ALTER TABLE archive_days ADD COLUMN IF NOT EXISTS format integer NOT NULL DEFAULT 1;

INSERT INTO schema_version (version, description)
VALUES (6, 'archive_days.sha256 and .format (the archive contract version of each file)')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- version 7
-- The order book (docs/book.md). One row per depth diff with its levels as arrays, not one
-- row per level: measured (benchmarks/bench_book.py, 2.3M level updates) the array row takes
-- 25 B per level update against 164 B for a row per level (6.5× fewer: one row header and one
-- key per diff instead of per level), and the writer stores ~1.1M level updates/s. Prices and quantities stay exact (numeric[]), in the exchange's
-- order; a quantity of 0 removes the level. From book_snapshots and book_diffs alone the book
-- is rebuilt at any update id the diffs reach continuously from a snapshot; book_gaps records
-- every stretch they do not (a missed diff, a crossed book, a restart) and the snapshot that
-- healed it. quotes keeps every bookTicker (Binance's best bid/ask as of an update id).
-- book_diffs and quotes are partitioned by UTC day like trades (cryptolab_ensure_day_partition, below).
CREATE TABLE IF NOT EXISTS book_diffs (
    exchange         text        NOT NULL,
    symbol           text        NOT NULL,
    first_update_id  bigint      NOT NULL,
    last_update_id   bigint      NOT NULL,
    prev_update_id   bigint,
    event_time       timestamptz NOT NULL,
    received_at      timestamptz,
    bid_price        numeric[]   NOT NULL,
    bid_qty          numeric[]   NOT NULL,
    ask_price        numeric[]   NOT NULL,
    ask_qty          numeric[]   NOT NULL,
    source           text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
    PRIMARY KEY (exchange, symbol, last_update_id, event_time),
    CHECK (first_update_id <= last_update_id),
    CHECK (cardinality(bid_price) = cardinality(bid_qty) AND cardinality(ask_price) = cardinality(ask_qty))
) PARTITION BY RANGE (event_time);
CREATE INDEX IF NOT EXISTS book_diffs_event_time_brin ON book_diffs USING brin (event_time);

CREATE TABLE IF NOT EXISTS book_snapshots (
    exchange         text        NOT NULL,
    symbol           text        NOT NULL,
    last_update_id   bigint      NOT NULL,
    received_at      timestamptz NOT NULL,
    event_time       timestamptz,
    bid_price        numeric[]   NOT NULL,
    bid_qty          numeric[]   NOT NULL,
    ask_price        numeric[]   NOT NULL,
    ask_qty          numeric[]   NOT NULL,
    source           text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
    PRIMARY KEY (exchange, symbol, last_update_id)
);
CREATE INDEX IF NOT EXISTS book_snapshots_received_at ON book_snapshots (exchange, symbol, received_at);

CREATE TABLE IF NOT EXISTS quotes (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    update_id    bigint      NOT NULL,
    received_at  timestamptz NOT NULL,
    event_time   timestamptz,
    bid_price    numeric     NOT NULL CHECK (bid_price > 0),
    bid_qty      numeric     NOT NULL CHECK (bid_qty >= 0),
    ask_price    numeric     NOT NULL CHECK (ask_price > 0),
    ask_qty      numeric     NOT NULL CHECK (ask_qty >= 0),
    source       text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
    PRIMARY KEY (exchange, symbol, update_id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX IF NOT EXISTS quotes_received_at_brin ON quotes USING brin (received_at);

CREATE TABLE IF NOT EXISTS book_gaps (
    id                  bigserial   PRIMARY KEY,
    exchange            text        NOT NULL,
    symbol              text        NOT NULL,
    reason              text        NOT NULL CHECK (reason IN ('gap', 'crossed', 'restart')),
    after_update_id     bigint      NOT NULL,
    before_update_id    bigint,
    missing             bigint      GENERATED ALWAYS AS
                            (CASE WHEN reason <> 'crossed' THEN greatest(before_update_id - after_update_id - 1, 0) END) STORED,
    detected_at         timestamptz NOT NULL,
    snapshot_update_id  bigint,
    healed_at           timestamptz,
    UNIQUE (exchange, symbol, reason, after_update_id)
);

INSERT INTO schema_version (version, description)
VALUES (7, 'book_diffs, book_snapshots, quotes, book_gaps: the order book, exact and rebuildable')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- version 8
-- Binance USD-M futures (docs/futures.md). The market is carried by `exchange`: `binance` is
-- spot (as before), `binance-usdm` the USD-M perpetuals (`simulator` / `simulator-usdm` for the
-- local exchange's synthetic markets), so futures aggregate trades go into `agg_trades` beside
-- spot and every key, partition, lease and archive path already tells the markets apart.
-- The rows only futures have get their own tables, exact NUMERIC, keyed so that a row offered
-- twice is stored once:
--   mark_prices     @markPrice@1s: mark, index, estimated settle price, the funding rate of the
--                   coming settlement and its time. One row per symbol per second (86,400 a day
--                   per symbol, 4.3 M a day for 50 symbols): range-partitioned by UTC day like
--                   trades, so old days are dropped or archived by the partition.
--   funding_rates   settled funding (fundingRate dumps, /fapi/v1/fundingRate): 3 a day per symbol,
--                   not partitioned. mark_price comes with REST only (dumps hold none).
--   liquidations    @forceOrder: Binance sends at most one per symbol per second (the latest of
--                   the second), so at most 86,400 a day per symbol and usually a few hundred:
--                   not partitioned. Binance gives them no id: the key is the order's time,
--                   side, price and quantity.
--   open_interest   REST polls (/fapi/v1/openInterest), /futures/data/openInterestHist and the
--                   `metrics` dumps (5-minute rows with long/short ratios): not partitioned.
--   mark_klines     markPriceKlines dumps / REST (OHLC of the mark price; no volume).
-- history_files takes the futures dump kinds too.
CREATE OR REPLACE FUNCTION cryptolab_ensure_day_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('%s_%s', parent, to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(quote_ident(current_schema()) || '.' || part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('cryptolab_ensure_partition:' || parent));
    IF to_regclass(quote_ident(current_schema()) || '.' || part) IS NOT NULL THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       part, parent,
                       (day::timestamp AT TIME ZONE 'UTC'),
                       ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    EXCEPTION WHEN duplicate_table THEN
        RETURN false;
    END;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION cryptolab_ensure_day_partitions(parent text, first timestamptz, last timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE cryptolab_ensure_day_partition(parent, d::date))::integer
    FROM generate_series((first AT TIME ZONE 'UTC')::date,
                         (last  AT TIME ZONE 'UTC')::date,
                         interval '1 day') AS d
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 8) THEN
        CREATE TABLE IF NOT EXISTS mark_prices (
            exchange           text        NOT NULL,
            symbol             text        NOT NULL,
            event_time         timestamptz NOT NULL,
            mark_price         numeric     NOT NULL CHECK (mark_price > 0),
            index_price        numeric,
            est_settle_price   numeric,
            funding_rate       numeric,
            next_funding_time  timestamptz,
            received_at        timestamptz,
            ingested_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
            source             text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
            PRIMARY KEY (exchange, symbol, event_time)
        ) PARTITION BY RANGE (event_time);

        CREATE TABLE IF NOT EXISTS funding_rates (
            exchange        text        NOT NULL,
            symbol          text        NOT NULL,
            funding_time    timestamptz NOT NULL,
            funding_rate    numeric     NOT NULL,
            mark_price      numeric     CHECK (mark_price > 0),
            interval_hours  integer,
            source          text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
            ingested_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (exchange, symbol, funding_time)
        );

        CREATE TABLE IF NOT EXISTS liquidations (
            exchange         text        NOT NULL,
            symbol           text        NOT NULL,
            trade_time       timestamptz NOT NULL,
            side             text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
            order_type       text        NOT NULL,
            time_in_force    text,
            price            numeric     NOT NULL CHECK (price > 0),
            avg_price        numeric     NOT NULL CHECK (avg_price >= 0),
            qty              numeric     NOT NULL CHECK (qty > 0),
            last_filled_qty  numeric     NOT NULL CHECK (last_filled_qty >= 0),
            filled_qty       numeric     NOT NULL CHECK (filled_qty >= 0),
            status           text        NOT NULL,
            event_time       timestamptz,
            received_at      timestamptz,
            ingested_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
            source           text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
            PRIMARY KEY (exchange, symbol, trade_time, side, price, qty)
        );

        CREATE TABLE IF NOT EXISTS open_interest (
            exchange                  text        NOT NULL,
            symbol                    text        NOT NULL,
            ts                        timestamptz NOT NULL,
            open_interest             numeric     NOT NULL CHECK (open_interest >= 0),
            open_interest_value       numeric,
            toptrader_ls_ratio_count  numeric,
            toptrader_ls_ratio_sum    numeric,
            ls_ratio_count            numeric,
            taker_ls_vol_ratio        numeric,
            source                    text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
            ingested_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (exchange, symbol, ts)
        );

        CREATE TABLE IF NOT EXISTS mark_klines (
            exchange    text        NOT NULL,
            symbol      text        NOT NULL,
            interval    text        NOT NULL,
            open_time   timestamptz NOT NULL,
            close_time  timestamptz NOT NULL,
            open        numeric     NOT NULL,
            high        numeric     NOT NULL,
            low         numeric     NOT NULL,
            close       numeric     NOT NULL,
            fetched_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (exchange, symbol, interval, open_time)
        );

        ALTER TABLE history_files DROP CONSTRAINT IF EXISTS history_files_kind_check;
        ALTER TABLE history_files ADD CONSTRAINT history_files_kind_check
            CHECK (kind IN ('trades', 'aggTrades', 'klines', 'markPriceKlines', 'fundingRate', 'metrics'));

        INSERT INTO schema_version (version, description)
        VALUES (8, 'USD-M futures: mark_prices (by day), funding_rates, liquidations, open_interest, mark_klines; '
                   'history_files takes the futures dump kinds');
    END IF;
END $$;

-- ---------------------------------------------------------------- version 9
-- Book days in the archive (docs/archive.md, "Book days"): one row per (table, exchange,
-- symbol, closed UTC day) of book_diffs, quotes, book_snapshots or book_gaps written to
-- Parquet, with what the file holds (rows, first/last update id, a content checksum: the sum
-- of a 60-bit MD5 prefix of each row's text, computed here and over the file) and whether the
-- database's rows of that day were dropped since (dropped_at; gaps are never dropped).
CREATE TABLE IF NOT EXISTS archive_book_days (
    kind        text        NOT NULL CHECK (kind IN ('book_diffs', 'quotes', 'book_snapshots', 'book_gaps')),
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    day         date        NOT NULL,
    location    text        NOT NULL,
    path        text        NOT NULL,
    rows        bigint      NOT NULL,
    first_id    bigint,
    last_id     bigint,
    checksum    numeric     NOT NULL,
    bytes       bigint      NOT NULL,
    sha256      text        NOT NULL,
    format      integer     NOT NULL,
    exported_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    verified_at timestamptz,
    dropped_at  timestamptz,
    PRIMARY KEY (kind, exchange, symbol, day)
);

INSERT INTO schema_version (version, description)
VALUES (9, 'archive_book_days: closed days of the order book in the archive, verified, dropped')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- version 10
-- The top of the book after every diff a synced book applied (docs/book.md, "Tops"): derived,
-- not published, so that book_top reads one row per update instead of rebuilding the book from
-- ~45 level updates per diff (benchmarks/bench_book_read.py). Written by the capture and the
-- recording loader beside the diffs, in the same transaction; a side is null when empty.
-- book_top uses them only where they cover every diff of a run it rebuilds, and rebuilds the
-- rest (tops are never the only copy of anything: dropping them loses nothing). Partitioned by
-- UTC day like book_diffs; the archive drops a day's tops with the day's diffs.
CREATE TABLE IF NOT EXISTS book_tops (
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    update_id   bigint      NOT NULL,
    event_time  timestamptz NOT NULL,
    bid_price   numeric     CHECK (bid_price > 0),
    bid_qty     numeric     CHECK (bid_qty > 0),
    ask_price   numeric     CHECK (ask_price > 0),
    ask_qty     numeric     CHECK (ask_qty > 0),
    source      text        NOT NULL CHECK (source IN ('live', 'backfill', 'replay', 'simulator')),
    PRIMARY KEY (exchange, symbol, update_id, event_time),
    CHECK ((bid_price IS NULL) = (bid_qty IS NULL) AND (ask_price IS NULL) = (ask_qty IS NULL))
) PARTITION BY RANGE (event_time);

INSERT INTO schema_version (version, description)
VALUES (10, 'book_tops: the best bid and ask after every applied diff, read by book_top')
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- server-side functions
-- The writers' server-side functions live in sql/schema/*.sql (plain SQL, idempotent, each
-- documented at its top): apply_schema runs them after this file, in name order; in psql run
-- them after it too:  for f in sql/schema/*.sql; do psql "$DSN" -f "$f"; done
-- A writer uses a function only where the database has it.

-- ---------------------------------------------------------------- version 11+
-- Append later changes here as idempotent steps, each closed by its own
-- INSERT INTO schema_version.
