//! # tally-worker
//!
//! Finishes what the beacon accepted, and moves it into ClickHouse, effectively once.
//!
//! The [`Applier`] of each partition takes the batches the beacon appended to the incoming
//! stream, works out their visits, presence and unique visitors in bulk, and names them,
//! with their visit figures, in an entry of the events stream in one atomic script call
//! (`tally_redis::Store::apply`); the events' JSON stays in the incoming entries. Then:
//!
//! 1. read a batch with XREADGROUP (bounded by `worker.max_rows`, `max_bytes`, `max_age`),
//!    and the JSON of its events from the incoming entries its entries name;
//! 2. insert it into ClickHouse;
//! 3. only then acknowledge and delete the entries, with their incoming entries.
//!
//! A worker that dies between 2 and 3 leaves its entries pending; after `worker.claim_idle`
//! another worker takes them over with XAUTOCLAIM and, before inserting, asks ClickHouse
//! which of their `event_id`s are already stored and skips those — so nothing is lost and
//! nothing is doubled. ClickHouse unreachable → retry with capped, jittered exponential
//! backoff, forever; the stream holds the backlog. Entries ClickHouse refuses as bad data go
//! to the dead-letter stream (the batch is bisected to find them), the rest are inserted.
//! A stream entry holds one beacon batch: reads ask for as many entries as the batch has room
//! for events, and an entry is acknowledged once all its events are stored or dead-lettered.
//! Consumers of stopped workers leave the group once they hold nothing and stay idle.
//!
//! One task per partition, each with its own Redis connection (XREADGROUP blocks it); their
//! batches ready at the same time go into ClickHouse as one insert ([`gate`]).
//! [`PartitionWorker::step`] runs one read–insert–ack cycle, so tests can drive it directly.

mod applier;
pub mod gate;
mod partition;

use tally_clickhouse::Db;
use tally_core::{Clock, Settings, directory::Directory, settings::RetentionSettings};
use tally_redis::Store;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

pub use applier::Applier;
pub use partition::{PartitionWorker, StepOutcome};

/// Errors while starting the worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Redis(#[from] tally_redis::Error),
}

/// The worker role: one [`Applier`] and one [`PartitionWorker`] per partition, and the
/// hourly retention job.
pub struct Worker {
    appliers: Vec<Applier>,
    partitions: Vec<PartitionWorker>,
    inserter: gate::Inserter,
    /// A connection for the backlog gauges, and the number of partitions.
    monitor: (Store, u16),
    db: Db,
    retention: RetentionSettings,
}

/// The first UTC day whose raw events `retention` keeps; `None` keeps everything.
pub fn retention_cutoff(retention: &RetentionSettings) -> Option<chrono::NaiveDate> {
    (retention.raw_days > 0).then(|| {
        let today = chrono::Utc::now().date_naive();
        today
            .checked_sub_days(chrono::Days::new(u64::from(retention.raw_days)))
            .unwrap_or(today)
    })
}

impl Worker {
    /// Connects one Redis handle per partition and makes sure the consumer groups exist.
    pub async fn build(
        settings: &Settings,
        directory: Directory,
        db: Db,
        clock: Clock,
    ) -> Result<Self, Error> {
        let consumer = consumer_name();
        let mut partitions = Vec::new();
        // The store steps take what the appliers parsed rather than reading it again.
        let handoff = tally_redis::Handoff::default();
        let applying = Store::connect(&settings.redis)
            .await?
            .with_handoff(handoff.clone());
        let appliers = (0..settings.redis.partitions)
            .map(|partition| Applier {
                partition,
                store: applying.clone(),
                tracking: settings.tracking.clone(),
                clock: clock.clone(),
                max_backoff: settings.worker.max_backoff,
            })
            .collect();
        let (gate, inserter) = gate::gate(
            db.clone(),
            settings.redis.partitions,
            settings.worker.max_age,
        );
        for p in 0..settings.redis.partitions {
            let store = Store::connect(&settings.redis)
                .await?
                .with_handoff(handoff.clone());
            store.ensure_group(p).await?;
            partitions.push(
                PartitionWorker::new(
                    p,
                    store,
                    db.clone(),
                    settings,
                    directory.clone(),
                    consumer.clone(),
                )
                .with_gate(gate.clone()),
            );
        }
        drop(gate);
        info!(consumer = %consumer, partitions = partitions.len(), "worker ready");
        let monitor = (
            Store::connect(&settings.redis).await?,
            settings.redis.partitions,
        );
        Ok(Self {
            monitor,
            appliers,
            partitions,
            inserter,
            db,
            retention: settings.retention.clone(),
        })
    }

    /// Runs every partition until `shutdown`; each finishes and acknowledges its batch first.
    pub fn spawn(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        for applier in self.appliers {
            tracker.spawn(applier.run(shutdown.clone()));
        }
        for worker in self.partitions {
            tracker.spawn(worker.run(shutdown.clone()));
        }
        // Ends once every partition's loop has (they hold its gate).
        tracker.spawn(self.inserter.run());
        tracker.spawn(backlog_loop(self.monitor, shutdown.clone()));
        if self.retention.raw_days > 0 {
            tracker.spawn(retention_loop(self.db, self.retention, shutdown));
        }
    }
}

/// How often the backlog gauges are read.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes each partition's backlog every [`BACKLOG_EVERY`], whether or not batches are
/// being delivered (a stuck worker is when the lag matters): `tally_worker_stream_lag`
/// (entries), `tally_worker_stream_lag_seconds` (age of the oldest entry) and
/// `tally_worker_dead_letters` (events in the dead-letter stream).
async fn backlog_loop(monitor: (Store, u16), shutdown: CancellationToken) {
    let (store, partitions) = monitor;
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        for p in 0..partitions {
            if let Ok(b) = store.backlog(p, now_ms).await {
                let partition = p.to_string();
                metrics::gauge!("tally_worker_stream_lag", "partition" => partition.clone())
                    .set(b.entries as f64);
                metrics::gauge!("tally_worker_stream_lag_seconds", "partition" => partition.clone())
                    .set(b.oldest_age_ms as f64 / 1000.0);
                metrics::gauge!("tally_worker_dead_letters", "partition" => partition)
                    .set(b.dead_letters as f64);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}

/// Drops raw partitions past `retention.raw_days` at start and then every hour. Several
/// workers may do it at once: dropping a partition that is already gone is harmless.
async fn retention_loop(db: Db, retention: RetentionSettings, shutdown: CancellationToken) {
    loop {
        if let Some(cutoff) = retention_cutoff(&retention) {
            match db.drop_raw_before(cutoff).await {
                Ok(dropped) if !dropped.is_empty() => {
                    info!(?dropped, %cutoff, "dropped raw event partitions")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(message = "retention failed; will retry", %error),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// A consumer name unique to this process: a restarted worker never inherits the pending
/// entries of its previous life under the same name, they are reclaimed like any other's.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_everything_at_zero_days_and_cuts_raw_days_back() {
        assert_eq!(retention_cutoff(&RetentionSettings { raw_days: 0 }), None);
        let today = chrono::Utc::now().date_naive();
        let cutoff = retention_cutoff(&RetentionSettings { raw_days: 400 }).unwrap();
        assert_eq!((today - cutoff).num_days(), 400);
    }

    #[test]
    fn consumer_names_differ_between_workers_of_one_host() {
        let (a, b) = (consumer_name(), consumer_name());
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()), "{a}");
    }
}
