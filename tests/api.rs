//! The query API on seeded data, against real Redis and ClickHouse: exact figures, live
//! counters, authorisation and validation, and the OpenAPI document walked end to end and
//! fuzzed (schemathesis).

mod common;

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use common::{CHROME, FIREFOX, Hit, send};
use serde_json::{Value, json};
use tally_clickhouse::EventRow;
use tally_core::{
    Event, EventKind, SiteId,
    settings::{AdminToken, SiteSettings},
};
use tally_testkit::TestApp;

const TOKEN: &str = "test-admin-token-0123456789";
const LIMITED: &str = "limited-token-1-0123456789";

fn settings() -> tally_core::Settings {
    let mut s = tally_testkit::settings();
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let site = |id: &str, tz: Tz, public| SiteSettings {
        name: String::new(),
        id: SiteId::parse(id).unwrap(),
        domains: vec!["localhost".into()],
        timezone: tz,
        public_counters: public,
    };
    s.sites.push(site("utc", Tz::UTC, true));
    s.sites.push(site("private", Tz::UTC, false));
    s.admin.tokens = vec![
        AdminToken::All(TOKEN.into()),
        AdminToken::Limited {
            token: LIMITED.into(),
            sites: vec![SiteId::parse("utc").unwrap()],
        },
    ];
    s.admin.max_range_days = 31;
    s
}

/// (local time in UTC+7, kind, page, visitor, session, new visit, referrer)
type Seed = (
    &'static str,
    EventKind,
    &'static str,
    u64,
    u64,
    bool,
    &'static str,
);

const SEED: [Seed; 14] = [
    (
        "2021-07-05 08:10:00",
        EventKind::Pageview,
        "/a",
        1,
        11,
        true,
        "google.com",
    ),
    (
        "2021-07-05 08:12:00",
        EventKind::Pageview,
        "/b",
        1,
        11,
        false,
        "",
    ),
    (
        "2021-07-05 08:13:00",
        EventKind::Ping,
        "/b",
        1,
        11,
        false,
        "",
    ),
    (
        "2021-07-05 08:30:00",
        EventKind::Pageview,
        "/a",
        2,
        22,
        true,
        "facebook.com",
    ),
    (
        "2021-07-05 23:50:00",
        EventKind::Pageview,
        "/c",
        3,
        33,
        true,
        "google.com",
    ),
    (
        "2021-07-05 23:55:00",
        EventKind::Ping,
        "/c",
        3,
        33,
        false,
        "",
    ),
    (
        "2021-07-06 00:20:00",
        EventKind::Pageview,
        "/a",
        1,
        44,
        true,
        "",
    ),
    (
        "2021-07-06 00:25:00",
        EventKind::Pageview,
        "/a",
        1,
        44,
        false,
        "",
    ),
    (
        "2021-07-06 00:25:30",
        EventKind::Leave,
        "/a",
        1,
        44,
        false,
        "",
    ),
    (
        "2021-07-06 10:00:00",
        EventKind::Pageview,
        "/b",
        4,
        55,
        true,
        "google.com",
    ),
    ("2021-07-06 11:00:00", EventKind::Bot, "", 0, 0, false, ""),
    (
        "2021-07-06 11:30:00",
        EventKind::Unverified,
        "",
        0,
        0,
        false,
        "",
    ),
    (
        "2021-07-06 11:40:00",
        EventKind::Unverified,
        "",
        0,
        0,
        false,
        "",
    ),
    (
        "2021-07-07 09:00:00",
        EventKind::Pageview,
        "/z",
        9,
        99,
        true,
        "",
    ),
];

