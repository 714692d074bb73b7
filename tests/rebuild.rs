//! `tally rebuild-counters` restores the live counters the beacon had built, after Redis lost
//! them (FLUSHALL), from ClickHouse — and counts events still waiting in the streams.

mod common;

use std::{process::Command, str::FromStr};

use common::{GOOGLEBOT, Hit, send};
use serde_json::Value;
use tally::Roles;
use tally_testkit::{RedisServer, TestApp};

async fn snapshot(http: &reqwest::Client, app: &TestApp) -> (Value, Value) {
    let totals = common::counters(http, app, None).await;
    let views = common::get_json(
        http,
        &app.url("/api/v1/sites/demo/views?page=/a&page=/b&page=/c&page=/never"),
    )
    .await;
    (json_without_online(totals), views)
}

fn json_without_online(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("online");
    v
}

fn redis_cli(redis: &RedisServer, args: &[&str]) {
    let status = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .status()
        .expect("redis-cli");
    assert!(status.success());
}

async fn send_traffic(http: &reqwest::Client, app: &TestApp, offset: u8) {
    // Three readers, none reloading a page (reloads would be repeats, not views).
    for (i, page) in ["/a", "/a", "/b", "/c", "/b", "/a"].iter().enumerate() {
        let ip = format!("203.0.113.{}", offset + (i % 3) as u8);
        assert_eq!(send(http, app, &Hit::view(page).ip(&ip)).await, 204);
    }
    assert_eq!(send(http, app, &Hit::view("/a").ua(GOOGLEBOT)).await, 204);
}

#[tokio::test]
async fn rebuild_counters_after_flushall_restores_the_beacons_counters() {
    let redis = RedisServer::start();
    let mut settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let http = reqwest::Client::new();

    // Phase 1: traffic that reaches ClickHouse.
    let app = TestApp::spawn(settings.clone()).await;
    send_traffic(&http, &app, 1).await;
    common::wait_for_rollups(&app, 7).await;
    let before = snapshot(&http, &app).await;
    assert_eq!(before.0["total_views"], 6);
    app.stop().await;

    redis_cli(&redis, &["FLUSHALL"]);
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    assert_eq!(
        common::counters(&http, &app, None).await["total_views"],
        0,
        "Redis lost the counters"
    );
    let rebuilt = tally::rebuild::rebuild_counters(&settings, None)
        .await
        .unwrap();
    assert_eq!(rebuilt[0].views, 6);
    assert_eq!(rebuilt[0].bots, 1);
    assert_eq!(snapshot(&http, &app).await, before);

    // Phase 2: more traffic while no worker runs (it waits in the stream), then only the
    // counters are lost: the rebuild adds the stream's events to ClickHouse's figures.
    send_traffic(&http, &app, 10).await;
    let before = snapshot(&http, &app).await;
    assert_eq!(before.0["total_views"], 12);
    let p = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(settings.redis.partitions);
    redis_cli(
        &redis,
        &[
            "-n",
            settings.redis.nodes()[0].rsplit('/').next().unwrap(),
            "DEL",
            &format!("tally:{{p{p}}}:views:demo"),
            &format!("tally:{{p{p}}}:totals:demo"),
        ],
    );
    let rebuilt = tally::rebuild::rebuild_counters(&settings, None)
        .await
        .unwrap();
    assert_eq!(rebuilt[0].from_streams, 7);
    assert_eq!(snapshot(&http, &app).await, before);
    app.stop().await;
}
