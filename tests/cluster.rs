//! The whole pipeline against a three-master Redis Cluster: page views over four sites (one
//! per partition, so the partitions' hash-tagged keys spread over the masters) → live
//! counters → ClickHouse, with worker processes killed under load. Nothing lost, nothing
//! doubled.

mod common;

use std::{
    process::{Child, Command, Stdio},
    str::FromStr,
    time::Duration,
};

use serde_json::json;
use tally::Roles;
use tally_core::{SiteId, settings::SiteSettings};
use tally_redis::Store;
use tally_testkit::{RedisCluster, TestApp};

const SITES: [&str; 4] = ["hanoi", "tech", "news", "ward"];

fn spawn_worker(settings: &tally_core::Settings) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--roles", "worker"])
        .envs(tally_testkit::env_for(settings))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker process")
}

#[tokio::test]
async fn the_pipeline_runs_on_a_redis_cluster_through_worker_kills() {
    let cluster = RedisCluster::start();
    let mut settings = tally_testkit::settings_for_cluster(&cluster);
    settings.worker.max_age = Duration::from_millis(150);
    settings.sites = SITES
        .iter()
        .map(|id| SiteSettings {
            id: SiteId::parse(id).unwrap(),
            name: String::new(),
            domains: vec!["localhost".into()],
            timezone: chrono_tz::Tz::UTC,
            public_counters: true,
        })
        .collect();
    let partitions: std::collections::BTreeSet<u16> = settings
        .sites
        .iter()
        .map(|s| s.id.partition(settings.redis.partitions))
        .collect();
    assert_eq!(partitions.len(), 4, "one site per partition");

    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let http = reqwest::Client::new();
    let url = app.url("/collect");
    let sender = tokio::spawn({
        let http = http.clone();
        async move {
            let mut accepted = [0u64; 4];
            for i in 0..800usize {
                let site = i % 4;
                let body = json!({"t": "pageview", "site": SITES[site], "url": format!("http://localhost/p{}", i % 9)});
                let r = http
                    .post(&url)
                    .header("user-agent", common::CHROME)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                if r.status() == 204 {
                    accepted[site] += 1;
                }
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            accepted
        }
    });
    let mut worker = spawn_worker(&settings);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        worker.kill().unwrap();
        worker.wait().unwrap();
        worker = spawn_worker(&settings);
    }
    let accepted = sender.await.unwrap();
    let total: u64 = accepted.iter().sum();
    assert_eq!(total, 800);

    // Live counters per site, straight from the cluster.
    for (i, site) in SITES.iter().enumerate() {
        let c = common::get_json(&http, &app.url(&format!("/api/v1/sites/{site}/counters"))).await;
        assert_eq!(c["total_views"], accepted[i], "{site}");
    }

    // Exactly once in ClickHouse, and the streams drained.
    let db = app.db();
    let store = Store::connect(&settings.redis).await.unwrap();
    assert!(store.is_cluster());
    common::wait_for("every view in ClickHouse and the streams empty", || async {
        let mut backlog = 0;
        for p in 0..settings.redis.partitions {
            backlog += store.stream_len(p).await.unwrap_or(1);
        }
        backlog == 0 && db.count_events().await.unwrap_or(0) >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.event_id_counts().await.unwrap(), (total, total));
    worker.kill().unwrap();
    worker.wait().unwrap();
    app.stop().await;
}
