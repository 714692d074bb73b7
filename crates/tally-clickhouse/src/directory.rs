//! The durable copy of the sites managed live, and the record of changes (`audit_log`):
//! tables of migration 9.

use serde::{Deserialize, Serialize};
use tally_core::{SiteId, settings::SiteSettings};

use crate::{Db, Result, sqllog};

/// One version of a managed site, as stored.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct SiteRow {
    id: String,
    version: u64,
    deleted: u8,
    name: String,
    domains: Vec<String>,
    timezone: String,
    public_counters: u8,
    changed_at: u32,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CurrentSite {
    id: String,
    name: String,
    domains: Vec<String>,
    timezone: String,
    public_counters: u8,
}

/// One change, as the record of changes keeps it.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Seconds since the epoch.
    pub at: u32,
    /// Orders entries of one second.
    pub seq: u64,
    /// Who: a person's login name, or `configuration token N`.
    pub actor: String,
    /// What: `site.created`, `site.edited`, `site.deleted`…
    pub action: String,
    /// On what: a site id, a login name.
    pub target: String,
    /// The change, in words (never a secret).
    pub detail: String,
}

/// A version number that grows with time (µs since the epoch): the newest write of a site
/// wins.
fn version_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

fn now_secs() -> u32 {
    u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX)
}

impl Db {
    /// The managed sites that are not deleted, by id. A row whose id or time zone no longer
    /// parses (written by hand) is left out.
    pub async fn managed_sites(&self) -> Result<Vec<SiteSettings>> {
        let rows: Vec<CurrentSite> = self
            .query(
                "SELECT id, argMax(name, version), argMax(domains, version), \
                 argMax(timezone, version), argMax(public_counters, version) \
                 FROM managed_sites GROUP BY id \
                 HAVING argMax(deleted, version) = 0 ORDER BY id",
            )
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(SiteSettings {
                    id: SiteId::parse(&r.id).ok()?,
                    name: r.name,
                    domains: r.domains,
                    timezone: r.timezone.parse().ok()?,
                    public_counters: r.public_counters != 0,
                })
            })
            .collect())
    }

    /// Stores `site` as the newest version of its id.
    pub async fn save_site(&self, site: &SiteSettings) -> Result<()> {
        self.write_site(SiteRow {
            id: site.id.to_string(),
            version: version_now(),
            deleted: 0,
            name: site.name.clone(),
            domains: site.domains.clone(),
            timezone: site.timezone.name().to_owned(),
            public_counters: u8::from(site.public_counters),
            changed_at: now_secs(),
        })
        .await
    }

    /// Marks managed site `id` deleted.
    pub async fn delete_site(&self, id: &SiteId) -> Result<()> {
        self.write_site(SiteRow {
            id: id.to_string(),
            version: version_now(),
            deleted: 1,
            name: String::new(),
            domains: Vec::new(),
            timezone: String::new(),
            public_counters: 0,
            changed_at: now_secs(),
        })
        .await
    }

    async fn write_site(&self, row: SiteRow) -> Result<()> {
        self.insert_one("managed_sites", &row).await
    }

    /// Inserts one row into `table` (logged for the SQL replay like every statement).
    pub(crate) async fn insert_one<T>(&self, table: &str, row: &T) -> Result<()>
    where
        T: for<'a> clickhouse::Row<Value<'a> = T> + clickhouse::RowWrite + Serialize,
    {
        sqllog::record(&format!(
            "INSERT INTO {table} ({}) FORMAT RowBinary",
            T::COLUMN_NAMES.join(", ")
        ));
        let mut insert = self.client.insert::<T>(table).await?;
        insert.write(row).await?;
        insert.end().await?;
        Ok(())
    }

    /// Adds an entry to the record of changes.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        let entry = AuditEntry {
            at: now_secs(),
            seq: version_now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
        };
        self.insert_one("audit_log", &entry).await
    }

    /// The newest `limit` entries of the record of changes, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        Ok(self
            .query(
                "SELECT at, seq, actor, action, target, detail FROM audit_log \
                 ORDER BY at DESC, seq DESC LIMIT ?",
            )
            .bind(limit)
            .fetch_all()
            .await?)
    }
}

/// Every table with a `site` column: what dropping a site's history deletes from.
const SITE_TABLES: [&str; 18] = [
    "events",
    "event_days",
    "page_events",
    "second_views",
    "site_daily",
    "site_hourly",
    "page_days",
    "page_daily",
    "page_hourly",
    "dimension_daily",
    "dimension_hourly",
    "visit_hourly",
    "bots_hourly",
    "repeat_hourly",
    "unverified_hourly",
    "counter_baselines",
    "event_baselines",
    "goals",
];

impl Db {
    /// Deletes every row of `site` from the events, the rollups and the imported baselines
    /// (ClickHouse mutations: they run in the background and finish within seconds to
    /// minutes, depending on the data).
    pub async fn drop_site_history(&self, site: &str) -> Result<()> {
        for table in SITE_TABLES {
            // A mutation runs on the tables that hold rows: on a cluster, the local ones.
            let table = self.local_tables(table);
            self.query(&format!("ALTER TABLE {table} DELETE WHERE site = ?"))
                .bind(site)
                .execute()
                .await?;
        }
        Ok(())
    }
}
