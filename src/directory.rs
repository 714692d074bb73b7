//! Keeps a process's [`Directory`] in step with the sites managed live.
//!
//! The api that changes a site stores it in ClickHouse and announces the new list in Redis
//! (`tally_redis`'s `announce_sites`). Every process polls the announcement's version once a
//! second and takes the list when it changed: a change is served everywhere within about a
//! second. Every 30 s — and whenever nothing is announced (a new Redis, or one that lost its
//! data) — the list is read from ClickHouse instead, and announced again if Redis had none.
//! When neither answers, the process goes on with the sites it has.

use std::time::Duration;

use tally_clickhouse::Db;
use tally_core::{directory::Directory, settings::SiteSettings};
use tally_redis::Store;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often the announcement's version is read.
pub const POLL: Duration = Duration::from_secs(1);
/// How often the list is read from ClickHouse whatever Redis says.
const FULL_RELOAD: Duration = Duration::from_secs(30);

/// A directory's refresher: what it has seen.
pub struct Refresher {
    directory: Directory,
    store: Store,
    db: Db,
    /// The version of the announcement taken last.
    known: Option<u64>,
    last_full: Option<tokio::time::Instant>,
}

impl Refresher {
    pub fn new(directory: Directory, store: Store, db: Db) -> Self {
        Self {
            directory,
            store,
            db,
            known: None,
            last_full: None,
        }
    }

    /// One look: takes a new announcement, or reads ClickHouse when it is time or nothing is
    /// announced.
    pub async fn refresh(&mut self) -> anyhow::Result<()> {
        let (version, announced) = self.store.announced_sites(self.known).await?;
        if let (Some(version), Some(json)) = (version, announced) {
            let sites: Vec<SiteSettings> = serde_json::from_str(&json)?;
            debug!(version, sites = sites.len(), "took the announced sites");
            self.directory.set_managed(sites);
            self.known = Some(version);
            return Ok(());
        }
        let due = self.last_full.is_none_or(|at| at.elapsed() >= FULL_RELOAD);
        if version.is_none() || due {
            let sites = self.db.managed_sites().await?;
            self.last_full = Some(tokio::time::Instant::now());
            if version.is_none() {
                // Redis has no announcement: give it the durable list.
                let json = serde_json::to_string(&sites)?;
                self.known = Some(self.store.announce_sites(&json).await?);
            }
            self.directory.set_managed(sites);
        }
        Ok(())
    }

    /// Refreshes every [`POLL`] until `stop`, saying so (once a minute at most) when the stores
    /// do not answer.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut last_warning: Option<tokio::time::Instant> = None;
        loop {
            if let Err(error) = self.refresh().await
                && last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
            {
                warn!(message = "cannot refresh the managed sites; serving the ones known", %error);
                last_warning = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
