-- Sites managed live (created, edited and deleted in the admin pages or the admin API) and
-- the record of who changed what. These are the durable copy: Redis holds only an announced
-- snapshot, so losing Redis loses no site.
--
-- A site is one row per change; the newest version of an id is the site (read with argMax,
-- so reads are right before ClickHouse merges the old versions away), and a deletion is a
-- row with deleted = 1. On a ClickHouse cluster both tables are Replicated* on every node
-- (docs/operations.md), not sharded: every process reads all of them.
CREATE TABLE IF NOT EXISTS managed_sites (
    id String,
    version UInt64,
    deleted UInt8,
    name String,
    domains Array(String),
    timezone String,
    public_counters UInt8,
    changed_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS audit_log (
    at DateTime('UTC'),
    seq UInt64,
    actor String,
    action String,
    target String,
    detail String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, seq);
