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

    // The views live at once: no waiting for the worker.
    let url = app.url("/api/v1/sites/demo/counters?page=/tin-t%E1%BB%A9c/bai-1");
    let counters = common::get_json(&http, &url).await;
    assert_eq!(
        (&counters["page_views"], &counters["total_views"]),
        (&json!(1), &json!(1))
    );
    // The rest once applied (within 2 s: tests/trailing.rs).
    app.settled().await;
    let counters = common::get_json(&http, &url).await;
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

/// Behind a proxy that names the visitor's country (`server.country_header`, here
/// Cloudflare's `CF-IPCountry`), the country of each view reaches the countries statistics;
/// values that are not a two-letter code, and Cloudflare's "XX", count as unknown.
#[tokio::test]
async fn a_trusted_proxy_names_the_visitors_country() {
    let mut settings = tally_testkit::settings();
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.server.country_header = "CF-IPCountry".into();
    settings.admin.tokens = vec![tally_core::settings::AdminToken::All(
        "country-test-token-0123456".into(),
    )];
    let today = chrono::Utc::now()
        .with_timezone(&settings.sites[0].timezone)
        .date_naive();
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    let views = [
        ("203.0.113.1", Some("vn")),
        ("203.0.113.2", Some("VN")),
        ("203.0.113.3", Some("jp")),
        ("203.0.113.4", Some("XX")),
        ("203.0.113.5", Some("<b>")),
        ("203.0.113.6", None),
    ];
    for (ip, country) in views {
        let mut request = http
            .post(app.url("/collect"))
            .header("origin", "http://localhost")
            .header("user-agent", common::CHROME)
            .header("x-forwarded-for", ip)
            .body(
                json!({"t": "pageview", "site": "demo", "url": "http://localhost/a"}).to_string(),
            );
        if let Some(country) = country {
            request = request.header("cf-ipcountry", country);
        }
        assert_eq!(request.send().await.unwrap().status(), 204);
    }
    common::wait_for_rollups(&app, 6).await;
    let url = app.url(&format!(
        "/api/v1/sites/demo/stats/countries?from={today}&to={today}"
    ));
    let countries = common::get_admin_json(&http, &url, "country-test-token-0123456").await;
    assert_eq!(
        countries,
        json!({"rows": [
            {"name": "", "views": 3, "visitors": 3},
            {"name": "VN", "views": 2, "visitors": 2},
            {"name": "JP", "views": 1, "visitors": 1},
        ]})
    );
    app.stop().await;
}

/// `/readyz` is public: however often it is asked, Redis and ClickHouse are asked at most
/// once a second.
#[tokio::test]
async fn readiness_checks_are_shared() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let checks = || async {
        let text = common::get_text(&http, &app.metrics_url()).await;
        common::metric(&text, "tally_readiness_checks_total").unwrap_or(0.0)
    };
    let before = checks().await;
    let started = std::time::Instant::now();
    let answers =
        futures_util::future::join_all((0..200).map(|_| http.get(app.url("/readyz")).send())).await;
    for r in answers {
        assert_eq!(r.unwrap().status(), 200);
    }
    let seconds = started.elapsed().as_secs_f64();
    let made = checks().await - before;
    assert!(made >= 1.0, "a check was made");
    assert!(
        made <= seconds.ceil() + 1.0,
        "{made} checks for 200 requests in {seconds:.2} s"
    );
}

/// Redis' memory against its `maxmemory` is a metric, and `/readyz` warns (still 200) from
/// 80 % of the limit on, and when there is no limit, before Redis would refuse writes.
#[tokio::test]
async fn readiness_warns_before_redis_memory_runs_out() {
    let redis = tally_testkit::RedisServer::start();
    let settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::new();
    let conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let used = app.store().await.memory().await.unwrap().used;
    let ready = |maxmemory: u64| {
        let (http, url, mut conn) = (http.clone(), app.url("/readyz"), conn.clone());
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(maxmemory)
                .query_async(&mut conn)
                .await
                .unwrap();
            // Past the answer kept for a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "a warning, not unready");
            let body: serde_json::Value = r.json().await.unwrap();
            body["warnings"].as_array().unwrap().clone()
        }
    };
    let plenty = ready(used * 100).await;
    assert!(plenty.is_empty(), "{plenty:?}");
    let tight = ready(used * 10 / 9).await;
    assert!(
        tight.len() == 1 && tight[0].as_str().unwrap().contains("% of its maxmemory"),
        "{tight:?}"
    );
    let unlimited = ready(0).await;
    assert!(
        unlimited.len() == 1 && unlimited[0].as_str().unwrap().contains("no maxmemory"),
        "{unlimited:?}"
    );
    let metrics = common::get_text(&http, &app.metrics_url()).await;
    for name in [
        "tally_redis_used_memory_bytes",
        "tally_redis_maxmemory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    app.stop().await;
}

/// `/metrics` passes Prometheus' own checker (`promtool check metrics`, Debian's `prometheus`
/// package, installed by scripts/test): HELP on every metric, histograms for latencies and
/// sizes, Prometheus' naming rules.
#[tokio::test]
async fn metrics_pass_promtool() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    // Traffic, so that every role has recorded its metrics.
    for page in ["/a", "/b"] {
        assert_eq!(
            common::send(&http, &app, &common::Hit::view(page)).await,
            204
        );
    }
    common::wait_for_rollups(&app, 2).await;
    assert_eq!(
        http.get(app.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let text = common::get_text(&http, &app.metrics_url()).await;
    for name in [
        "tally_beacon_accepted_total",
        "tally_worker_insert_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
    app.stop().await;
}

/// `tally loadgen`'s sessions (page views, pings, leaves from many visitors) are accepted
/// and stored, each once: what it reports sent is what ClickHouse holds.
#[tokio::test]
async fn loadgen_traffic_is_accepted_and_stored_once() {
    let mut settings = tally_testkit::settings();
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.beacon.rate_limit_per_minute = 100_000;
    let app = TestApp::spawn(settings).await;
    let report = tally::loadgen::run(tally::loadgen::LoadSpec {
        target: app.url(""),
        sites: vec![("demo".into(), "localhost".into())],
        pages: 50,
        connections: 4,
        rate: Some(400),
        duration: Duration::from_secs(2),
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.sent > 100, "{report}");
    assert_eq!(report.accepted, report.sent, "{report}");
    assert!(report.rejected.is_empty(), "{report}");
    let db = app.db();
    wait_for("every accepted event in ClickHouse", || async {
        db.count_events().await.unwrap_or(0) >= report.accepted
    })
    .await;
    assert_eq!(
        db.event_id_counts().await.unwrap(),
        (report.accepted, report.accepted)
    );
}
