//! Benchmarks run by `scripts/bench` through `tally bench …` (release build, private Redis
//! and ClickHouse). Timing lives here, never in tests.
//!
//! - `drain`: pre-fill the streams with N realistic events, then time the worker moving them
//!   into ClickHouse (raw table + rollups), against a plain batch insert of the same rows
//!   into a table without rollups.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tally_clickhouse::{Db, EventRow};
use tally_core::{Event, EventKind, Settings, dates::DayRange, visitor};
use tally_redis::{Attempt, Store, TrackedEvent};
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
    /// CPU time of this process (the worker, and the wait for the rows) over the drain.
    pub worker_cpu: Duration,
    pub plain_insert: Duration,
}

impl DrainReport {
    pub fn drain_rate(&self) -> f64 {
        self.events as f64 / self.drain.as_secs_f64()
    }
    pub fn plain_rate(&self) -> f64 {
        self.events as f64 / self.plain_insert.as_secs_f64()
    }
    /// The worker's CPU per event drained, in µs: a figure that the machine's speed moves
    /// less than the rate, for comparing changes to the worker.
    pub fn worker_us_per_event(&self) -> f64 {
        self.worker_cpu.as_secs_f64() * 1e6 / self.events as f64
    }
}

/// CPU time (user and system, every thread) this process has used so far, from
/// `/proc/self/stat`; zero where there is none.
fn own_cpu() -> Duration {
    // Fields 14 and 15 (utime, stime) in clock ticks of 1/100 s (USER_HZ, fixed by the
    // kernel's ABI); the name (field 2) may hold spaces, so count from its closing paren.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split(' ').skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
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

/// Events per recorded batch when pre-filling the streams for the drain benchmark.
const PREFILL_BATCH: usize = 64;
/// Recorded batches per apply when pre-filling: events-stream entries of 512 events, as the
/// applier makes them under the HTTP benchmark's load.
const PREFILL_APPLY_EVERY: usize = 8;

/// Pre-fills the streams with `n` events, drains them with the worker, then inserts the same
/// rows into a table without rollups. Needs an empty ClickHouse database and Redis.
pub async fn drain(settings: &Settings, n: usize) -> anyhow::Result<DrainReport> {
    let store = Store::connect(&settings.redis)
        .await
        .context("cannot connect to Redis")?;
    let db = Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await?;
    ensure!(
        db.count_events().await? == 0,
        "the benchmark needs an empty `events` table"
    );

    let events = synth_events(settings, n, 42);
    let started = Instant::now();
    // Batches as the beacon makes them under 64 concurrent senders: each partition's part of
    // a batch becomes one stream entry (16 events with the bench's four sites).
    for (i, chunk) in events.chunks(PREFILL_BATCH).enumerate() {
        let now = chrono::Utc::now().timestamp_millis();
        store
            .record(i as u64 + 1, chunk, &settings.tracking, now, Attempt::First)
            .await?;
        // The applier takes what gathered while it paused: ~500 events under that load.
        if (i + 1) % PREFILL_APPLY_EVERY == 0 {
            store.apply_all(&settings.tracking, now).await?;
        }
    }
    store
        .apply_all(&settings.tracking, chrono::Utc::now().timestamp_millis())
        .await?;
    let prefill = started.elapsed();

    let worker = tally_worker::Worker::build(
        settings,
        tally_core::directory::Directory::new(&settings.sites),
        db.clone(),
        tally_core::Clock::system(),
    )
    .await?;
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let cpu_before = own_cpu();
    worker.spawn(&tracker, stop.clone());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if db.count_events().await? >= n as u64 {
            break;
        }
    }
    let drain = started.elapsed();
    let worker_cpu = own_cpu().saturating_sub(cpu_before);
    stop.cancel();
    tracker.close();
    tracker.wait().await;

    db.create_plain_events_copy().await?;
    // The baseline starts, as the drain did, on a ClickHouse with no merges running (the
    // drain leaves parts of every rollup to merge for a few seconds).
    let quiet_by = Instant::now() + Duration::from_secs(60);
    while db.merges_running().await? > 0 && Instant::now() < quiet_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<EventRow> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let tz = settings.timezone_of(&e.event.site);
            EventRow::new(e.partition, &format!("{i}-0"), e.event, tz)
        })
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
        worker_cpu,
        plain_insert,
    })
}

