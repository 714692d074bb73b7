//! `/healthz` (the process answers) and `/readyz` (Redis and ClickHouse answer).

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::{Value, json};
use tally_clickhouse::Db;
use tally_redis::Store;

pub(crate) fn router(store: Store, db: Db) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state((store, db))
}

async fn readyz(State((store, db)): State<(Store, Db)>) -> (StatusCode, Json<Value>) {
    let (redis, clickhouse) = tokio::join!(store.ping(), db.ping());
    let state = |r: &Result<(), _>| if r.is_ok() { "ok" } else { "unreachable" };
    let body = json!({"redis": state(&redis.map_err(|_| ())), "clickhouse": state(&clickhouse.map_err(|_| ()))});
    let status = if body["redis"] == "ok" && body["clickhouse"] == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
