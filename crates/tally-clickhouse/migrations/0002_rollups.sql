-- Rollups, fed by materialized views on every insert into events; statistics read these,
-- never the raw table. All are hourly (UTC hours): a day in any whole-hour time zone is a
-- whole number of hours, so per-day figures in the site's time zone stay exact.
-- Unique visitors are uniqCombined states, merged at query time (HyperLogLog family).

CREATE TABLE IF NOT EXISTS site_hourly (
    site String,
    hour DateTime('UTC'),
    views AggregateFunction(sum, UInt64),
    visits AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS site_hourly_mv TO site_hourly AS
SELECT
    site,
    toStartOfHour(ts) AS hour,
    sumState(toUInt64(1)) AS views,
    sumState(toUInt64(new_visit)) AS visits,
    uniqCombinedState(visitor) AS visitors
FROM events
WHERE kind = 'pageview'
GROUP BY site, hour;

CREATE TABLE IF NOT EXISTS page_hourly (
    site String,
    page String,
    hour DateTime('UTC'),
    path AggregateFunction(anyLast, String),
    title AggregateFunction(anyLast, String),
    views AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour, page);

CREATE MATERIALIZED VIEW IF NOT EXISTS page_hourly_mv TO page_hourly AS
SELECT
    site,
    page,
    toStartOfHour(ts) AS hour,
    anyLastState(path) AS path,
    anyLastState(title) AS title,
    sumState(toUInt64(1)) AS views,
    uniqCombinedState(visitor) AS visitors
FROM events
WHERE kind = 'pageview'
GROUP BY site, page, hour;

-- One table for every dimension: dim is referrer, browser, os, device or country.
CREATE TABLE IF NOT EXISTS dimension_hourly (
    site String,
    dim String,
    name String,
    hour DateTime('UTC'),
    views AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, dim, hour, name);

CREATE MATERIALIZED VIEW IF NOT EXISTS dimension_hourly_mv TO dimension_hourly AS
SELECT
    site,
    tupleElement(d, 1) AS dim,
    tupleElement(d, 2) AS name,
    toStartOfHour(ts) AS hour,
    sumState(toUInt64(1)) AS views,
    uniqCombinedState(visitor) AS visitors
FROM events
ARRAY JOIN [('referrer', referrer_host), ('browser', browser), ('os', os), ('device', device), ('country', country)] AS d
WHERE kind = 'pageview'
GROUP BY site, dim, name, hour;

-- Per visit (session): first and last event (pings included) and its page views; a visit
-- may span several rows (days, insert blocks), merged by session at query time.
CREATE TABLE IF NOT EXISTS sessions (
    site String,
    day Date,
    session UInt64,
    first_ts AggregateFunction(min, DateTime('UTC')),
    last_ts AggregateFunction(max, DateTime('UTC')),
    pageviews AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, session);

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT
    site,
    toDate(ts) AS day,
    session,
    minState(ts) AS first_ts,
    maxState(ts) AS last_ts,
    sumState(toUInt64(kind = 'pageview')) AS pageviews
FROM events
WHERE kind != 'bot' AND session != 0
GROUP BY site, day, session;

CREATE TABLE IF NOT EXISTS bots_hourly (
    site String,
    hour DateTime('UTC'),
    hits AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS bots_hourly_mv TO bots_hourly AS
SELECT site, toStartOfHour(ts) AS hour, sumState(toUInt64(1)) AS hits
FROM events
WHERE kind = 'bot'
GROUP BY site, hour;
