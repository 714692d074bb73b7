//! The micro-batcher between the handlers and Redis.
//!
//! Handlers `submit` events into a bounded queue (`beacon.buffer`) and wait briefly for the
//! write, so a view is visible in the counters by the time its request is answered. The
//! batcher takes whatever is queued (up to `beacon.batch`) and writes it with one Redis round
//! trip. When Redis is unreachable it retries the same batch (same batch id, so a retry
//! never counts twice) with capped exponential backoff while new events wait in the queue;
//! only a full queue makes handlers answer 503. On shutdown it drains the queue.

use std::time::Duration;

use tally_core::{Settings, settings::TrackingSettings};
use tally_redis::{Store, TrackedEvent};
use tokio::sync::{mpsc, oneshot};
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
    tx: mpsc::Sender<Pending>,
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
        self.tx
            .try_send(Pending {
                event,
                written: Some(written),
            })
            .map_err(|_| SubmitError::Full)?;
        let _ = tokio::time::timeout(WAIT_FOR_WRITE, done).await;
        Ok(())
    }

    /// Events waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The batcher task's side.
pub struct Batcher {
    rx: mpsc::Receiver<Pending>,
    store: Store,
    batch: usize,
    tracking: TrackingSettings,
    drain_timeout: Duration,
}

impl Batcher {
    pub fn new(store: Store, settings: &Settings) -> (Handle, Self) {
        let (tx, rx) = mpsc::channel(settings.beacon.buffer);
        let batcher = Self {
            rx,
            store,
            batch: settings.beacon.batch,
            tracking: settings.tracking.clone(),
            drain_timeout: settings.server.shutdown_timeout,
        };
        (Handle { tx }, batcher)
    }

    /// Writes batches until `shutdown`, then drains what is queued.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch);
        loop {
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, self.batch) => {
                    if n == 0 {
                        return;
                    }
                }
                () = shutdown.cancelled() => break,
            }
            if !self.write(&mut batch, &shutdown, None).await {
                return;
            }
        }
        // Shutting down: stop accepting, then write what is left, within the drain timeout.
        self.rx.close();
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while self.rx.recv_many(&mut batch, self.batch).await > 0 {
            if !self.write(&mut batch, &shutdown, Some(deadline)).await {
                return;
            }
        }
        info!("beacon buffer drained");
    }

    /// Writes `batch` (retrying while Redis is unreachable) and empties it. Returns false if
    /// the deadline passed first; once shutdown starts, retries get `server.shutdown_timeout`.
    async fn write(
        &mut self,
        batch: &mut Vec<Pending>,
        shutdown: &CancellationToken,
        mut deadline: Option<tokio::time::Instant>,
    ) -> bool {
        let batch_id: u64 = rand::random();
        let (events, waiters): (Vec<TrackedEvent>, Vec<_>) =
            batch.drain(..).map(|p| (p.event, p.written)).unzip();
        let mut delay = Duration::from_millis(50);
        loop {
            let now_ms = chrono::Utc::now().timestamp_millis();
            match self
                .store
                .record(batch_id, &events, &self.tracking, now_ms)
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    warn!(message = "cannot write events to redis; retrying", %error, events = events.len());
                    if shutdown.is_cancelled() && deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + self.drain_timeout);
                    }
                    if deadline.is_some_and(|d| tokio::time::Instant::now() + delay > d) {
                        warn!(
                            message = "shutdown timeout reached with events unwritten",
                            lost = events.len() + self.rx.len()
                        );
                        return false;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(());
        }
        true
    }
}
