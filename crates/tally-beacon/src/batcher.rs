//! The micro-batcher between the handlers and Redis.
//!
//! Handlers `submit` events into a bounded queue and wait briefly for the write, so a view is
//! visible in the counters by the time its request is answered. A queue (a lane) takes
//! whatever is queued (up to `beacon.batch`) and writes it with one call of the accept
//! script, [`IN_FLIGHT`] at a time. The script's cost is mostly per call (the batch marker,
//! the script's own, a round trip), so calls should be few and full: on one Redis there is
//! one lane, whose call carries every partition's events; on a Redis Cluster, where a call
//! reaches one partition's slot, one lane per partition. `beacon.buffer` bounds the events
//! queued in all lanes together. When Redis is unreachable each batch is retried (same batch
//! id, so a retry never counts twice) with capped exponential backoff while new events wait
//! in the queue; only a full buffer makes handlers answer 503. Errors follow the one retry
//! policy (`tally_core::retry`): a batch Redis refuses for itself (a script error: verdict
//! give-up) is given up at once, its events logged and counted, so it never holds up its
//! lane; a refusal of Tally's credentials (verdict stop) keeps the batch and says so at
//! error level on every try. On shutdown every lane drains.

use std::time::Duration;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use tally_core::{
    Clock, Settings,
    retry::{Backoff, Classify, Verdict},
    settings::TrackingSettings,
};
use tally_redis::{Attempt, Store, TrackedEvent};

use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a handler waits for its event to reach Redis before answering anyway: the event
/// is safe in the buffer either way, this only makes counters read-your-writes.
const WAIT_FOR_WRITE: Duration = Duration::from_secs(1);

struct Pending {
    event: TrackedEvent,
    written: Option<oneshot::Sender<()>>,
}

/// The handlers' side: cheap to clone.
#[derive(Clone)]
pub struct Handle {
    /// One sender per lane (the lane of partition p is p modulo their number).
    lanes: Arc<[mpsc::Sender<Pending>]>,
    /// Events queued in all lanes (taken out when a lane takes them into a batch).
    queued: Arc<AtomicUsize>,
    /// `beacon.buffer`: most events queued at once.
    capacity: usize,
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The buffer is full (Redis has been unreachable for a while) or shutting down.
    Full,
}

impl Handle {
    /// Queues `event`; waits up to a second for it to be written. `Err` only when the buffer
    /// is full.
    pub async fn submit(&self, event: TrackedEvent) -> Result<(), SubmitError> {
        let (written, done) = oneshot::channel();
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Full);
        }
        let lane = &self.lanes[usize::from(event.partition) % self.lanes.len()];
        lane.try_send(Pending {
            event,
            written: Some(written),
        })
        .map_err(|_| {
            // Only a closed lane (shutdown): every lane has room for the whole buffer.
            self.queued.fetch_sub(1, Ordering::AcqRel);
            SubmitError::Full
        })?;
        let _ = tokio::time::timeout(WAIT_FOR_WRITE, done).await;
        Ok(())
    }

    /// Events waiting in the buffer (all lanes).
    pub fn buffered(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Batches of one lane written to Redis at the same time. One: the lane's next batch gathers
/// while its call runs, so calls carry the most events (measured in the beacon benchmark:
/// ~7.7 events per call with one, 4.5 with two). Since the accept script keeps no
/// per-visitor state its cost is mostly per call, and one busy site is not held back by
/// it: with one in flight it reached 0.31 of `/healthz`, with two 0.26 (docs/benchmarks.md,
/// "The write path after issue 20").
pub const IN_FLIGHT: usize = 1;

/// How many times a lane lets the runtime run what else is ready before it takes a batch:
/// handlers whose requests have arrived meanwhile queue their events first, so a call
/// carries more of them. The wait is bounded by the tasks that are ready, never by a timer:
/// an idle beacon sends at once (a yield with nothing else to run returns at once). Measured
/// under the four-site mix (docs/benchmarks.md, "ninth stage"): ~27 page views per call
/// instead of ~17, a third fewer calls of the accept script; 64 yields gathered no more
/// than 16.
const GATHER_YIELDS: usize = 16;

/// The batcher's side: its lanes.
pub struct Batcher {
    lanes: Vec<Lane>,
}

impl Batcher {
    pub fn new(store: Store, settings: &Settings, clock: Clock) -> (Handle, Self) {
        // On one Redis a call takes every partition's events; a cluster call, one's.
        let lanes = if store.is_cluster() {
            usize::from(store.partitions().max(1))
        } else {
            1
        };
        let capacity = settings.beacon.buffer.max(1);
        let queued = Arc::new(AtomicUsize::new(0));
        // Each lane could hold the whole buffer (one busy site); `queued` bounds the sum.
        // Channels allocate as they fill, so the room costs nothing until used.
        let (senders, lanes): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                let lane = Lane {
                    rx,
                    queued: queued.clone(),
                    store: store.clone(),
                    batch: settings.beacon.batch,
                    tracking: settings.tracking.clone(),
                    drain_timeout: settings.server.shutdown_timeout,
                    clock: clock.clone(),
                };
                (tx, lane)
            })
            .unzip();
        (
            Handle {
                lanes: senders.into(),
                queued,
                capacity,
            },
            Self { lanes },
        )
    }

    /// Runs every lane until `shutdown`, then until each has drained what is queued within
    /// `server.shutdown_timeout`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut lanes = JoinSet::new();
        for lane in self.lanes {
            lanes.spawn(lane.run(shutdown.clone()));
        }
        while lanes.join_next().await.is_some() {}
        info!("beacon buffer drained");
    }
}