/// Percentiles (p50, p99) of `samples`, in the samples' unit.
pub fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Freshness: sends page views to `target` at `rate` per second for `duration`, each on its
/// own page `/fresh/N` of `site`, and measures the time from the 204 to the row being in
/// ClickHouse (polled every 10 ms). Returns (p50, p99) in milliseconds and the count.
pub async fn freshness(
    settings: &Settings,
    target: &str,
    site: &str,
    host: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Freshness> {
    let db = Db::new(&settings.clickhouse);
    let store = Store::connect(&settings.redis).await?;
    let site_id = tally_core::SiteId::parse(site).context("the site of the benchmark")?;
    let visits =
        || async { Ok::<_, anyhow::Error>(store.counters(&site_id, None, 0).await?.visits) };
    let visits_before = visits().await?;
    let http = reqwest::Client::new();
    let url = format!("{}/collect", target.trim_end_matches('/'));
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let prefix = format!("/fresh/{}/", chrono::Utc::now().timestamp_millis());
    let sender = {
        let (http, prefix, host, site) = (
            http.clone(),
            prefix.clone(),
            host.to_owned(),
            site.to_owned(),
        );
        tokio::spawn(async move {
            let mut accepted_at = Vec::with_capacity(total);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
            for i in 0..total {
                tick.tick().await;
                let body = serde_json::json!({"t": "pageview", "site": site, "url": format!("https://{host}{prefix}{i}")});
                let r = http
                    .post(&url)
                    .header(
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
                    )
                    .header(
                        "x-forwarded-for",
                        format!("198.18.{}.{}", i / 250 % 250, 1 + i % 250),
                    )
                    .body(body.to_string())
                    .send()
                    .await?;
                ensure!(r.status() == 204, "view {i} refused: {}", r.status());
                accepted_at.push(Instant::now());
            }
            Ok::<_, anyhow::Error>(accepted_at)
        })
    };
    // Every view is a new reader's, so a new visit: the k-th visit the live totals gain is
    // the k-th view applied (one site's batches are applied in the order accepted). Rows of
    // one site travel through one stream in order, so the k-th marked row to appear is the
    // k-th view sent.
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    let (applied_at, seen_at) = tokio::try_join!(
        arrivals(total, deadline, || async {
            Ok((visits().await? - visits_before) as usize)
        }),
        arrivals(total, deadline, || async {
            Ok(db.count_pages_with_prefix(site, &prefix).await? as usize)
        })
    )?;
    let accepted_at = sender.await??;
    Ok(Freshness {
        views: total,
        stored: lags(&accepted_at, &seen_at, "reached ClickHouse")?,
        trailing: lags(&accepted_at, &applied_at, "were applied (visits, online)")?,
    })
}

/// When each of `total` things arrived, polling `count` (how many have) every 10 ms until
/// all have or `deadline` passes.
async fn arrivals<F, Fut>(
    total: usize,
    deadline: Instant,
    mut count: F,
) -> anyhow::Result<Vec<Instant>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut at: Vec<Instant> = Vec::with_capacity(total);
    while at.len() < total && Instant::now() < deadline {
        let n = count().await?;
        let now = Instant::now();
        while at.len() < n.min(total) {
            at.push(now);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(at)
}

/// (p50, p99) in ms from each acceptance to its arrival; an error naming `what` when not
/// everything arrived.
fn lags(accepted_at: &[Instant], arrived_at: &[Instant], what: &str) -> anyhow::Result<(f64, f64)> {
    ensure!(
        arrived_at.len() == accepted_at.len(),
        "only {} of {} views {what}",
        arrived_at.len(),
        accepted_at.len()
    );
    let mut ms: Vec<f64> = accepted_at
        .iter()
        .zip(arrived_at)
        .map(|(a, s)| s.saturating_duration_since(*a).as_secs_f64() * 1000.0)
        .collect();
    Ok(p50_p99(&mut ms))
}

/// What [`freshness`] measured: (p50, p99) in ms from an accepted view to its row in
/// ClickHouse, and to its visit in the live totals (the trailing figures).
pub struct Freshness {
    pub views: usize,
    pub stored: (f64, f64),
    pub trailing: (f64, f64),
}

/// Inserts `n` generated events spread over the last `days` days into `events` (the
/// rollups fill through their views), for the admin query benchmark. They come as visits of
/// 1–4 page views (Zipf pages out of 20,000), a heartbeat after each view, the first view
/// carrying the referrer and, for one visit in five, UTM parameters: so entry and exit pages,
/// bounces and campaigns have the shape of a real site's.
pub async fn seed_history(settings: &Settings, n: usize, days: u32) -> anyhow::Result<Duration> {
    let db = Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await?;
    let mut g = Synth::new(7);
    let now = chrono::Utc::now().timestamp();
    let span = i64::from(days) * 86_400;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(100_000);
    let mut i = 0usize;
    let mut session = 0u64;
    while i < n {
        let site = &settings.sites[session as usize % settings.sites.len()];
        session += 1;
        let visitor = 1 + g.below(2_000_000);
        let mut ts = now - span + (i as i64 * span / n as i64);
        let referrer =
            ["", "google.com", "facebook.com", "zalo.me", "coccoc.com"][g.below(5) as usize];
        let utm =
            (g.below(5) == 0).then(|| ["newsletter", "zalo", "facebook"][g.below(3) as usize]);
        let browser = ["Chrome", "Safari", "Firefox", "Edge", "Coc Coc"][g.below(5) as usize];
        let os = ["Windows 10", "Android", "iOS", "Mac OSX", "Linux"][g.below(5) as usize];
        let device = ["desktop", "mobile"][g.below(2) as usize];
        let place = [
            ("VN", "Ho Chi Minh", "Ho Chi Minh City"),
            ("VN", "Hanoi", "Hanoi"),
            ("VN", "Da Nang", "Da Nang"),
            ("US", "", ""),
        ][g.below(4) as usize];
        let views = 1 + g.below(4) as u16;
        let mut last = ts;
        for seq in 1..=views {
            if i >= n {
                break;
            }
            let page = format!("/tin-tuc/bai-{}", g.zipf(20_000));
            let first = seq == 1;
            let event = Event {
                kind: EventKind::Pageview,
                site: site.id.to_string(),
                ts_ms: ts * 1000,
                title: format!("Bài viết {page}"),
                path: page.clone(),
                page,
                referrer_host: if first {
                    referrer.into()
                } else {
                    String::new()
                },
                utm_source: utm.filter(|_| first).unwrap_or_default().into(),
                utm_medium: utm.filter(|_| first).map_or("", |_| "email").into(),
                utm_campaign: utm.filter(|_| first).map_or("", |_| "thang-12").into(),
                browser: browser.into(),
                os: os.into(),
                device: device.into(),
                country: place.0.into(),
                region: place.1.into(),
                city: place.2.into(),
                language: "vi-VN".into(),
                width: [390u16, 768, 1366, 1920][g.below(4) as usize],
                visitor,
                session,
                new_visit: first,
                visit_seq: seq,
                gap_ms: ((ts - last) * 1000) as u32,
                ..Event::empty()
            };
            let ping = Event {
                kind: EventKind::Ping,
                ts_ms: (ts + 30) * 1000,
                visit_seq: 0,
                new_visit: false,
                gap_ms: 30_000,
                ..event.clone()
            };
            batch.push(EventRow::new(0, &format!("h{i}"), event, site.timezone));
            i += 1;
            if i < n {
                batch.push(EventRow::new(0, &format!("h{i}"), ping, site.timezone));
                i += 1;
            }
            last = ts + 30;
            ts += 30 + g.below(90) as i64;
            if batch.len() >= 100_000 {
                db.insert_events(&batch).await?;
                batch.clear();
            }
        }
    }
    db.insert_events(&batch).await?;
    Ok(started.elapsed())
}

/// Times the admin queries (summary, daily timeseries, top pages, browsers; filtered by a
/// page, a referrer and a UTM source; compared with the previous period; entry and exit
/// pages) over the last 30 and 90 days of every site, and the hourly series of one day,
/// `rounds` times. Returns (name, p50 ms, p99 ms) per query.
pub async fn admin_queries(
    settings: &Settings,
    rounds: usize,
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    use tally_clickhouse::explore::{Field, Filters};
    use tally_clickhouse::stats::{Dimension, Interval, Range};
    let db = Db::new(&settings.clickhouse);
    let filter = |field, value: &str| {
        let mut f = Filters::default();
        f.set(field, value);
        f
    };
    let none = Filters::default();
    let by_page = filter(Field::Page, "/tin-tuc/bai-1");
    let by_referrer = filter(Field::Referrer, "google.com");
    let by_utm = filter(Field::UtmSource, "newsletter");
    let mut out = Vec::new();
    for days in [30u32, 90] {
        // (name, milliseconds of each round), in the order the queries run.
        let mut timings: Vec<(&'static str, Vec<f64>)> = Vec::new();
        for round in 0..rounds {
            let site = &settings.sites[round % settings.sites.len()];
            let today = chrono::Utc::now()
                .with_timezone(&site.timezone)
                .date_naive();
            let range_of = |to: chrono::NaiveDate, days: u32| {
                Range::new(
                    site.id.as_str(),
                    &DayRange {
                        from: to - chrono::Days::new(u64::from(days) - 1),
                        to,
                        tz: site.timezone,
                    },
                )
            };
            let r = range_of(today, days);
            let before = range_of(today - chrono::Days::new(u64::from(days)), days);
            let day = range_of(today - chrono::Days::new(1), 1);
            let (r, before, day) = (&r, &before, &day);
            type Query<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
            // Futures do nothing until awaited: each one runs alone, timed, in turn.
            let queries: Vec<(&'static str, Query<'_>)> = vec![
                (
                    "summary",
                    Box::pin(async {
                        db.summary(r).await.map(drop)?;
                        Ok(())
                    }),
                ),
                (
                    "timeseries (day)",
                    Box::pin(async {
                        db.timeseries(r, Interval::Day).await.map(drop)?;
                        Ok(())
                    }),
                ),
                (
                    "top pages (with engaged time, bounce rate)",
                    Box::pin(async {
                        let pages = db.top_pages(r, 20, 0).await?;
                        let keys: Vec<String> = pages.into_iter().map(|p| p.page).collect();
                        db.engagement(r, &none, &keys, 37_500).await?;
                        Ok(())
                    }),
                ),
                (
                    "browsers",
                    Box::pin(async {
                        db.breakdown(r, &none, Dimension::Browser, 8).await?;
                        Ok(())
                    }),
                ),
                (
                    "timeseries (hour) of one day, among",
                    Box::pin(async {
                        db.timeseries(day, Interval::Hour).await?;
                        Ok(())
                    }),
                ),
                (
                    "referrers of one page (page filter)",
                    Box::pin(async {
                        db.breakdown(r, &by_page, Dimension::Referrer, 10).await?;
                        Ok(())
                    }),
                ),
                (
                    "pages of one referrer (referrer filter, with engaged time)",
                    Box::pin(async {
                        let pages = db.pages_filtered(r, &by_referrer, 20, 0).await?;
                        let keys: Vec<String> = pages.into_iter().map(|p| p.page).collect();
                        db.engagement(r, &by_referrer, &keys, 37_500).await?;
                        Ok(())
                    }),
                ),
                (
                    "summary, UTM source filter",
                    Box::pin(async {
                        db.summary_filtered(r, &by_utm).await?;
                        Ok(())
                    }),
                ),
                (
                    "timeseries (day), page filter",
                    Box::pin(async {
                        db.timeseries_filtered(r, &by_page, Interval::Day).await?;
                        Ok(())
                    }),
                ),
                (
                    "summary compared with the previous period",
                    Box::pin(async {
                        tokio::try_join!(db.summary(r), db.summary(before))?;
                        Ok(())
                    }),
                ),
                (
                    "timeseries compared with the previous period",
                    Box::pin(async {
                        tokio::try_join!(
                            db.timeseries(r, Interval::Day),
                            db.timeseries(before, Interval::Day)
                        )?;
                        Ok(())
                    }),
                ),
                (
                    "summary, page filter, compared with the previous period",
                    Box::pin(async {
                        tokio::try_join!(
                            db.summary_filtered(r, &by_page),
                            db.summary_filtered(before, &by_page)
                        )?;
                        Ok(())
                    }),
                ),
                (
                    "entry pages",
                    Box::pin(async {
                        db.entry_pages(r, &none, 10).await?;
                        Ok(())
                    }),
                ),
                (
                    "exit pages",
                    Box::pin(async {
                        db.exit_pages(r, &none, 10).await?;
                        Ok(())
                    }),
                ),
            ];
            for (i, (name, query)) in queries.into_iter().enumerate() {
                let t = Instant::now();
                query.await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match timings.get_mut(i) {
                    Some((_, samples)) => samples.push(ms),
                    None => timings.push((name, vec![ms])),
                }
            }
        }
        for (name, mut samples) in timings {
            let (p50, p99) = p50_p99(&mut samples);
            out.push((format!("{name}, {days} days"), p50, p99));
        }
    }
    Ok(out)
}

/// Records, through the accept script and the applier, one reader on each of `pages` pages of the first site
/// (`/live/N`, in that order, a millisecond apart ending at `now_ms`), then `extra` more
/// readers on each of the ten pages read last, the tenth-last having the most: a site with
/// `pages` pages read within the online window.
pub async fn seed_realtime(
    settings: &Settings,
    store: &Store,
    pages: usize,
    now_ms: i64,
) -> anyhow::Result<()> {
    let site = &settings.sites[0];
    let partition = site.id.partition(settings.redis.partitions);
    let event = |page: usize, visitor: u64, ts_ms: i64| {
        let path = format!("/live/{page}");
        TrackedEvent {
            event: Event {
                kind: EventKind::Pageview,
                site: site.id.to_string(),
                ts_ms,
                title: format!("Bài {page}"),
                path: path.clone(),
                page: path,
                visitor,
                ..Event::empty()
            },
            partition,
            day: "20260101".into(),
            session_candidate: visitor,
        }
    };
    let start = now_ms - pages as i64;
    let mut events: Vec<TrackedEvent> = (0..pages)
        .map(|p| event(p, p as u64 + 1, start + p as i64))
        .collect();
    for k in 0..10usize {
        let page = pages.saturating_sub(10) + k;
        for r in 0..=k {
            let visitor = (pages + 1 + k * 100 + r) as u64;
            events.push(event(page, visitor, now_ms));
        }
    }
    for (i, chunk) in events.chunks(1000).enumerate() {
        let at = chunk.iter().map(|e| e.event.ts_ms).max().unwrap_or(now_ms);
        store
            .record(i as u64 + 1, chunk, &settings.tracking, at, Attempt::First)
            .await?;
    }
    store.apply_all(&settings.tracking, now_ms).await?;
    Ok(())
}

/// Times a realtime read of a site with `pages` pages being read (seeded with
/// [`seed_realtime`]), `rounds` times: as the api reads it (the pages with the latest
/// events, [`tally_redis::REALTIME_CANDIDATES`]), reading every page, and the ceiling, one
/// round trip of the public counters. Returns (name, p50 ms, p99 ms) for each.
pub async fn realtime(
    settings: &Settings,
    pages: usize,
    rounds: usize,
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let store = Store::connect(&settings.redis).await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    seed_realtime(settings, &store, pages, now_ms).await?;
    let site = &settings.sites[0].id;
    let window = settings.tracking.online_window.as_millis() as i64;
    let view = |candidates| tally_redis::RealtimeView {
        now_ms,
        window_ms: window,
        minutes: 30,
        max_pages: 50,
        candidates,
    };
    let bounded = view(tally_redis::REALTIME_CANDIDATES);
    let every = view(pages + 10);
    let mut timings: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        let t = Instant::now();
        let rt = store.realtime_view(site, &bounded).await?;
        timings[0].push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(rt.pages.len() == 50, "50 pages being read");
        let t = Instant::now();
        store.realtime_view(site, &every).await?;
        timings[1].push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        store.counters(site, None, now_ms - window).await?;
        timings[2].push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let names = [
        format!(
            "realtime, {} of {pages} pages read",
            tally_redis::REALTIME_CANDIDATES
        ),
        format!("realtime, all {pages} pages read"),
        "ceiling: one counters round trip".to_owned(),
    ];
    Ok(names
        .into_iter()
        .zip(timings.iter_mut())
        .map(|(name, samples)| {
            let (p50, p99) = p50_p99(samples);
            (name, p50, p99)
        })
        .collect())
}
