//! The read → insert → ack loop of one partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use tally_clickhouse::{Db, EventRow};
use tally_core::{
    Settings,
    directory::Directory,
    retry::{Backoff, Classify, Verdict},
    settings::WorkerSettings,
};
use tally_redis::Store;
use tally_redis::wire::{DeadLetter, EventKey, Payload, StreamEvent};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::gate::Gate;

/// Longest single XREADGROUP block, so shutdown and reclaims are noticed promptly.
const MAX_BLOCK: Duration = Duration::from_millis(500);
/// Most events one read asks for: a batch of `max_rows` is read in steps, so that a reply
/// (the events' JSON, ~300 bytes each) stays ~1 MB rather than one of ~15 MB for a whole
/// batch, whose buffers are copied as they grow.
const READ_EVENTS: usize = 4096;
/// Most events a batch makes room for at its first read (the default `max_rows` is 50,000);
/// a larger batch grows as it is read.
const RESERVE_EVENTS: usize = 65_536;
/// Margin around entry timestamps when asking ClickHouse which ids it already has: events
/// may sit in a beacon's buffer before Redis assigns their stream id.
const ID_CHECK_MARGIN_SECS: u32 = 86_400;
/// Idle consumers with nothing pending are deleted after this many `claim_idle` periods.
const FORGET_AFTER_CLAIM_PERIODS: u32 = 10;

/// What one [`PartitionWorker::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Rows inserted into ClickHouse.
    pub inserted: usize,
    /// Reclaimed entries skipped because ClickHouse already had them.
    pub skipped: usize,
    /// Entries moved to the dead-letter stream.
    pub dead: usize,
}

/// The worker of one partition.
pub struct PartitionWorker {
    partition: u16,
    store: Store,
    db: Db,
    settings: WorkerSettings,
    /// The sites, for each one's time zone: the local day and hour of its rows (a site no
    /// longer served is counted in UTC).
    directory: Directory,
    consumer: String,
    last_claim: Option<Instant>,
    /// The most events one stream entry held in the last read (a beacon batch is one entry,
    /// of at most `beacon.batch` events; that is the first guess), so that a read asks for
    /// no more entries than the batch has room for events (a batch exceeds `max_rows` by
    /// less than one entry at most).
    per_entry: usize,
    /// Where a batch's first insert goes, to be combined with the other partitions' (see
    /// [`crate::gate`]); without one, each batch is inserted on its own.
    gate: Option<Gate>,
}

impl PartitionWorker {
    pub fn new(
        partition: u16,
        store: Store,
        db: Db,
        settings: &Settings,
        directory: Directory,
        consumer: String,
    ) -> Self {
        Self {
            partition,
            store,
            db,
            settings: settings.worker.clone(),
            directory,
            consumer,
            last_claim: None,
            per_entry: settings.beacon.batch.max(1),
            gate: None,
        }
    }