async fn seed(app: &TestApp) {
    let tz: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
    let mut events = Vec::new();
    for site in ["demo", "utc"] {
        for (i, (local, kind, page, visitor, session, new_visit, referrer)) in
            SEED.iter().enumerate()
        {
            let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
            let t = tz.from_local_datetime(&naive).unwrap().timestamp();
            let event = Event {
                kind: *kind,
                site: site.into(),
                ts_ms: t * 1000,
                page: (*page).into(),
                path: (*page).into(),
                title: format!("Bài {page}"),
                referrer_host: (*referrer).into(),
                browser: if *visitor == 2 {
                    "Firefox".into()
                } else {
                    "Chrome".into()
                },
                os: "Linux".into(),
                device: "desktop".into(),
                visitor: *visitor,
                session: *session,
                new_visit: *new_visit,
                ..Event::empty()
            };
            events.push((format!("{site}-{i}"), event));
        }
    }
    let (ids, mut events): (Vec<String>, Vec<Event>) = events.into_iter().unzip();
    common::sequence(&mut events);
    let rows: Vec<EventRow> = ids
        .iter()
        .zip(events)
        .map(|(id, e)| {
            let tz = app.settings.timezone_of(&e.site);
            EventRow::new(9, id, e, tz)
        })
        .collect();
    app.db().insert_events(&rows).await.unwrap();
}

