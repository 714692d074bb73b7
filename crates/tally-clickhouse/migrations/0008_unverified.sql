-- Pixel hits that name no page of the site: GET /collect.gif with neither Referer nor
-- Origin (a third-party page can embed the pixel with referrerpolicy="no-referrer", and a
-- script can send it from anywhere). They are accepted but not counted, like crawler hits:
-- kept as 'unverified' events without visitor or page, counted per local hour in
-- unverified_hourly for the figure beside "bots filtered".

ALTER TABLE events MODIFY COLUMN kind Enum8('pageview' = 1, 'ping' = 2, 'leave' = 3, 'bot' = 4, 'repeat' = 5, 'unverified' = 6);

CREATE TABLE IF NOT EXISTS unverified_hourly (
    site String,
    hour DateTime('UTC'),
    hits AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS unverified_hourly_mv TO unverified_hourly AS
SELECT site, hour, sumState(toUInt64(1)) AS hits
FROM events
WHERE kind = 'unverified'
GROUP BY site, hour;