    /// Inserts through `gate`, together with the other partitions' batches ready at the same
    /// time, and ends read windows on its ticks.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Loops over [`step`](Self::step) until `shutdown`. A step in progress always finishes:
    /// its batch is inserted and acknowledged before the task ends.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(FIRST_RETRY, self.settings.max_backoff);
        while !shutdown.is_cancelled() {
            match self.step(&shutdown).await {
                Ok(outcome) => {
                    backoff.reset();
                    if outcome.inserted + outcome.skipped + outcome.dead > 0 {
                        debug!(partition = self.partition, ?outcome, "batch done");
                    }
                }
                Err(error) => {
                    // Only Redis errors end up here (ClickHouse errors are retried inside
                    // `step`); the entries stay in the stream whatever the verdict.
                    let verdict = error.verdict();
                    let delay = backoff.next(verdict);
                    if verdict == Verdict::Stop {
                        error!(message = "redis refuses the worker (check redis.url's credentials and ACL); retrying", partition = self.partition, %error, ?delay);
                    } else {
                        warn!(message = "worker step failed; retrying", partition = self.partition, %error, ?delay);
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        info!(partition = self.partition, "worker stopped");
    }

    /// One cycle: take over idle entries of dead consumers (every `claim_idle / 2`), else
    /// read new entries until a batch limit is reached; insert; acknowledge.
    pub async fn step(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<StepOutcome, tally_redis::Error> {
        let claim_every = self.settings.claim_idle / 2;
        if self.last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            self.last_claim = Some(Instant::now());
            let outcome = self.reclaim(shutdown).await?;
            if outcome != StepOutcome::default() {
                return Ok(outcome);
            }
        }
        let batch = self.read_batch(shutdown).await?;
        if batch.is_empty() {
            return Ok(StepOutcome::default());
        }
        self.deliver(batch, false, shutdown).await
    }

    async fn reclaim(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<StepOutcome, tally_redis::Error> {
        let mut total = StepOutcome::default();
        let mut cursor = "0-0".to_owned();
        let mut claimed: Vec<StreamEvent> = Vec::new();
        loop {
            let room = self.settings.max_rows.saturating_sub(claimed.len());
            let (next, entries) = self
                .store
                .claim_idle(
                    self.partition,
                    &self.consumer,
                    self.settings.claim_idle.as_millis() as u64,
                    &cursor,
                    self.entries_for(room),
                )
                .await?;
            self.learn_entry_sizes(&entries);
            claimed.extend(entries);
            let scanned = next == "0-0";
            // Claimed entries are this consumer's now: deliver them in batches of up to
            // `max_rows` events.
            if claimed.len() >= self.settings.max_rows || (scanned && !claimed.is_empty()) {
                info!(
                    partition = self.partition,
                    events = claimed.len(),
                    "took over idle entries"
                );
                let outcome = self
                    .deliver(std::mem::take(&mut claimed), true, shutdown)
                    .await?;
                total.inserted += outcome.inserted;
                total.skipped += outcome.skipped;
                total.dead += outcome.dead;
            }
            if scanned {
                self.forget_stopped_consumers().await;
                return Ok(total);
            }
            cursor = next;
        }
    }

    /// How many stream entries to ask for so that they hold at most `room` events (at least
    /// one entry), judging by the largest entry seen last.
    fn entries_for(&self, room: usize) -> usize {
        (room / self.per_entry).max(1)
    }

    /// Remembers the largest entry of a read (the events of an entry are consecutive).
    fn learn_entry_sizes(&mut self, events: &[StreamEvent]) {
        if let Some(largest) = events
            .chunk_by(|a, b| a.key.entry == b.key.entry)
            .map(<[StreamEvent]>::len)
            .max()
        {
            self.per_entry = largest;
        }
    }

    /// Every worker process reads under a name of its own, so stopped ones would pile up in
    /// the consumer group. Once nothing is left to take over, consumers with nothing pending
    /// that have been idle for ten `claim_idle` periods are deleted.
    async fn forget_stopped_consumers(&self) {
        let idle = (self.settings.claim_idle * FORGET_AFTER_CLAIM_PERIODS).as_millis() as u64;
        match self
            .store
            .forget_idle_consumers(self.partition, &self.consumer, idle)
            .await
        {
            Ok(0) => {}
            Ok(removed) => info!(
                partition = self.partition,
                removed, "forgot consumers of stopped workers"
            ),
            Err(error) => {
                warn!(message = "cannot clean up the consumer group", partition = self.partition, %error);
            }
        }
    }

    /// When the read window that `oldest` opens began: now, unless `oldest` has already
    /// waited `max_age` in the stream since Redis appended it (a backlog: a worker that was
    /// down, a burst it catches up on); then the window is over at once and the batch goes
    /// as soon as it is read. An entry that waited less opens its window now, so that under
    /// a steady load the entries appended just before a tick do not end the next window at
    /// once (a second insert per tick). The append is dated by Redis' clock, now by this
    /// machine's; a skew between them only moves where a backlog is told from a load.
    fn window_opened(&self, oldest: &StreamEvent) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let waited = oldest.key.appended_ms().map_or(Duration::ZERO, |ms| {
            Duration::from_millis(u64::try_from(now_ms - ms).unwrap_or(0))
        });
        if waited < self.settings.max_age {
            return now;
        }
        now.checked_sub(self.settings.max_age).unwrap_or(now)
    }

    /// Reads new entries until `max_rows`, `max_bytes` or `max_age` (see
    /// [`window_opened`](Self::window_opened)) is reached, or shutdown begins. A window that
    /// is over still takes what the stream holds at once, up to the batch's limits.
    async fn read_batch(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Vec<StreamEvent>, tally_redis::Error> {
        let mut batch: Vec<StreamEvent> = Vec::new();
        let mut bytes = 0usize;
        // When the window that the first entry opened ends.
        let mut end: Option<tokio::time::Instant> = None;
        // The last read had all it asked for: the stream may hold more.
        let mut more = false;
        loop {
            let wait = match end {
                None => MAX_BLOCK,
                Some(end) => match end.checked_duration_since(tokio::time::Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(MAX_BLOCK),
                    // The window is over, but a backlog fills the batch before it goes.
                    _ if more => Duration::from_millis(1),
                    _ => break,
                },
            };
            let want = self.entries_for(READ_EVENTS.min(self.settings.max_rows - batch.len()));
            let entries = self
                .store
                .read_new(
                    self.partition,
                    &self.consumer,
                    want,
                    wait.as_millis().max(1) as u64,
                )
                .await?;
            more = entries.len() >= want;
            self.learn_entry_sizes(&entries);
            if let (Some(oldest), None) = (entries.first(), end) {
                // The batch's first entries: room for the whole batch at once, rather than
                // growing it read by read.
                batch.reserve(self.settings.max_rows.min(RESERVE_EVENTS));
                let opened = self.window_opened(oldest);
                end = Some(match &self.gate {
                    Some(gate) => gate.window_end(opened),
                    None => opened + self.settings.max_age,
                });
            }
            bytes += entries.iter().map(StreamEvent::size).sum::<usize>();
            batch.extend(entries);
            if batch.len() >= self.settings.max_rows
                || bytes >= self.settings.max_bytes
                || shutdown.is_cancelled()
                || (end.is_none() && batch.is_empty())
            {
                break;
            }
        }
        Ok(batch)
    }

    /// Inserts `entries` and acknowledges them. Reclaimed entries are first checked against
    /// ClickHouse. Retries ClickHouse outages without limit (until shutdown, when the entries
    /// are left pending for another worker to take over).
    async fn deliver(
        &mut self,
        entries: Vec<StreamEvent>,
        reclaimed: bool,
        shutdown: &CancellationToken,
    ) -> Result<StepOutcome, tally_redis::Error> {
        let mut outcome = StepOutcome::default();
        let mut ids: Vec<String> = Vec::new();
        let mut dead = Vec::new();
        let mut rows = Vec::with_capacity(entries.len());
        for StreamEvent { key, event } in entries {
            // The events of an entry are consecutive: acknowledge each entry once.
            if ids.last() != Some(&key.entry) {
                ids.push(key.entry.clone());
            }
            match event {
                Ok(event) => {
                    let tz = self.directory.timezone_of(&event.site);
                    rows.push(EventRow::new(self.partition, &key.to_string(), event, tz));
                }
                Err(u) => dead.push(DeadLetter {
                    id: String::new(),
                    key,
                    payload: Payload::Raw(u.raw),
                    reason: u.reason,
                }),
            }
        }
        let rows = Arc::new(rows);
        let mut backoff = Backoff::new(FIRST_RETRY, self.settings.max_backoff);
        // A failed insert may still have been applied (reply lost, or part of a bisected
        // batch went in), so every retry checks which ids are stored, like a reclaim.
        let mut check_stored = reclaimed;
        let mut stored = false;
        if let Some(gate) = self
            .gate
            .as_ref()
            .filter(|_| !reclaimed && !rows.is_empty())
        {
            stored = gate.insert(rows.clone()).await;
            if stored {
                outcome.inserted += rows.len();
            } else {
                check_stored = true;
            }
        }
        if !stored {
            loop {
                match self
                    .insert(&rows, &mut dead, &mut check_stored, &mut outcome)
                    .await
                {
                    Ok(()) => break,
                    Err(error) => {
                        // Bad rows were set aside by `insert`: what is left is the store's state
                        // (retry) or the deployment's (stop and tell); the rows wait either way.
                        check_stored = true;
                        counter!("tally_worker_retries_total").increment(1);
                        let verdict = error.verdict();
                        let delay = backoff.next(verdict);
                        if verdict == Verdict::Stop {
                            error!(message = "clickhouse refuses the worker (check clickhouse.user, its password and rights, and that migrations ran); retrying", partition = self.partition, %error, ?delay, rows = rows.len());
                        } else {
                            warn!(message = "clickhouse insert failed; retrying", partition = self.partition, %error, ?delay, rows = rows.len());
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                warn!(partition = self.partition, rows = rows.len(), "shutting down with a batch unwritten; it stays pending for another worker");
                                return Ok(outcome);
                            }
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
        dead.sort_by(|a, b| a.key.cmp(&b.key));
        dead.dedup_by(|a, b| a.key == b.key);
        outcome.dead = dead.len();
        let dropped = self
            .store
            .dead_letter(self.partition, &dead, self.settings.dead_letter_max)
            .await?;
        if dropped > 0 {
            warn!(
                partition = self.partition,
                dropped,
                "the dead-letter stream is full (worker.dead_letter_max); dropped its oldest"
            );
            counter!("tally_worker_dead_letters_dropped_total").increment(dropped);
        }
        self.store.ack(self.partition, &ids).await?;
        counter!("tally_worker_inserted_total").increment(outcome.inserted as u64);
        counter!("tally_worker_skipped_total").increment(outcome.skipped as u64);
        counter!("tally_worker_dead_letters_total").increment(outcome.dead as u64);
        // The backlog gauges are read apart, every few seconds (see `backlog_loop`).
        Ok(outcome)
    }

    /// Inserts `rows`. Rows ClickHouse refuses as bad data are found by bisection and put in
    /// `dead`; only transient errors are returned. Once anything failed — or for reclaimed
    /// entries — each chunk is first checked against the ids ClickHouse already holds: a
    /// failed insert may still have written rows (a lost reply; or a materialized view that
    /// threw after the raw table was written), and they must not be written twice.
    async fn insert(
        &self,
        rows: &[EventRow],
        dead: &mut Vec<DeadLetter>,
        check_stored: &mut bool,
        outcome: &mut StepOutcome,
    ) -> Result<(), tally_clickhouse::Error> {
        let mut pending: Vec<Vec<&EventRow>> = vec![rows.iter().collect()];
        while let Some(mut chunk) = pending.pop() {
            if *check_stored {
                let before = chunk.len();
                self.drop_stored(&mut chunk).await?;
                outcome.skipped += before - chunk.len();
            }
            if chunk.is_empty() {
                continue;
            }
            let started = Instant::now();
            let result = self.db.insert_events(&chunk).await;
            histogram!("tally_worker_insert_seconds").record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    outcome.inserted += chunk.len();
                    histogram!("tally_worker_batch_rows").record(chunk.len() as f64);
                }
                Err(e) if e.verdict() == Verdict::GiveUp && chunk.len() > 1 => {
                    *check_stored = true;
                    let b = chunk.split_off(chunk.len() / 2);
                    pending.push(b);
                    pending.push(chunk);
                }
                Err(e) if e.verdict() == Verdict::GiveUp => {
                    *check_stored = true;
                    let row = chunk[0];
                    warn!(partition = self.partition, event_id = %row.event_id, error = %e, "clickhouse refused an event; moved to dead letters");
                    dead.push(DeadLetter {
                        id: String::new(),
                        key: EventKey::parse(row.event_key()).unwrap_or_else(|| EventKey {
                            entry: row.event_key().to_owned(),
                            item: None,
                        }),
                        // The event with its visit figures, readable and replayable.
                        payload: Payload::Event(Box::new(row.event())),
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes from `chunk` the rows whose event_id ClickHouse already has.
    async fn drop_stored(&self, chunk: &mut Vec<&EventRow>) -> Result<(), tally_clickhouse::Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        let min = chunk.iter().map(|r| r.ts).min().unwrap_or(0);
        let max = chunk.iter().map(|r| r.ts).max().unwrap_or(0);
        let ids: Vec<String> = chunk.iter().map(|r| r.event_id.clone()).collect();
        let stored = self
            .db
            .existing_event_ids(
                &ids,
                min.saturating_sub(ID_CHECK_MARGIN_SECS),
                max.saturating_add(ID_CHECK_MARGIN_SECS),
            )
            .await?;
        chunk.retain(|r| !stored.contains(&r.event_id));
        Ok(())
    }
}

/// The first wait after a failure (the longest is `worker.max_backoff`).
const FIRST_RETRY: Duration = Duration::from_millis(100);
