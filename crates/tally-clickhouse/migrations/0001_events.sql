-- Raw events, one row per accepted event. event_id is "<partition>-<stream id>": unique, and
-- what the worker checks before re-inserting entries it took over from a dead worker.
CREATE TABLE IF NOT EXISTS events (
    event_id String,
    site String,
    kind Enum8('pageview' = 1, 'ping' = 2, 'leave' = 3, 'bot' = 4),
    ts DateTime('UTC'),
    ts_ms UInt16,
    page String,
    path String,
    title String,
    referrer_host String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    browser String,
    os String,
    device String,
    country String,
    visitor UInt64,
    session UInt64,
    new_visit UInt8,
    tab String,
    width UInt16
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, ts, event_id);

-- Counts carried over from a previous system (tally import-counters); added to live totals.
-- page = '' holds the site-wide baseline. The newest row of a (site, page) wins.
CREATE TABLE IF NOT EXISTS counter_baselines (
    site String,
    page String,
    title String,
    views UInt64,
    visits UInt64,
    imported_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (site, page);
