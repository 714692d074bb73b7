//! `/healthz` (the process answers), `/readyz` (Redis and ClickHouse answer) and `/metrics`
//! (Prometheus text of every role in the process).

use std::sync::OnceLock;

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

pub(crate) fn router(store: Store, db: Db) -> Router {
    let metrics = prometheus();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state((store, db))
        .route(
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

async fn readyz(State((store, db)): State<(Store, Db)>) -> (StatusCode, Json<Value>) {
    let (redis, clickhouse) = tokio::join!(store.ping(), db.ping());
    let (redis, clickhouse) = (redis.is_ok(), clickhouse.is_ok());
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
