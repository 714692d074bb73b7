//! SIGTERM drains every role: requests in flight are answered, the beacon's buffer reaches
//! Redis, the worker inserts and acknowledges what it holds. Every accepted view is counted
//! and stored exactly once.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{CHROME, counters, wait_for};
use serde_json::json;
use tally_testkit::TestApp;

#[tokio::test]
async fn sigterm_under_load_loses_nothing() {
    let settings = tally_testkit::settings();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("serve")
        .envs(tally_testkit::env_for(&settings))
        .env("TALLY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the server to listen", || async {
        http.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;

    // Eight senders post views as fast as they are answered until the server stops.
    let mut senders = Vec::new();
    for s in 0..8 {
        let (http, url) = (http.clone(), format!("{base}/collect"));
        senders.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for i in 0..2000 {
                let body = json!({"t": "pageview", "site": "demo", "url": format!("http://localhost/s{s}/{i}")});
                match http.post(&url).header("user-agent", CHROME).body(body.to_string()).send().await {
                    Ok(r) if r.status() == 204 => accepted += 1,
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server stopped accepting connections
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut accepted = 0;
    for s in senders {
        accepted += s.await.unwrap();
    }
    assert!(accepted > 0);

    // Another process picks up where the stopped one left off.
    let app = TestApp::spawn(settings).await;
    assert_eq!(
        counters(&http, &app, None).await["total_views"],
        accepted,
        "the beacon flushed its buffer"
    );
    let db = app.db();
    wait_for("every accepted view in ClickHouse", || async {
        db.count_events().await.unwrap_or(0) >= accepted
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.event_id_counts().await.unwrap(), (accepted, accepted));
    app.stop().await;
}
