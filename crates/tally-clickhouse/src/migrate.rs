//! Versioned schema migrations, applied in order and recorded in `schema_migrations`.
//!
//! Each file in `migrations/` is applied once; an applied file is never edited, a change is a
//! new file. Statements use `IF NOT EXISTS` where the server allows it, and "already exists"
//! answers count as done, so two processes migrating at the same moment (a worker and an api
//! starting together) both succeed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use tally_core::settings::SiteSettings;
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
    (
        5,
        "daily_rollups",
        include_str!("../migrations/0005_daily_rollups.sql"),
    ),
    (
        6,
        "page_days",
        include_str!("../migrations/0006_page_days.sql"),
    ),
    (
        7,
        "local_hours",
        include_str!("../migrations/0007_local_hours.sql"),
    ),
    (
        8,
        "unverified",
        include_str!("../migrations/0008_unverified.sql"),
    ),
    (
        9,
        "directory",
        include_str!("../migrations/0009_directory.sql"),
    ),
    (
        10,
        "people_shares_tokens",
        include_str!("../migrations/0010_people.sql"),
    ),
    (
        11,
        "places_languages",
        include_str!("../migrations/0011_places_languages.sql"),
    ),
    (
        12,
        "page_events",
        include_str!("../migrations/0012_page_events.sql"),
    ),
    (
        13,
        "custom_events",
        include_str!("../migrations/0013_custom_events.sql"),
    ),
    (14, "goals", include_str!("../migrations/0014_goals.sql")),
];

/// How long a process waits for a migration's history copy that another process is making
/// before it stops with an error.
pub const COPY_WAIT: Duration = Duration::from_secs(600);

/// A migration that copies history into the tables it made, once, by one process: the
/// process that creates `marker` copies and then adds a row to it; every other process waits
/// for that row.
struct HistoryCopy {
    version: u32,
    marker: &'static str,
    /// What is copied, for messages.
    what: &'static str,
    from: CopySource,
}

/// Where a history copy reads from.
enum CopySource {
    /// Migration 5: the hourly rollups onto local days ([`DAILY_BACKFILL`]).
    HourlyRollups,
    /// Migration 6: `page_daily` as it is into `page_days`.
    PageDaily,
    /// Migration 12: the events already stored into `page_events` and `second_views`.
    PageEvents,
}

const HISTORY_COPIES: &[HistoryCopy] = &[
    HistoryCopy {
        version: 5,
        marker: "daily_backfill",
        what: "the hourly history into the daily rollups",
        from: CopySource::HourlyRollups,
    },
    HistoryCopy {
        version: 6,
        marker: "page_days_copy",
        what: "the daily page history into page_days",
        from: CopySource::PageDaily,
    },
    HistoryCopy {
        version: 12,
        marker: "page_events_copy",
        what: "the stored events into page_events and second_views",
        from: CopySource::PageEvents,
    },
];

