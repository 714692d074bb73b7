//! Numbers right in every time zone and against reloads, driven through the real beacon,
//! Redis, worker and ClickHouse with the app's clock set by the test:
//! - a local day's hourly points land in its local hours (23 or 25 of them on the days clocks
//!   change, half and quarter hours from UTC in Kolkata and Kathmandu) and sum to the day's
//!   summary, figure by figure; daily points equal their days' summaries;
//! - one reader is one visitor and one visit through a local day (ids follow the site's
//!   date, not UTC's), and one visitor on each of two days;
//! - reloads within `tracking.repeat_view_window` are not views, and are counted apart.

mod common;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use tally::Roles;
use tally_core::{Clock, Settings};
use tally_testkit::TestApp;

const TOKEN: &str = "test-admin-token-0123456789";

fn settings(zone: &str) -> Settings {
    let mut s = tally_testkit::settings();
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    s.sites[0].timezone = zone.parse().unwrap();
    s
}

/// The instant local time `at` (`YYYY-MM-DD HH:MM`) names in `tz`; on the day clocks go back
/// `second` picks the later of the two.
fn local(tz: Tz, at: &str, second: bool) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M").unwrap();
    let t = tz.from_local_datetime(&naive);
    let t = if second { t.latest() } else { t.earliest() };
    t.unwrap_or_else(|| panic!("{at} exists in {tz}"))
        .with_timezone(&Utc)
}

async fn stats(http: &reqwest::Client, app: &TestApp, what: &str, query: &str) -> Value {
    common::get_admin_json(
        http,
        &app.url(&format!("/api/v1/sites/demo/stats/{what}?{query}")),
        TOKEN,
    )
    .await
}

/// Sends one page view of `path` at `at` from a reader at `ip`.
async fn view_at(
    http: &reqwest::Client,
    app: &TestApp,
    clock: &Clock,
    at: DateTime<Utc>,
    path: &str,
    ip: &str,
) {
    clock.set(at);
    assert_eq!(
        common::send(http, app, &common::Hit::view(path).ip(ip)).await,
        204
    );
}

/// A summary's views, visits and unique visitors.
fn views_visits_visitors(v: &Value) -> (u64, u64, u64) {
    (
        figure(v, "views"),
        figure(v, "visits"),
        figure(v, "visitors"),
    )
}

fn figure(v: &Value, name: &str) -> u64 {
    v[name].as_u64().unwrap_or_else(|| panic!("{name} in {v}"))
}

