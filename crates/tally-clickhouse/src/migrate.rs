//! Versioned schema migrations, applied in order and recorded in `schema_migrations`.
//!
//! Each file in `migrations/` is applied once; an applied file is never edited, a change is a
//! new file. Statements use `IF NOT EXISTS` where the server allows it, and "already exists"
//! answers count as done, so two processes migrating at the same moment (a worker and an api
//! starting together) both succeed.

use tracing::info;

use crate::{Db, Error, Result, base_client, sqllog::Query};

/// Every migration: version, name, SQL (statements separated by `;`).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "events", include_str!("../migrations/0001_events.sql")),
    (2, "rollups", include_str!("../migrations/0002_rollups.sql")),
    (
        3,
        "baselines",
        include_str!("../migrations/0003_baselines.sql"),
    ),
    (
        4,
        "visit_rollup",
        include_str!("../migrations/0004_visit_rollup.sql"),
    ),
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = MergeTree ORDER BY version";

impl Db {
    /// Creates the database if needed and applies every pending migration. Returns the
    /// versions applied by this call.
    pub async fn migrate(&self) -> Result<Vec<u32>> {
        // The database name is a validated identifier (settings), so it can be written into
        // the statement; DDL cannot bind identifiers.
        let create_db = format!("CREATE DATABASE IF NOT EXISTS {}", self.database());
        Query::new(base_client(&self.settings).query(&create_db))
            .execute()
            .await?;
        self.query(CREATE_MIGRATIONS_TABLE).execute().await?;
        let applied: Vec<u32> = self
            .query("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await?;
        let mut done = Vec::new();
        for &(version, name, sql) in MIGRATIONS {
            if applied.contains(&version) {
                continue;
            }
            for statement in statements(sql) {
                match self.query(statement).execute().await {
                    Ok(()) => {}
                    // Another process applying the same migration at the same moment got
                    // there first (18.16 knows no ADD COLUMN IF NOT EXISTS).
                    Err(e) if already_done(&e) => {
                        info!(
                            version,
                            name, "statement already applied by another process"
                        );
                    }
                    Err(source) => {
                        return Err(Error::Migration {
                            version,
                            name,
                            source,
                        });
                    }
                }
            }
            self.query(
                "INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()",
            )
            .bind(version)
            .bind(name)
            .execute()
            .await?;
            info!(version, name, "applied migration");
            done.push(version);
        }
        Ok(done)
    }

    /// Versions recorded as applied.
    pub async fn applied_migrations(&self) -> Result<Vec<u32>> {
        Ok(self
            .query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await?)
    }
}

/// Whether `e` says the statement's effect is already there: DUPLICATE_COLUMN (15),
/// TABLE_ALREADY_EXISTS (57), or ILLEGAL_COLUMN (44) "already exists" (18.16's answer to a
/// second ADD COLUMN).
fn already_done(e: &clickhouse::error::Error) -> bool {
    match e {
        clickhouse::error::Error::BadResponse(text) => match crate::error_code(text) {
            Some(15 | 57) => true,
            Some(44) => text.contains("already exists"),
            _ => false,
        },
        _ => false,
    }
}

/// The statements of a migration file: split on `;` at line ends, `--` comment lines dropped.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n").map(str::trim).filter(|s| {
        s.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_split_into_statements() {
        for (i, (version, _, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(statements(sql).count() >= 1);
            for s in statements(sql) {
                assert!(!s.ends_with(';'), "{s}");
            }
        }
        assert_eq!(
            statements(include_str!("../migrations/0001_events.sql")).count(),
            2
        );
    }
}
