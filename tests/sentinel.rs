//! Redis Sentinel (issue 21): a primary, a replica and a sentinel (Debian's
//! `redis-sentinel`); the primary is killed under a stream of page views. The beacon keeps
//! answering (its buffer holds the events while there is no primary), the sentinel promotes
//! the replica, the beacon and the worker find it without a restart, and ClickHouse ends
//! with every accepted view the replica had received: the loss is what asynchronous
//! replication had not copied when the primary died, measured and printed here.

mod common;

use std::time::{Duration, Instant};

use common::CHROME;
use serde_json::json;
use tally_testkit::{RedisSentinel, TestApp};

#[tokio::test]
async fn a_failover_under_load_keeps_the_beacon_answering_and_the_worker_delivering() {
    let redis = RedisSentinel::start();
    let mut settings =
        tally_testkit::settings_for(&redis.primary, &tally_testkit::services().clickhouse);
    settings.redis.sentinels = vec![redis.url()];
    settings.redis.master_name = RedisSentinel::MASTER_NAME.into();
    let app = TestApp::spawn(settings.clone()).await;
    let url = app.url("/collect");

    // 1,500 views, 3 at a time, about 6 s; the primary is killed after 1.5 s.
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (mut accepted, mut refused) = (0u64, 0u64);
        let mut tasks = Vec::new();
        for c in 0..3usize {
            let (http, url) = (http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut not) = (0u64, 0u64);
                for i in (c..1500).step_by(3) {
                    let body = json!({"t": "pageview", "site": "demo", "url": format!("http://localhost/p{}", i % 17)});
                    match http.post(&url).header("user-agent", CHROME).body(body.to_string()).send().await {
                        Ok(r) if r.status() == 204 => ok += 1,
                        _ => not += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(12)).await;
                }
                (ok, not)
            }));
        }
        for t in tasks {
            let (ok, not) = t.await.unwrap();
            accepted += ok;
            refused += not;
        }
        (accepted, refused)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // What the replica had copied when the primary died.
    let offsets = |info: String| {
        info.lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = offsets(redis.primary.info("replication"));
    redis.primary.kill();
    let replica_offset = offsets(redis.replica.info("replication"));
    let killed = Instant::now();
    let replica_port = redis.replica.port();
    common::wait_for("the sentinel to promote the replica", || async {
        redis.primary_port() == Some(replica_port)
    })
    .await;
    let promoted = killed.elapsed();
    let (accepted, refused) = sender.await.unwrap();
    assert_eq!(refused, 0, "the beacon refused views during the failover");

    // Everything the new primary holds reaches ClickHouse once.
    let db = app.db();
    let store = app.store().await;
    common::wait_for("the streams of the new primary drained", || async {
        let mut backlog = 0;
        for p in 0..settings.redis.partitions {
            backlog += store.stream_len(p).await.unwrap_or(1);
        }
        backlog == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rows, distinct) = db.event_id_counts().await.unwrap();
    assert_eq!(rows, distinct, "an event was inserted twice");
    let lost = accepted - rows.min(accepted);
    eprintln!(
        "sentinel failover: promoted after {promoted:?}; {accepted} views accepted, {rows} in ClickHouse, \
         {lost} lost; the replica was {} bytes of replication stream behind when the primary died",
        before.saturating_sub(replica_offset)
    );
    let figures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sentinel-figures.txt");
    let _ = std::fs::write(
        figures,
        format!(
            "sentinel: failover after {promoted:.1?}, {accepted} accepted, {rows} stored, {lost} lost\n"
        ),
    );
    assert!(rows <= accepted, "more rows than accepted views");
    let behind = before.saturating_sub(replica_offset);
    if behind == 0 {
        // The replica had everything the primary had: nothing may be lost.
        assert_eq!(lost, 0, "views lost though the replica had caught up");
    } else {
        // At most the beacon batches the replica had not received.
        assert!(lost <= 50, "{lost} of {accepted} accepted views lost");
    }
    // The live counters on the new primary agree with what it holds.
    let total = common::counters(&reqwest::Client::new(), &app, None).await["total_views"]
        .as_u64()
        .unwrap();
    assert!(
        total >= rows && total <= accepted,
        "{total} views counted, {rows} stored, {accepted} accepted"
    );
    app.stop().await;
}

#[test]
fn sentinel_settings_are_checked_when_they_load() {
    let load = |env: &[(&str, &str)]| {
        tally_core::Settings::load(
            Some(tally_testkit::config_file()),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .err()
        .map(|e| e.to_string())
    };
    assert_eq!(
        load(&[("TALLY__REDIS__SENTINELS", "[\"redis://127.0.0.1:26379\"]")]),
        None
    );
    for (env, named) in [
        (
            vec![("TALLY__REDIS__SENTINELS", "[\"127.0.0.1:26379\"]")],
            "redis.sentinels",
        ),
        (
            vec![
                ("TALLY__REDIS__SENTINELS", "[\"redis://127.0.0.1:26379\"]"),
                ("TALLY__REDIS__CLUSTER", "true"),
            ],
            "redis.sentinels",
        ),
        (
            vec![
                ("TALLY__REDIS__SENTINELS", "[\"redis://127.0.0.1:26379\"]"),
                ("TALLY__REDIS__MASTER_NAME", " "),
            ],
            "redis.master_name",
        ),
    ] {
        let err = load(&env).unwrap_or_else(|| panic!("{env:?} accepted"));
        assert!(err.contains(named), "{env:?}: {err}");
    }
}
