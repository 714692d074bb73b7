//! Importing existing counters, exporting them, and raw-event retention, against real Redis
//! and ClickHouse.

mod common;

use std::{io::Write, str::FromStr};

use chrono::{NaiveDate, TimeZone, Utc};
use common::{Hit, counters, send};
use serde_json::Value;
use tally::Roles;
use tally_clickhouse::EventRow;
use tally_core::{Event, EventKind, SiteId};
use tally_testkit::TestApp;

fn csv_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn big_csv(pages: usize) -> String {
    let mut s = String::from("page,views,title\n");
    for i in 0..pages {
        s.push_str(&format!("/bai-{i},{},\"Bài, số {i}\"\n", i % 1000));
    }
    s
}

async fn views_of(http: &reqwest::Client, app: &TestApp, pages: &[&str]) -> Value {
    let q: Vec<String> = pages.iter().map(|p| format!("page={p}")).collect();
    let r = http
        .get(app.url(&format!("/api/v1/sites/demo/views?{}", q.join("&"))))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["views"].clone()
}

#[tokio::test]
async fn imported_counters_add_to_live_ones_and_reimporting_replaces() {
    let mut settings = tally_testkit::settings();
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let http = reqwest::Client::new();
    let demo = SiteId::parse("demo").unwrap();
    assert_eq!(
        send(&http, &app, &Hit::view("/bai-5").ip("203.0.113.9")).await,
        204
    );

    // 100k pages; the site-wide totals given explicitly.
    let file = csv_file(&big_csv(100_000));
    let b = tally::import::import_counters(
        &settings,
        &demo,
        file.path(),
        Some(9_000_000),
        Some(6_738_189),
        true,
    )
    .await
    .unwrap();
    assert_eq!(b.pages.len(), 100_000);
    let c = counters(&http, &app, Some("/bai-5")).await;
    assert_eq!(c["page_views"], 6, "5 imported + 1 live");
    assert_eq!(c["total_views"], 9_000_001);
    assert_eq!(c["total_visits"], 6_738_190);
    let v = views_of(&http, &app, &["/bai-999", "/bai-1000", "/nope"]).await;
    assert_eq!(
        v,
        serde_json::json!({"/bai-999": 999, "/bai-1000": 0, "/nope": 0})
    );
    let sites = common::get_admin_json(
        &http,
        &app.url("/api/v1/sites"),
        "test-admin-token-0123456789",
    )
    .await;
    assert_eq!(
        sites["sites"][0]["total_visits"], 6_738_190,
        "statistics include the baseline"
    );

    // Running the same import again replaces it: nothing doubles.
    tally::import::import_counters(
        &settings,
        &demo,
        file.path(),
        Some(9_000_000),
        Some(6_738_189),
        false,
    )
    .await
    .unwrap();
    assert_eq!(counters(&http, &app, Some("/bai-5")).await["page_views"], 6);
    assert_eq!(counters(&http, &app, None).await["total_views"], 9_000_001);

    // A smaller import replaces the whole previous one; totals default to the pages' sum.
    let small = csv_file("/bai-5,100\n/moi,7,Tin mới\n");
    tally::import::import_counters(&settings, &demo, small.path(), None, None, false)
        .await
        .unwrap();
    let v = views_of(&http, &app, &["/bai-5", "/bai-999", "/moi"]).await;
    assert_eq!(
        v,
        serde_json::json!({"/bai-5": 101, "/bai-999": 0, "/moi": 7})
    );
    assert_eq!(counters(&http, &app, None).await["total_views"], 108);

    // A bad row fails the whole import, naming its line, and changes nothing.
    let mut text = big_csv(60_000);
    text = text.replacen("/bai-50000,0,", "/bai-50000,lots,", 1);
    let bad = csv_file(&text);
    let err = tally::import::import_counters(&settings, &demo, bad.path(), None, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 50002")
            && err.contains("`lots`")
            && err.contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(
        views_of(&http, &app, &["/bai-5", "/moi"]).await,
        serde_json::json!({"/bai-5": 101, "/moi": 7})
    );
    assert_eq!(app.db().baseline("demo").await.unwrap().pages.len(), 2);

    // A visitor-supplied title that a spreadsheet would run as a formula.
    let hostile = serde_json::json!({"t": "pageview", "site": "demo",
        "url": "http://localhost/link", "title": "=HYPERLINK(\"http://x\",\"y\")"});
    let r = http
        .post(app.url("/collect"))
        .header("origin", "http://localhost")
        .header("user-agent", common::CHROME)
        .header("x-forwarded-for", "203.0.113.10")
        .body(hostile.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Export is the inverse: page,views,title with live and imported views together; the
    // hostile title is neutralised (a leading ', which spreadsheets do not show).
    app.settled().await;
    let mut out = Vec::new();
    let n = tally::import::export(&settings, &demo, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "page,views,title\n/bai-5,101,T\n/link,1,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n/moi,7,\n"
    );
    // ...and reads back as it was.
    let rows =
        tally::import::parse_csv(text.as_bytes(), &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(rows[1].1, "=HYPERLINK(\"http://x\",\"y\")");

    // After Redis loses everything, rebuild-counters brings the baseline back too.
    let store = app.store().await;
    store.replace_baseline(&demo, &[], 0, 0).await.unwrap();
    tally::rebuild::rebuild_counters(&settings, Some(&demo))
        .await
        .unwrap();
    assert_eq!(views_of(&http, &app, &["/moi"]).await["/moi"], 7);
}

#[tokio::test]
async fn retention_drops_old_raw_months_and_keeps_rollups() {
    let settings = tally_testkit::settings();
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await.unwrap();
    let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap().timestamp() * 1000;
    let rows: Vec<EventRow> = [
        at(2021, 1, 10),
        at(2021, 1, 20),
        at(2021, 2, 27),
        at(2021, 3, 20),
    ]
    .iter()
    .enumerate()
    .map(|(i, ts)| {
        let e = Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: *ts,
            page: "/a".into(),
            visitor: 1,
            ..Event::empty()
        };
        EventRow::new(0, &format!("r{i}"), e, settings.timezone_of("demo"))
    })
    .collect();
    db.insert_events(&rows).await.unwrap();
    let dropped = db
        .drop_raw_before(NaiveDate::from_ymd_opt(2021, 3, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(dropped, [202101, 202102]);
    assert_eq!(db.count_events().await.unwrap(), 1);
    // The page views' copy ordered by page (migration 12) goes with them.
    let database = &settings.clickhouse.database;
    let copied = common::run_sql(
        &settings,
        &format!("SELECT count() FROM {database}.page_events"),
    )
    .await;
    assert_eq!(copied.trim(), "1");
    let all = common::all_time("demo");
    assert_eq!(
        db.summary(&all).await.unwrap().views,
        4,
        "the rollups keep every view"
    );
    assert!(
        db.drop_raw_before(NaiveDate::from_ymd_opt(2021, 3, 1).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}
