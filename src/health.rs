//! `/healthz` (the process answers) and `/readyz` (Redis and ClickHouse answer) on the public
//! listener, and `/metrics` (Prometheus text of every role in the process) on its own.
//!
//! `/readyz` is public and costs a Redis and a ClickHouse round trip, so its answer is kept
//! for [`READY_FOR`]: however often it is asked, the stores are asked at most once per
//! period (concurrent requests wait for the one check under way).

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
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tally_clickhouse::Db;
use tally_redis::Store;

/// How long a readiness answer is reused.
const READY_FOR: Duration = Duration::from_secs(1);

/// The stores, and the last readiness check: when, and whether Redis and ClickHouse answered.
struct Readiness {
    store: Store,
    db: Db,
    last: tokio::sync::Mutex<Option<(Instant, bool, bool)>>,
}

/// `/healthz` and `/readyz`, on the public listener.
pub(crate) fn router(store: Store, db: Db) -> Router {
    // Installed here too, so the roles' metrics are recorded with no metrics listener.
    let _ = prometheus();
    let readiness = Arc::new(Readiness {
        store,
        db,
        last: tokio::sync::Mutex::new(None),
    });
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
/// process share it).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed already; then this handle stays
            // empty, which the metrics test would show.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A JSON error response `{"code", "message"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"code": code, "message": message})))
}

async fn readyz(State(ready): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let (redis, clickhouse) = {
        let mut last = ready.last.lock().await;
        match *last {
            Some((at, redis, clickhouse)) if at.elapsed() < READY_FOR => (redis, clickhouse),
            _ => {
                metrics::counter!("tally_readiness_checks_total").increment(1);
                let (redis, clickhouse) = tokio::join!(ready.store.ping(), ready.db.ping());
                let answer = (redis.is_ok(), clickhouse.is_ok());
                *last = Some((Instant::now(), answer.0, answer.1));
                answer
            }
        }
    };
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let status = if redis && clickhouse {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"redis": word(redis), "clickhouse": word(clickhouse)})),
    )
}
