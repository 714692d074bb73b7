//! `tally loadgen`: realistic traffic against a running Tally, over HTTP.
//!
//! Visitors (each a client address from 198.18.0.0/15, the benchmarking range, sent as
//! X-Forwarded-For, and one of a few browsers) open sessions of 1–6 page views on pages of
//! Zipf-like popularity, with a ping between views and a leave at the end. Many sites are
//! addressed at once. The target server must trust the generator's address
//! (`server.trusted_proxies`) for the addresses to count as different visitors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::Mutex;

use crate::bench::Synth;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Base URL of the Tally to load, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// Sites as (id, host used in URL and Origin).
    pub sites: Vec<(String, String)>,
    /// Pages per site.
    pub pages: u64,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests per second in total; `None` sends as fast as the server answers.
    pub rate: Option<u64>,
    pub duration: Duration,
    pub progress: bool,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub accepted: u64,
    /// (status, count) of refused requests; status 0 = connection error.
    pub rejected: Vec<(u16, u64)>,
    pub elapsed: Duration,
    /// Latency percentiles in milliseconds: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sent        {}", self.sent)?;
        writeln!(f, "accepted    {}", self.accepted)?;
        for (status, n) in &self.rejected {
            writeln!(f, "rejected    {n} (status {status})")?;
        }
        writeln!(
            f,
            "rate        {:.0} req/s over {:.1} s",
            self.rate(),
            self.elapsed.as_secs_f64()
        )?;
        let [p50, p90, p99, max] = self.latency_ms;
        write!(
            f,
            "latency ms  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"
        )
    }
}

const BROWSERS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

/// What every connection adds to: requests sent, accepted, refused by status.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    accepted: AtomicU64,
    /// Refused requests per status; 0 = connection error.
    refused: Mutex<std::collections::BTreeMap<u16, u64>>,
}

/// Runs the load and returns the report.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    ensure!(!spec.sites.is_empty(), "give at least one --site");
    ensure!(spec.connections > 0, "--connections must be at least 1");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")?;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let per_connection_interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.connections as f64 / r.max(1) as f64));
    let tasks: Vec<_> = (0..spec.connections)
        .map(|c| {
            let connection = Connection {
                http: http.clone(),
                url: format!("{}/collect", spec.target.trim_end_matches('/')),
                spec: spec.clone(),
                counts: counts.clone(),
                synth: Synth::new(0x9e37_79b9 ^ c as u64),
                ticker: per_connection_interval.map(|i| {
                    let mut t = tokio::time::interval(i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                }),
                deadline: started + spec.duration,
                latencies_us: Vec::new(),
            };
            tokio::spawn(connection.run())
        })
        .collect();
    let bar = progress_bar(&spec, counts.clone(), started);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await?);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let refused = counts.refused.lock().await;
    Ok(LoadReport {
        sent: counts.sent.load(Ordering::Relaxed),
        accepted: counts.accepted.load(Ordering::Relaxed),
        rejected: refused.iter().map(|(s, n)| (*s, *n)).collect(),
        elapsed,
        latency_ms: percentiles_ms(latencies_us),
    })
}

/// A bar of the run's seconds with the rate so far (hidden unless `spec.progress`), updated
/// every second until finished.
fn progress_bar(spec: &LoadSpec, counts: Arc<Counts>, started: Instant) -> ProgressBar {
    if !spec.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(spec.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let ticking = bar.clone();
    tokio::spawn(async move {
        while !ticking.is_finished() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ticking.set_position(started.elapsed().as_secs());
            ticking.set_message(format!(
                "{:.0} req/s",
                counts.sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
            ));
        }
    });
    bar
}

/// p50, p90, p99 and max of latencies in µs, in ms.
fn percentiles_ms(mut latencies_us: Vec<u32>) -> [f64; 4] {
    latencies_us.sort_unstable();
    let pct = |p: f64| match latencies_us.len() {
        0 => 0.0,
        n => f64::from(latencies_us[((n - 1) as f64 * p) as usize]) / 1000.0,
    };
    [pct(0.5), pct(0.9), pct(0.99), pct(1.0)]
}

/// One connection's visitors, one after another until the deadline.
struct Connection {
    http: reqwest::Client,
    url: String,
    spec: LoadSpec,
    counts: Arc<Counts>,
    synth: Synth,
    /// Paces the requests when the spec has a rate.
    ticker: Option<tokio::time::Interval>,
    deadline: Instant,
    latencies_us: Vec<u32>,
}

/// Who sends a session's requests.
struct Visitor {
    site: String,
    host: String,
    ip: String,
    ua: &'static str,
    sid: String,
}

impl Connection {
    /// Sends sessions until the deadline; returns the latencies it measured (µs).
    async fn run(mut self) -> Vec<u32> {
        while Instant::now() < self.deadline && self.session().await {}
        self.latencies_us
    }

    /// One visitor's session: 1–6 page views on Zipf-popular pages, a ping between some, a
    /// leave at the end. False when the deadline came first.
    async fn session(&mut self) -> bool {
        let g = &mut self.synth;
        let (site, host) = self.spec.sites[g.below(self.spec.sites.len() as u64) as usize].clone();
        let visitor = Visitor {
            site,
            host,
            ip: format!(
                "198.{}.{}.{}",
                18 + g.below(2),
                g.below(256),
                1 + g.below(254)
            ),
            ua: BROWSERS[g.below(BROWSERS.len() as u64) as usize],
            sid: format!("s{}", g.next_u64() % 1_000_000_000),
        };
        let views = 1 + g.below(6);
        let mut page = String::new();
        for v in 0..views {
            page = format!("/tin-tuc/bai-{}", self.synth.zipf(self.spec.pages));
            let ping = v + 1 < views && self.synth.below(2) == 0;
            for kind in ["pageview", "ping"].into_iter().take(1 + usize::from(ping)) {
                if let Some(t) = self.ticker.as_mut() {
                    t.tick().await;
                }
                if Instant::now() >= self.deadline {
                    return false;
                }
                let body = json!({
                    "t": kind, "site": visitor.site,
                    "url": format!("https://{}{page}", visitor.host),
                    "title": format!("Bài viết số {}", &page[13..]),
                    "ref": if v == 0 { "https://www.google.com/" } else { "" },
                    "sid": visitor.sid, "w": 1280,
                });
                self.post(&visitor, body).await;
            }
        }
        let body = json!({
            "t": "leave", "site": visitor.site,
            "url": format!("https://{}{page}", visitor.host), "sid": visitor.sid,
        });
        self.post(&visitor, body).await;
        true
    }

    /// Sends one event as `visitor`'s browser would, and counts the answer.
    async fn post(&mut self, visitor: &Visitor, body: serde_json::Value) {
        let t0 = Instant::now();
        let result = self
            .http
            .post(&self.url)
            .header("content-type", "text/plain")
            .header("user-agent", visitor.ua)
            .header("origin", format!("https://{}", visitor.host))
            .header("x-forwarded-for", &visitor.ip)
            .body(body.to_string())
            .send()
            .await;
        self.latencies_us
            .push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        let status = match result {
            Ok(r) if r.status() == 204 => {
                self.counts.accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        *self.counts.refused.lock().await.entry(status).or_default() += 1;
    }
}
