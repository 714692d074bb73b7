-- Goals and imported event totals (issue 19).
-- Goals: what counts as a conversion on a site, managed in the admin pages and
-- API. A goal is a page (`page`, `*` matching any characters) or a custom event (`event`,
-- optionally with one property's value). One row per change; deleted = 1 a removal; the
-- newest version of an id wins.
CREATE TABLE IF NOT EXISTS goals (
    id String,
    version UInt64,
    deleted UInt8,
    site String,
    name String,
    page String,
    event String,
    prop String,
    value String,
    created_by String,
    created_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- Imported totals of custom events (`tally import-counters --downloads`): the downloads a
-- portal counted before Tally, per file. The newest import of a site is the one that counts.
CREATE TABLE IF NOT EXISTS event_baselines (
    site String,
    import_id UInt64,
    name String,
    target String,
    events UInt64,
    imported_at DateTime('UTC')
) ENGINE = MergeTree
ORDER BY (site, import_id, name, target);