/// Page views at the local times `times` of `day` in `zone` (each a new reader, so each a
/// visitor and a visit), plus one a minute before and one a minute after the day: the day's
/// hourly points must be its local hours (`hours` of them), hold each view in the hour of its
/// local time, and sum to the day's summary; the daily points of the three days must equal
/// their summaries.
async fn a_day_in(zone: &str, day: &str, times: &[(&str, bool)], hours: usize) {
    let tz: Tz = zone.parse().unwrap();
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    let clock = Clock::manual(local(tz, &format!("{day} 00:00"), false));
    let app = TestApp::spawn_with_clock(settings(zone), Roles::all(), clock.clone()).await;
    let http = reqwest::Client::new();
    let before = local(tz, &format!("{day} 00:00"), false) - Duration::minutes(1);
    let after =
        local(tz, &format!("{} 00:00", date.succ_opt().unwrap()), false) + Duration::minutes(1);
    view_at(&http, &app, &clock, before, "/before", "203.0.113.250").await;
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for (i, (time, second)) in times.iter().enumerate() {
        let at = local(tz, &format!("{day} {time}"), *second);
        let start = tally_core::dates::local_hour_start(at.timestamp(), tz);
        let hour = tz.timestamp_opt(start, 0).unwrap().to_rfc3339();
        *expected.entry(hour).or_default() += 1;
        view_at(
            &http,
            &app,
            &clock,
            at,
            "/a",
            &format!("203.0.113.{}", i + 1),
        )
        .await;
    }
    view_at(&http, &app, &clock, after, "/after", "203.0.113.251").await;
    let (prev, next) = (date.pred_opt().unwrap(), date.succ_opt().unwrap());
    common::wait_for_rollups(&app, times.len() as u64 + 2).await;

    let q = format!("from={day}&to={day}");
    let summary = stats(&http, &app, "summary", &q).await;
    assert_eq!(
        figure(&summary, "views"),
        times.len() as u64,
        "{zone}: {summary}"
    );
    let hourly = format!("{q}&interval=hour");
    let series = stats(&http, &app, "timeseries", &hourly).await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), hours, "{zone}: local hours of {day}");
    for name in ["views", "visits", "visitors"] {
        let sum: u64 = points.iter().map(|p| figure(p, name)).sum();
        assert_eq!(
            sum,
            figure(&summary, name),
            "{zone}: hourly {name} sum to the day"
        );
    }
    let got: std::collections::BTreeMap<String, u64> = points
        .iter()
        .filter(|p| figure(p, "views") > 0)
        .map(|p| (p["t"].as_str().unwrap().to_owned(), figure(p, "views")))
        .collect();
    assert_eq!(got, expected, "{zone}: views in their local hours");
    let first = points[0]["t"].as_str().unwrap();
    assert!(
        first.starts_with(&format!("{day}T00:00:00")),
        "{zone}: {first}"
    );

    // Daily points equal the summaries of their days (the day before and after hold the
    // views a minute outside).
    let daily = stats(
        &http,
        &app,
        "timeseries",
        &format!("from={prev}&to={next}&interval=day"),
    )
    .await;
    let daily = daily["points"].as_array().unwrap().clone();
    assert_eq!(daily.len(), 3);
    for (point, d) in daily.iter().zip([prev, date, next]) {
        let s = stats(&http, &app, "summary", &format!("from={d}&to={d}")).await;
        for name in ["views", "visits", "visitors"] {
            assert_eq!(figure(point, name), figure(&s, name), "{zone} {d}: {name}");
        }
    }
    assert_eq!(
        figure(&daily[0], "views"),
        1,
        "{zone}: the view before the day"
    );
    assert_eq!(
        figure(&daily[2], "views"),
        1,
        "{zone}: the view after the day"
    );
    app.stop().await;
}

/// Around local midnight, around UTC midnight, and through the day.
#[tokio::test]
async fn a_kolkata_day_half_an_hour_from_utc() {
    // UTC midnight is 05:30 local.
    let times = [
        ("00:00", false),
        ("00:29", false),
        ("05:20", false),
        ("05:29", false),
        ("05:30", false),
        ("05:45", false),
        ("12:10", false),
        ("23:59", false),
    ];
    a_day_in("Asia/Kolkata", "2026-03-10", &times, 24).await;
}

#[tokio::test]
async fn a_kathmandu_day_three_quarters_of_an_hour_from_utc() {
    // UTC midnight is 05:45 local.
    let times = [
        ("00:05", false),
        ("05:40", false),
        ("05:44", false),
        ("05:45", false),
        ("06:10", false),
        ("23:50", false),
    ];
    a_day_in("Asia/Kathmandu", "2026-03-10", &times, 24).await;
}

#[tokio::test]
async fn a_new_york_day_when_clocks_go_forward() {
    // 02:00 does not exist on 8 March 2026; UTC midnight is 19:00 (EDT).
    let times = [
        ("00:10", false),
        ("01:59", false),
        ("03:00", false),
        ("03:30", false),
        ("18:59", false),
        ("19:00", false),
        ("23:59", false),
    ];
    a_day_in("America/New_York", "2026-03-08", &times, 23).await;
}

#[tokio::test]
async fn a_berlin_day_when_clocks_go_back() {
    // 02:00–03:00 comes twice on 25 October 2026; UTC midnight is 01:00 (CEST).
    let times = [
        ("00:30", false),
        ("00:59", false),
        ("01:00", false),
        ("02:15", false),
        ("02:15", true),
        ("02:45", true),
        ("03:05", false),
        ("23:55", false),
    ];
    a_day_in("Europe/Berlin", "2026-10-25", &times, 25).await;
}

#[tokio::test]
async fn an_adelaide_day_when_half_hour_clocks_go_back() {
    // +10:30 until 03:00 on 5 April 2026, then +09:30; UTC midnight is 10:30 local then.
    let times = [
        ("00:20", false),
        ("02:30", false),
        ("02:30", true),
        ("10:20", false),
        ("10:40", false),
        ("23:40", false),
    ];
    a_day_in("Australia/Adelaide", "2026-04-05", &times, 25).await;
}

