//! The tracking edge against real Redis (testkit): every status of the contract, the pixel,
//! the tracker asset, the counting rules and a Redis outage under load.

mod common;

use std::{str::FromStr, time::Duration};

use common::{CHROME, FIREFOX, GOOGLEBOT, Hit, counters, send, wait_for};
use serde_json::{Value, json};
use tally_redis::Attempt;
use tally_testkit::{RedisServer, TestApp};

fn trusting_localhost() -> tally_core::Settings {
    let mut s = tally_testkit::settings();
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    s
}

async fn post_raw(
    http: &reqwest::Client,
    app: &TestApp,
    body: Vec<u8>,
    origin: &str,
) -> (u16, Value) {
    let r = http
        .post(app.url("/collect"))
        .header("origin", origin)
        .header("user-agent", CHROME)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn every_status_code_of_the_contract() {
    let mut settings = tally_testkit::settings();
    settings.beacon.rate_limit_per_minute = 1000;
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    let ok = |extra: Value| {
        let mut body = json!({"t": "pageview", "site": "demo", "url": "http://localhost/a"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    let local = "http://localhost";

    assert_eq!(post_raw(&http, &app, ok(json!({})), local).await.0, 204);

    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("bad json", b"{\"t\":".to_vec()),
        (
            "invalid utf-8",
            b"{\"t\":\"pageview\",\"site\":\"demo\",\"url\":\"http://localhost/\xff\"}".to_vec(),
        ),
        ("unknown type", ok(json!({"t": "click"}))),
        ("missing url", br#"{"t":"pageview","site":"demo"}"#.to_vec()),
        ("url not http", ok(json!({"url": "ftp://localhost/a"}))),
        ("javascript url", ok(json!({"url": "javascript:alert(1)"}))),
        ("title too long", ok(json!({"title": "x".repeat(600)}))),
        ("page too long", ok(json!({"page": "p".repeat(600)}))),
        (
            "ref too long",
            ok(json!({"ref": format!("https://r/{}", "x".repeat(2100))})),
        ),
        ("sid too long", ok(json!({"sid": "s".repeat(65)}))),
        ("bad width", ok(json!({"w": -5}))),
        ("bad site id", ok(json!({"site": "No Such"}))),
    ];
    for (what, body) in malformed {
        let (status, err) = post_raw(&http, &app, body, local).await;
        assert_eq!(status, 400, "{what}");
        assert_eq!(err["code"], "malformed", "{what}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }

    let (status, err) = post_raw(&http, &app, ok(json!({"site": "elsewhere"})), local).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("unknown_site")));

    let (status, err) = post_raw(&http, &app, ok(json!({})), "https://evil.example").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, _) = post_raw(
        &http,
        &app,
        ok(json!({"url": "https://evil.example/a"})),
        local,
    )
    .await;
    assert_eq!(status, 403, "the event URL's host must be allowed too");

    let (status, err) = post_raw(&http, &app, vec![b' '; 5000], local).await;
    assert_eq!((status, err["code"].as_str()), (413, Some("too_large")));
    let (status, err) = post_raw(&http, &app, vec![b'x'; 10 << 20], local).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (413, Some("too_large")),
        "a 10 MiB body"
    );

    // Unknown paths and methods answer in the same error format.
    let r = http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");
    let r = http.get(app.url("/collect")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );

    // Nothing refused was counted.
    assert_eq!(counters(&http, &app, None).await["total_views"], 1);
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429_and_others_do_not() {
    let mut settings = trusting_localhost();
    settings.beacon.rate_limit_per_minute = 3;
    // One reader reloading one page: count every view, this test is about the limit.
    settings.tracking.repeat_view_window = std::time::Duration::ZERO;
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(
            send(&http, &app, &Hit::view("/a").ip("203.0.113.1")).await,
            204
        );
    }
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("203.0.113.1")).await,
        429
    );
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("203.0.113.2")).await,
        204
    );
    assert_eq!(counters(&http, &app, None).await["total_views"], 4);
    // The addresses of one IPv6 /64 share a budget; another /64 has its own.
    for i in 1..=3 {
        let ip = format!("2001:db8:5:5::{i}");
        assert_eq!(send(&http, &app, &Hit::view("/a").ip(&ip)).await, 204);
    }
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("2001:db8:5:5:ffff::9")).await,
        429
    );
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("2001:db8:5:6::1")).await,
        204
    );
}

/// One address has a smaller page-view budget for each page than overall: past it, views of
/// that page answer 429 while other pages, and the page's heartbeats, go on.
#[tokio::test]
async fn one_page_has_a_smaller_budget_than_the_address() {
    let mut settings = trusting_localhost();
    settings.beacon.rate_limit_per_page_per_minute = 3;
    // Every view counts here (distinct readers are not needed for the limit).
    settings.tracking.repeat_view_window = std::time::Duration::ZERO;
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    let ip = "203.0.113.77";
    for _ in 0..3 {
        assert_eq!(send(&http, &app, &Hit::view("/hot").ip(ip)).await, 204);
    }
    assert_eq!(send(&http, &app, &Hit::view("/hot").ip(ip)).await, 429);
    assert_eq!(
        send(&http, &app, &Hit::view("/hot").kind("ping").ip(ip)).await,
        204,
        "heartbeats are not page views"
    );
    assert_eq!(send(&http, &app, &Hit::view("/other").ip(ip)).await, 204);
    assert_eq!(
        send(&http, &app, &Hit::view("/hot").ip("203.0.113.78")).await,
        204
    );
    assert_eq!(counters(&http, &app, Some("/hot")).await["page_views"], 4);
}

