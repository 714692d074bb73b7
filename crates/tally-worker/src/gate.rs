//! One ClickHouse insert for the batches of every partition that are ready together.
//!
//! Each partition's loop reads and inserts on its own, and ClickHouse's cost of an insert
//! into `events` is mostly per insert, not per row: every insert runs each rollup's
//! materialized view and writes a part into each of their tables. With four busy partitions
//! that was four times the inserts of one busy partition for the same rows (measured:
//! ClickHouse used ~60 % of a core in the four-site beacon benchmark against ~18 % for one
//! site; docs/benchmarks.md). So the partitions' read windows end together (on ticks of
//! `worker.max_age` counted from one instant, see [`Gate::window_end`]), and a batch's
//! first insert goes through the gate, which waits up to [`LINGER`] for the other
//! partitions' batches and inserts them all at once.
//!
//! Only a first attempt is combined. When a combined insert fails, every batch in it goes
//! back to its partition's own insert path, which checks which rows ClickHouse already holds
//! (a failed insert may have written some), retries, and bisects its own rows to find the
//! ones ClickHouse refuses — another partition's bad row never makes a good one look bad.
//! Acknowledging stays per partition, after its rows are stored.

use std::sync::Arc;
use std::time::Duration;

use metrics::histogram;
use tally_clickhouse::{Db, EventRow};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

/// How long the gate waits, after a batch arrives, for the other partitions' batches.
pub const LINGER: Duration = Duration::from_millis(50);

/// A partition's batch waiting for the insert, and where to say whether it went in.
struct Job {
    rows: Arc<Vec<EventRow>>,
    done: oneshot::Sender<bool>,
}

/// The partitions' side of the gate: cheap to clone.
#[derive(Clone)]
pub struct Gate {
    tx: mpsc::Sender<Job>,
    /// Read windows end on ticks of `max_age` from here.
    epoch: Instant,
    max_age: Duration,
}

/// The inserting side: one task.
pub struct Inserter {
    rx: mpsc::Receiver<Job>,
    db: Db,
    partitions: usize,
}

/// A gate for `partitions` partitions inserting into `db`, with read windows of `max_age`.
pub fn gate(db: Db, partitions: u16, max_age: Duration) -> (Gate, Inserter) {
    let partitions = usize::from(partitions.max(1));
    let (tx, rx) = mpsc::channel(partitions);
    (
        Gate {
            tx,
            epoch: Instant::now(),
            max_age,
        },
        Inserter { rx, db, partitions },
    )
}

impl Gate {
    /// When a read window opened at `first` ends: at the first tick of `max_age` after it,
    /// so that every partition's window ends at the same moment (a window is between nothing
    /// and `max_age` long). A window opened before the gate was made (by an entry that had
    /// waited in the stream before this worker started) ends at the gate's start.
    pub fn window_end(&self, first: Instant) -> Instant {
        if first < self.epoch {
            return self.epoch;
        }
        let age = self.max_age.as_nanos().max(1);
        let since = first.duration_since(self.epoch).as_nanos();
        let ticks = since / age + 1;
        self.epoch + Duration::from_nanos(u64::try_from(ticks * age).unwrap_or(u64::MAX))
    }

    /// Inserts `rows` together with whatever other partitions send meanwhile. True when they
    /// are stored; false when the combined insert failed (or the gate is gone): the caller
    /// then inserts them on its own, checking what is stored first.
    pub async fn insert(&self, rows: Arc<Vec<EventRow>>) -> bool {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Job { rows, done }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

impl Inserter {
    /// Inserts what arrives until every [`Gate`] is dropped.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut jobs = vec![first];
            let until = Instant::now() + LINGER;
            while jobs.len() < self.partitions {
                match tokio::time::timeout_at(until, self.rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    _ => break,
                }
            }
            let rows: Vec<&EventRow> = jobs.iter().flat_map(|j| j.rows.iter()).collect();
            let started = std::time::Instant::now();
            let result = self.db.insert_events(&rows).await;
            histogram!("tally_worker_insert_seconds").record(started.elapsed().as_secs_f64());
            histogram!("tally_worker_insert_batches").record(jobs.len() as f64);
            if result.is_ok() {
                histogram!("tally_worker_batch_rows").record(rows.len() as f64);
            }
            if let Err(error) = &result {
                debug!(%error, batches = jobs.len(), rows = rows.len(), "combined insert failed; each batch retries on its own");
            }
            drop(rows);
            for job in jobs {
                let _ = job.done.send(result.is_ok());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_end_on_the_ticks_after_they_open() {
        let settings = tally_core::Settings::load(None, []).unwrap();
        let (gate, _inserter) = gate(Db::new(&settings.clickhouse), 4, Duration::from_secs(1));
        let epoch = gate.epoch;
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        assert_eq!(gate.window_end(at(0)), at(1000));
        assert_eq!(gate.window_end(at(1)), at(1000));
        assert_eq!(gate.window_end(at(999)), at(1000));
        assert_eq!(gate.window_end(at(1000)), at(2000));
        assert_eq!(gate.window_end(at(2500)), at(3000));
        // Opened before the gate was made: over at once.
        assert_eq!(gate.window_end(epoch - Duration::from_millis(400)), epoch);
    }
}
