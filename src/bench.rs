//! Benchmarks run by `scripts/bench` through `tally bench …` (release build, private Redis
//! and ClickHouse). Timing lives here, never in tests.
//!
//! - `drain`: pre-fill the streams with N realistic events, then time the worker moving them
//!   into ClickHouse (raw table + rollups), against a plain batch insert of the same rows
//!   into a table without rollups.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tally_clickhouse::{Db, EventRow};
use tally_core::{Event, EventKind, Settings, visitor};
use tally_redis::{Store, TrackedEvent};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A deterministic generator (xorshift64*), so every run measures the same data.
pub struct Synth(u64);

impl Synth {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A page index in `0..pages` with Zipf-like popularity (s ≈ 1): page k is drawn about
    /// 1/(k+1) as often as page 0.
    pub fn zipf(&mut self, pages: u64) -> u64 {
        // Inverse of the continuous approximation: k = pages^u - 1 for u uniform in [0, 1).
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((pages as f64 + 1.0).powf(u) - 1.0)
            .floor()
            .min(pages as f64 - 1.0) as u64
    }
}

/// Result of [`drain`].
#[derive(Debug, Clone)]
pub struct DrainReport {
    pub events: usize,
    pub prefill: Duration,
    pub drain: Duration,
    pub plain_insert: Duration,
}

impl DrainReport {
    pub fn drain_rate(&self) -> f64 {
        self.events as f64 / self.drain.as_secs_f64()
    }
    pub fn plain_rate(&self) -> f64 {
        self.events as f64 / self.plain_insert.as_secs_f64()
    }
}

/// Generates `n` events spread over the configured sites: page views on Zipf-popular pages,
/// with a ping for every third view.
pub fn synth_events(settings: &Settings, n: usize, seed: u64) -> Vec<TrackedEvent> {
    let mut g = Synth::new(seed);
    let now_ms = chrono::Utc::now().timestamp_millis();
    (0..n)
        .map(|i| {
            let site = &settings.sites[i % settings.sites.len()];
            let page = format!("/tin-tuc/bai-{}", g.zipf(5000));
            let visitor = 1 + g.below(200_000);
            let kind = if i % 4 == 3 {
                EventKind::Ping
            } else {
                EventKind::Pageview
            };
            let ts_ms = now_ms - (n - i) as i64;
            let event = Event {
                kind,
                site: site.id.to_string(),
                ts_ms,
                title: format!("Bài viết {page}"),
                path: page.clone(),
                page,
                referrer_host: ["", "google.com", "facebook.com", "zalo.me"][g.below(4) as usize]
                    .into(),
                browser: ["Chrome", "Safari", "Firefox", "Edge"][g.below(4) as usize].into(),
                os: ["Windows 10", "Android", "iOS", "Mac OSX"][g.below(4) as usize].into(),
                device: ["desktop", "mobile"][g.below(2) as usize].into(),
                visitor,
                tab: format!("t{}", g.below(1_000_000)),
                width: 1280,
                ..Event::empty()
            };
            TrackedEvent {
                partition: site.id.partition(settings.redis.partitions),
                day: "20260101".into(),
                session_candidate: visitor::session_candidate(visitor, ts_ms),
                event,
            }
        })
        .collect()
}

/// Pre-fills the streams with `n` events, drains them with the worker, then inserts the same
/// rows into a table without rollups. Needs an empty ClickHouse database and Redis.
pub async fn drain(settings: &Settings, n: usize) -> anyhow::Result<DrainReport> {
    let store = Store::connect(&settings.redis.url, settings.redis.partitions)
        .await
        .context("cannot connect to Redis")?;
    let db = Db::new(&settings.clickhouse);
    db.migrate().await?;
    ensure!(
        db.count_events().await? == 0,
        "the benchmark needs an empty `events` table"
    );

    let events = synth_events(settings, n, 42);
    let started = Instant::now();
    for (i, chunk) in events.chunks(1000).enumerate() {
        let now = chrono::Utc::now().timestamp_millis();
        store
            .record(i as u64 + 1, chunk, &settings.tracking, now)
            .await?;
    }
    let prefill = started.elapsed();

    let worker = tally_worker::Worker::build(settings, db.clone()).await?;
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let started = Instant::now();
    worker.spawn(&tracker, stop.clone());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if db.count_events().await? >= n as u64 {
            break;
        }
    }
    let drain = started.elapsed();
    stop.cancel();
    tracker.close();
    tracker.wait().await;

    db.create_plain_events_copy().await?;
    let rows: Vec<EventRow> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| EventRow::new(e.partition, &format!("{i}-0"), e.event))
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(settings.worker.max_rows) {
        db.insert_plain(chunk).await?;
    }
    let plain_insert = started.elapsed();
    Ok(DrainReport {
        events: n,
        prefill,
        drain,
        plain_insert,
    })
}