/// `Origin: null` (a sandboxed frame, a file, a redirect across origins) is refused.
#[tokio::test]
async fn a_null_origin_is_refused() {
    let app = TestApp::spawn_roles(trusting_localhost(), "beacon,api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    let body = json!({"t": "pageview", "site": "demo", "url": "http://localhost/a"});
    let r = http
        .post(app.url("/collect"))
        .header("origin", "null")
        .header("user-agent", common::CHROME)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(counters(&http, &app, None).await["total_views"], 0);
}

/// `beacon.buffer` bounds the events queued for all partitions together: two sites in two
/// partitions share it (on one Redis they share the one lane too; on a cluster each
/// partition has its own lane, and the buffer still bounds their sum).
#[tokio::test]
async fn a_full_buffer_while_redis_is_down_answers_503_and_loses_nothing_accepted() {
    let redis = RedisServer::start();
    let mut settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    settings.beacon.buffer = 2;
    settings.beacon.batch = 1;
    // One reader viewing /outage again and again: every view counts here.
    settings.tracking.repeat_view_window = std::time::Duration::ZERO;
    let partitions = settings.redis.partitions;
    let demo = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(partitions);
    let other = (0..)
        .map(|i| tally_core::SiteId::parse(&format!("other{i}")).unwrap())
        .find(|id| id.partition(partitions) != demo)
        .unwrap();
    let mut site = settings.sites[0].clone();
    site.id = other.clone();
    site.domains = vec!["other.example".into()];
    settings.sites.push(site);
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    redis.stop();
    let mut statuses = Vec::new();
    for (i, to_demo) in [false, true, false, true, false, true, false, true]
        .into_iter()
        .enumerate()
    {
        let status = if to_demo {
            send(&http, &app, &Hit::view("/outage").sid(&format!("t{i}"))).await
        } else {
            let body = json!({"t": "pageview", "site": other.as_str(),
                "url": "https://other.example/outage", "sid": format!("t{i}")});
            post_raw(
                &http,
                &app,
                body.to_string().into_bytes(),
                "https://other.example",
            )
            .await
            .0
        };
        statuses.push(status);
    }
    // The first view is a one-event batch in the lane's hands (IN_FLIGHT is one); a view of
    // each site fills the buffer, and every later view of either site is refused.
    assert_eq!(tally_beacon::batcher::IN_FLIGHT, 1);
    assert_eq!(statuses, [204, 204, 204, 503, 503, 503, 503, 503]);
    let held = 3;
    redis.restart();
    wait_for("the buffered views to reach Redis", || async {
        let demo = counters(&http, &app, None).await["total_views"].as_u64();
        let url = app.url(&format!("/api/v1/sites/{other}/counters"));
        let other = common::get_json(&http, &url).await["total_views"].as_u64();
        demo.zip(other).map(|(a, b)| a + b) == Some(held as u64)
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_pixel_answers_a_gif_with_the_outcome_as_status() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let get_from = |query: &str, page: Option<&str>| {
        let mut req = http
            .get(app.url(&format!("/collect.gif?{query}")))
            .header("user-agent", CHROME);
        if let Some(page) = page {
            req = req.header("referer", page);
        }
        req.send()
    };
    let get = |query: &str| get_from(query, Some("http://localhost/noscript"));
    let r = get("site=demo&url=http%3A%2F%2Flocalhost%2Fnoscript&ref=https%3A%2F%2Fgoogle.com%2F")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.bytes().await.unwrap().starts_with(b"GIF89a"));
    for (query, status) in [
        ("site=demo", 400),
        ("site=demo&url=ftp%3A%2F%2Fx", 400),
        ("site=nope&url=http%3A%2F%2Flocalhost%2F", 404),
        ("site=demo&url=http%3A%2F%2Fevil.example%2F", 403),
    ] {
        let r = get(query).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{query}");
        assert_eq!(r.headers()["content-type"], "image/gif");
        assert!(r.bytes().await.unwrap().starts_with(b"GIF89a"));
    }
    // The page that embeds the pixel is named by its Referer: counted. A hit naming no page
    // (a third-party page's <img referrerpolicy="no-referrer">, or a script) is answered the
    // same but only counted as unverified.
    let url = "site=demo&url=http%3A%2F%2Flocalhost%2Fnoscript";
    for _ in 0..2 {
        assert_eq!(get_from(url, None).await.unwrap().status(), 200);
    }
    let c = counters(&http, &app, Some("/noscript")).await;
    assert_eq!(
        (c["page_views"].as_u64(), c["total_views"].as_u64()),
        (Some(1), Some(1))
    );
    common::wait_for_rollups(&app, 3).await;
    let summary = common::get_admin_json(
        &http,
        &app.url("/api/v1/sites/demo/stats/summary"),
        common::TOKEN,
    )
    .await;
    assert_eq!(
        (
            summary["views"].as_u64(),
            summary["unverified_not_counted"].as_u64()
        ),
        (Some(1), Some(2)),
        "{summary}"
    );
}

#[tokio::test]
async fn the_tracker_is_small_cacheable_and_revalidated() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let r = http.get(app.url("/t.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].clone();
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("30000"), "heartbeat from config filled in");
    assert!(!body.contains("__HEARTBEAT_MS__"));
    assert!(!body.contains("localStorage.setItem") && !body.contains("document.cookie"));
    let gz = gzip_len(body.as_bytes());
    // scripts/test prints it.
    std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tracker-figures.txt"),
        format!(
            "tracker: /t.js is {} bytes, {gz} bytes gzipped (budget 2,048)\n",
            body.len()
        ),
    )
    .unwrap();
    assert!(gz < 2048, "tracker is {gz} bytes gzipped");
    let r = http
        .get(app.url("/t.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

/// Gzip size via the system's gzip, to check the tracker's budget without a dependency.
fn gzip_len(data: &[u8]) -> usize {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout.len()
}

#[tokio::test]
async fn counting_rules() {
    let mut settings = trusting_localhost();
    settings.tracking.visit_timeout = Duration::from_secs(2);
    // The test's own clock: the visit timeout passes when the test says so.
    let clock = tally_core::Clock::manual(chrono::Utc::now());
    let app = TestApp::spawn_with_clock(settings, tally::Roles::all(), clock.clone()).await;
    let http = reqwest::Client::new();
    let totals = |c: &Value| {
        (
            c["total_views"].as_u64().unwrap(),
            c["total_visits"].as_u64().unwrap(),
            c["online"].as_u64().unwrap(),
        )
    };

    // A crawler is answered 204 and not counted.
    assert_eq!(
        send(
            &http,
            &app,
            &Hit::view("/a").ua(GOOGLEBOT).ip("198.51.100.1")
        )
        .await,
        204
    );
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ua("").ip("198.51.100.1")).await,
        204
    );
    assert_eq!(totals(&counters(&http, &app, None).await), (0, 0, 0));

    // Two visitors (different address, or different browser) make two visits, two online.
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("198.51.100.1")).await,
        204
    );
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("198.51.100.2")).await,
        204
    );
    assert_eq!(totals(&counters(&http, &app, None).await), (2, 2, 2));
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("198.51.100.1").ua(FIREFOX)).await,
        204
    );
    assert_eq!(totals(&counters(&http, &app, None).await), (3, 3, 3));

    // One visitor's second tab: one more view, same visit, same online person.
    assert_eq!(
        send(&http, &app, &Hit::view("/b").ip("198.51.100.2").sid("tab2")).await,
        204
    );
    let c = counters(&http, &app, Some("/b")).await;
    assert_eq!(totals(&c), (4, 3, 3));
    assert_eq!(
        (c["page_views"].as_u64(), c["page_online"].as_u64()),
        (Some(1), Some(1))
    );

    // A ping adds presence, not a view.
    assert_eq!(
        send(
            &http,
            &app,
            &Hit::view("/c").kind("ping").ip("198.51.100.2")
        )
        .await,
        204
    );
    let c = counters(&http, &app, Some("/c")).await;
    assert_eq!(totals(&c), (4, 3, 3));
    assert_eq!(
        (c["page_views"].as_u64(), c["page_online"].as_u64()),
        (Some(0), Some(1))
    );

    // A leave ends that page's presence.
    assert_eq!(
        send(
            &http,
            &app,
            &Hit::view("/c").kind("leave").ip("198.51.100.2")
        )
        .await,
        204
    );
    assert_eq!(counters(&http, &app, Some("/c")).await["page_online"], 0);

    // Back after the visit timeout: a new visit.
    clock.advance(Duration::from_millis(2500));
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("198.51.100.1")).await,
        204
    );
    assert_eq!(totals(&counters(&http, &app, None).await), (5, 4, 3));

    // Bots are tallied on their own, and every figure shows in the metrics.
    let store = app.store().await;
    let site = tally_core::SiteId::parse("demo").unwrap();
    let live = store.counters(&site, None, 0).await.unwrap();
    assert_eq!(live.bots, 2);
    let metrics = common::get_text(&http, &app.metrics_url()).await;
    assert!(metrics.contains("tally_beacon_bots_total"), "{metrics}");
    // ...on their own listener only: the public one does not serve them.
    let public = http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    assert!(metrics.contains("tally_beacon_accepted_total"), "{metrics}");
}

