//! `/healthz` (the process answers) and `/readyz` (Redis and ClickHouse answer) on the public
//! listener, and `/metrics` (Prometheus text of every role in the process) on its own.
//!
//! `/readyz` is public and costs a Redis and a ClickHouse round trip, so its answer is kept
//! for [`READY_FOR`]: however often it is asked, the stores are asked at most once per
//! period (concurrent requests wait for the one check under way).
//!
//! The check also reads Redis' memory against its `maxmemory`: gauges
//! `tally_redis_used_memory_bytes` and `tally_redis_maxmemory_bytes` (also read by
//! [`Readiness::watch`] every [`WATCH_EVERY`]), and a warning in `/readyz` (still 200) from
//! [`MEMORY_WARNING`] of the limit on — before Redis refuses writes at the limit (it never
//! evicts: `noeviction`) — or when it has no limit at all.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tally_clickhouse::Db;
use tally_redis::Store;

/// How long a readiness answer is reused.
const READY_FOR: Duration = Duration::from_secs(1);

/// How often the memory gauges are refreshed without anyone asking `/readyz`.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(10);

/// Share of Redis' `maxmemory` from which `/readyz` warns.
pub(crate) const MEMORY_WARNING: f64 = 0.8;

/// What one readiness check found.
#[derive(Debug, Clone, Copy)]
struct Check {
    at: Instant,
    redis: bool,
    clickhouse: bool,
    memory: Option<tally_redis::Memory>,
}

/// The stores, and the last readiness check.
pub(crate) struct Readiness {
    store: Store,
    db: Db,
    last: tokio::sync::Mutex<Option<Check>>,
}

