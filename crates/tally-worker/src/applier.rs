//! The applier loop of one partition: applies the accepted batches of the incoming stream —
//! their visits, presence and unique visitors — and names them, with their visit figures, in
//! the events stream (see `tally_redis::Store::apply`).

use std::time::Duration;

use metrics::{counter, histogram};
use tally_core::{
    Clock,
    retry::{Backoff, Classify},
    settings::TrackingSettings,
};
use tally_redis::Store;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// After an apply that took every waiting entry (none was left behind by
/// `tally_redis::APPLY_LIMITS`) the loop waits this long, so that under load an apply takes
/// hundreds of events at once, and at rest the trailing figures (online, visits) lag the
/// views by at most this plus one apply. While a backlog is left, applies follow each other
/// at once.
pub(crate) const PAUSE: Duration = Duration::from_millis(50);
/// Presence older than the online window is dropped in one apply in this many.
const TRIM_EVERY: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Applies `partition`'s incoming entries until `shutdown`.
pub struct Applier {
    pub partition: u16,
    pub store: Store,
    pub tracking: TrackingSettings,
    pub clock: Clock,
    pub max_backoff: Duration,
}

impl Applier {
    /// One apply (the `calls`-th: some of them also trim presence); what it did.
    pub async fn step(&self, calls: u32) -> Result<tally_redis::Applied, tally_redis::Error> {
        let started = std::time::Instant::now();
        let applied = self
            .store
            .apply(
                self.partition,
                &self.tracking,
                tally_redis::APPLY_LIMITS,
                self.clock.now_ms(),
                calls.is_multiple_of(TRIM_EVERY),
            )
            .await?;
        if applied.events > 0 {
            counter!("tally_worker_applied_events_total").increment(applied.events as u64);
            histogram!("tally_worker_apply_seconds").record(started.elapsed().as_secs_f64());
        }
        if applied.lost_race {
            counter!("tally_worker_apply_races_total").increment(1);
        }
        Ok(applied)
    }

    /// How long the loop waits after `applied` before the next apply: not at all while a
    /// backlog is left, else [`PAUSE`].
    pub fn pause_after(applied: &tally_redis::Applied) -> Option<Duration> {
        (!applied.more).then_some(PAUSE)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(FIRST_RETRY, self.max_backoff);
        let mut calls = 0u32;
        while !shutdown.is_cancelled() {
            calls = calls.wrapping_add(1);
            let pause = match self.step(calls).await {
                Ok(applied) => {
                    backoff.reset();
                    match Self::pause_after(&applied) {
                        Some(pause) => pause,
                        None => continue,
                    }
                }
                Err(error) => {
                    let delay = backoff.next(error.verdict());
                    warn!(message = "apply failed; retrying", partition = self.partition, %error, ?delay);
                    delay
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