#[tokio::test]
async fn prefetches_are_ignored() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.url("/collect"))
        .header("user-agent", CHROME)
        .header("sec-purpose", "prefetch;prerender")
        .body(json!({"t": "pageview", "site": "demo", "url": "http://localhost/a"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(counters(&http, &app, None).await["total_views"], 0);
}

#[tokio::test]
async fn every_view_accepted_during_a_redis_outage_is_counted_once_it_is_back() {
    let redis = RedisServer::start();
    let settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    let sender = {
        let http = http.clone();
        let url = app.url("/collect");
        tokio::spawn(async move {
            let mut accepted = 0u64;
            let mut refused = 0u64;
            // A bounded stream: 300 views over about 6 seconds.
            for i in 0..300 {
                let body = json!({"t": "pageview", "site": "demo", "url": format!("http://localhost/p{}", i % 7)});
                let r = http
                    .post(&url)
                    .header("user-agent", CHROME)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    204 => accepted += 1,
                    _ => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, refused)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    let (accepted, refused) = sender.await.unwrap();
    assert_eq!(refused, 0, "the buffer was large enough for the outage");
    assert_eq!(accepted, 300);
    wait_for("every accepted view in the counters", || async {
        counters(&http, &app, None).await["total_views"] == accepted
    })
    .await;
    // ...and exactly once in ClickHouse.
    let db = app.db();
    wait_for("every accepted view in ClickHouse", || {
        let db = db.clone();
        async move { db.count_events().await.unwrap_or(0) >= accepted }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count_events().await.unwrap(), accepted);
    app.stop().await;
}

#[tokio::test]
async fn one_batch_with_repeated_visitors_counts_like_single_events() {
    use tally_core::EventKind;
    let app = TestApp::spawn_roles(tally_testkit::settings(), "beacon,api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    let store = app.store().await;
    let site = tally_core::SiteId::parse("demo").unwrap();
    let partition = site.partition(app.settings.redis.partitions);
    // Visitor 1's leave comes 2 s after its other events.
    let ev = |kind, page: &str, visitor: u64| {
        let ts = 1_000_000 + if kind == EventKind::Leave { 2000 } else { 0 };
        demo_event(partition, kind, page, visitor, ts)
    };
    let batch = vec![
        ev(EventKind::Pageview, "/a", 1),
        ev(EventKind::Pageview, "/b", 1),
        ev(EventKind::Ping, "/b", 1),
        ev(EventKind::Leave, "/a", 1),
        ev(EventKind::Pageview, "/a", 2),
        ev(EventKind::Ping, "/c", 3),
        ev(EventKind::Bot, "", 0),
    ];
    let now = chrono::Utc::now().timestamp_millis();
    let recorded = store
        .record(7, &batch, &app.settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    assert_eq!(recorded.events, 7);
    // The same batch again (a retry) changes nothing.
    let again = store
        .record(7, &batch, &app.settings.tracking, now, Attempt::Retry)
        .await
        .unwrap();
    assert_eq!((again.events, again.already_applied), (0, 7));
    // An empty batch is no call at all (the script needs a part to mark the batch by).
    let none = store
        .record(8, &[], &app.settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    assert_eq!((none.events, none.already_applied), (0, 0));
    store.apply_all(&app.settings.tracking, now).await.unwrap();
    let c = counters(&http, &app, Some("/a")).await;
    assert_eq!(
        (c["total_views"].as_u64(), c["total_visits"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (c["page_views"].as_u64(), c["page_online"].as_u64()),
        (Some(2), Some(1)),
        "visitor 1 left /a"
    );
    assert_eq!(c["online"], 3);
    assert_eq!(counters(&http, &app, Some("/b")).await["page_online"], 1);
    assert_eq!(store.counters(&site, None, 0).await.unwrap().bots, 1);
    let rt = store.realtime(&site, now, 300_000, 2, 10).await.unwrap();
    let pages: Vec<(&str, &str, u64)> = rt
        .pages
        .iter()
        .map(|(p, t, n)| (p.as_str(), t.as_str(), *n))
        .collect();
    assert_eq!(pages, [("/a", "T/a", 1), ("/b", "T/b", 1), ("/c", "", 1)]);
    assert_eq!(rt.views_per_minute.last().unwrap().1, 3);
    // Every event is in the stream, with its session: visitor 1's events share one.
    let entries = store.all_entries(partition).await.unwrap();
    let sessions: Vec<u64> = entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().session)
        .collect();
    assert_eq!(sessions, [10, 10, 10, 10, 20, 0, 0]);
    // Page view ordinals within the visit, and the time since the visit's previous event.
    let seq: Vec<u16> = entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().visit_seq)
        .collect();
    assert_eq!(seq, [1, 2, 0, 0, 1, 0, 0]);
    let gaps: Vec<u32> = entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().gap_ms)
        .collect();
    assert_eq!(gaps, [0, 0, 0, 2000, 0, 0, 0]);
}

/// Calls of EVALSHA (the accept script) and of EXEC (a transaction) Redis has served, less
/// those that failed (an EVALSHA that met an empty script cache).
async fn accept_calls(conn: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let calls = |command: &str| {
        let Some(stats) = info
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
        else {
            return 0;
        };
        let stat = |name: &str| -> u64 {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map_or(0, |v| v.trim().parse().unwrap())
        };
        stat("calls") - stat("failed_calls")
    };
    (calls("evalsha"), calls("exec"))
}

/// A Redis of its own (no role of Tally touches it, so its command counts are the test's),
/// settings with page cap `max_pages`, a handle and a connection, and the demo site's keys.
struct PrivateStore {
    _redis: RedisServer,
    settings: tally_core::Settings,
    store: tally_redis::Store,
    conn: redis::aio::MultiplexedConnection,
    partition: u16,
    keys: tally_redis::Keys,
    /// When every batch of the test is accepted, so that the entries of equal batches are equal.
    now: i64,
}

async fn private_store(max_pages: u32) -> PrivateStore {
    let redis = RedisServer::start();
    let mut settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    settings.tracking.max_pages = max_pages;
    let store = tally_redis::Store::connect(&settings.redis).await.unwrap();
    let conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(settings.redis.partitions);
    PrivateStore {
        _redis: redis,
        settings,
        store,
        conn,
        partition,
        keys: tally_redis::Keys::new(partition),
        now: chrono::Utc::now().timestamp_millis(),
    }
}

impl PrivateStore {
    /// Records `batch` as batch `id`, and says which way it went by what Redis served meanwhile:
    /// "script" (one EVALSHA), "transaction" (one EXEC) or, for anything else, the counts.
    async fn record(
        &mut self,
        id: u64,
        batch: &[tally_redis::TrackedEvent],
        attempt: Attempt,
    ) -> (tally_redis::Result<tally_redis::Recorded>, String) {
        let before = accept_calls(&mut self.conn).await;
        let recorded = self
            .store
            .record(id, batch, &self.settings.tracking, self.now, attempt)
            .await;
        let after = accept_calls(&mut self.conn).await;
        let way = match (after.0 - before.0, after.1 - before.1) {
            (1, 0) => "script".to_owned(),
            (0, 1) => "transaction".to_owned(),
            other => format!("{other:?}"),
        };
        (recorded, way)
    }

    /// The hash at `key`.
    async fn hash(&mut self, key: String) -> Vec<(String, u64)> {
        let hash: std::collections::BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        hash.into_iter().collect()
    }
}

/// The events of a batch for the tests of the two ways of accepting it: views, a ping, a
/// custom event and a crawler's hit.
fn mixed_batch(partition: u16, now: i64) -> Vec<tally_redis::TrackedEvent> {
    use tally_core::EventKind::{Bot, Custom, Pageview, Ping};
    let mut custom = demo_event(partition, Custom, "/a", 1, now);
    custom.event.name = "signup".into();
    vec![
        demo_event(partition, Pageview, "/a", 1, now),
        demo_event(partition, Pageview, "/b", 2, now),
        demo_event(partition, Ping, "/b", 2, now),
        custom,
        demo_event(partition, Bot, "", 0, now),
    ]
}

/// A batch id's first try goes as a plain transaction once the handle knows the site's
/// capped hashes are far from the cap (the first call reads their sizes); it writes the
/// incoming entry and the counters the script writes, and a retry of it (the script) finds
/// it accepted.
#[tokio::test]
async fn a_first_try_goes_as_a_transaction_that_writes_what_the_script_writes() {
    let default_cap = tally_testkit::settings().tracking.max_pages;
    assert!(default_cap > 0, "the default has a page cap");
    let mut p = private_store(default_cap).await;
    let batch = mixed_batch(p.partition, p.now);

    let (first, way) = p.record(1, &batch, Attempt::First).await;
    assert_eq!(way, "script", "sizes not known yet: the script");
    let (second, way) = p.record(2, &batch, Attempt::First).await;
    assert_eq!(way, "transaction", "far from the cap: a transaction");
    assert_eq!((first.unwrap().events, second.unwrap().events), (5, 5));
    let (retry, way) = p.record(2, &batch, Attempt::Retry).await;
    let retry = retry.unwrap();
    assert_eq!((retry.events, retry.already_applied), (0, 5));
    assert_eq!(way, "script", "a retry: the script");

    // The two entries are alike, field by field.
    type Fields = Vec<(String, Vec<u8>)>;
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(p.keys.incoming())
        .arg("-")
        .arg("+")
        .query_async(&mut p.conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2, "the retry appended nothing");
    assert_eq!(entries[0].1, entries[1].1);
    let names: Vec<&str> = entries[0].1.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["v", "b", "c", "n", "o"]);
    // Every counter counted both batches once.
    let views = p.hash(p.keys.views("demo")).await;
    assert_eq!(views, [("/a".into(), 2), ("/b".into(), 2)]);
    let totals: std::collections::BTreeMap<_, _> =
        p.hash(p.keys.totals("demo")).await.into_iter().collect();
    assert_eq!(
        (totals.get("views"), totals.get("bots")),
        (Some(&4), Some(&2))
    );
    let events = p.hash(p.keys.event_counts("demo")).await;
    assert_eq!(events, [("signup\t".into(), 2)]);
    // Both batch markers are there, for retries.
    for id in [1, 2] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(p.keys.batch(id))
            .query_async(&mut p.conn)
            .await
            .unwrap();
        assert!((3590..=3600).contains(&ttl), "batch {id}: ttl {ttl}");
    }
}

/// On one server the applier commits a run as a transaction (guarded by a WATCH, see
/// `trailing.rs` for two appliers racing) instead of the commit script, and writes what the
/// script writes: two Redis servers get the same batches, one applies with the script, the
/// other with transactions, and every key but the transaction's `applied` mark ends alike,
/// also presence trimmed of a slot past the online window.
#[tokio::test]
async fn an_apply_commits_as_a_transaction_that_writes_what_the_script_writes() {
    use tally_core::EventKind::{Leave, Pageview, Ping};
    let default_cap = tally_testkit::settings().tracking.max_pages;
    let mut by_script = private_store(default_cap).await;
    by_script.store = by_script.store.clone().with_script_commits();
    let mut by_transaction = private_store(default_cap).await;
    // A quarter of an hour ago (its presence slot is past the window by then), then now.
    let (partition, now) = (by_script.partition, by_script.now);
    let earlier = now - 15 * 60_000;
    let batches = [
        (earlier, mixed_batch(partition, earlier)),
        (now, mixed_batch(partition, now)),
        (
            now,
            vec![
                demo_event(partition, Pageview, "/c", 3, now),
                demo_event(partition, Leave, "/a", 1, now),
                demo_event(partition, Ping, "/c", 3, now),
            ],
        ),
    ];
    let mut dumps = Vec::new();
    for (p, way) in [
        (&mut by_script, "script"),
        (&mut by_transaction, "transaction"),
    ] {
        for (id, (at, batch)) in batches.iter().enumerate() {
            p.store
                .record(id as u64, batch, &p.settings.tracking, *at, Attempt::Retry)
                .await
                .unwrap();
            let before = accept_calls(&mut p.conn).await;
            let applied = p
                .store
                .apply(partition, &p.settings.tracking, (64, 500), *at, *at == now)
                .await
                .unwrap();
            let after = accept_calls(&mut p.conn).await;
            assert_eq!((applied.entries, applied.lost_race), (1, false));
            let calls = (after.0 - before.0, after.1 - before.1);
            let expected = if way == "script" { (1, 0) } else { (0, 1) };
            assert_eq!(calls, expected, "{way}: (EVALSHA, EXEC) of the apply");
        }
        // The earlier slot was trimmed: presence holds the slot of now alone.
        let here = p.hash(p.keys.here("demo")).await;
        let slot = (now / 10_000).to_string();
        assert_eq!(here, [(slot, 3)], "{way}: three visitors online now");
        dumps.push(dump(&mut p.conn, &p.keys).await);
    }
    assert_eq!(dumps[0], dumps[1]);
    let kinds: std::collections::BTreeSet<&str> = dumps[1]
        .keys()
        .map(|k| k.split(':').nth(2).unwrap())
        .collect();
    for kind in [
        "events", "here", "readers", "visits", "uv", "active", "titles", "vpm", "totals",
    ] {
        assert!(
            kinds.contains(kind),
            "the dumps hold {kind} keys: {kinds:?}"
        );
    }
}

/// Every key of `keys`' partition but the batch marks and the `applied` mark, by name: its
/// type, whether it expires, and its value (a stream's entries without their ids and the
/// ids they name, which are times).
async fn dump(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &tally_redis::Keys,
) -> std::collections::BTreeMap<String, (String, bool, String)> {
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", keys.prefix()))
        .query_async(conn)
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for name in names {
        let kind = name.split(':').nth(2).unwrap();
        if kind == "batch" || kind == "applied" {
            continue;
        }
        let (kind, ttl): (String, i64) = redis::pipe()
            .cmd("TYPE")
            .arg(&name)
            .cmd("PTTL")
            .arg(&name)
            .query_async(conn)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "hash" => {
                let v: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&name)
                    .query_async(conn)
                    .await
                    .unwrap();
                format!("{v:?}")
            }
            "zset" => {
                let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&name)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await
                    .unwrap();
                format!("{v:?}")
            }
            "string" => {
                let v: Vec<u8> = redis::cmd("GET")
                    .arg(&name)
                    .query_async(conn)
                    .await
                    .unwrap();
                format!("{v:?}")
            }
            "stream" => {
                type Fields = Vec<(String, Vec<u8>)>;
                let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
                    .arg(&name)
                    .arg("-")
                    .arg("+")
                    .query_async(conn)
                    .await
                    .unwrap();
                let fields: Vec<Fields> = entries
                    .into_iter()
                    .map(|(_, fields)| fields.into_iter().filter(|(f, _)| f != "i").collect())
                    .collect();
                format!("{fields:?}")
            }
            other => panic!("{name}: a type this test does not know ({other})"),
        };
        out.insert(name, (kind, ttl > 0, value));
    }
    out
}

/// A site within one batch of its page cap goes through the script, which decides page by
/// page: a transaction, which cannot, would let the hash pass the cap.
#[tokio::test]
async fn a_site_near_its_page_cap_goes_through_the_script() {
    use tally_core::EventKind::Pageview;
    let mut p = private_store(3).await;
    let (partition, now) = (p.partition, p.now);
    let views = |pages: &[&str]| -> Vec<_> {
        pages
            .iter()
            .enumerate()
            .map(|(i, page)| demo_event(partition, Pageview, page, i as u64 + 1, now))
            .collect()
    };
    // (pages, way: script or transaction, events under "other pages")
    let steps: [(&[&str], &str, usize); 4] = [
        (&["/a", "/b"], "script", 0),
        (&["/a"], "transaction", 0),
        (&["/c", "/d"], "script", 1),
        (&["/a"], "script", 0),
    ];
    for (id, (pages, way, over)) in steps.into_iter().enumerate() {
        let (recorded, went) = p.record(id as u64 + 1, &views(pages), Attempt::First).await;
        assert_eq!(
            (went.as_str(), recorded.unwrap().over_page_cap),
            (way, over),
            "step {id}: {pages:?}"
        );
    }
    let counts = p.hash(p.keys.views("demo")).await;
    let counts: Vec<(&str, u64)> = counts.iter().map(|(page, n)| (page.as_str(), *n)).collect();
    assert_eq!(counts, [("", 1), ("/a", 3), ("/b", 1), ("/c", 1)]);
}

/// Without a page cap every first try is a transaction, the very first too; a Redis that
/// refuses the transaction as it queues it (here: full) leaves nothing written and is
/// retried, not given up, and the retry counts the batch once.
#[tokio::test]
async fn without_a_cap_every_first_try_is_a_transaction_and_a_refused_one_is_retried() {
    use tally_core::retry::{Classify, Verdict};
    let mut p = private_store(0).await;
    let batch = mixed_batch(p.partition, p.now);
    let (recorded, way) = p.record(1, &batch, Attempt::First).await;
    recorded.unwrap();
    assert_eq!(way, "transaction");

    let conn = p.conn.clone();
    let memory = |limit: &'static str| {
        let mut conn = conn.clone();
        async move {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    memory("1").await;
    let (refused, _) = p.record(2, &batch, Attempt::First).await;
    let refused = refused.unwrap_err();
    memory("0").await;
    assert_eq!(refused.verdict(), Verdict::Retry, "{refused}");
    let xlen: u64 = redis::cmd("XLEN")
        .arg(p.keys.incoming())
        .query_async(&mut p.conn)
        .await
        .unwrap();
    assert_eq!(xlen, 1, "the refused transaction wrote nothing");
    let (retried, _) = p.record(2, &batch, Attempt::Retry).await;
    assert_eq!(retried.unwrap().events, 5);
    let views: u64 = redis::cmd("HGET")
        .arg(p.keys.totals("demo"))
        .arg("views")
        .query_async(&mut p.conn)
        .await
        .unwrap();
    assert_eq!(views, 4);
}

/// The largest batch the beacon may send (`beacon.batch`), each event a new visitor on a
/// page of its own: the script takes it whole (Lua's `unpack` stops at ~8,000 values, so it
/// sends its per-visitor and per-page commands in chunks), and a larger `beacon.batch` is
/// refused at start, naming the key.
#[tokio::test]
async fn the_largest_batch_is_recorded_whole() {
    let app = TestApp::spawn_roles(
        tally_testkit::settings(),
        tally::Roles::from_str("api").unwrap(),
    )
    .await;
    let store = app.store().await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(app.settings.redis.partitions);
    let n = tally_core::settings::MAX_BEACON_BATCH;
    let now = chrono::Utc::now().timestamp_millis();
    let batch: Vec<_> = (0..n as u64)
        .map(|i| {
            demo_event(
                partition,
                tally_core::EventKind::Pageview,
                &format!("/p{i}"),
                i + 1,
                now,
            )
        })
        .collect();
    let recorded = store
        .record(1, &batch, &app.settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    assert_eq!(recorded.events, n);
    store.apply_all(&app.settings.tracking, now).await.unwrap();
    let c = store
        .counters(&tally_core::SiteId::parse("demo").unwrap(), Some("/p7"), 0)
        .await
        .unwrap();
    assert_eq!(
        (c.views, c.visits, c.online, c.page_views),
        (n as u64, n as u64, n as u64, Some(1))
    );
    let too_many = tally_core::Settings::load(
        Some(tally_testkit::config_file()),
        [("TALLY__BEACON__BATCH".to_owned(), (n + 1).to_string())],
    );
    assert!(too_many.unwrap_err().to_string().contains("beacon.batch"));
}

/// A batch Redis refuses (here: the site's totals key holds a string, so the script's
/// HINCRBY fails with WRONGTYPE, which would fail again) is given up at once — logged and
/// counted — and the lane writes the next batch.
#[tokio::test]
async fn a_batch_redis_refuses_is_given_up_and_the_lane_goes_on() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let mut conn = raw_redis(&app).await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(app.settings.redis.partitions);
    let totals = tally_redis::Keys::new(partition).totals("demo");
    let _: () = redis::cmd("SET")
        .arg(&totals)
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    let given_up = || async {
        let text = common::get_text(&http, &app.metrics_url()).await;
        common::metric(&text, "tally_beacon_events_given_up_total").unwrap_or(0.0)
    };
    let before = given_up().await;
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("203.0.113.70")).await,
        204
    );
    wait_for("the refused batch to be given up", || async {
        given_up().await > before
    })
    .await;
    // The key is repaired; the lane writes the next batch at once.
    let _: () = redis::cmd("DEL")
        .arg(&totals)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        send(&http, &app, &Hit::view("/b").ip("203.0.113.71")).await,
        204
    );
    let c = counters(&http, &app, Some("/b")).await;
    assert_eq!(
        (c["page_views"].as_u64(), c["total_views"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
}

/// Redis refuses Tally itself (here: its user loses the right to run scripts, as a wrong ACL
/// would do): the retry policy's "stop and tell". The batch is neither given up nor lost —
/// the beacon keeps it, says so at error level, and writes it once the rights are back.
#[tokio::test]
async fn a_batch_is_kept_while_redis_refuses_tally() {
    let redis = tally_testkit::RedisServer::start();
    let settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    // An operator's own user, then Tally's (the default user) loses EVALSHA and EVAL.
    let mut conn = raw_redis(&app).await;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "operator",
                "on",
                ">operator-pw",
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut operator = redis::Client::open(redis.url(0).replace("://", "://operator:operator-pw@"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-evalsha", "-eval"][..])
        .query_async(&mut operator)
        .await
        .unwrap();
    // Answered when the write times out; the event waits in the buffer.
    assert_eq!(
        send(&http, &app, &Hit::view("/a").ip("203.0.113.72")).await,
        204
    );
    // (The metrics are shared by the tests of this binary, so the batch's fate is read from
    // the counters: a batch given up would never show.)
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(counters(&http, &app, None).await["total_views"], 0);
    // The rights are back: the kept batch is written, once.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "+@all"][..])
        .query_async(&mut operator)
        .await
        .unwrap();
    wait_for("the kept batch to be written", || async {
        counters(&http, &app, None).await["total_views"] == 1
    })
    .await;
    let c = counters(&http, &app, Some("/a")).await;
    assert_eq!(
        (c["page_views"].as_u64(), c["total_views"].as_u64()),
        (Some(1), Some(1))
    );
    app.stop().await;
}

/// A raw connection to the test's Redis database, to look at what the write script left.
async fn raw_redis(app: &TestApp) -> redis::aio::MultiplexedConnection {
    redis::Client::open(app.settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A demo-site event of the given visitor, as the beacon hands it to the store.
fn demo_event(
    partition: u16,
    kind: tally_core::EventKind,
    page: &str,
    visitor: u64,
    ts_ms: i64,
) -> tally_redis::TrackedEvent {
    tally_redis::TrackedEvent {
        event: tally_core::Event {
            kind,
            site: "demo".into(),
            ts_ms,
            page: page.into(),
            title: format!("T{page}"),
            visitor,
            ..tally_core::Event::empty()
        },
        partition,
        day: "20260101".into(),
        session_candidate: visitor * 10,
    }
}

/// The script sets an expiry only when it creates a key (or adds a visitor to the day's
/// visits): keys of passing state must still all expire after batches that only update
/// them, and lasting counters must not.
#[tokio::test]
async fn passing_keys_expire_and_lasting_counters_do_not() {
    use tally_core::EventKind::{Bot, Leave, Pageview, Ping};
    let app = TestApp::spawn_roles(tally_testkit::settings(), "beacon".parse().unwrap()).await;
    let store = app.store().await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(app.settings.redis.partitions);
    let now = chrono::Utc::now().timestamp_millis();
    let ev = |kind, page: &str, visitor: u64| demo_event(partition, kind, page, visitor, now);
    let first = vec![
        ev(Pageview, "/a", 1),
        ev(Pageview, "/b", 2),
        ev(Ping, "/b", 2),
        ev(Leave, "/a", 1),
        ev(Bot, "", 0),
    ];
    // Only updates: a visitor the day's visits and sketch already hold, this minute's views.
    let second = vec![ev(Pageview, "/a", 1), ev(Ping, "/b", 2)];
    for (id, batch) in [(1, &first), (2, &second)] {
        let recorded = store
            .record(id, batch, &app.settings.tracking, now, Attempt::First)
            .await
            .unwrap();
        assert_eq!(recorded.events, batch.len());
    }
    store.apply_all(&app.settings.tracking, now).await.unwrap();
    let mut conn = raw_redis(&app).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", tally_redis::Keys::new(partition).prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    for key in &keys {
        let kind = key.split(':').nth(2).unwrap().to_owned();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        match kind.as_str() {
            "applied" | "events" | "incoming" | "views" | "totals" | "titles" => {
                assert_eq!(ttl, -1, "{key} lasts")
            }
            "visits" | "uv" | "vpm" | "readers" | "here" | "active" | "batch" => {
                assert!(ttl > 0, "{key} must expire, PTTL {ttl}")
            }
            other => panic!("{key}: a key kind this test does not know ({other})"),
        }
        *kinds.entry(kind).or_insert(0) += 1;
    }
    let seen: Vec<&str> = kinds.keys().map(String::as_str).collect();
    assert_eq!(
        seen,
        [
            "active", "applied", "batch", "events", "here", "incoming", "readers", "titles",
            "totals", "uv", "views", "visits", "vpm"
        ]
    );
    // Both batches' marks, the site's presence by the second, and the readers of each page
    // (visitor 1 left /a, and came back).
    assert_eq!((kinds["batch"], kinds["here"], kinds["readers"]), (2, 1, 2));
}

/// Visits are kept per UTC day: a visitor whose visit began before midnight is found in
/// yesterday's hash, and its visit goes on (same session, next ordinal, no new visit).
#[tokio::test]
async fn a_visit_running_over_midnight_goes_on() {
    use tally_core::EventKind::Pageview;
    let app = TestApp::spawn_roles(tally_testkit::settings(), "beacon".parse().unwrap()).await;
    let store = app.store().await;
    let site = tally_core::SiteId::parse("demo").unwrap();
    let partition = site.partition(app.settings.redis.partitions);
    let now = chrono::Utc::now().timestamp_millis();
    let day = now / 86_400_000;
    let prefix = tally_redis::Keys::new(partition).prefix().to_owned();
    let mut conn = raw_redis(&app).await;
    // Visitor 5 read two pages, the last one a minute ago, recorded on yesterday's hash;
    // visitor 6 is in yesterday's hash too, but its last event is past the visit timeout.
    let stale = now - app.settings.tracking.visit_timeout.as_millis() as i64 - 1000;
    let () = redis::cmd("HSET")
        .arg(format!("{prefix}visits:demo:{}", day - 1))
        .arg(5)
        .arg(format!("77:{}:2", now - 60_000))
        .arg(6)
        .arg(format!("88:{stale}:1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let batch = vec![
        demo_event(partition, Pageview, "/a", 5, now),
        demo_event(partition, Pageview, "/a", 6, now),
    ];
    store
        .record(3, &batch, &app.settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    store.apply_all(&app.settings.tracking, now).await.unwrap();
    let entries = store.all_entries(partition).await.unwrap();
    let figures: Vec<(u64, bool, u16, u32)> = entries
        .iter()
        .map(|e| {
            let e = e.event.as_ref().unwrap();
            (e.session, e.new_visit, e.visit_seq, e.gap_ms)
        })
        .collect();
    assert_eq!(figures, [(77, false, 3, 60_000), (60, true, 1, 0)]);
    assert_eq!(store.counters(&site, None, 0).await.unwrap().visits, 1);
    // The visit now lives in today's hash.
    let today: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}visits:demo:{day}"))
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Session (77, in hex), last event, page views, last counted view and last seen (both
    // now: 0 before the last event), the pages being read (one: /a, by its tag and slot)
    // and the page of the last counted view (/a, by its tag: FNV-1a, 32 bits, in hex).
    let today = today.unwrap();
    let fields: Vec<&str> = today.splitn(7, ':').collect();
    let now_s = now.to_string();
    let a = b"/a".iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    assert_eq!(
        (fields[..5].to_vec(), fields[6]),
        (
            vec!["c|4d", &now_s, "3", "0", "0"],
            format!("{a:x}").as_str()
        ),
        "{today}"
    );
    assert!(!fields[5].is_empty() && !fields[5].contains(','), "{today}");
}

/// The api answers concurrent counters requests with shared reads: every answer must still
/// be its own page's figures, and include every view accepted before it was asked for.
#[tokio::test]
async fn concurrent_counters_requests_get_their_own_live_figures() {
    let app = TestApp::spawn_roles(trusting_localhost(), "beacon,api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    // Pages /p0 … /p4 get 1 … 5 views, from different visitors.
    for page in 0..5u32 {
        for view in 0..=page {
            let path = format!("/p{page}");
            let ip = format!("198.51.100.{}", 10 * page + view + 1);
            assert_eq!(send(&http, &app, &Hit::view(&path).ip(&ip)).await, 204);
        }
    }
    let total: u64 = (1..=5).sum();

    // Many requests at once over the five pages and the site alone, while the page /live
    // gets a view before each of its own requests: each answer sees exactly the views
    // accepted before it was sent.
    let readers = (0..300u32).map(|i| {
        let http = http.clone();
        let app = &app;
        async move {
            let page = (i % 6 < 5).then(|| format!("/p{}", i % 6));
            let c = counters(&http, app, page.as_deref()).await;
            (page, c)
        }
    });
    let live = async {
        for n in 1..=20u64 {
            let ip = format!("203.0.113.{n}");
            assert_eq!(send(&http, &app, &Hit::view("/live").ip(&ip)).await, 204);
            let c = counters(&http, &app, Some("/live")).await;
            assert_eq!(c["page_views"], n, "view {n} of /live is read back at once");
            let site_views = c["total_views"].as_u64().unwrap();
            assert!(site_views >= total + n, "{c}");
        }
    };
    let (answers, ()) = tokio::join!(futures_util::future::join_all(readers), live);
    for (page, c) in answers {
        match page {
            Some(page) => {
                let n: u64 = page[2..].parse::<u64>().unwrap() + 1;
                assert_eq!(c["page"], page.as_str(), "{c}");
                assert_eq!(c["page_views"], n, "{c}");
            }
            None => {
                assert!(
                    c.get("page").is_none() && c.get("page_views").is_none(),
                    "{c}"
                );
                assert!(c["total_views"].as_u64().unwrap() >= total, "{c}");
            }
        }
    }
}

/// The wire, end to end: a batch with every field of an event filled in is recorded by the
/// real write script, read back through the consumer group and decoded by `wire`, field by
/// field with the figures the script found; the same event then makes the round trip through
/// a dead letter and its replay.
#[tokio::test]
async fn events_make_the_round_trip_through_the_script_and_the_stream() {
    use tally_core::EventKind::{Leave, Pageview, Ping};
    use tally_redis::wire::{self, DeadLetter, EventKey, Payload};
    let app = TestApp::spawn_roles(tally_testkit::settings(), "beacon".parse().unwrap()).await;
    let store = app.store().await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(app.settings.redis.partitions);
    store.ensure_group(partition).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let full = |kind, page: &str, visitor: u64, ts_ms: i64| {
        let mut e = demo_event(partition, kind, page, visitor, ts_ms);
        e.event.path = format!("{page}/path");
        // JSON escapes keep a title with a newline and quotes on its line.
        e.event.title = "Tin \"nóng\"\nhôm nay, 1,2".into();
        e.event.referrer_host = "google.com".into();
        e.event.utm_source = "zalo".into();
        e.event.utm_medium = "social".into();
        e.event.utm_campaign = "tết".into();
        e.event.browser = "Chrome".into();
        e.event.os = "Android".into();
        e.event.device = "mobile".into();
        e.event.country = "VN".into();
        e.event.tab = "tab-1".into();
        e.event.width = 412;
        e
    };
    let batch = vec![
        full(Pageview, "/a", 1, now - 3000),
        full(Ping, "/a", 1, now - 2000),
        full(Pageview, "/b", 1, now - 1000),
        full(Pageview, "/b", 1, now - 900),
        full(Leave, "/b", 1, now),
    ];
    store
        .record(11, &batch, &app.settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    store.apply_all(&app.settings.tracking, now).await.unwrap();

    // The entry carries the wire version.
    let mut conn = raw_redis(&app).await;
    let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(tally_redis::Keys::new(partition).events())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw.len(), 1, "one entry per partition and batch");
    assert_eq!(raw[0].1[..2], ["v".to_owned(), wire::VERSION.to_string()]);

    let read = store.read_new(partition, "reader", 10, 10).await.unwrap();
    assert_eq!(read.len(), batch.len());
    // session, new visit, ordinal, gap, and the kind the script found (a reload of /b).
    let figures = [
        (10, true, 1, 0, Pageview),
        (10, false, 0, 1000, Ping),
        (10, false, 2, 1000, Pageview),
        (10, false, 0, 100, tally_core::EventKind::Repeat),
        (10, false, 0, 900, Leave),
    ];
    for (i, ((sent, got), want)) in batch.iter().zip(&read).zip(figures).enumerate() {
        assert_eq!(got.key.entry, raw[0].0);
        assert_eq!(got.key.item, Some(i as u32));
        let got = got.event.as_ref().unwrap();
        let (session, new_visit, visit_seq, gap_ms, kind) = want;
        let expected = tally_core::Event {
            kind,
            session,
            new_visit,
            visit_seq,
            gap_ms,
            ..sent.event.clone()
        };
        assert_eq!(got, &expected, "event {i}");
    }

    // A dead letter keeps the event with its figures; its replay is the same event again.
    let reloaded = read[3].clone();
    let letter = DeadLetter {
        id: String::new(),
        key: reloaded.key.clone(),
        payload: Payload::Event(Box::new(reloaded.event.clone().unwrap())),
        reason: "refused".into(),
    };
    store.dead_letter(partition, &[letter], 100).await.unwrap();
    let letters = store.dead_letters(partition).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].key,
        EventKey::parse(&reloaded.key.to_string()).unwrap()
    );
    assert_eq!(
        letters[0].payload,
        Payload::Event(Box::new(reloaded.event.clone().unwrap()))
    );
    store
        .replay_dead_letter(partition, &letters[0])
        .await
        .unwrap();
    let replayed = store.read_new(partition, "reader", 10, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].key.item, Some(0));
    assert_eq!(replayed[0].event, reloaded.event);
    assert!(store.dead_letters(partition).await.unwrap().is_empty());
    app.stop().await;
}