/// One queue and its writer.
struct Lane {
    rx: mpsc::Receiver<Pending>,
    queued: Arc<AtomicUsize>,
    store: Store,
    batch: usize,
    tracking: TrackingSettings,
    drain_timeout: Duration,
    clock: Clock,
}

impl Lane {
    /// Writes batches (up to [`IN_FLIGHT`] at once) until `shutdown`, then drains what is
    /// queued within `server.shutdown_timeout`.
    async fn run(mut self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut writes = JoinSet::new();
        let mut deadline = None;
        loop {
            // Wait for a free slot first, so the next batch gathers what arrives meanwhile.
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            if deadline.is_none() {
                for _ in 0..GATHER_YIELDS {
                    if self.rx.len() >= self.batch {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            let mut batch = Vec::with_capacity(self.batch);
            let n = if deadline.is_none() {
                tokio::select! {
                    biased;
                    n = self.rx.recv_many(&mut batch, self.batch) => n,
                    () = shutdown.cancelled() => {
                        // Stop accepting; what is queued is still written.
                        self.rx.close();
                        deadline = Some(tokio::time::Instant::now() + self.drain_timeout);
                        self.rx.recv_many(&mut batch, self.batch).await
                    }
                }
            } else {
                self.rx.recv_many(&mut batch, self.batch).await
            };
            if n == 0 {
                break;
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
            let job = Write {
                store: self.store.clone(),
                tracking: self.tracking.clone(),
                shutdown: shutdown.clone(),
                drain_timeout: self.drain_timeout,
                clock: self.clock.clone(),
            };
            writes.spawn(async move {
                let written = job.write(batch, deadline).await;
                drop(slot);
                written
            });
            while let Some(done) = writes.try_join_next() {
                if !done.unwrap_or(false) {
                    warn!("shutdown timeout reached with events unwritten");
                }
            }
        }
        while let Some(done) = writes.join_next().await {
            if !done.unwrap_or(false) {
                warn!("shutdown timeout reached with events unwritten");
            }
        }
    }
}

/// The first wait after a failed batch write, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// What one batch write needs.
struct Write {
    store: Store,
    tracking: TrackingSettings,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    clock: Clock,
}

impl Write {
    /// Writes `batch`, retrying while Redis is unreachable with capped backoff. Returns false
    /// if the deadline passed first; once shutdown starts, retries get the drain timeout.
    async fn write(self, batch: Vec<Pending>, mut deadline: Option<tokio::time::Instant>) -> bool {
        let batch_id: u64 = rand::random();
        let (events, waiters): (Vec<TrackedEvent>, Vec<_>) =
            batch.into_iter().map(|p| (p.event, p.written)).unzip();
        let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
        // A try after a failed one may find the batch accepted: its reply may be what failed.
        let mut attempt = Attempt::First;
        loop {
            let now_ms = self.clock.now_ms();
            let error = match self
                .store
                .record(batch_id, &events, &self.tracking, now_ms, attempt)
                .await
            {
                Ok(recorded) => {
                    if recorded.over_page_cap > 0 {
                        metrics::counter!("tally_beacon_events_over_page_cap_total")
                            .increment(recorded.over_page_cap as u64);
                    }
                    break;
                }
                Err(error) => error,
            };
            attempt = Attempt::Retry;
            let verdict = error.verdict();
            match verdict {
                Verdict::GiveUp => {
                    // Redis refused the batch (a script error, a key of the wrong type): the
                    // same call would fail again, and the lane must go on. The script wrote
                    // its batch marker first, so a retry would only find it. The events go
                    // to the log, whole, to be replayed by hand if they matter.
                    let lines = tally_redis::wire::json_lines(events.iter().map(|e| &e.event));
                    tracing::error!(
                        message = "redis refused a batch; its events are given up",
                        %error,
                        batch_id,
                        events = %String::from_utf8_lossy(&lines),
                    );
                    metrics::counter!("tally_beacon_events_given_up_total")
                        .increment(events.len() as u64);
                    break;
                }
                Verdict::Stop => {
                    tracing::error!(message = "redis refuses tally (check redis.url's credentials and ACL); the events are kept and retried", %error, events = events.len());
                }
                Verdict::Retry => {
                    warn!(message = "cannot write events to redis; retrying", %error, events = events.len());
                }
            }
            let delay = backoff.next(verdict);
            if self.shutdown.is_cancelled() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.drain_timeout);
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() + delay > d) {
                warn!(
                    message = "giving up on a batch at shutdown",
                    lost = events.len()
                );
                return false;
            }
            tokio::time::sleep(delay).await;
        }
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(());
        }
        true
    }
}