async fn get(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = http.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(http: &reqwest::Client, app: &TestApp, path: &str) -> Value {
    let (status, body) = get(http, app, path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn exact_figures_on_seeded_data() {
    let app = TestApp::spawn(settings()).await;
    seed(&app).await;
    let http = reqwest::Client::new();
    let range = "from=2021-07-05&to=2021-07-06";

    for site in ["demo", "utc"] {
        let s = ok(
            &http,
            &app,
            &format!("/api/v1/sites/{site}/stats/summary?{range}"),
        )
        .await;
        assert_eq!(
            s,
            json!({"views": 7, "visits": 5, "visitors": 4, "bounce_rate": 0.6,
                   "avg_visit_seconds": 162.0, "bots_filtered": 1, "repeats_not_counted": 0,
                   "unverified_not_counted": 2}),
            "{site}"
        );
    }

    // Daily series in each site's own time zone.
    let days = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/timeseries?{range}&interval=day"),
    )
    .await;
    assert_eq!(
        days,
        json!({"points": [
            {"t": "2021-07-05T00:00:00+07:00", "views": 4, "visits": 3, "visitors": 3},
            {"t": "2021-07-06T00:00:00+07:00", "views": 3, "visits": 2, "visitors": 2},
        ]})
    );
    let days = ok(
        &http,
        &app,
        &format!("/api/v1/sites/utc/stats/timeseries?{range}&interval=day"),
    )
    .await;
    assert_eq!(
        days,
        json!({"points": [
            {"t": "2021-07-05T00:00:00+00:00", "views": 6, "visits": 4, "visitors": 3},
            {"t": "2021-07-06T00:00:00+00:00", "views": 1, "visits": 1, "visitors": 1},
        ]})
    );

    // Hourly: 24 points for one local day, zeros included.
    let hours = ok(
        &http,
        &app,
        "/api/v1/sites/demo/stats/timeseries?from=2021-07-05&to=2021-07-05&interval=hour",
    )
    .await;
    let points = hours["points"].as_array().unwrap();
    assert_eq!(points.len(), 24);
    assert_eq!(points[0]["t"], "2021-07-05T00:00:00+07:00");
    assert_eq!(
        points[8],
        json!({"t": "2021-07-05T08:00:00+07:00", "views": 3, "visits": 2, "visitors": 2})
    );
    assert_eq!(
        points[23],
        json!({"t": "2021-07-05T23:00:00+07:00", "views": 1, "visits": 1, "visitors": 1})
    );
    let busy: u64 = points.iter().map(|p| p["views"].as_u64().unwrap()).sum();
    assert_eq!(busy, 4);
    let hours = ok(
        &http,
        &app,
        "/api/v1/sites/utc/stats/timeseries?from=2021-07-05&to=2021-07-05&interval=hour",
    )
    .await;
    let views: Vec<(usize, u64)> = hours["points"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(h, p)| p["views"].as_u64().filter(|v| *v > 0).map(|v| (h, v)))
        .collect();
    assert_eq!(views, [(1, 3), (16, 1), (17, 2)]);

    let pages = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/pages?{range}"),
    )
    .await;
    // Engaged time: each ping's and leave's gap, up to 1.25 heartbeats (30 s here: 37.5 s),
    // over the page's views. /a: the leave 30 s after the view at 00:25 → 30 s / 4 views;
    // /b: the ping 60 s after the view at 08:12 → 37.5 s / 2; /c: a ping 5 min after → 37.5 s.
    // Bounce rate of the visits that started there: /a started 11 (went on to /b), 22 (no
    // second view) and 44 (two views) → 1/3; /b started 55, /c 33, both single views.
    assert_eq!(
        pages,
        json!({"pages": [
            {"page": "/a", "path": "/a", "title": "Bài /a", "views": 4, "visitors": 2,
             "avg_engaged_seconds": 7.5, "bounce_rate": 0.3333},
            {"page": "/b", "path": "/b", "title": "Bài /b", "views": 2, "visitors": 2,
             "avg_engaged_seconds": 18.8, "bounce_rate": 1.0},
            {"page": "/c", "path": "/c", "title": "Bài /c", "views": 1, "visitors": 1,
             "avg_engaged_seconds": 37.5, "bounce_rate": 1.0},
        ]})
    );
    let second = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/pages?{range}&limit=1&offset=1"),
    )
    .await;
    assert_eq!(second["pages"][0]["page"], "/b");

    let referrers = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/referrers?{range}"),
    )
    .await;
    assert_eq!(
        referrers,
        json!({"rows": [
            {"name": "", "views": 3, "visitors": 1},
            {"name": "google.com", "views": 3, "visitors": 3},
            {"name": "facebook.com", "views": 1, "visitors": 1},
        ]})
    );
    let browsers = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/browsers?{range}&limit=1"),
    )
    .await;
    assert_eq!(
        browsers,
        json!({"rows": [{"name": "Chrome", "views": 6, "visitors": 3}]})
    );
    let devices = ok(
        &http,
        &app,
        &format!("/api/v1/sites/demo/stats/devices?{range}"),
    )
    .await;
    assert_eq!(devices["rows"][0]["name"], "desktop");
    assert_eq!(
        ok(&http, &app, &format!("/api/v1/sites/demo/stats/os?{range}")).await["rows"][0]["views"],
        7
    );
    assert_eq!(
        ok(
            &http,
            &app,
            &format!("/api/v1/sites/demo/stats/countries?{range}")
        )
        .await["rows"][0]["name"],
        ""
    );

    // Realtime comes from the live tier: two people on the site now.
    assert_eq!(
        send(&http, &app, &Hit::view("/live").ip("203.0.113.1")).await,
        204
    );
    assert_eq!(
        send(
            &http,
            &app,
            &Hit::view("/live").ip("203.0.113.2").ua(FIREFOX)
        )
        .await,
        204
    );
    assert_eq!(
        send(
            &http,
            &app,
            &Hit::view("/other").ip("203.0.113.1").ua(CHROME).sid("t2")
        )
        .await,
        204
    );
    app.settled().await;
    let rt = ok(&http, &app, "/api/v1/sites/demo/stats/realtime").await;
    assert_eq!(rt["online"], 2);
    assert_eq!(
        rt["pages"],
        json!([{"page": "/live", "title": "T", "online": 2, "other": false}, {"page": "/other", "title": "T", "online": 1, "other": false}])
    );
    let per_minute = rt["views_per_minute"].as_array().unwrap();
    assert_eq!(per_minute.len(), 30);
    assert_eq!(
        per_minute
            .iter()
            .map(|p| p["views"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
}

/// A page asked for by its address gets the key the beacon made from the view's URL, however
/// that address is encoded: UTF-8 escapes decoded, a literal `%` (`%25`) and a stray `%` kept
/// as `%25`, a trailing slash, query and fragment ignored.
#[tokio::test]
async fn counters_by_address_use_the_beacons_page_key() {
    let app = TestApp::spawn_roles(settings(), "beacon,api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    let paths = [
        ("/tin-t%E1%BB%A9c/gi%C3%A1-100%25/", "/tin-tức/giá-100%25"),
        ("/khuyen-mai-50%-off", "/khuyen-mai-50%25-off"),
    ];
    for (i, (path, _)) in paths.iter().enumerate() {
        let ip = format!("203.0.113.{}", i + 1);
        assert_eq!(send(&http, &app, &Hit::view(path).ip(&ip)).await, 204);
    }
    for (path, key) in paths {
        for address in [
            format!("http://localhost{path}"),
            format!("https://localhost:8443{path}?utm_source=x#comments"),
        ] {
            let asked = format!(
                "/api/v1/sites/demo/counters?url={}",
                percent_encoding::utf8_percent_encode(&address, percent_encoding::NON_ALPHANUMERIC)
            );
            let (status, c) = get(&http, &app, &asked, None).await;
            assert_eq!(status, 200, "{asked}");
            assert_eq!(
                (c["page"].as_str(), c["page_views"].as_u64()),
                (Some(key), Some(1)),
                "{asked}"
            );
        }
    }
    for bad in [
        "url=%2Fno-scheme",
        "url=ftp%3A%2F%2Fhost%2Fa",
        "page=%2Fa&url=http%3A%2F%2Flocalhost%2Fa",
        "url=http%3A%2F%2Flocalhost%2Fa&url=http%3A%2F%2Flocalhost%2Fb",
    ] {
        let (status, _) = get(
            &http,
            &app,
            &format!("/api/v1/sites/demo/counters?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn counters_are_live_before_the_worker_flushes() {
    let app = TestApp::spawn_roles(settings(), "beacon,api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    assert_eq!(
        send(&http, &app, &Hit::view("/tin-moi").ip("203.0.113.7")).await,
        204
    );
    let (status, c) = get(
        &http,
        &app,
        "/api/v1/sites/demo/counters?page=/tin-moi",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(c["page_views"], 1);
    assert_eq!(
        app.db().count_events().await.unwrap(),
        0,
        "no worker ran: nothing in ClickHouse yet"
    );
    let r = http
        .get(app.url("/api/v1/sites/demo/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let (status, views) = get(
        &http,
        &app,
        "/api/v1/sites/demo/views?page=/tin-moi&page=/never",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        views,
        json!({"site": "demo", "views": {"/tin-moi": 1, "/never": 0}})
    );
    let many: String = (0..101).map(|i| format!("page=/p{i}&")).collect();
    assert_eq!(
        get(
            &http,
            &app,
            &format!("/api/v1/sites/demo/views?{many}"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(&http, &app, "/api/v1/sites/private/counters", None)
            .await
            .0,
        404
    );
    assert_eq!(
        get(&http, &app, "/api/v1/sites/nope/counters", None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn authorisation_and_validation() {
    let app = TestApp::spawn(settings()).await;
    seed(&app).await;
    let http = reqwest::Client::new();
    let summary = "/api/v1/sites/demo/stats/summary?from=2021-07-05&to=2021-07-06";

    assert_eq!(get(&http, &app, summary, None).await.0, 401);
    assert_eq!(
        get(&http, &app, summary, Some("wrong-token-123")).await.0,
        401
    );
    let r = http
        .get(app.url(summary))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get(&http, &app, summary, Some(LIMITED)).await.0, 403);
    assert_eq!(
        get(
            &http,
            &app,
            "/api/v1/sites/utc/stats/summary",
            Some(LIMITED)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get(&http, &app, "/api/v1/sites/nope/stats/summary", Some(TOKEN))
            .await
            .0,
        404
    );
    let (_, sites) = get(&http, &app, "/api/v1/sites", Some(LIMITED)).await;
    assert_eq!(sites["sites"].as_array().unwrap().len(), 1);
    assert_eq!(sites["sites"][0]["id"], "utc");
    let (_, sites) = get(&http, &app, "/api/v1/sites", Some(TOKEN)).await;
    assert_eq!(sites["sites"].as_array().unwrap().len(), 3);

    for bad in [
        "from=2021-7-5",
        "from=2021-07-06&to=2021-07-05",
        "from=2021-01-01&to=2021-07-05",
        "from=2021-07-05&to=tomorrow",
        "from=2021-07-05'; DROP TABLE events --",
    ] {
        let (status, body) = get(
            &http,
            &app,
            &format!("/api/v1/sites/demo/stats/summary?{bad}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "bad_request");
    }
    assert_eq!(
        get(
            &http,
            &app,
            "/api/v1/sites/demo/stats/timeseries?interval=week",
            Some(TOKEN)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(
            &http,
            &app,
            "/api/v1/sites/demo/stats/pages?limit=-1",
            Some(TOKEN)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(
            &http,
            &app,
            "/api/v1/sites/demo/stats/pages?limit=5000",
            Some(TOKEN)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(&http, &app, "/api/v1/sites/demo/stats/cookies", Some(TOKEN))
            .await
            .0,
        404
    );

    // Injection-shaped input is data, never SQL or a key pattern.
    let (status, c) = get(
        &http,
        &app,
        "/api/v1/sites/demo/counters?page=%27%20OR%201%3D1%20--",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(c["page"], "' OR 1=1 --");
    assert_eq!(c["page_views"], 0);
    let (status, c) = get(&http, &app, "/api/v1/sites/demo/counters?page=*", None).await;
    assert_eq!((status, c["page_views"].as_u64()), (200, Some(0)));
    assert_eq!(
        get(&http, &app, "/api/v1/sites/demo'--/counters", None)
            .await
            .0,
        404
    );
    assert_eq!(
        get(
            &http,
            &app,
            "/api/v1/sites/demo%27%20OR%201%3D1/stats/summary",
            Some(TOKEN)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.db().count_events().await.unwrap(),
        2 * SEED.len() as u64,
        "nothing was changed"
    );
}

/// Checks `value` against the parts of a JSON schema the document uses (type, required,
/// properties, items, additionalProperties, `$ref` into `doc`'s components).
fn conforms(doc: &Value, value: &Value, schema: &Value) -> Result<(), String> {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.trim_start_matches("#/components/schemas/");
        return conforms(doc, value, &doc["components"]["schemas"][name]);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let is = |ty: &str| match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{value} is not {types:?}"));
    }
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        if value.get(key).is_none() {
            return Err(format!("missing `{key}` in {value}"));
        }
    }
    let props = schema["properties"].as_object();
    if let (Some(props), Some(object)) = (props, value.as_object()) {
        for (k, v) in object {
            match props.get(k) {
                Some(s) => conforms(doc, v, s).map_err(|e| format!("{k}: {e}"))?,
                None => return Err(format!("`{k}` is not documented")),
            }
        }
    }
    if let (Some(extra), Some(object)) = (schema.get("additionalProperties"), value.as_object()) {
        for v in object.values() {
            conforms(doc, v, extra)?;
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for v in list {
            conforms(doc, v, items)?;
        }
    }
    Ok(())
}

/// Every operation of the document, called on the seeded data: 200 with a body of the
/// documented schema (the fuzzer below mostly meets empty ranges), 401 without a token, 404
/// for an unknown site; and every route of the API is in the document.
#[tokio::test]
async fn every_route_in_the_openapi_document_answers_as_documented() {
    let app = TestApp::spawn(settings()).await;
    seed(&app).await;
    let http = reqwest::Client::new();
    let (status, doc) = get(&http, &app, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(
        documented,
        [
            "/api/v1/account/password",
            "/api/v1/account/sign-out-everywhere",
            "/api/v1/sites",
            "/api/v1/sites/{site}",
            "/api/v1/sites/{site}/counters",
            "/api/v1/sites/{site}/event-counters",
            "/api/v1/sites/{site}/goals",
            "/api/v1/sites/{site}/goals/{id}",
            "/api/v1/sites/{site}/shares",
            "/api/v1/sites/{site}/shares/{id}",
            "/api/v1/sites/{site}/stats/browsers",
            "/api/v1/sites/{site}/stats/cities",
            "/api/v1/sites/{site}/stats/countries",
            "/api/v1/sites/{site}/stats/devices",
            "/api/v1/sites/{site}/stats/entry-pages",
            "/api/v1/sites/{site}/stats/events",
            "/api/v1/sites/{site}/stats/events/props",
            "/api/v1/sites/{site}/stats/events/targets",
            "/api/v1/sites/{site}/stats/exit-pages",
            "/api/v1/sites/{site}/stats/goals",
            "/api/v1/sites/{site}/stats/languages",
            "/api/v1/sites/{site}/stats/os",
            "/api/v1/sites/{site}/stats/pages",
            "/api/v1/sites/{site}/stats/realtime",
            "/api/v1/sites/{site}/stats/referrers",
            "/api/v1/sites/{site}/stats/regions",
            "/api/v1/sites/{site}/stats/screens",
            "/api/v1/sites/{site}/stats/summary",
            "/api/v1/sites/{site}/stats/timeseries",
            "/api/v1/sites/{site}/stats/utm-campaigns",
            "/api/v1/sites/{site}/stats/utm-mediums",
            "/api/v1/sites/{site}/stats/utm-sources",
            "/api/v1/sites/{site}/views",
            "/api/v1/tokens",
            "/api/v1/tokens/{id}",
            "/api/v1/users",
            "/api/v1/users/{name}",
        ]
    );
    // The reads (the writes are tests/sites.rs').
    for (path, item) in paths.iter().filter(|(_, item)| item.get("get").is_some()) {
        let op = &item["get"];
        let mut url = path.replace("{site}", "demo");
        let mut query = vec![];
        for p in op["parameters"].as_array().into_iter().flatten() {
            match (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()) {
                ("page", "query") => query.push("page=/a".to_owned()),
                ("from", _) => query.push("from=2021-07-05".to_owned()),
                ("to", _) => query.push("to=2021-07-06".to_owned()),
                ("name", "query") => query.push("name=download".to_owned()),
                ("target", "query") => query.push("target=https://example.com/a.pdf".to_owned()),
                ("prop", "query") => query.push("prop=kind".to_owned()),
                _ => {}
            }
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let secured = op.get("security").is_some();
        let (status, body) = get(&http, &app, &url, secured.then_some(TOKEN)).await;
        if path == "/api/v1/tokens" {
            // Personal tokens are a person's: a configuration token is refused (people.rs).
            assert_eq!(status, 403, "{url}: {body}");
            continue;
        }
        assert_eq!(status, 200, "{url}: {body}");
        conforms(
            &doc,
            &body,
            &op["responses"]["200"]["content"]["application/json"]["schema"],
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        if secured {
            let (status, body) = get(&http, &app, &url, None).await;
            assert_eq!(status, 401, "{url}");
            assert!(op["responses"]["401"].is_object(), "{url} documents 401");
            conforms(&doc, &body, &doc["components"]["schemas"]["ErrorBody"]).unwrap();
        }
        if path.contains("{site}") {
            let (status, _) = get(
                &http,
                &app,
                &url.replace("/demo", "/nope"),
                secured.then_some(TOKEN),
            )
            .await;
            assert_eq!(status, 404, "{url} with an unknown site");
            assert!(op["responses"]["404"].is_object());
        }
        // A documented query parameter that must not be empty is refused when it is.
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            if p["in"] != "query" || p["schema"]["minLength"].as_u64().unwrap_or(0) == 0 {
                continue;
            }
            let mut others: Vec<String> = query
                .iter()
                .filter(|q| !q.starts_with(&format!("{name}=")))
                .cloned()
                .collect();
            others.push(format!("{name}="));
            let empty = format!("{}?{}", path.replace("{site}", "demo"), others.join("&"));
            let (status, body) = get(&http, &app, &empty, secured.then_some(TOKEN)).await;
            assert_eq!(status, 400, "{empty}: {body}");
        }
    }
}

/// The API fuzzed from its OpenAPI document: schemathesis (`scripts/services
/// install-fuzzer`) generates valid and invalid requests for every operation — mostly for
/// the seeded sites, sometimes for made-up ones — and fails on any 5xx, a status the
/// document does not list, a body or header that does not match the document, a wrong
/// content type, or a request the document calls invalid that is accepted. Two checks are
/// left out: `positive_data_acceptance`, because a range has rules JSON Schema cannot state
/// (`from` ≤ `to`, at most `admin.max_range_days`; the walk above checks valid requests
/// are answered), and `ignored_auth`, because its wrong tokens make the throttle answer 429
/// to every request from this address for a minute (the walk checks 401 without a token,
/// tests/exposure.rs the throttle). Bounded: 30 cases per operation and 120 s.
#[tokio::test]
async fn the_api_fuzzer_finds_no_failure() {
    let schemathesis = fuzzer();
    let app = TestApp::spawn(settings()).await;
    seed(&app).await;
    let dir = std::env::temp_dir().join(format!("tally-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"
[dictionaries.sites]
values = ["demo", "utc"]

[parameters]
"path.site" = { dictionary = "sites", probability = 0.9 }
# Dropping a site's history starts thirteen ClickHouse mutations; the fuzzer keeps it (the
# drop is tests/sites.rs').
"query.history" = "keep"
"#,
    )
    .unwrap();
    let mut child = std::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &app.url("/api/openapi.json")])
        .args(["--checks", "all", "--exclude-checks"])
        .arg("positive_data_acceptance,ignored_auth")
        .args(["--max-examples", "30", "--max-time", "120"])
        // One worker: two threads sometimes trip CPython 3.11's "AST constructor recursion
        // depth mismatch" inside schemathesis, an error of the tool, not of the API.
        .args(["--workers", "1", "--seed", "20261201", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.join("report"))
        .current_dir(&dir)
        // Into files: a pipe nobody reads while it runs would stop it once full.
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("run schemathesis");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(200);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let said = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
            panic!("schemathesis ran past its time budget:\n{said}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    eprintln!("{stdout}");
    assert!(
        status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // It did test every operation.
    assert!(stdout.contains("43 selected"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// The schemathesis command: `TALLY_SCHEMATHESIS`, else the one `scripts/services
/// install-fuzzer` installs.
fn fuzzer() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("TALLY_SCHEMATHESIS") {
        return path.into();
    }
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("var/schemathesis/bin/schemathesis");
    assert!(
        path.is_file(),
        "schemathesis not found at {}: run scripts/services install-fuzzer",
        path.display()
    );
    path
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |token: &str, ip: &str| {
        http.post(app.url("/admin/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", ip)
            .body(format!("token={token}"))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(
            login("wrong-guess-000", "203.0.113.50")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let r = login(TOKEN, "203.0.113.50").await.unwrap();
    assert_eq!(
        r.status(),
        429,
        "even the right token waits once the address is over the limit"
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many sign-in attempts")
    );
    let r = login(TOKEN, "203.0.113.51").await.unwrap();
    assert_eq!(r.status(), 303, "other addresses are not affected");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

/// Wrong bearer tokens are limited per client network like sign-ins: the 11th in a minute
/// answers 429 even with the right token; other addresses are not affected; the addresses
/// of one IPv6 /64 share the budget. A request without a token is no guess and not counted.
#[tokio::test]
async fn wrong_bearer_tokens_are_limited_per_network() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::new();
    let url = app.url("/api/v1/sites");
    let ask = |token: Option<&str>, ip: &str| {
        let mut req = http.get(&url).header("x-forwarded-for", ip);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    for _ in 0..20 {
        assert_eq!(ask(None, "203.0.113.60").await.unwrap().status(), 401);
    }
    assert_eq!(
        ask(Some(TOKEN), "203.0.113.60").await.unwrap().status(),
        200
    );
    for i in 0..10 {
        let ip = format!("2001:db8:7:7::{i}");
        assert_eq!(
            ask(Some("wrong-guess-000"), &ip).await.unwrap().status(),
            401
        );
    }
    let r = ask(Some(TOKEN), "2001:db8:7:7:ffff::1").await.unwrap();
    assert_eq!(r.status(), 429, "the /64 used up its wrong tokens");
    assert_eq!(r.headers()["retry-after"], "60");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_attempts");
    assert_eq!(
        ask(Some(TOKEN), "2001:db8:7:8::1").await.unwrap().status(),
        200
    );
    assert_eq!(
        ask(Some(TOKEN), "203.0.113.61").await.unwrap().status(),
        200
    );
}

/// The real binary refuses to start with a short admin token, naming the key.
#[tokio::test]
async fn a_ten_character_token_stops_the_binary_at_start() {
    let settings = tally_testkit::settings();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("serve")
        .envs(tally_testkit::env_for(&settings))
        .env("TALLY__ADMIN__TOKENS", "0123456789")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.tokens") && stderr.contains("at least 24 characters"),
        "{stderr}"
    );
}

/// Admin sessions: `Secure` and `__Host-` behind an https proxy, not over plain http;
/// cross-site sign-in and sign-out refused; Redis never holds the cookie's value; a session
/// ends `admin.session_max_age` after sign-in however active.
#[tokio::test]
async fn admin_sessions_are_hardened() {
    let start = chrono::Utc::now();
    let clock = tally_core::Clock::manual(start);
    let app = TestApp::spawn_with_clock(settings(), tally::Roles::all(), clock.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let own_origin = format!("http://{}", app.addr);
    let login = |headers: &[(&str, &str)]| {
        let mut req = http
            .post(app.url("/admin/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send()
    };
    let set_cookie = |r: &reqwest::Response| r.headers()["set-cookie"].to_str().unwrap().to_owned();

    // Plain http: no Secure (a browser would drop the cookie), the plain name.
    let r = login(&[("origin", &own_origin)]).await.unwrap();
    assert_eq!(r.status(), 303);
    let plain = set_cookie(&r);
    assert!(
        plain.starts_with("tally_session=") && !plain.contains("Secure"),
        "{plain}"
    );
    // Behind a trusted https proxy: Secure, and the __Host- name.
    let r = login(&[("x-forwarded-proto", "https")]).await.unwrap();
    assert_eq!(r.status(), 303);
    let secure = set_cookie(&r);
    assert!(
        secure.starts_with("__Host-tally_session=")
            && secure.contains("; Secure")
            && secure.contains("Path=/")
            && !secure.contains("Domain"),
        "{secure}"
    );

    // Cross-site sign-in and sign-out are refused.
    for headers in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
        [("origin", "null")],
    ] {
        let r = login(&headers).await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "cross_site");
    }
    let id = secure
        .split_once('=')
        .and_then(|(_, v)| v.split(';').next())
        .unwrap()
        .to_owned();
    let cookie = format!("__Host-tally_session={id}");
    let r = http
        .post(app.url("/admin/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a cross-site sign-out is refused");

    // Redis holds the session under a hash: nothing there is a cookie value.
    let mut conn = redis::Client::open(app.settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tally:session:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let value: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            !key.contains(&id) && !value.contains(&id),
            "{key} = {value}"
        );
        assert!(!value.contains(TOKEN), "{value}");
    }

    // Signed in while used, until session_max_age after sign-in.
    let signed_in = || async {
        let page = http
            .get(app.url("/admin"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        !page.contains("id=\"token\"")
    };
    assert!(signed_in().await);
    let max_age = app.settings.admin.session_max_age;
    clock.set(start + chrono::Duration::from_std(max_age).unwrap() - chrono::Duration::seconds(5));
    assert!(signed_in().await, "still within its lifetime");
    clock.set(start + chrono::Duration::from_std(max_age).unwrap() + chrono::Duration::seconds(1));
    assert!(!signed_in().await, "ended at its absolute lifetime");

    // A same-origin sign-out ends a session and clears both cookie names.
    let r = login(&[("origin", &own_origin)]).await.unwrap();
    let plain_id = set_cookie(&r)
        .split_once('=')
        .and_then(|(_, v)| v.split(';').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(app.url("/admin/logout"))
        .header("cookie", format!("tally_session={plain_id}"))
        .header("origin", &own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
}

/// A JSON body that is not an object is refused with 400, naming what is wanted: serde reads
/// a struct from an array too (its fields by position), so `[null]` made a share (the API
/// fuzzer found it) and `["x"]` would have been read as a goal named `x`.
#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_refused() {
    let app = TestApp::spawn_roles(settings(), "api".parse().unwrap()).await;
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/api/v1/sites/demo/shares", "[null]"),
        ("/api/v1/sites/demo/shares", "[]"),
        ("/api/v1/sites/demo/goals", r#"["x", "pageview"]"#),
        ("/api/v1/sites/demo/goals", "7"),
    ] {
        let response = http
            .post(app.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["code"], "bad_request");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("a JSON object"),
            "{answer}"
        );
    }
    let (_, shares) = get(&http, &app, "/api/v1/sites/demo/shares", Some(TOKEN)).await;
    assert_eq!(shares["shares"], serde_json::json!([]), "no share made");
}
