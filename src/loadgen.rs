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

/// Runs the load and returns the report.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    ensure!(!spec.sites.is_empty(), "give at least one --site");
    ensure!(spec.connections > 0, "--connections must be at least 1");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")?;
    let url = format!("{}/collect", spec.target.trim_end_matches('/'));
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let bar = if spec.progress {
        let bar = ProgressBar::new(spec.duration.as_secs());
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let deadline = started + spec.duration;
    let per_conn_interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.connections as f64 / r.max(1) as f64));
    let mut tasks = Vec::new();
    for c in 0..spec.connections {
        let (http, url, spec) = (http.clone(), url.clone(), spec.clone());
        let (sent, accepted, statuses, latencies) = (
            sent.clone(),
            accepted.clone(),
            statuses.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut g = Synth::new(0x9e37_79b9 ^ c as u64);
            let mut local = Vec::new();
            let mut ticker = per_conn_interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            'sessions: while Instant::now() < deadline {
                let (site, host) = &spec.sites[g.below(spec.sites.len() as u64) as usize];
                let ip = format!("198.{}.{}.{}", 18 + g.below(2), g.below(256), 1 + g.below(254));
                let ua = BROWSERS[g.below(BROWSERS.len() as u64) as usize];
                let sid = format!("s{}", g.next_u64() % 1_000_000_000);
                let views = 1 + g.below(6);
                let mut page = String::new();
                for v in 0..views {
                    page = format!("/tin-tuc/bai-{}", g.zipf(spec.pages));
                    let mut steps = vec!["pageview"];
                    if v + 1 < views && g.below(2) == 0 {
                        steps.push("ping");
                    }
                    for kind in steps {
                        if let Some(t) = ticker.as_mut() {
                            t.tick().await;
                        }
                        if Instant::now() >= deadline {
                            break 'sessions;
                        }
                        let body = json!({
                            "t": kind, "site": site, "url": format!("https://{host}{page}"),
                            "title": format!("Bài viết số {}", &page[13..]),
                            "ref": if v == 0 { "https://www.google.com/" } else { "" },
                            "sid": sid, "w": 1280,
                        });
                        let t0 = Instant::now();
                        let result = http
                            .post(&url)
                            .header("content-type", "text/plain")
                            .header("user-agent", ua)
                            .header("origin", format!("https://{host}"))
                            .header("x-forwarded-for", &ip)
                            .body(body.to_string())
                            .send()
                            .await;
                        local.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        sent.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok(r) if r.status() == 204 => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => *statuses.lock().await.entry(r.status().as_u16()).or_default() += 1,
                            Err(_) => *statuses.lock().await.entry(0).or_default() += 1,
                        }
                    }
                }
                let body = json!({"t": "leave", "site": site, "url": format!("https://{host}{page}"), "sid": sid});
                let _ = http
                    .post(&url)
                    .header("user-agent", ua)
                    .header("origin", format!("https://{host}"))
                    .header("x-forwarded-for", &ip)
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| {
                        if r.status() == 204 {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                sent.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().await.extend(local);
        }));
    }
    let ticker = {
        let bar = bar.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let secs = started.elapsed().as_secs();
                bar.set_position(secs);
                bar.set_message(format!(
                    "{:.0} req/s",
                    sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
                ));
            }
        })
    };
    for t in tasks {
        t.await?;
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            f64::from(lat[((lat.len() - 1) as f64 * p) as usize]) / 1000.0
        }
    };
    Ok(LoadReport {
        sent: sent.load(Ordering::Relaxed),
        accepted: accepted.load(Ordering::Relaxed),
        rejected: statuses
            .lock()
            .await
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect(),
        elapsed,
        latency_ms: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
    })
}
