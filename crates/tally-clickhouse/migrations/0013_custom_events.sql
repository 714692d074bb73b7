-- Custom events (issue 19): downloads, outbound links and the site's own events, kind
-- 'event' with a name, the target URL (the file downloaded, the link followed) and up to
-- ten string properties, kept as two arrays of the same length (18.16 has no Map type).
-- The statistics read them from `events` like the other raw reports; the live counts of
-- downloads come from Redis.
ALTER TABLE events MODIFY COLUMN kind Enum8('pageview' = 1, 'ping' = 2, 'leave' = 3, 'bot' = 4, 'repeat' = 5, 'unverified' = 6, 'event' = 7);

ALTER TABLE events ADD COLUMN name String, ADD COLUMN target String, ADD COLUMN prop_keys Array(String), ADD COLUMN prop_values Array(String);

-- Per event name, target and local day: the events and their visitors' states. The
-- statistics of unfiltered ranges and `tally rebuild` (the live counts of downloads) read
-- it; it outlives the raw events (retention.raw_days), as the page rollups do.
CREATE TABLE IF NOT EXISTS event_days (
    site String,
    name String,
    target String,
    day Date,
    events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, name, target, day)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_days_mv TO event_days AS
SELECT
    site,
    name,
    target,
    day,
    sumState(toUInt64(1)) AS events,
    uniqCombinedState(visitor) AS visitors
FROM events
WHERE kind = 'event'
GROUP BY site, name, target, day
