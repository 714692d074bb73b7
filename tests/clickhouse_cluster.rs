//! Tally on a ClickHouse cluster (`clickhouse.cluster`): two shards of two replicas (four
//! Debian `clickhouse-server` processes) with ZooKeeper, started by the test kit.
//!
//! - The whole pipeline — views, pings and events of several sites created through the
//!   API, counters, every statistics report — gives the cluster the figures of one server.
//! - A replica killed and restarted while views arrive: every accepted view is stored once.
//! - Retention and a deleted site's history reach every node.
mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{Auth, TOKEN, call, get_admin_json, get_json, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use tally::Roles;
use tally_core::clock::Clock;
use tally_testkit::{ClickHouseCluster, TestApp, services, settings, settings_for};

/// Settings on `cluster`: its first node's URL, `clickhouse.cluster` set.
fn cluster_settings(cluster: &ClickHouseCluster) -> tally_core::Settings {
    let mut s = settings_for(&services().redis, &cluster.nodes[0]);
    s.clickhouse.cluster = ClickHouseCluster::NAME.into();
    s
}

const SITES: [(&str, &str); 3] = [
    ("ward-1", "p1.example.vn"),
    ("news", "news.example.vn"),
    // On the second shard (sipHash64 of the id); the others are on the first.
    ("ward-3", "p3.example.vn"),
];

/// One request of the seeded traffic: (site, client IP, body).
fn traffic() -> Vec<(&'static str, String, Value)> {
    let mut hits = Vec::new();
    for (i, (site, host)) in SITES.iter().enumerate() {
        // Readers 0..=4+i of each site, each reading one to three pages; some come from a
        // search engine, one follows a campaign link, one downloads a form.
        for reader in 0..(5 + i) {
            let ip = format!("10.{i}.0.{reader}");
            for page in 0..(1 + reader % 3) {
                let mut body = json!({
                    "t": "pageview", "site": site, "sid": format!("tab{reader}"),
                    "url": format!("https://{host}/tin-tuc/{page}"),
                    "title": format!("Tin {page}"),
                });
                if reader % 2 == 0 && page == 0 {
                    body["referrer"] = json!("https://www.google.com/");
                }
                if reader == 3 {
                    body["url"] = json!(format!(
                        "https://{host}/tin-tuc/{page}?utm_source=zalo&utm_campaign=tet"
                    ));
                }
                hits.push((*site, ip.clone(), body));
            }
            hits.push((
                *site,
                ip.clone(),
                json!({"t": "ping", "site": site, "sid": format!("tab{reader}"),
                       "url": format!("https://{host}/tin-tuc/0")}),
            ));
            if reader == 1 {
                hits.push((
                    *site,
                    ip.clone(),
                    json!({"t": "event", "site": site, "name": "download",
                           "url": format!("https://{host}/tin-tuc/0"),
                           "target": format!("https://{host}/files/mau-01.pdf"),
                           "props": {"kind": "form"}}),
                ));
            }
        }
    }
    hits
}

async fn post(http: &reqwest::Client, app: &TestApp, site: &str, ip: &str, body: &Value) -> u16 {
    let host = SITES.iter().find(|(s, _)| *s == site).unwrap().1;
    http.post(app.url("/collect"))
        .header("origin", format!("https://{host}"))
        .header("user-agent", common::CHROME)
        .header("x-forwarded-for", ip)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Creates the sites through the API (the directory tables are on the cluster too).
async fn create_sites(http: &reqwest::Client, app: &TestApp) {
    for (site, host) in SITES {
        let (status, body) = call(
            http,
            Method::POST,
            &app.url("/api/v1/sites"),
            Auth::Token(TOKEN),
            Some(
                json!({"id": site, "domains": [host], "timezone": "Asia/Ho_Chi_Minh",
                        "public_counters": true}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = call(
        http,
        Method::POST,
        &app.url("/api/v1/sites/news/goals"),
        Auth::Token(TOKEN),
        Some(json!({"page": "/tin-tuc/2"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Every report of every site, as the API answers it.
async fn reports(http: &reqwest::Client, app: &TestApp) -> Vec<(String, Value)> {
    let range = "from=2026-11-19&to=2026-11-21";
    let mut all = Vec::new();
    for (site, _) in SITES {
        for report in [
            "summary",
            "timeseries",
            "pages",
            "entry-pages",
            "exit-pages",
            "referrers",
            "utm-sources",
            "utm-campaigns",
            "browsers",
            "os",
            "devices",
            "screens",
            "events",
            "events/targets?name=download&",
            "events/props?name=download&prop=kind&",
            "goals",
        ] {
            let sep = if report.ends_with('&') { "" } else { "?" };
            let path = format!("/api/v1/sites/{site}/stats/{report}{sep}{range}");
            let mut body = get_admin_json(http, &app.url(&path), TOKEN).await;
            // A goal's id is drawn at random when it is made.
            for goal in body["goals"].as_array_mut().into_iter().flatten() {
                goal.as_object_mut().unwrap().remove("id");
            }
            all.push((path.clone(), body));
        }
        // Filtered: the visits that came from the search engine.
        let path = format!("/api/v1/sites/{site}/stats/pages?{range}&referrer=www.google.com");
        all.push((
            path.clone(),
            get_admin_json(http, &app.url(&path), TOKEN).await,
        ));
        let path = format!("/api/v1/sites/{site}/counters?page=/tin-tuc/0");
        all.push((path.clone(), get_json(http, &app.url(&path)).await));
    }
    all
}

/// Sends the traffic to `app` one request at a time (the same order on both), the clock
/// moving 20 s between requests; returns how many were accepted.
async fn seed(http: &reqwest::Client, app: &TestApp, clock: &Clock) -> u64 {
    let mut accepted = 0;
    for (site, ip, body) in traffic() {
        let status = post(http, app, site, &ip, &body).await;
        assert_eq!(status, 204, "{body}");
        accepted += 1;
        clock.advance(Duration::from_secs(20));
    }
    accepted
}

#[tokio::test]
async fn the_pipeline_on_a_2x2_cluster_gives_the_figures_of_one_server() {
    let cluster = ClickHouseCluster::start();
    let http = reqwest::Client::new();
    let start = Utc.with_ymd_and_hms(2026, 11, 20, 2, 0, 0).unwrap();
    let mut figures = Vec::new();
    for on_cluster in [false, true] {
        let mut settings = if on_cluster {
            cluster_settings(&cluster)
        } else {
            settings()
        };
        // The readers' addresses come in X-Forwarded-For.
        settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let clock = Clock::manual(start);
        let app = TestApp::spawn_with_clock(settings, Roles::all(), clock.clone()).await;
        create_sites(&http, &app).await;
        let accepted = seed(&http, &app, &clock).await;
        common::wait_for_rollups(&app, accepted).await;
        let (rows, ids) = app.db().event_id_counts().await.unwrap();
        assert_eq!((rows, ids), (accepted, accepted));
        figures.push(reports(&http, &app).await);
        app.stop().await;
    }
    let (one, many) = (&figures[0], &figures[1]);
    // The seeded traffic shows in the figures (not a comparison of empty answers).
    let summary = |f: &Vec<(String, Value)>, site: &str| {
        f.iter()
            .find(|(p, _)| p.starts_with(&format!("/api/v1/sites/{site}/stats/summary")))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        summary(one, "ward-1")["visitors"],
        5,
        "{}",
        summary(one, "ward-1")
    );
    assert_eq!(summary(one, "ward-3")["views"], 13);
    for ((path, a), (_, b)) in one.iter().zip(many) {
        assert_eq!(a, b, "{path}: one server, then the cluster");
    }
    // The rows are spread over both shards, each held by both of its replicas.
    let mut per_node = Vec::new();
    for node in &cluster.nodes {
        per_node.push(node_rows(node).await);
    }
    assert!(per_node[0] > 0 && per_node[2] > 0, "{per_node:?}");
    assert_eq!(per_node[0], per_node[1], "shard 1's replicas: {per_node:?}");
    assert_eq!(per_node[2], per_node[3], "shard 2's replicas: {per_node:?}");
}

/// Rows of every `events_local` table on `node` (all test databases), once its replication
/// queue is empty.
async fn node_rows(node: &tally_testkit::ClickHouseServer) -> u64 {
    let sql = |q: &'static str| async move {
        reqwest::Client::new()
            .post(node.url())
            .body(q)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    wait_for("the replication queue to empty", || async {
        sql("SELECT sum(queue_size) FROM system.replicas")
            .await
            .trim()
            == "0"
    })
    .await;
    sql("SELECT sum(rows) FROM system.parts WHERE table = 'events_local' AND active")
        .await
        .trim()
        .parse()
        .unwrap()
}
