//! Downloads, outbound links, custom events and goals (issue 19), against real Redis and
//! ClickHouse: events sent through the beacon, their reports and the goals' conversions
//! with exact figures worked out by hand below, every field rule of the contract, and the
//! imported download totals.

mod common;

use common::{Auth, CHROME, TOKEN, call, get_json, wait_for_rollups};
use reqwest::Method;
use serde_json::{Value, json};
use tally_testkit::TestApp;

const F1: &str = "https://example.com/files/f1.pdf";
const F2: &str = "https://example.com/files/f2.docx";

/// Posts `body` (site `demo`) as the reader at `ip`; returns the status and the message.
async fn collect(http: &reqwest::Client, app: &TestApp, ip: &str, body: Value) -> (u16, String) {
    let mut body = body;
    body["site"] = json!("demo");
    let r = http
        .post(app.url("/collect"))
        .header("origin", "http://localhost")
        .header("user-agent", CHROME)
        .header("x-forwarded-for", ip)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, message)
}

/// The tests' settings, trusting the loopback proxy's `X-Forwarded-For`: each test reader
/// has an address of their own.
fn settings() -> tally_core::Settings {
    let mut s = tally_testkit::settings();
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    s
}

fn view(path: &str) -> Value {
    json!({"t": "pageview", "url": format!("http://localhost{path}"), "title": path})
}

fn event(path: &str, name: &str, target: Option<&str>, props: Value) -> Value {
    let mut e = json!({"t": "event", "url": format!("http://localhost{path}"), "name": name, "props": props});
    if let Some(t) = target {
        e["target"] = json!(t);
    }
    e
}

/// Five readers (one visit each):
/// - 10.0.0.1 reads /thu-tuc/a and /thu-tuc/b, downloads f1 (kind=form), subscribes (free);
/// - 10.0.0.2 reads /thu-tuc/a, downloads f1 (form) and f2 (report), follows a link out;
/// - 10.0.0.3 reads /tin-tuc/1, downloads f1 (report; its URL with a fragment);
/// - 10.0.0.4 reads /tin-tuc/1, subscribes twice (paid, then free);
/// - 10.0.0.5 reads /lien-he, a page whose tracker names it `lien-he-7` (`data-page`).
///
/// 6 page views and 8 events.
async fn seed(http: &reqwest::Client, app: &TestApp) {
    let visits: [(&str, Vec<Value>); 5] = [
        (
            "10.0.0.1",
            vec![
                view("/thu-tuc/a"),
                view("/thu-tuc/b"),
                event("/thu-tuc/b", "download", Some(F1), json!({"kind": "form"})),
                event("/thu-tuc/b", "subscribe", None, json!({"plan": "free"})),
            ],
        ),
        (
            "10.0.0.2",
            vec![
                view("/thu-tuc/a"),
                event("/thu-tuc/a", "download", Some(F1), json!({"kind": "form"})),
                event(
                    "/thu-tuc/a",
                    "download",
                    Some(F2),
                    json!({"kind": "report"}),
                ),
                event(
                    "/thu-tuc/a",
                    "outbound",
                    Some("https://dichvucong.gov.vn/p/home"),
                    json!({}),
                ),
            ],
        ),
        (
            "10.0.0.3",
            vec![
                view("/tin-tuc/1"),
                event(
                    "/tin-tuc/1",
                    "download",
                    Some(&format!("{F1}#page=2")),
                    json!({"kind": "report"}),
                ),
            ],
        ),
        (
            "10.0.0.4",
            vec![
                view("/tin-tuc/1"),
                event("/tin-tuc/1", "subscribe", None, json!({"plan": "paid"})),
                event("/tin-tuc/1", "subscribe", None, json!({"plan": "free"})),
            ],
        ),
        // A page counted under its `data-page` key.
        (
            "10.0.0.5",
            vec![json!({"t": "pageview", "url": "http://localhost/lien-he", "page": "lien-he-7"})],
        ),
    ];
    for (ip, hits) in visits {
        for hit in hits {
            assert_eq!(collect(http, app, ip, hit.clone()).await.0, 204, "{hit}");
        }
    }
    wait_for_rollups(app, 14).await;
}