#[tokio::test]
async fn a_ho_chi_minh_day() {
    // UTC midnight is 07:00 local.
    let times = [
        ("00:01", false),
        ("06:50", false),
        ("07:00", false),
        ("07:10", false),
        ("23:59", false),
    ];
    a_day_in("Asia/Ho_Chi_Minh", "2026-12-01", &times, 24).await;
}

/// One reader (same address and User-Agent): views at 06:50 and 07:10 (UTC midnight between
/// them) are one visitor and one visit; at 23:50 and 00:10 one visitor on each day.
#[tokio::test]
async fn one_reader_is_one_visitor_through_a_local_day() {
    let zone = "Asia/Ho_Chi_Minh";
    let tz: Tz = zone.parse().unwrap();
    let clock = Clock::manual(local(tz, "2026-12-01 06:00", false));
    let app = TestApp::spawn_with_clock(settings(zone), Roles::all(), clock.clone()).await;
    let http = reqwest::Client::new();
    let ip = "198.51.100.7";
    view_at(
        &http,
        &app,
        &clock,
        local(tz, "2026-12-01 06:50", false),
        "/a",
        ip,
    )
    .await;
    view_at(
        &http,
        &app,
        &clock,
        local(tz, "2026-12-01 07:10", false),
        "/b",
        ip,
    )
    .await;
    view_at(
        &http,
        &app,
        &clock,
        local(tz, "2026-12-01 23:50", false),
        "/c",
        ip,
    )
    .await;
    view_at(
        &http,
        &app,
        &clock,
        local(tz, "2026-12-02 00:10", false),
        "/d",
        ip,
    )
    .await;
    common::wait_for_rollups(&app, 4).await;

    let first = stats(&http, &app, "summary", "from=2026-12-01&to=2026-12-01").await;
    assert_eq!(
        views_visits_visitors(&first),
        (3, 2, 1),
        "06:50, 07:10 (one visit) and 23:50 (a visit of its own, hours later): {first}"
    );
    let second = stats(&http, &app, "summary", "from=2026-12-02&to=2026-12-02").await;
    assert_eq!(views_visits_visitors(&second), (1, 1, 1), "{second}");
    let both = stats(&http, &app, "summary", "from=2026-12-01&to=2026-12-02").await;
    assert_eq!(
        figure(&both, "visitors"),
        2,
        "one visitor on each day: {both}"
    );
    // The visit that held 06:50 and 07:10 is one visit of two page views: not a bounce.
    let hourly = stats(
        &http,
        &app,
        "timeseries",
        "from=2026-12-01&to=2026-12-01&interval=hour",
    )
    .await;
    let visits: Vec<u64> = hourly["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| figure(p, "visits"))
        .collect();
    assert_eq!((visits[6], visits[7], visits[23]), (1, 0, 1));
    app.stop().await;
}

/// 50 reloads add one view and 49 repeats; A → B → A adds 3; a reload after the window 1.
#[tokio::test]
async fn reloads_within_the_window_are_not_views() {
    let zone = "Asia/Ho_Chi_Minh";
    let tz: Tz = zone.parse().unwrap();
    let start = local(tz, "2026-12-01 09:00", false);
    let clock = Clock::manual(start);
    let s = settings(zone);
    let window = s.tracking.repeat_view_window;
    assert_eq!(
        window,
        std::time::Duration::from_secs(1800),
        "the documented default"
    );
    let app = TestApp::spawn_with_clock(s, Roles::all(), clock.clone()).await;
    let http = reqwest::Client::new();
    let ip = "198.51.100.9";
    let app_ref = &app;
    let page_views = |page: &'static str| {
        let http = http.clone();
        let app = app_ref;
        let url = app.url(&format!("/api/v1/sites/demo/counters?page={page}"));
        // A reload shows at once and is taken back when applied: the settled figure.
        async move {
            app.settled().await;
            figure(&common::get_json(&http, &url).await, "page_views")
        }
    };

    for i in 0..50 {
        view_at(
            &http,
            &app,
            &clock,
            start + Duration::seconds(i * 10),
            "/a",
            ip,
        )
        .await;
    }
    assert_eq!(page_views("/a").await, 1, "50 reloads: one view");
    // A → B → A within the window: three views.
    let t = start + Duration::seconds(600);
    view_at(&http, &app, &clock, t + Duration::seconds(10), "/b", ip).await;
    view_at(&http, &app, &clock, t + Duration::seconds(20), "/a", ip).await;
    assert_eq!((page_views("/a").await, page_views("/b").await), (2, 1));
    // A reload just inside the window is a repeat; one just after it is a view.
    let last = t + Duration::seconds(20);
    let window = Duration::from_std(window).unwrap();
    view_at(
        &http,
        &app,
        &clock,
        last + window - Duration::seconds(1),
        "/a",
        ip,
    )
    .await;
    assert_eq!(page_views("/a").await, 2);
    view_at(
        &http,
        &app,
        &clock,
        last + window + Duration::seconds(1),
        "/a",
        ip,
    )
    .await;
    assert_eq!(
        page_views("/a").await,
        3,
        "a reload after the window counts"
    );

    // Still online after reloading, and the statistics agree with the counters.
    let counters = common::counters(&http, &app, Some("/a")).await;
    assert_eq!(figure(&counters, "online"), 1, "{counters}");
    common::wait_for_rollups(&app, 50 + 2 + 2).await;
    let summary = stats(&http, &app, "summary", "from=2026-12-01&to=2026-12-01").await;
    assert_eq!(figure(&summary, "views"), 4, "{summary}");
    assert_eq!(figure(&summary, "repeats_not_counted"), 49 + 1, "{summary}");
    let pages = stats(&http, &app, "pages", "from=2026-12-01&to=2026-12-01").await;
    let views_of: Vec<(String, u64)> = pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["page"].as_str().unwrap().to_owned(), figure(p, "views")))
        .collect();
    assert_eq!(views_of, [("/a".to_owned(), 3), ("/b".to_owned(), 1)]);
    app.stop().await;
}

