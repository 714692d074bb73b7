-- Page rollups with 256-row index granules. Top pages ranks every page of the range, then
-- reads the path, title, views and visitor states of the few pages shown. With ClickHouse's
-- default 8,192-row granules, each shown page cost a whole granule: 20 pages deserialised
-- about 160,000 visitor states to keep 1,800 of them, most of a 90-day query's time
-- (measured on 10 million events: 245 ms with 8,192-row granules, 150 ms with 256, 170 ms
-- with 64 or 1,024). The granule size is fixed when a table is made, hence a new table.
--
-- page_days replaces page_daily: it gets page_daily's history when `tally migrate` has run
-- this file (a copy made once, like migration 5's), and page_daily is no longer fed.
-- page_hourly and dimension_hourly stay: they are what a repeat of migration 5's copy reads.
CREATE TABLE IF NOT EXISTS page_days (
    site String,
    page String,
    day Date,
    path AggregateFunction(anyLast, String),
    title AggregateFunction(anyLast, String),
    views AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqCombined, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, page, day)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS page_days_mv TO page_days AS
SELECT
    site,
    page,
    day,
    anyLastState(path) AS path,
    anyLastState(title) AS title,
    sumState(toUInt64(1)) AS views,
    uniqCombinedState(visitor) AS visitors
FROM events
WHERE kind = 'pageview'
GROUP BY site, page, day;

DROP TABLE IF EXISTS page_daily_mv;