impl Readiness {
    pub(crate) fn new(store: Store, db: Db) -> Arc<Self> {
        Arc::new(Self {
            store,
            db,
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// The last check if younger than [`READY_FOR`], else a new one.
    async fn check(&self) -> Check {
        let mut last = self.last.lock().await;
        if let Some(check) = *last
            && check.at.elapsed() < READY_FOR
        {
            return check;
        }
        metrics::counter!("tally_readiness_checks_total").increment(1);
        let (redis, clickhouse, memory) =
            tokio::join!(self.store.ping(), self.db.ping(), self.store.memory());
        let memory = memory.ok();
        if let Some(m) = memory {
            set_memory_gauges(m);
        }
        let check = Check {
            at: Instant::now(),
            redis: redis.is_ok(),
            clickhouse: clickhouse.is_ok(),
            memory,
        };
        *last = Some(check);
        check
    }

    /// Reads Redis' memory every [`WATCH_EVERY`] until `stop`, so the memory gauges stay
    /// fresh (and a warning reaches the log) without anyone asking `/readyz`.
    pub(crate) async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        // Logged when the warning starts and when it ends, not every period.
        let mut warned = false;
        loop {
            if let Ok(memory) = self.store.memory().await {
                set_memory_gauges(memory);
                match memory_warning(memory) {
                    Some(warning) if !warned => {
                        tracing::warn!(message = "redis memory", %warning);
                        warned = true;
                    }
                    None if warned => {
                        tracing::info!(message = "redis memory is below the warning level again");
                        warned = false;
                    }
                    _ => {}
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
        }
    }
}

fn set_memory_gauges(m: tally_redis::Memory) {
    metrics::gauge!("tally_redis_used_memory_bytes").set(m.used as f64);
    metrics::gauge!("tally_redis_maxmemory_bytes").set(m.max as f64);
}

/// The warning for Redis' memory, if it deserves one.
fn memory_warning(m: tally_redis::Memory) -> Option<String> {
    if m.max == 0 {
        return Some(
            "Redis has no maxmemory: it grows until the system kills it (see \"Sizing Redis\" in docs/operations.md)".into(),
        );
    }
    (m.ratio() >= MEMORY_WARNING).then(|| {
        format!(
            "Redis uses {:.0}% of its maxmemory ({} of {} bytes); at 100% it refuses writes and the beacon answers 503",
            m.ratio() * 100.0,
            m.used,
            m.max
        )
    })
}

/// `/healthz` and `/readyz`, on the public listener.
pub(crate) fn router(readiness: Arc<Readiness>) -> Router {
    // Installed here too, so the roles' metrics are recorded with no metrics listener.
    let _ = prometheus();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// `/metrics`, on its own listener (`server.metrics_listen`): the metrics show every site's
/// traffic, private ones included, so they stay off the public listener.
pub(crate) fn metrics_router() -> Router {
    let metrics = prometheus();
    Router::new().route(
        "/metrics",
        get(move || {
            let body = metrics.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    )
}

/// The process-wide Prometheus recorder, installed on first use (several apps in one test
/// process share it). Latencies and sizes are histograms (their buckets add up across
/// processes, where summaries' quantiles cannot), and every metric has its HELP text.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tally_worker_insert_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tally_worker_batch_rows".into()),
                        &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 50_000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tally_worker_insert_batches".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 64.0],
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed already; then this handle stays
            // empty, which the metrics test would show.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// The HELP text of every metric Tally records (`promtool check metrics` wants one each;
/// the test of /metrics runs it).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tally_beacon_accepted_total",
        "Events accepted by the beacon and queued for Redis."
    );
    describe_counter!(
        "tally_beacon_rejected_total",
        "Tracking requests refused, by reason (the error code of the answer)."
    );
    describe_counter!(
        "tally_beacon_bots_total",
        "Crawler hits recorded as bots (not counted as views)."
    );
    describe_counter!(
        "tally_beacon_unverified_total",
        "Pixel hits with neither Referer nor Origin, recorded apart (not counted as views)."
    );
    describe_counter!(
        "tally_beacon_ignored_total",
        "Tracking requests answered but not recorded, by reason (prefetch)."
    );
    describe_counter!(
        "tally_beacon_events_over_page_cap_total",
        "Events recorded live under \"other pages\" because their site holds tracking.max_pages pages."
    );
    describe_counter!(
        "tally_beacon_events_given_up_total",
        "Events of batches Redis refused with an error that would repeat (logged whole)."
    );
    describe_gauge!(
        "tally_beacon_buffered_events",
        "Events waiting in the beacon's buffer for Redis."
    );
    describe_counter!(
        "tally_worker_inserted_total",
        "Events the worker inserted into ClickHouse."
    );
    describe_counter!(
        "tally_worker_skipped_total",
        "Events the worker found already stored (after a takeover or a failed insert)."
    );
    describe_counter!("tally_worker_retries_total", "ClickHouse inserts retried.");
    describe_counter!(
        "tally_worker_dead_letters_total",
        "Events moved to the dead-letter streams."
    );
    describe_counter!(
        "tally_worker_dead_letters_dropped_total",
        "Oldest dead letters dropped to keep worker.dead_letter_max."
    );
    describe_gauge!(
        "tally_worker_stream_lag",
        "Stream entries (beacon batches) of a partition not yet inserted and acknowledged."
    );
    describe_gauge!(
        "tally_worker_stream_lag_seconds",
        Unit::Seconds,
        "Age of the oldest stream entry of a partition not yet inserted (0 when none): alert when it grows."
    );
    describe_gauge!(
        "tally_worker_dead_letters",
        "Events in a partition's dead-letter stream."
    );
    describe_gauge!(
        "tally_beacon_buffer_capacity",
        "Events the beacon's buffer holds at most (beacon.buffer); past it /collect answers 503."
    );
    describe_counter!(
        "tally_worker_applied_events_total",
        "Accepted events the worker's appliers applied (visits, presence, unique visitors) and moved on to the events stream."
    );
    describe_counter!(
        "tally_worker_apply_races_total",
        "Applies that found another worker had applied the same entries first (nothing written)."
    );
    describe_histogram!(
        "tally_worker_apply_seconds",
        Unit::Seconds,
        "Duration of one apply (read, work out, commit)."
    );
    describe_histogram!(
        "tally_worker_insert_seconds",
        Unit::Seconds,
        "Duration of one ClickHouse insert."
    );
    describe_histogram!(
        "tally_worker_batch_rows",
        Unit::Count,
        "Rows per ClickHouse insert."
    );
    describe_histogram!(
        "tally_worker_insert_batches",
        Unit::Count,
        "Partitions' batches per combined ClickHouse insert (batches ready at the same time go in together)."
    );
    describe_counter!(
        "tally_readiness_checks_total",
        "Readiness checks made against Redis and ClickHouse (at most one a second)."
    );
    describe_gauge!(
        "tally_redis_used_memory_bytes",
        Unit::Bytes,
        "Memory Redis uses (used_memory; the fullest node of a cluster)."
    );
    describe_gauge!(
        "tally_redis_maxmemory_bytes",
        Unit::Bytes,
        "Redis' maxmemory (0: no limit)."
    );
    describe_gauge!(
        "tally_http_connections",
        "Connections open on the public listener."
    );
    describe_counter!(
        "tally_http_connections_waited_total",
        "Times the public listener was at server.max_connections and a new connection waited."
    );
}

/// A JSON error response `{"code", "message"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"code": code, "message": message})))
}

async fn readyz(State(ready): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let check = ready.check().await;
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let status = if check.redis && check.clickhouse {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let warnings: Vec<String> = check.memory.and_then(memory_warning).into_iter().collect();
    (
        status,
        Json(json!({
            "redis": word(check.redis),
            "clickhouse": word(check.clickhouse),
            "warnings": warnings,
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_redis::Memory;

    #[test]
    fn memory_warnings() {
        assert!(
            memory_warning(Memory { used: 10, max: 0 }).is_some(),
            "no limit"
        );
        assert!(memory_warning(Memory { used: 79, max: 100 }).is_none());
        let w = memory_warning(Memory { used: 80, max: 100 }).unwrap();
        assert!(w.contains("80%"), "{w}");
    }
}
