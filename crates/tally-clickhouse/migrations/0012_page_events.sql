-- Engaged time and bounce rate of the top pages without reading every event of the range.
-- Top pages shows 20 pages; their engagement read from `events` (ordered by site and time)
-- read the page of every event of the range to keep the shown pages' few: 290 ms of a
-- 90-day query on 10 million events, on top of the 150 ms of the ranking. `page_events`
-- holds the same rows ordered by page, so the shown pages' rows are read alone (70 ms), and
-- `second_views` the visits' second page views, whose sessions are the visits that did not
-- bounce (100 ms with both, measured by hand on the benchmark's history).
--
-- Both are fed from `events` by materialized views; `tally migrate` copies the events already
-- stored once, leaving out those the views already hold (see migrate.rs, HistoryCopy).
-- Retention drops their monthly partitions with those of `events`.
CREATE TABLE IF NOT EXISTS page_events (
    site String,
    page String,
    ts DateTime('UTC'),
    event_id String,
    -- 1: a page view; 0: a heartbeat or a leave.
    is_view UInt8,
    session UInt64,
    visit_seq UInt16,
    gap_ms UInt32
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, page, ts)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS page_events_mv TO page_events AS
SELECT site, page, ts, event_id, toUInt8(kind = 'pageview') AS is_view, session, visit_seq, gap_ms
FROM events
WHERE kind IN ('pageview', 'ping', 'leave');

CREATE TABLE IF NOT EXISTS second_views (
    site String,
    ts DateTime('UTC'),
    event_id String,
    session UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, ts);

CREATE MATERIALIZED VIEW IF NOT EXISTS second_views_mv TO second_views AS
SELECT site, ts, event_id, session
FROM events
WHERE kind = 'pageview' AND visit_seq = 2
