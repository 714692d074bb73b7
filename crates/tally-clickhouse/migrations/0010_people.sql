-- People: accounts with a login name and a password (argon2id, in PHC form: never the
-- password), a role (owner, admin, viewer) and, for admins and viewers, their sites. Like
-- managed_sites, one row per change, the newest version counts, deleted = 1 a removal. An
-- invited person has an invitation (the SHA-256 of its one-time link's secret, never the
-- secret) until they set their password.
CREATE TABLE IF NOT EXISTS people (
    name String,
    version UInt64,
    deleted UInt8,
    role String,
    sites Array(String),
    password_hash String,
    invite_hash String,
    invite_expires DateTime('UTC'),
    changed_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY name;

-- Shared dashboards: a read-only link to one site's statistics page, for people without an
-- account. Stored: the SHA-256 of the link's secret (never the secret), and an argon2id
-- hash when the link also asks for a password. One row per change; deleted = 1 a revocation.
CREATE TABLE IF NOT EXISTS shares (
    id String,
    version UInt64,
    deleted UInt8,
    site String,
    secret_hash String,
    password_hash String,
    created_by String,
    created_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- Personal API tokens: made by a person in the admin pages, shown once, stored as their
-- SHA-256 (never the token); scoped to some of the person's sites (none: all of them) and
-- read-only or not. One row per change; deleted = 1 a revocation.
CREATE TABLE IF NOT EXISTS api_tokens (
    id String,
    version UInt64,
    deleted UInt8,
    person String,
    label String,
    token_hash String,
    sites Array(String),
    read_only UInt8,
    created_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY id;