/// The hourly rollups whose history migration 5 copies into daily ones: from, into (with its
/// columns), the grouping keys and the states merged per day.
const DAILY_BACKFILL: &[(&str, &str, &str, &str)] = &[
    (
        "site_hourly",
        "site_daily (site, day, views, visits, visitors)",
        "site, day",
        "sumMergeState(views), sumMergeState(visits), uniqCombinedMergeState(visitors)",
    ),
    (
        "page_hourly",
        "page_daily (site, page, day, path, title, views, visitors)",
        "site, page, day",
        "anyLastMergeState(path), anyLastMergeState(title), sumMergeState(views), \
         uniqCombinedMergeState(visitors)",
    ),
    (
        "dimension_hourly",
        "dimension_daily (site, dim, name, day, views, visitors)",
        "site, dim, name, day",
        "sumMergeState(views), uniqCombinedMergeState(visitors)",
    ),
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = MergeTree ORDER BY version";

impl Db {
    /// Creates the database if needed and applies every pending migration. Returns the
    /// versions applied by this call. `sites` gives each site's time zone, for migrations
    /// that regroup history by local day (a site missing there is taken as UTC).
    pub async fn migrate(&self, sites: &[SiteSettings]) -> Result<Vec<u32>> {
        self.migrate_to(sites, u32::MAX).await
    }

    /// Like [`migrate`](Self::migrate), stopping after version `last` (to test upgrades).
    pub async fn migrate_to(&self, sites: &[SiteSettings], last: u32) -> Result<Vec<u32>> {
        self.migrate_waiting(sites, last, COPY_WAIT).await
    }

    /// Like [`migrate_to`](Self::migrate_to), waiting at most `copy_wait` for a copy of the
    /// daily history that another process started (see [`COPY_WAIT`]).
    pub async fn migrate_waiting(
        &self,
        sites: &[SiteSettings],
        last: u32,
        copy_wait: Duration,
    ) -> Result<Vec<u32>> {
        // The database name is a validated identifier (settings), so it can be written into
        // the statement; DDL cannot bind identifiers.
        let create_db = match &self.cluster {
            Some(cluster) => cluster.create_database(),
            None => format!("CREATE DATABASE IF NOT EXISTS {}", self.database()),
        };
        Query::new(base_client(&self.settings).query(&create_db))
            .with_setting(
                "distributed_ddl_task_timeout",
                crate::cluster::DDL_WAIT.as_secs().to_string(),
            )
            .execute()
            .await?;
        self.run_ddl(CREATE_MIGRATIONS_TABLE).await?;
        let applied: Vec<u32> = self
            .query("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await?;
        let mut done = Vec::new();
        for &(version, name, sql) in MIGRATIONS {
            if applied.contains(&version) || version > last {
                continue;
            }
            for statement in statements(sql) {
                match self.run_ddl_patiently(statement).await {
                    Ok(()) => {}
                    // Another process applying the same migration at the same moment got
                    // there first (18.16 knows no ADD COLUMN IF NOT EXISTS).
                    Err(e) if already_done(&e) => {
                        info!(
                            version,
                            name, "statement already applied by another process"
                        );
                    }
                    Err(cause) => {
                        return Err(Error::Migration {
                            version,
                            name,
                            cause,
                        });
                    }
                }
            }
            if let Some(copy) = HISTORY_COPIES.iter().find(|c| c.version == version) {
                self.copy_once(copy, sites, copy_wait)
                    .await
                    .map_err(|cause| Error::Migration {
                        version,
                        name,
                        cause,
                    })?;
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

    /// Runs a migration statement; one that fails for another reason than "already done" is
    /// tried again (five times, half a second apart) before the error counts: another
    /// process applying the same migration may be between the statements this one found
    /// done and the one it needs (a view over an enum value that process is adding).
    async fn run_ddl_patiently(&self, statement: &str) -> Result<(), clickhouse::error::Error> {
        let mut tries = 0;
        loop {
            match self.run_ddl(statement).await {
                Err(e) if !already_done(&e) && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                result => return result,
            }
        }
    }

    /// Makes `copy` once. Only the process that creates the marker table copies, so two
    /// processes migrating at once do not count twice; it adds a row to the marker when the
    /// copy is whole. Any other process waits for that row (at most `copy_wait`) before it
    /// records the migration as applied: a copy whose process stopped halfway is never taken
    /// for a finished one.
    async fn copy_once(
        &self,
        copy: &HistoryCopy,
        sites: &[SiteSettings],
        copy_wait: Duration,
    ) -> std::result::Result<(), clickhouse::error::Error> {
        // The marker's name is a constant of this file, never input.
        let create = format!("CREATE TABLE {} (done UInt8) ENGINE = Log", copy.marker);
        match self.run_ddl(&create).await {
            Ok(()) => {}
            Err(e) if already_done(&e) => return self.wait_for_copy(copy, copy_wait).await,
            Err(e) => return Err(e),
        }
        match copy.from {
            CopySource::HourlyRollups => self.backfill_daily(sites).await?,
            CopySource::PageDaily => {
                self.query(
                    "INSERT INTO page_days (site, page, day, path, title, views, visitors) \
                     SELECT site, page, day, path, title, views, visitors FROM page_daily",
                )
                .execute()
                .await?
            }
            // The views feed both tables from the moment they exist; what they already hold
            // (events inserted since) is left out, so nothing is there twice.
            CopySource::PageEvents => {
                self.query(
                    "INSERT INTO page_events \
                     SELECT site, page, ts, event_id, toUInt8(kind = 'pageview'), session, visit_seq, gap_ms \
                     FROM events WHERE kind IN ('pageview', 'ping', 'leave') \
                     AND event_id NOT IN (SELECT event_id FROM page_events)",
                )
                .execute()
                .await?;
                self.query(
                    "INSERT INTO second_views SELECT site, ts, event_id, session FROM events \
                     WHERE kind = 'pageview' AND visit_seq = 2 \
                     AND event_id NOT IN (SELECT event_id FROM second_views)",
                )
                .execute()
                .await?
            }
        }
        self.query(&format!("INSERT INTO {} (done) SELECT 1", copy.marker))
            .execute()
            .await?;
        info!(version = copy.version, "copied {}", copy.what);
        Ok(())
    }

    /// Copies the hourly page, dimension and site history into the daily rollups of
    /// migration 5, each hour counted on its date in the site's zone (zones are whole hours
    /// from UTC, so every hour falls on one local day).
    async fn backfill_daily(
        &self,
        sites: &[SiteSettings],
    ) -> std::result::Result<(), clickhouse::error::Error> {
        let mut zones: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for site in sites {
            zones
                .entry(site.timezone.name())
                .or_default()
                .push(site.id.to_string());
        }
        let known: Vec<String> = zones.values().flatten().cloned().collect();
        // Each zone's sites, then every site not configured (in UTC).
        let mut groups: Vec<(&str, &str, &Vec<String>)> = zones
            .iter()
            .map(|(zone, ids)| (*zone, "has", ids))
            .collect();
        groups.push(("UTC", "NOT has", &known));
        for (from, into, keys, states) in DAILY_BACKFILL {
            for (zone, member, ids) in &groups {
                let sql = format!(
                    "INSERT INTO {into} SELECT {keys}, {states} FROM \
                     (SELECT *, toDate(hour, ?) AS day FROM {from} WHERE {member}(?, site)) \
                     GROUP BY {keys}"
                );
                self.query(&sql).bind(*zone).bind(*ids).execute().await?;
            }
        }
        Ok(())
    }

    /// Waits for the marker row of a finished copy (another process's).
    async fn wait_for_copy(
        &self,
        copy: &HistoryCopy,
        copy_wait: Duration,
    ) -> std::result::Result<(), clickhouse::error::Error> {
        let start = Instant::now();
        let mut told = start;
        let count = format!("SELECT count() FROM {}", copy.marker);
        loop {
            let finished: u64 = self.query(&count).fetch_one().await?;
            if finished > 0 {
                info!(
                    version = copy.version,
                    "{} made by another process", copy.what
                );
                return Ok(());
            }
            if start.elapsed() >= copy_wait {
                return Err(clickhouse::error::Error::Custom(format!(
                    "the copy of {}, started by another process, has not finished after {} s; \
                     if that process stopped, the copy is incomplete: see docs/operations.md, \
                     \"Upgrading\", to make it again",
                    copy.what,
                    copy_wait.as_secs()
                )));
            }
            if told.elapsed() >= Duration::from_secs(30) {
                info!(
                    version = copy.version,
                    "waiting for another process's copy of {}", copy.what
                );
                told = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500).min(copy_wait)).await;
        }
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
pub(crate) fn already_done(e: &clickhouse::error::Error) -> bool {
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
pub(crate) fn statements(sql: &str) -> impl Iterator<Item = &str> {
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
