//! Sites as data, through the admin API, against real Redis and ClickHouse: created, edited
//! and deleted without a restart, served by every process within seconds, kept when Redis
//! loses its data.

mod common;

use std::time::{Duration, Instant};

use common::{
    Auth, LIMITED, Served, TOKEN, call, settings_with_limited_token as settings, wait_for,
};
use serde_json::{Value, json};
use tally_testkit::TestApp;

/// The status of one page view of `site` from a page on `host`.
async fn view(http: &reqwest::Client, base: &str, site: &str, host: &str) -> u16 {
    http.post(format!("{base}/collect"))
        .header("origin", format!("https://{host}"))
        .header("user-agent", common::CHROME)
        .body(
            json!({"t": "pageview", "site": site, "url": format!("https://{host}/a")}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sites_are_created_edited_and_deleted_through_the_api() {
    use reqwest::Method;
    let redis = tally_testkit::RedisServer::start();
    let app = TestApp::spawn(settings(&redis)).await;
    let http = reqwest::Client::new();
    let sites = app.url("/api/v1/sites");
    let ward = json!({"id": "ward-1", "name": "Phường 1", "domains": ["p1.example.vn"],
                      "timezone": "Asia/Ho_Chi_Minh"});
    // Who may create: an owner.
    assert_eq!(
        call(&http, Method::POST, &sites, Auth::None, Some(ward.clone()))
            .await
            .0,
        401
    );
    let (status, body) = call(
        &http,
        Method::POST,
        &sites,
        Auth::Token(LIMITED),
        Some(ward.clone()),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("owner"),
        "{body}"
    );
    // What: every field checked, the message naming it.
    for (bad, field) in [
        (json!({"id": "Ward 1", "domains": ["p1.vn"]}), "id"),
        (json!({"id": "w", "domains": []}), "domains"),
        (json!({"id": "w", "domains": ["https://p1.vn/"]}), "domains"),
        (
            json!({"id": "w", "domains": ["p1.vn"], "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"id": "w", "domains": ["p1.vn"], "colour": "red"}),
            "colour",
        ),
        (json!({"domains": ["p1.vn"]}), "id"),
        (
            json!({"id": "w", "domains": ["p1.vn"], "name": "x".repeat(101)}),
            "name",
        ),
    ] {
        let (status, body) = call(
            &http,
            Method::POST,
            &sites,
            Auth::Token(TOKEN),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{bad}: {body}"
        );
    }
    // The configuration's site exists already.
    let (status, _) = call(
        &http,
        Method::POST,
        &sites,
        Auth::Token(TOKEN),
        Some(json!({"id": "demo", "domains": ["x.vn"]})),
    )
    .await;
    assert_eq!(status, 409);

    let (status, created) = call(
        &http,
        Method::POST,
        &sites,
        Auth::Token(TOKEN),
        Some(ward.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["id"].as_str(),
            created["name"].as_str(),
            created["source"].as_str(),
            created["timezone"].as_str(),
            created["public_counters"].as_bool()
        ),
        (
            Some("ward-1"),
            Some("Phường 1"),
            Some("managed"),
            Some("Asia/Ho_Chi_Minh"),
            Some(true)
        )
    );
    assert_eq!(
        call(
            &http,
            Method::POST,
            &sites,
            Auth::Token(TOKEN),
            Some(ward.clone())
        )
        .await
        .0,
        409
    );
    // Counted at once, by this process, without a restart.
    assert_eq!(
        view(&http, &app.url(""), "ward-1", "p1.example.vn").await,
        204
    );
    assert_eq!(
        view(&http, &app.url(""), "ward-1", "elsewhere.vn").await,
        403
    );
    let counters = common::get_json(&http, &app.url("/api/v1/sites/ward-1/counters")).await;
    assert_eq!(counters["total_views"], 1, "{counters}");
    // Listed with where it comes from; a limited token sees only its own.
    let (_, list) = call(&http, Method::GET, &sites, Auth::Token(TOKEN), None).await;
    let listed: Vec<(&str, &str)> = list["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("demo", "configuration"), ("ward-1", "managed")]);
    let (_, list) = call(&http, Method::GET, &sites, Auth::Token(LIMITED), None).await;
    assert_eq!(list["sites"].as_array().unwrap().len(), 1);

    // Edits.
    let ward_url = app.url("/api/v1/sites/ward-1");
    let (status, edited) = call(
        &http,
        Method::PATCH,
        &ward_url,
        Auth::Token(TOKEN),
        Some(json!({"domains": ["p1.example.vn", "phuong1.vn"], "public_counters": false})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["domains"], json!(["p1.example.vn", "phuong1.vn"]));
    assert_eq!(edited["name"], "Phường 1", "fields not given are kept");
    assert_eq!(view(&http, &app.url(""), "ward-1", "phuong1.vn").await, 204);
    let hidden = http
        .get(app.url("/api/v1/sites/ward-1/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404, "counters no longer public");
    for (token, url, body, want) in [
        (Auth::Token(LIMITED), &ward_url, json!({"name": "x"}), 403),
        (
            Auth::Token(TOKEN),
            &app.url("/api/v1/sites/demo"),
            json!({"name": "x"}),
            409,
        ),
        (
            Auth::Token(TOKEN),
            &app.url("/api/v1/sites/nope"),
            json!({"name": "x"}),
            404,
        ),
        (
            Auth::Token(TOKEN),
            &ward_url,
            json!({"timezone": "UTC+7"}),
            400,
        ),
        (Auth::Token(TOKEN), &ward_url, json!({"domains": []}), 400),
        (Auth::None, &ward_url, json!({"name": "x"}), 401),
    ] {
        let (status, body) = call(&http, Method::PATCH, url, token, Some(body)).await;
        assert_eq!(status, want, "{url}: {body}");
    }

    // Deletion says what becomes of the history, and stops tracking at once.
    assert_eq!(
        call(&http, Method::DELETE, &ward_url, Auth::Token(TOKEN), None)
            .await
            .0,
        400
    );
    let keep = format!("{ward_url}?history=keep");
    assert_eq!(
        call(&http, Method::DELETE, &keep, Auth::Token(LIMITED), None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(
            &http,
            Method::DELETE,
            &app.url("/api/v1/sites/demo?history=keep"),
            Auth::Token(TOKEN),
            None
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(&http, Method::DELETE, &keep, Auth::Token(TOKEN), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&http, Method::DELETE, &keep, Auth::Token(TOKEN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        view(&http, &app.url(""), "ward-1", "p1.example.vn").await,
        404
    );

    // Who did what, when.
    let log = app.db().audit_log(10).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("site.created", "ward-1"),
            ("site.edited", "ward-1"),
            ("site.deleted", "ward-1")
        ]
    );
    assert!(
        log.iter()
            .all(|e| e.actor.starts_with("token ") && !e.actor.contains(TOKEN))
    );
    app.stop().await;
}

/// Two processes: a site created through one is served by the other within 5 s (about one
/// poll, 1 s); deleted through one, the other refuses its events as soon.
#[tokio::test]
async fn another_process_serves_a_new_site_within_five_seconds() {
    use reqwest::Method;
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let app = TestApp::spawn(settings.clone()).await;
    let other = Served::start(&settings, "beacon,api", &[]).await;
    let http = reqwest::Client::new();
    assert_eq!(view(&http, &other.base, "ward-2", "p2.vn").await, 404);
    let (status, _) = call(
        &http,
        Method::POST,
        &app.url("/api/v1/sites"),
        Auth::Token(TOKEN),
        Some(json!({"id": "ward-2", "domains": ["p2.vn"]})),
    )
    .await;
    assert_eq!(status, 201);
    let created = Instant::now();
    wait_for("the other process to serve ward-2", || async {
        view(&http, &other.base, "ward-2", "p2.vn").await == 204
    })
    .await;
    let took = created.elapsed();
    eprintln!("the other process served the new site after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, _) = call(
        &http,
        Method::DELETE,
        &app.url("/api/v1/sites/ward-2?history=keep"),
        Auth::Token(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let deleted = Instant::now();
    wait_for("the other process to refuse ward-2", || async {
        view(&http, &other.base, "ward-2", "p2.vn").await == 404
    })
    .await;
    assert!(
        deleted.elapsed() < Duration::from_secs(5),
        "{:?}",
        deleted.elapsed()
    );
    let (status, body) = {
        let r = http
            .post(other.url("/collect"))
            .header("origin", "https://p2.vn")
            .header("user-agent", common::CHROME)
            .body(json!({"t": "pageview", "site": "ward-2", "url": "https://p2.vn/a"}).to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_site")));
    app.stop().await;
}

/// Redis loses everything (FLUSHALL): the sites are still served, by the running processes
/// and by a process started afterwards, from their durable copy in ClickHouse.
#[tokio::test]
async fn sites_survive_redis_losing_its_data() {
    use reqwest::Method;
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::new();
    let (status, _) = call(
        &http,
        Method::POST,
        &app.url("/api/v1/sites"),
        Auth::Token(TOKEN),
        Some(json!({"id": "ward-3", "domains": ["p3.vn"]})),
    )
    .await;
    assert_eq!(status, 201);
    let mut conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // A process started after the loss serves it.
    let later = Served::start(&settings, "beacon,api", &[]).await;
    assert_eq!(view(&http, &later.base, "ward-3", "p3.vn").await, 204);
    // The running one still does, and the announcement is back in Redis.
    assert_eq!(view(&http, &app.url(""), "ward-3", "p3.vn").await, 204);
    wait_for("the sites to be announced again", || async {
        let mut conn = conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg("tally:{directory}:sites")
            .query_async(&mut conn)
            .await
            .unwrap();
        json.is_some_and(|j| j.contains("ward-3"))
    })
    .await;
    app.stop().await;
}

/// Deleting a site with `history=drop`: its rows leave every ClickHouse table (mutations,
/// finished within seconds here) and its live keys leave Redis; another site keeps all of
/// its own.
#[tokio::test]
async fn dropping_a_sites_history_deletes_its_rows_and_live_counters() {
    use reqwest::Method;
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::new();
    for (id, domain) in [("ward-4", "p4.vn"), ("ward-5", "p5.vn")] {
        let (status, _) = call(
            &http,
            Method::POST,
            &app.url("/api/v1/sites"),
            Auth::Token(TOKEN),
            Some(json!({"id": id, "domains": [domain]})),
        )
        .await;
        assert_eq!(status, 201);
        for _ in 0..3 {
            assert_eq!(view(&http, &app.url(""), id, domain).await, 204);
        }
    }
    common::wait_for_rollups(&app, 6).await;
    assert_eq!(common::site_rows(&settings, "events", "ward-4").await, 3);
    assert!(common::site_rows(&settings, "site_daily", "ward-4").await > 0);
    let (status, _) = call(
        &http,
        Method::DELETE,
        &app.url("/api/v1/sites/ward-4?history=drop"),
        Auth::Token(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    wait_for("ward-4's rows to leave ClickHouse", || async {
        let mut left = 0;
        for table in [
            "events",
            "site_daily",
            "site_hourly",
            "page_days",
            "dimension_daily",
            "visit_hourly",
        ] {
            left += common::site_rows(&settings, table, "ward-4").await;
        }
        left == 0
    })
    .await;
    let mut conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*ward-4*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    // The other site keeps everything.
    assert_eq!(common::site_rows(&settings, "events", "ward-5").await, 3);
    // (One reader's three views of one page: one view and two reloads.)
    let c = common::get_json(&http, &app.url("/api/v1/sites/ward-5/counters")).await;
    assert_eq!(c["total_views"], 1);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*ward-5*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    app.stop().await;
}
