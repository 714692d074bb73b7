//! End to end: a page view posted to the beacon shows in the live counters at once and
//! lands as exactly one row in ClickHouse.

mod common;

use std::time::Duration;

use common::wait_for;

use serde_json::json;
use tally_testkit::TestApp;

#[tokio::test]
async fn a_page_view_is_counted_live_and_stored_once() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();

    let health = http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let response = http
        .post(app.url("/collect"))
        .header("origin", "http://localhost:8000")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
        .header("content-type", "text/plain")
        .body(
            json!({
                "t": "pageview",
                "site": "demo",
                "url": "http://localhost:8000/tin-t%E1%BB%A9c/bai-1?utm_source=zalo",
                "title": "Bài 1",
                "ref": "https://www.google.com/",
                "sid": "tab1",
                "w": 1280
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // Live at once: no waiting for the worker.
    let counters = common::get_json(
        &http,
        &app.url("/api/v1/sites/demo/counters?page=/tin-t%E1%BB%A9c/bai-1"),
    )
    .await;
    assert_eq!(
        counters,
        json!({"site": "demo", "page": "/tin-tức/bai-1", "page_views": 1, "page_online": 1,
               "online": 1, "total_views": 1, "total_visits": 1})
    );

    let db = app.db();
    wait_for("the row in ClickHouse", || {
        let db = db.clone();
        async move { db.count_events().await.unwrap_or(0) >= 1 }
    })
    .await;
    // Give a double insert the chance to show itself before counting exactly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count_events().await.unwrap(), 1);
    let row = db.debug_rows().await.unwrap();
    assert_eq!(row.len(), 1);
    let row = &row[0];
    assert_eq!(row.site, "demo");
    assert_eq!(row.kind, "pageview");
    assert_eq!(row.page, "/tin-tức/bai-1");
    assert_eq!(row.title, "Bài 1");
    assert_eq!(row.referrer_host, "google.com");
    assert_eq!(row.utm_source, "zalo");
    assert_eq!(row.browser, "Chrome");
    assert_eq!(row.new_visit, 1);
    assert_ne!(row.visitor, 0);

    // The stream entry was acknowledged and deleted.
    let store = app.store().await;
    let mut backlog = 0;
    for p in 0..app.settings.redis.partitions {
        backlog += store.stream_len(p).await.unwrap();
    }
    assert_eq!(backlog, 0);
    app.stop().await;
}