/// Every byte of the server's append-only files.
fn append_only_files(redis: &tally_testkit::RedisServer) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(redis.dir().join("appendonlydir")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

/// A date's salt lives in Redis until an hour after the date ended in UTC−12 (13:00 UTC the
/// next day), and once that time has passed the beacon has Redis rewrite its append-only
/// file, after which the retired salt is in no persistence file either.
#[tokio::test]
async fn a_retired_salt_leaves_redis_and_its_append_only_file() {
    let redis = tally_testkit::RedisServer::start();
    let mut settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let clock = Clock::manual(now);
    let app = TestApp::spawn_with_clock(settings, "beacon".parse().unwrap(), clock.clone()).await;
    let http = reqwest::Client::new();
    view_at(&http, &app, &clock, now, "/a", "198.51.100.3").await;
    let mut conn = redis::Client::open(app.settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = "tally:salt:20261201";
    let salt: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        salt.len(),
        16,
        "1 December's salt is made (17:00 in Ho Chi Minh City)"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let retires = Utc.with_ymd_and_hms(2026, 12, 2, 13, 0, 0).unwrap();
    let expected = (retires - now).num_seconds();
    assert!(
        (expected - 5..=expected).contains(&ttl),
        "TTL {ttl}, expected {expected}"
    );
    // The dates every zone may show are ready: 30 November (UTC−12) to 2 December (UTC+14).
    for day in ["20261130", "20261202"] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("tally:salt:{day}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{day}");
    }
    // Wait for the AOF to have the salt on disk (appendfsync everysec).
    common::wait_for("the salt in the append-only file", || async {
        append_only_files(&redis)
            .windows(16)
            .any(|w| w == salt.as_slice())
    })
    .await;

    // 13:00 UTC on 2 December: Redis expires the key (here: as it would, since Redis keeps its
    // own time) and the beacon, going by its clock, rewrites the append-only file.
    let () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    clock.set(retires + Duration::seconds(30));
    common::wait_for(
        "the append-only file rewritten without the salt",
        || async {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            info.contains("aof_rewrite_in_progress:0")
                && !append_only_files(&redis)
                    .windows(16)
                    .any(|w| w == salt.as_slice())
        },
    )
    .await;
    let marker: bool = redis::cmd("EXISTS")
        .arg("tally:aof_rewrite:20261202")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(marker, "one rewrite for the day, marked");
    app.stop().await;
}
