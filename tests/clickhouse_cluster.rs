//! Tally on a ClickHouse cluster (`clickhouse.cluster`): two shards of two replicas (four
//! Debian `clickhouse-server` processes) with ZooKeeper, started by the test kit.
//!
//! - The whole pipeline — views, pings and events of several sites created through the
//!   API, counters, every statistics report — gives the cluster the figures of one server.
//! - A replica killed and restarted while views arrive: every accepted view is stored once.
//! - Migrations from two processes at once, retention and a deleted site's history reach
//!   every node.
//!
//! Ignored by a plain `cargo test`: `scripts/test` runs them (`--ignored`) while the other
//! suites run, since they mostly wait on the servers.
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
/// `call`, tried again (as a restarted process would) while its node is down: 18.16 can
/// crash under concurrent `ON CLUSTER` work (a segfault in its ZooKeeper client, see
/// tally-testkit's `ClickHouseCluster`), and the test kit restarts the node.
async fn through_crashes<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tally_clickhouse::Error>>,
{
    use tally_core::retry::{Classify, Verdict};
    for attempt in 1.. {
        match call().await {
            Ok(done) => return done,
            Err(e) if e.verdict() == Verdict::Retry && attempt < 30 => {
                eprintln!("{what}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    unreachable!()
}

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
#[ignore = "four ClickHouse servers and ZooKeeper: scripts/test runs these beside the other tests"]
async fn the_pipeline_on_a_2x2_cluster_gives_the_figures_of_one_server() {
    let cluster = ClickHouseCluster::start();
    let http = reqwest::Client::new();
    let start = Utc.with_ymd_and_hms(2026, 11, 20, 2, 0, 0).unwrap();
    let mut figures = Vec::new();
    let mut database = String::new();
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
        database = app.settings.clickhouse.database.clone();
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
    for node in cluster.nodes.iter() {
        per_node.push(node_rows(node, &database).await);
    }
    assert!(per_node[0] > 0 && per_node[2] > 0, "{per_node:?}");
    assert_eq!(per_node[0], per_node[1], "shard 1's replicas: {per_node:?}");
    assert_eq!(per_node[2], per_node[3], "shard 2's replicas: {per_node:?}");
}

/// The answer of one node to `q` (which must succeed).
async fn node_sql(node: &tally_testkit::ClickHouseServer, q: String) -> String {
    let r = reqwest::Client::new()
        .post(node.url())
        .body(q.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{q}: {}", r.text().await.unwrap());
    r.text().await.unwrap()
}

/// Rows of `database.events_local` on `node`, once the replica has fetched every part its
/// shard's log holds (`SYSTEM SYNC REPLICA`).
async fn node_rows(node: &tally_testkit::ClickHouseServer, database: &str) -> u64 {
    let sql = |q: String| node_sql(node, q);
    sql(format!("SYSTEM SYNC REPLICA {database}.events_local")).await;
    sql(format!(
        "SELECT sum(rows) FROM system.parts \
         WHERE database = '{database}' AND table = 'events_local' AND active"
    ))
    .await
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test]
#[ignore = "four ClickHouse servers and ZooKeeper: scripts/test runs these beside the other tests"]
async fn a_replica_killed_and_restarted_under_load_loses_and_doubles_nothing() {
    const VIEWS: usize = 1500;
    const SENDERS: usize = 6;
    let cluster = ClickHouseCluster::start();
    let mut settings = cluster_settings(&cluster);
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    create_sites(&http, &app).await;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = (0..SENDERS)
        .map(|sender| {
            let (http, base, sent) = (http.clone(), app.url(""), sent.clone());
            tokio::spawn(async move {
                let mut accepted = 0u64;
                for n in (sender..VIEWS).step_by(SENDERS) {
                    let (site, host) = SITES[n % SITES.len()];
                    let body = json!({"t": "pageview", "site": site, "sid": "t",
                                      "url": format!("https://{host}/tin-tuc/{}", n % 40)});
                    let status = http
                        .post(format!("{base}/collect"))
                        .header("origin", format!("https://{host}"))
                        .header("user-agent", common::CHROME)
                        .header("x-forwarded-for", format!("10.1.{}.{}", n / 250, n % 250))
                        .header("content-type", "text/plain")
                        .body(body.to_string())
                        .send()
                        .await
                        .unwrap()
                        .status();
                    accepted += u64::from(status == 204);
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                accepted
            })
        })
        .collect::<Vec<_>>();
    // Node 2 is the first replica of shard 2: in the servers' order it takes the shard's
    // writes and reads until it goes.
    wait_for("a third of the views sent", || async {
        sent.load(std::sync::atomic::Ordering::Relaxed) >= VIEWS / 3
    })
    .await;
    cluster.nodes[2].kill();
    let killed_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[2].restart();
    let restarted_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    let mut accepted = 0;
    for sender in load {
        accepted += sender.await.unwrap();
    }
    eprintln!(
        "replica killed after {killed_at} views, restarted after {restarted_at}; \
         {accepted} of {VIEWS} accepted"
    );
    assert_eq!(accepted, VIEWS as u64, "the beacon never needs ClickHouse");
    assert!(
        restarted_at > killed_at,
        "views arrived while the replica was down"
    );
    common::wait_for_rollups(&app, accepted).await;
    assert_eq!(
        app.db().event_id_counts().await.unwrap(),
        (accepted, accepted)
    );
    // Every replica holds its shard's rows, and the shards together hold each view once.
    let mut per_node = Vec::new();
    for node in cluster.nodes.iter() {
        per_node.push(node_rows(node, &app.settings.clickhouse.database).await);
    }
    eprintln!("rows per node after the replicas caught up: {per_node:?}");
    assert_eq!(per_node[0], per_node[1], "{per_node:?}");
    assert_eq!(per_node[2], per_node[3], "{per_node:?}");
    assert_eq!(per_node[0] + per_node[2], accepted, "{per_node:?}");
    // The rollups never count a view twice. On 18.16 they can fall short by the part of
    // one insert that the killed replica had stored in `events_local` but not yet rolled
    // up: the retried block is then a duplicate there, and 18.16 runs no view for a
    // duplicate block (docs/operations.md, "A ClickHouse cluster", gives the figure).
    let today = Utc::now().date_naive();
    let range = format!(
        "from={}&to={}",
        today.pred_opt().unwrap(),
        today.succ_opt().unwrap()
    );
    let mut views = 0;
    for (site, _) in SITES {
        let url = app.url(&format!("/api/v1/sites/{site}/stats/summary?{range}"));
        views += get_admin_json(&http, &url, TOKEN).await["views"]
            .as_u64()
            .unwrap();
    }
    eprintln!("views in the rollups: {views} of {accepted}");
    let figures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cluster-figures.txt");
    let _ = std::fs::write(
        figures,
        format!(
            "clickhouse cluster: a replica killed for 2 s under load: {accepted} accepted, \
             {} rows stored once, {views} views in the rollups\n",
            per_node[0] + per_node[2]
        ),
    );
    assert!(views <= accepted, "{views} of {accepted}");
    let metrics = http
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!(
        "worker retries: {:?}",
        common::metric(&metrics, "tally_worker_retries_total")
    );
}

/// Two processes migrate one new database at once, through different nodes; retention drops
/// old months and a deleted site's history goes, on every shard and replica.
#[tokio::test]
#[ignore = "four ClickHouse servers and ZooKeeper: scripts/test runs these beside the other tests"]
async fn migrations_retention_and_deleted_history_work_on_the_cluster() {
    use chrono::NaiveDate;
    use tally_clickhouse::{Db, EventRow};
    use tally_core::{Event, EventKind};

    let cluster = ClickHouseCluster::start();
    let settings = cluster_settings(&cluster);
    let db = Db::new(&settings.clickhouse);
    let mut through_node_3 = settings.clickhouse.clone();
    through_node_3.url = cluster.nodes[3].url();
    let other = Db::new(&through_node_3);
    let (a, b) = tokio::join!(
        through_crashes("migrating", || db.migrate(&settings.sites)),
        through_crashes("migrating", || other.migrate(&settings.sites))
    );
    let last = tally_clickhouse::migrate::MIGRATIONS.len() as u32;
    assert!(a.contains(&last) || b.contains(&last), "{a:?} {b:?}");
    assert_eq!(
        db.migrate(&settings.sites).await.unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(
        db.applied_migrations().await.unwrap(),
        (1..=last).collect::<Vec<_>>()
    );

    let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap().timestamp() * 1000;
    let mut rows = Vec::new();
    for site in ["ward-1", "ward-3"] {
        for ts in [at(2021, 1, 10), at(2021, 2, 27), at(2021, 3, 20)] {
            let e = Event {
                kind: EventKind::Pageview,
                site: site.into(),
                ts_ms: ts,
                page: "/a".into(),
                visitor: 1,
                ..Event::empty()
            };
            let id = format!("r{}", rows.len());
            rows.push(EventRow::new(0, &id, e, settings.timezone_of(site)));
        }
    }
    db.insert_events(&rows).await.unwrap();
    let dropped = db
        .drop_raw_before(NaiveDate::from_ymd_opt(2021, 3, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(dropped, [202101, 202102]);
    let database = &settings.clickhouse.database;
    for site in ["ward-1", "ward-3"] {
        assert_eq!(
            common::site_rows(&settings, "events", site).await,
            1,
            "{site}"
        );
        assert_eq!(
            common::site_rows(&settings, "page_events", site).await,
            1,
            "{site}"
        );
        let summary = db.summary(&common::all_time(site)).await.unwrap();
        assert_eq!(summary.views, 3, "the rollups of {site} keep every view");
    }
    // Deleting a site's history runs on every shard's replicas.
    through_crashes("dropping ward-3's history", || {
        db.drop_site_history("ward-3")
    })
    .await;
    wait_for("ward-3's rows to go", || async {
        common::site_rows(&settings, "events", "ward-3").await == 0
            && common::site_rows(&settings, "site_daily", "ward-3").await == 0
    })
    .await;
    assert_eq!(common::site_rows(&settings, "events", "ward-1").await, 1);
    assert_eq!(
        db.summary(&common::all_time("ward-1")).await.unwrap().views,
        3
    );
    for node in cluster.nodes.iter() {
        let left = node_sql(
            node,
            format!("SELECT count() FROM {database}.events_local WHERE site = 'ward-3'"),
        )
        .await;
        assert_eq!(left.trim(), "0");
    }
}