/// `(value, events, visitors)` of a report's rows.
fn rows(v: &Value) -> Vec<(String, u64, u64)> {
    v["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {v}"))
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_owned(),
                r["events"].as_u64().unwrap(),
                r["visitors"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(value: &str, events: u64, visitors: u64) -> (String, u64, u64) {
    (value.to_owned(), events, visitors)
}

async fn admin(http: &reqwest::Client, app: &TestApp, path: &str) -> Value {
    let (status, body) = call(
        http,
        Method::GET,
        &app.url(&format!("/api/v1/sites/demo/{path}")),
        Auth::Token(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// `(name, conversions, visitors, rate)` of each goal of a `stats/goals` answer.
fn goals(v: &Value) -> Vec<(String, u64, u64, f64)> {
    v["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["conversions"].as_u64().unwrap(),
                g["visitors"].as_u64().unwrap(),
                g["conversion_rate"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_targets_props_and_goals_have_exact_figures() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::new();
    seed(&http, &app).await;

    // Events by name: most first, then by name.
    let by_name = admin(&http, &app, "stats/events").await;
    assert_eq!(
        rows(&by_name),
        [
            row("download", 4, 3),
            row("subscribe", 3, 2),
            row("outbound", 1, 1)
        ]
    );
    // The files downloaded: f1's fragment is the same file.
    let files = admin(&http, &app, "stats/events/targets?name=download").await;
    assert_eq!(rows(&files), [row(F1, 3, 3), row(F2, 1, 1)]);
    let links = admin(&http, &app, "stats/events/targets?name=outbound").await;
    assert_eq!(
        rows(&links),
        [row("https://dichvucong.gov.vn/p/home", 1, 1)]
    );
    let kinds = admin(&http, &app, "stats/events/props?name=download&prop=kind").await;
    assert_eq!(rows(&kinds), [row("form", 2, 2), row("report", 2, 2)]);
    let plans = admin(&http, &app, "stats/events/props?name=subscribe&prop=plan").await;
    assert_eq!(rows(&plans), [row("free", 2, 2), row("paid", 1, 1)]);
    // Filters select visits: those that read /tin-tuc/1 (readers 3 and 4).
    let filtered = admin(&http, &app, "stats/events?page=/tin-tuc/1").await;
    assert_eq!(
        rows(&filtered),
        [row("subscribe", 2, 1), row("download", 1, 1)]
    );

    // The live download counters, fragment and all, and a file never downloaded.
    let counts = get_json(
        &http,
        &app.url(&format!(
            "/api/v1/sites/demo/event-counters?name=download&target={F1}%23x&target={F2}&target=https://example.com/none.pdf"
        )),
    )
    .await;
    assert_eq!(counts["counts"][F1], 3, "{counts}");
    assert_eq!(counts["counts"][F2], 1, "{counts}");
    assert_eq!(counts["counts"]["https://example.com/none.pdf"], 0);

    // Goals: a page with a wildcard, an event, an event with a property's value (two).
    let url = app.url("/api/v1/sites/demo/goals");
    let mut ids = Vec::new();
    for body in [
        json!({"page": "/thu-tuc/*"}),
        json!({"event": "download", "name": "Any download"}),
        json!({"event": "download", "prop": "kind", "value": "report"}),
        json!({"event": "subscribe", "prop": "plan", "value": "paid"}),
        json!({"page": "lien-he-*", "name": "Contact"}),
    ] {
        let (status, made) = call(&http, Method::POST, &url, Auth::Token(TOKEN), Some(body)).await;
        assert_eq!(status, 201, "{made}");
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    let (_, listed) = call(&http, Method::GET, &url, Auth::Token(TOKEN), None).await;
    let names: Vec<&str> = listed["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "/thu-tuc/*",
            "Any download",
            "download: kind = report",
            "subscribe: plan = paid",
            "Contact"
        ]
    );

    // Five visitors: /thu-tuc/* by readers 1 (two views) and 2; downloads by 1, 2, 3 (four);
    // reports by 2 and 3; the paid plan by 4; the contact page (a data-page key) by 5.
    let all = admin(&http, &app, "stats/goals").await;
    assert_eq!(all["visitors"], 5);
    assert_eq!(
        goals(&all),
        [
            ("/thu-tuc/*".to_owned(), 3, 2, 0.4),
            ("Any download".to_owned(), 4, 3, 0.6),
            ("download: kind = report".to_owned(), 2, 2, 0.4),
            ("subscribe: plan = paid".to_owned(), 1, 1, 0.2),
            ("Contact".to_owned(), 1, 1, 0.2),
        ]
    );
    // In the visits that read /tin-tuc/1 (two visitors).
    let filtered = admin(&http, &app, "stats/goals?page=/tin-tuc/1").await;
    assert_eq!(filtered["visitors"], 2);
    assert_eq!(
        goals(&filtered),
        [
            ("/thu-tuc/*".to_owned(), 0, 0, 0.0),
            ("Any download".to_owned(), 1, 1, 0.5),
            ("download: kind = report".to_owned(), 1, 1, 0.5),
            ("subscribe: plan = paid".to_owned(), 1, 1, 0.5),
            ("Contact".to_owned(), 0, 0, 0.0),
        ]
    );
    // The CSV holds the same figures.
    let csv = http
        .get(app.url("/api/v1/sites/demo/stats/goals?format=csv"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.trim_start_matches('\u{feff}').replace("\r\n", "\n"),
        "goal,conversions,visitors,conversion_rate\n/thu-tuc/*,3,2,0.4000\n\
         Any download,4,3,0.6000\ndownload: kind = report,2,2,0.4000\n\
         subscribe: plan = paid,1,1,0.2000\nContact,1,1,0.2000\n"
    );

    // A removed goal is gone from the list and the figures.
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{url}/{}", ids[1]),
        Auth::Token(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let after = admin(&http, &app, "stats/goals").await;
    assert_eq!(
        goals(&after)
            .iter()
            .map(|g| g.0.as_str())
            .collect::<Vec<_>>(),
        [
            "/thu-tuc/*",
            "download: kind = report",
            "subscribe: plan = paid",
            "Contact"
        ]
    );
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{url}/{}", ids[1]),
        Auth::Token(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404, "a removed goal cannot be removed again");
    app.stop().await;
}

#[tokio::test]
async fn every_event_field_rule_is_a_400_naming_the_field() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::new();
    let long = |n: usize| "x".repeat(n);
    let many: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("p{i}"), json!("v"))).collect();
    let bad = [
        (json!({"t": "event", "url": "http://localhost/"}), "`name`"),
        (
            json!({"t": "event", "url": "http://localhost/", "name": ""}),
            "`name`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "  "}),
            "`name`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": long(65)}),
            "`name`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "a\u{7}b"}),
            "`name`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "download", "target": "ftp://x/f.pdf"}),
            "`target`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "download", "target": "/files/f.pdf"}),
            "`target`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "download", "target": format!("https://x/{}", long(2040))}),
            "`target`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": many}),
            "`props`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": {"": "v"}}),
            "`props`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": {long(65): "v"}}),
            "`props`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": {"k": 1}}),
            "`props`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": {"k": long(257)}}),
            "`props`",
        ),
        (
            json!({"t": "event", "url": "http://localhost/", "name": "n", "props": ["k"]}),
            "JSON",
        ),
    ];
    for (body, field) in &bad {
        let (status, message) = collect(&http, &app, "10.0.1.1", body.clone()).await;
        assert_eq!(status, 400, "{body} → {status} {message}");
        assert!(
            message.contains(field),
            "{body}: {message:?} names no {field}"
        );
    }
    // At the bounds, accepted.
    let most: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("{i}{}", long(63)), json!(long(256))))
        .collect();
    for body in [
        json!({"t": "event", "url": "http://localhost/", "name": long(64)}),
        json!({"t": "event", "url": "http://localhost/", "name": "đăng ký", "props": {"gói": "miễn phí"}}),
        json!({"t": "event", "url": "http://localhost/", "name": "download", "target": format!("https://x/{}", long(2038))}),
    ] {
        assert_eq!(
            collect(&http, &app, "10.0.1.1", body.clone()).await.0,
            204,
            "{body}"
        );
    }
    let (status, message) = collect(
        &http,
        &app,
        "10.0.1.1",
        json!({"t": "event", "url": "http://localhost/", "name": "n", "props": most}),
    )
    .await;
    assert_eq!(status, 204, "ten properties at their longest: {message}");

    // Events pass the page views' other checks: another site's page is refused, and a
    // crawler's download is recorded as a bot's, not counted.
    let foreign = http
        .post(app.url("/collect"))
        .header("origin", "https://elsewhere.example")
        .header("user-agent", CHROME)
        .body(json!({"t": "event", "site": "demo", "url": "https://elsewhere.example/", "name": "download", "target": "https://x/f.pdf"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let crawler = http
        .post(app.url("/collect"))
        .header("origin", "http://localhost")
        .header("user-agent", common::GOOGLEBOT)
        .body(json!({"t": "event", "site": "demo", "url": "http://localhost/", "name": "download", "target": "https://x/f.pdf"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(crawler.status(), 204);
    let counts = get_json(
        &http,
        &app.url("/api/v1/sites/demo/event-counters?name=download&target=https://x/f.pdf"),
    )
    .await;
    assert_eq!(
        counts["counts"]["https://x/f.pdf"], 0,
        "a crawler's download counted"
    );

    // The goals API names the field at fault too.
    let url = app.url("/api/v1/sites/demo/goals");
    for (body, field) in [
        (json!({}), "`page` or `event`"),
        (json!({"page": "/a", "event": "b"}), "`page` or `event`"),
        (json!({"page": "thu-tuc\u{1}*"}), "`page`"),
        (json!({"page": format!("/{}", long(512))}), "`page`"),
        (json!({"event": long(65)}), "`event`"),
        (json!({"event": "download", "prop": "kind"}), "`value`"),
        (json!({"event": "download", "value": "form"}), "`prop`"),
        (json!({"page": "/a", "prop": "k", "value": "v"}), "`prop`"),
        (
            json!({"event": "download", "prop": "kind", "value": long(257)}),
            "`value`",
        ),
        (json!({"page": "/a", "name": long(101)}), "`name`"),
        (json!({"page": "/a", "colour": "red"}), "colour"),
    ] {
        let (status, answer) = call(
            &http,
            Method::POST,
            &url,
            Auth::Token(TOKEN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} → {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{body}: {message:?} names no {field}"
        );
    }
    let goal = json!({"event": "download"});
    let (status, _) = call(
        &http,
        Method::POST,
        &url,
        Auth::Token(TOKEN),
        Some(goal.clone()),
    )
    .await;
    assert_eq!(status, 201);
    let (status, answer) = call(&http, Method::POST, &url, Auth::Token(TOKEN), Some(goal)).await;
    assert_eq!(status, 409, "the same goal twice: {answer}");
    let (status, _) = call(
        &http,
        Method::POST,
        &url,
        Auth::None,
        Some(json!({"page": "/a"})),
    )
    .await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn imported_download_totals_add_to_the_counters_and_survive_a_rebuild() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::new();
    seed(&http, &app).await;
    let site = tally_core::SiteId::parse("demo").unwrap();

    // A bad file is refused whole, by line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "url,downloads\nftp://x/a.pdf,3\nhttps://x/b.pdf,many\n",
    )
    .unwrap();
    let err = tally::import::import_downloads(&app.settings, &site, &bad, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 bad row(s)") && err.contains("line 2") && err.contains("line 3"),
        "{err}"
    );

    let file = dir.path().join("downloads.csv");
    std::fs::write(&file, format!("url,downloads\n{F1},1000\n{F2}#cover,20\n")).unwrap();
    let imported = tally::import::import_downloads(&app.settings, &site, &file, false)
        .await
        .unwrap();
    assert_eq!(imported, [(F1.to_owned(), 1000), (F2.to_owned(), 20)]);
    let counts_url = app.url(&format!(
        "/api/v1/sites/demo/event-counters?name=download&target={F1}&target={F2}"
    ));
    let counts = get_json(&http, &counts_url).await;
    assert_eq!(
        (counts["counts"][F1].as_u64(), counts["counts"][F2].as_u64()),
        (Some(1003), Some(21))
    );

    // Redis loses the event counts; the rebuild brings back the tracked and imported ones.
    let client = redis::Client::open(app.settings.redis.nodes()[0]).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for pattern in ["*event_counts*", "*event_baseline*"] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty(), "no key matches {pattern}");
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let lost = get_json(&http, &counts_url).await;
    assert_eq!(lost["counts"][F1], 0, "the counts were lost");
    tally::rebuild::rebuild_counters(&app.settings, Some(&site))
        .await
        .unwrap();
    let counts = get_json(&http, &counts_url).await;
    assert_eq!(
        (counts["counts"][F1].as_u64(), counts["counts"][F2].as_u64()),
        (Some(1003), Some(21))
    );

    // A second import replaces the first.
    std::fs::write(&file, format!("{F2},5\n")).unwrap();
    tally::import::import_downloads(&app.settings, &site, &file, false)
        .await
        .unwrap();
    let counts = get_json(&http, &counts_url).await;
    assert_eq!(
        (counts["counts"][F1].as_u64(), counts["counts"][F2].as_u64()),
        (Some(3), Some(6))
    );
    app.stop().await;
}
