-- Hours in each site's own time zone, and repeated views.
--
-- The hourly rollups were keyed by UTC hour (toStartOfHour(ts)). A local hour of a site in a
-- zone that is not a whole number of hours from UTC (Asia/Kolkata +05:30, Asia/Kathmandu
-- +05:45) starts at half or a quarter past a UTC hour, so its series points found nothing
-- and its days' bounds cut UTC hours in two. Now the writer fills `hour` with the first
-- instant of the event's local hour (a UTC DateTime), as it fills `day` with the local date,
-- and the hourly views group by that column. For whole-hour zones it is the same instant as
-- before, so the rows already stored keep their meaning; rows of other zones stored before
-- this migration stay on their UTC hour, which the statistics show in the local hour holding
-- its start (the rule migration 5 used for their days). A writer that does not know the
-- column leaves the UTC hour.
--
-- 'repeat' events are page views that repeat the visitor's last within
-- tracking.repeat_view_window (reloads): not views, counted per hour in repeat_hourly.
ALTER TABLE events ADD COLUMN hour DateTime('UTC') DEFAULT toStartOfHour(ts);

ALTER TABLE events MODIFY COLUMN kind Enum8('pageview' = 1, 'ping' = 2, 'leave' = 3, 'bot' = 4, 'repeat' = 5);

DROP TABLE IF EXISTS site_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS site_hourly_mv TO site_hourly AS
SELECT
    site,
    hour,
    sumState(toUInt64(1)) AS views,
    sumState(toUInt64(new_visit)) AS visits,
    uniqCombinedState(visitor) AS visitors
FROM events
WHERE kind = 'pageview'
GROUP BY site, hour;

DROP TABLE IF EXISTS visit_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_hourly_mv TO visit_hourly AS
SELECT
    site,
    hour,
    sumState(toUInt64(visit_seq = 1)) AS started,
    sumState(toUInt64(visit_seq = 2)) AS continued,
    sumState(toUInt64(gap_ms)) AS gap_ms
FROM events
WHERE kind != 'bot'
GROUP BY site, hour;

DROP TABLE IF EXISTS bots_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS bots_hourly_mv TO bots_hourly AS
SELECT site, hour, sumState(toUInt64(1)) AS hits
FROM events
WHERE kind = 'bot'
GROUP BY site, hour;

CREATE TABLE IF NOT EXISTS repeat_hourly (
    site String,
    hour DateTime('UTC'),
    hits AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS repeat_hourly_mv TO repeat_hourly AS
SELECT site, hour, sumState(toUInt64(1)) AS hits
FROM events
WHERE kind = 'repeat'
GROUP BY site, hour;
