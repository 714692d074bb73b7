-- Imported counters get an import id: an import replaces the previous one of its site as a
-- whole (pages missing from the new file no longer count), and two imports in the same
-- second stay apart. The table of migration 1 was never written to by any release.
DROP TABLE IF EXISTS counter_baselines;

CREATE TABLE IF NOT EXISTS counter_baselines (
    site String,
    import_id UInt64,
    page String,
    title String,
    views UInt64,
    visits UInt64,
    imported_at DateTime('UTC')
) ENGINE = MergeTree
ORDER BY (site, import_id, page);
