//! The rollups fed by materialized views agree with what was inserted into the raw table:
//! views, visits, unique visitors, bounces, visit lengths, pages and dimensions — on
//! generated data spanning several hours and two months, inserted in several batches.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{TimeZone, Utc};
use tally_clickhouse::{
    EventRow,
    explore::Filters,
    stats::{Dimension, Interval, Range},
};
use tally_core::{Event, EventKind};

/// A small deterministic generator (xorshift64*), so the data is the same on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

struct Session {
    visitor: u64,
    start: i64,
    views: Vec<(i64, String)>,
    last: i64,
}

fn generate() -> (Vec<EventRow>, Vec<Session>, u64) {
    let (mut events, sessions, bots) = generate_events();
    common::sequence(&mut events);
    let rows = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| EventRow::new(0, &format!("{i}-0"), e, chrono_tz::Asia::Ho_Chi_Minh))
        .collect();
    (rows, sessions, bots)
}

fn generate_events() -> (Vec<Event>, Vec<Session>, u64) {
    let mut g = Gen(0x5eed);
    let mut rows = Vec::new();
    let mut sessions = Vec::new();
    let push = |rows: &mut Vec<Event>,
                kind,
                ts_s: i64,
                page: &str,
                visitor,
                session,
                new_visit,
                browser: &str,
                referrer: &str| {
        let event = Event {
            kind,
            site: "demo".into(),
            ts_ms: ts_s * 1000,
            page: page.into(),
            path: page.into(),
            title: format!("Title of {page}"),
            referrer_host: referrer.into(),
            browser: browser.into(),
            os: "Linux".into(),
            device: "desktop".into(),
            visitor,
            session,
            new_visit,
            ..Event::empty()
        };
        rows.push(event);
    };
    // Two stretches: across the January/February boundary, and a few hours in March.
    let starts = [
        Utc.with_ymd_and_hms(2026, 1, 31, 18, 0, 0)
            .unwrap()
            .timestamp(),
        Utc.with_ymd_and_hms(2026, 3, 15, 9, 0, 0)
            .unwrap()
            .timestamp(),
    ];
    let mut bots = 0;
    for (stretch, base) in starts.iter().enumerate() {
        let hours = if stretch == 0 { 12 } else { 4 };
        for i in 0..(if stretch == 0 { 120 } else { 40 }) {
            let visitor = 1 + g.next(35);
            let id = 1000 * (stretch as u64 + 1) + i;
            let start = base + g.next(hours * 3600) as i64;
            let browser = ["Chrome", "Firefox", "Safari"][g.next(3) as usize];
            let referrer = ["", "google.com", "facebook.com"][g.next(3) as usize];
            let mut t = start;
            let mut views = Vec::new();
            for v in 0..(1 + g.next(4)) {
                let page = format!("/p{}", g.next(6));
                push(
                    &mut rows,
                    EventKind::Pageview,
                    t,
                    &page,
                    visitor,
                    id,
                    v == 0,
                    browser,
                    referrer,
                );
                views.push((t, page.clone()));
                t += 5 + g.next(90) as i64;
                if g.next(2) == 0 {
                    push(
                        &mut rows,
                        EventKind::Ping,
                        t,
                        &page,
                        visitor,
                        id,
                        false,
                        browser,
                        "",
                    );
                    t += 30;
                }
            }
            let last = t;
            push(
                &mut rows,
                EventKind::Leave,
                t,
                &views.last().unwrap().1.clone(),
                visitor,
                id,
                false,
                browser,
                "",
            );
            sessions.push(Session {
                visitor,
                start,
                views,
                last,
            });
            if g.next(4) == 0 {
                push(&mut rows, EventKind::Bot, start, "", 0, 0, false, "", "");
                bots += 1;
            }
        }
    }
    (rows, sessions, bots)
}

/// Whole local days `from..=to` of the test site, which lives in Ho Chi Minh City (UTC+7).
fn range(from: &str, to: &str) -> Range {
    Range::new(
        "demo",
        &tally_core::dates::DayRange {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            tz: chrono_tz::Asia::Ho_Chi_Minh,
        },
    )
}

#[tokio::test]
async fn rollups_agree_with_the_raw_events() {
    let settings = tally_testkit::settings();
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await.unwrap();
    let (rows, sessions, bots) = generate();
    // Several inserts, so the rollups hold several parts per key to merge on read.
    for chunk in rows.chunks(97) {
        db.insert_events(chunk).await.unwrap();
    }
    assert_eq!(db.count_events().await.unwrap(), rows.len() as u64);

    let all = range("2026-01-01", "2026-03-31");
    let views: Vec<&(i64, String)> = sessions.iter().flat_map(|s| &s.views).collect();
    let visitors: BTreeSet<u64> = sessions.iter().map(|s| s.visitor).collect();
    let bounces = sessions.iter().filter(|s| s.views.len() == 1).count();
    let seconds: i64 = sessions.iter().map(|s| s.last - s.start).sum();

    let summary = db.summary(&all).await.unwrap();
    assert_eq!(summary.views, views.len() as u64);
    assert_eq!(summary.visits, sessions.len() as u64);
    assert_eq!(summary.visitors, visitors.len() as u64);
    assert_eq!(summary.bots_filtered, bots);
    assert!((summary.bounce_rate - bounces as f64 / sessions.len() as f64).abs() < 1e-9);
    assert!((summary.avg_visit_seconds - seconds as f64 / sessions.len() as f64).abs() < 1e-6);

    // Hourly series: every hour's views, visits and unique visitors.
    let mut hourly: BTreeMap<i64, (u64, u64, BTreeSet<u64>)> = BTreeMap::new();
    for s in &sessions {
        for (i, (t, _)) in s.views.iter().enumerate() {
            let e = hourly.entry(t - t.rem_euclid(3600)).or_default();
            e.0 += 1;
            e.1 += u64::from(i == 0);
            e.2.insert(s.visitor);
        }
    }
    let series = db.timeseries(&all, Interval::Hour).await.unwrap();
    assert_eq!(series.len(), hourly.len());
    for b in &series {
        let hour: i64 = b.bucket.parse().unwrap();
        let (v, n, u) = &hourly[&hour];
        assert_eq!(
            (b.views, b.visits, b.visitors),
            (*v, *n, u.len() as u64),
            "hour {hour}"
        );
    }

    // Daily series in the site's time zone (UTC+7): the January stretch straddles two local days.
    let tz: chrono_tz::Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
    let mut daily: BTreeMap<String, (u64, BTreeSet<u64>)> = BTreeMap::new();
    for s in &sessions {
        for (t, _) in &s.views {
            let day = tz
                .timestamp_opt(*t, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            let e = daily.entry(day).or_default();
            e.0 += 1;
            e.1.insert(s.visitor);
        }
    }
    let days = db.timeseries(&all, Interval::Day).await.unwrap();
    assert_eq!(
        days.iter().map(|d| d.bucket.clone()).collect::<Vec<_>>(),
        daily.keys().cloned().collect::<Vec<_>>()
    );
    for d in &days {
        assert_eq!(
            (d.views, d.visitors),
            (daily[&d.bucket].0, daily[&d.bucket].1.len() as u64),
            "{}",
            d.bucket
        );
    }

    // Top pages in order, with their titles.
    let mut pages: HashMap<&str, (u64, BTreeSet<u64>)> = HashMap::new();
    for s in &sessions {
        for (_, p) in &s.views {
            let e = pages.entry(p).or_default();
            e.0 += 1;
            e.1.insert(s.visitor);
        }
    }
    let mut want: Vec<(&str, u64, u64)> = pages
        .iter()
        .map(|(p, (v, u))| (*p, *v, u.len() as u64))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top = db.top_pages(&all, 100, 0).await.unwrap();
    let got: Vec<(&str, u64, u64)> = top
        .iter()
        .map(|p| (p.page.as_str(), p.views, p.visitors))
        .collect();
    assert_eq!(got, want);
    assert!(
        top.iter()
            .all(|p| p.title == format!("Title of {}", p.page) && p.path == p.page)
    );
    let second_page = db.top_pages(&all, 2, 1).await.unwrap();
    assert_eq!(second_page, top[1..3].to_vec());

    // Browsers as a dimension.
    let browsers = db.dimension(&all, Dimension::Browser, 10).await.unwrap();
    assert_eq!(
        browsers.iter().map(|b| b.views).sum::<u64>(),
        views.len() as u64
    );

    // A range holding only the March stretch.
    let march = range("2026-03-01", "2026-03-31");
    let in_march: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.start >= march.start as i64)
        .collect();
    let m = db.summary(&march).await.unwrap();
    assert_eq!(
        m.views,
        in_march.iter().map(|s| s.views.len() as u64).sum::<u64>()
    );
    assert_eq!(m.visits, in_march.len() as u64);
    assert_eq!(
        m.visitors,
        in_march
            .iter()
            .map(|s| s.visitor)
            .collect::<BTreeSet<_>>()
            .len() as u64
    );
}

#[tokio::test]
async fn processes_migrating_at_the_same_moment_all_succeed() {
    let settings = tally_testkit::settings();
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            let sites = settings.sites.clone();
            tokio::spawn(async move { db.migrate(&sites).await })
        })
        .collect();
    for run in runs {
        let result = run.await.unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
    let applied = db.applied_migrations().await.unwrap();
    assert_eq!(
        applied,
        (1..=tally_clickhouse::migrate::MIGRATIONS.len() as u32).collect::<Vec<_>>()
    );
}

/// Leaves `marker` as a process that stopped halfway through migration `version`'s history
/// copy leaves it (made, without its "finished" row), then checks that migrating stops
/// with a reason and records nothing from `version` on.
async fn check_that_an_unfinished_copy_stops_migrating(
    settings: &tally_core::Settings,
    db: &tally_clickhouse::Db,
    marker: &str,
    version: u32,
) {
    let database = &settings.clickhouse.database;
    common::run_sql(
        settings,
        &format!("CREATE TABLE {database}.{marker} (done UInt8) ENGINE = Log"),
    )
    .await;
    let error = db
        .migrate_waiting(&settings.sites, u32::MAX, std::time::Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("migration {version}")) && error.contains("has not finished"),
        "{error}"
    );
    assert_eq!(
        db.applied_migrations().await.unwrap(),
        (1..version).collect::<Vec<_>>()
    );
}

/// A process that stopped halfway through migration 5's copy of the hourly history leaves
/// the marker table without its "finished" row. Later processes must not take that copy
/// for a whole one: they stop with a reason, and after the recovery in
/// docs/operations.md ("Upgrading") the copy is made again, whole.
#[tokio::test]
async fn an_unfinished_daily_copy_is_not_taken_for_a_finished_one() {
    let settings = tally_testkit::settings();
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    let database = &settings.clickhouse.database;
    db.migrate_to(&settings.sites, 4).await.unwrap();
    let rows: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "('old-{i}', 'demo', 'pageview', '2026-03-01 10:0{i}:00', '/a', '/a', 'A', '', \
                 'Chrome', {i}, 1)"
            )
        })
        .collect();
    common::run_sql(
        &settings,
        &format!(
            "INSERT INTO {database}.events (event_id, site, kind, ts, page, path, title, \
             referrer_host, browser, visitor, new_visit) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    // The stopped process had made the marker (and perhaps copied part of the history).
    check_that_an_unfinished_copy_stops_migrating(&settings, &db, "daily_backfill", 5).await;

    // The recovery of docs/operations.md: empty the daily tables, drop the marker, migrate.
    for table in ["site_daily", "page_daily", "dimension_daily"] {
        common::run_sql(&settings, &format!("TRUNCATE TABLE {database}.{table}")).await;
    }
    common::run_sql(&settings, &format!("DROP TABLE {database}.daily_backfill")).await;
    assert_eq!(db.migrate(&settings.sites).await.unwrap(), versions_from(5));
    let day = db
        .summary(&range("2026-03-01", "2026-03-01"))
        .await
        .unwrap();
    assert_eq!((day.views, day.visits, day.visitors), (3, 3, 3));
}

/// An install at schema version 4 has hourly page and dimension rollups; version 5 reads
/// daily ones. The upgrade copies the hourly history onto local days, per site zone.
#[tokio::test]
async fn upgrading_to_daily_rollups_keeps_the_history_on_local_days() {
    let mut settings = tally_testkit::settings();
    settings.sites[0].timezone = chrono_tz::Asia::Ho_Chi_Minh;
    let site = settings.sites[0].id.to_string();
    assert_eq!(site, "demo", "`range` reads the test site");
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    assert_eq!(
        db.migrate_to(&settings.sites, 4).await.unwrap(),
        [1, 2, 3, 4]
    );
    // Rows as a version-4 worker wrote them (no `day` column): 18:00Z on 1 March is
    // already 2 March in the site's zone; 10:00Z stays on 1 March.
    let hours = [
        ("2026-03-01 10:00:00", "/a", 1, "google.com"),
        ("2026-03-01 10:20:00", "/a", 2, "google.com"),
        ("2026-03-01 18:00:00", "/b", 1, ""),
        ("2026-03-01 18:30:00", "/a", 3, ""),
        ("2026-03-01 19:00:00", "/a", 3, ""),
    ];
    let values: Vec<String> = hours
        .iter()
        .enumerate()
        .map(|(i, (ts, page, visitor, referrer))| {
            format!(
                "('old-{i}', '{site}', 'pageview', '{ts}', '{page}', '{page}', 'Title {page}', \
                 '{referrer}', 'Chrome', {visitor}, {new_visit})",
                new_visit = u8::from(i != 4)
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO {}.events (event_id, site, kind, ts, page, path, title, referrer_host, \
         browser, visitor, new_visit) VALUES {}",
        settings.clickhouse.database,
        values.join(", ")
    );
    common::run_sql(&settings, &sql).await;

    assert_eq!(db.migrate(&settings.sites).await.unwrap(), versions_from(5));
    let day = |d: &str| range(d, d);
    let first = db.summary(&day("2026-03-01")).await.unwrap();
    assert_eq!((first.views, first.visits, first.visitors), (2, 2, 2));
    let second = db.summary(&day("2026-03-02")).await.unwrap();
    assert_eq!((second.views, second.visits, second.visitors), (3, 2, 2));
    let pages = db.top_pages(&day("2026-03-02"), 10, 0).await.unwrap();
    assert_eq!(
        pages
            .iter()
            .map(|p| (p.page.as_str(), p.title.as_str(), p.views, p.visitors))
            .collect::<Vec<_>>(),
        [("/a", "Title /a", 2, 1), ("/b", "Title /b", 1, 1)]
    );
    let referrers = db
        .dimension(&day("2026-03-01"), Dimension::Referrer, 10)
        .await
        .unwrap();
    assert_eq!(
        referrers
            .iter()
            .map(|r| (r.name.as_str(), r.views))
            .collect::<Vec<_>>(),
        [("google.com", 2)]
    );
    let series = db
        .timeseries(&range("2026-03-01", "2026-03-02"), Interval::Day)
        .await
        .unwrap();
    assert_eq!(
        series
            .iter()
            .map(|b| (b.bucket.as_str(), b.views, b.visitors))
            .collect::<Vec<_>>(),
        [("2026-03-01", 2, 2), ("2026-03-02", 3, 2)]
    );

    // New rows after the upgrade land on their local day too, next to the copied history.
    let event = Event {
        kind: EventKind::Pageview,
        site: site.clone(),
        ts_ms: Utc
            .with_ymd_and_hms(2026, 3, 1, 20, 0, 0)
            .unwrap()
            .timestamp_millis(),
        page: "/b".into(),
        path: "/b".into(),
        visitor: 9,
        new_visit: true,
        ..Event::empty()
    };
    db.insert_events(&[EventRow::new(
        0,
        "new-0",
        event,
        chrono_tz::Asia::Ho_Chi_Minh,
    )])
    .await
    .unwrap();
    let second = db.summary(&day("2026-03-02")).await.unwrap();
    assert_eq!((second.views, second.visits, second.visitors), (4, 3, 3));
}

/// Pages of `range` as (page, title, views, visitors).
async fn top_pages(db: &tally_clickhouse::Db, range: &Range) -> Vec<(String, String, u64, u64)> {
    db.top_pages(range, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.page, p.title, p.views, p.visitors))
        .collect()
}

/// Version 6 moves the page rollups to `page_days` (smaller index granules): the page
/// history of version 5 is copied once, by one process; a copy whose process stopped is not
/// taken for a finished one, and the recovery of docs/operations.md makes it whole. Views
/// after the upgrade are counted once, next to the copied history.
#[tokio::test]
async fn upgrading_to_page_days_keeps_the_page_history() {
    let settings = tally_testkit::settings();
    let database = &settings.clickhouse.database;
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate_to(&settings.sites, 5).await.unwrap();
    let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
    let view = |id: &str, ts: chrono::DateTime<Utc>, page: &str, visitor: u64| {
        let event = Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: ts.timestamp_millis(),
            page: page.into(),
            path: page.into(),
            title: format!("Title {page}"),
            visitor,
            new_visit: true,
            ..Event::empty()
        };
        EventRow::new(0, id, event, chrono_tz::Asia::Ho_Chi_Minh)
    };
    // Written by a version-5 worker (no `hour` column): into page_daily. 03:00–05:00Z is
    // the same date in the site's zone (UTC+7).
    let old = [
        ("old-0", "2026-03-01 03:00:00", "2026-03-01", "/a", 1),
        ("old-1", "2026-03-01 04:00:00", "2026-03-01", "/a", 2),
        ("old-2", "2026-03-01 05:00:00", "2026-03-01", "/a", 1),
        ("old-3", "2026-03-02 03:00:00", "2026-03-02", "/b", 3),
    ];
    let values: Vec<String> = old
        .iter()
        .map(|(id, ts, day, page, visitor)| {
            format!(
                "('{id}', 'demo', 'pageview', '{ts}', '{day}', '{page}', '{page}', \
                 'Title {page}', {visitor}, 1)"
            )
        })
        .collect();
    common::run_sql(
        &settings,
        &format!(
            "INSERT INTO {database}.events (event_id, site, kind, ts, day, page, path, title, \
             visitor, new_visit) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
    // What top pages showed before (from page_daily, which this version cannot query).
    let before = vec![
        ("/a".to_owned(), "Title /a".to_owned(), 3, 2),
        ("/b".to_owned(), "Title /b".to_owned(), 1, 1),
    ];

    // A process that stopped halfway through the copy left its marker without a row.
    check_that_an_unfinished_copy_stops_migrating(&settings, &db, "page_days_copy", 6).await;
    // Its statements ran: top pages read page_days, which holds no copy yet.
    assert!(
        top_pages(&db, &range("2026-03-01", "2026-03-02"))
            .await
            .is_empty()
    );

    // The recovery of docs/operations.md.
    common::run_sql(&settings, &format!("TRUNCATE TABLE {database}.page_days")).await;
    common::run_sql(&settings, &format!("DROP TABLE {database}.page_days_copy")).await;
    assert_eq!(db.migrate(&settings.sites).await.unwrap(), versions_from(6));
    assert_eq!(
        top_pages(&db, &range("2026-03-01", "2026-03-02")).await,
        before
    );

    // After the upgrade: counted once, on its local day (20:00Z is 2 March in the zone).
    db.insert_events(&[view("new-0", at(1, 20), "/b", 4)])
        .await
        .unwrap();
    assert_eq!(
        top_pages(&db, &range("2026-03-01", "2026-03-02")).await,
        vec![
            ("/a".to_owned(), "Title /a".to_owned(), 3, 2),
            ("/b".to_owned(), "Title /b".to_owned(), 2, 2),
        ]
    );
    assert_eq!(
        top_pages(&db, &range("2026-03-02", "2026-03-02")).await,
        vec![("/b".to_owned(), "Title /b".to_owned(), 2, 2)]
    );
    // page_daily is no longer fed.
    let old_views = common::run_sql(
        &settings,
        &format!("SELECT sumMerge(views) FROM {database}.page_daily WHERE site = 'demo'"),
    )
    .await;
    assert_eq!(old_views.trim(), "4");
}

/// Browser and OS names of the earlier classifier (woothee: "Mac OSX", "iPhone", "Windows
/// 10", "UNKNOWN") are shown under today's names, merged with the rows written since.
#[tokio::test]
async fn names_of_the_earlier_classifier_show_under_todays_names() {
    let settings = tally_testkit::settings();
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await.unwrap();
    let at = Utc
        .with_ymd_and_hms(2026, 3, 1, 3, 0, 0)
        .unwrap()
        .timestamp_millis();
    let rows: Vec<EventRow> = [
        ("Mac OSX", 1),
        ("macOS", 2),
        ("iPhone", 3),
        ("iOS", 4),
        ("iPad", 5),
        ("Windows 10", 6),
        ("Windows 7", 7),
        ("Windows", 8),
        ("UNKNOWN", 9),
    ]
    .into_iter()
    .map(|(os, visitor)| {
        let event = Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: at,
            page: "/a".into(),
            os: os.into(),
            visitor,
            new_visit: true,
            ..Event::empty()
        };
        EventRow::new(
            0,
            &format!("os-{visitor}"),
            event,
            chrono_tz::Asia::Ho_Chi_Minh,
        )
    })
    .collect();
    db.insert_events(&rows).await.unwrap();
    let shown: Vec<(String, u64, u64)> = db
        .dimension(&range("2026-03-01", "2026-03-01"), Dimension::Os, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.views, r.visitors))
        .collect();
    let row = |name: &str, n| (name.to_owned(), n, n);
    assert_eq!(
        shown,
        [
            row("Windows", 3),
            row("iOS", 2),
            row("macOS", 2),
            row("", 1),
            row("iPadOS", 1),
        ]
    );
}

/// Version 12 copies the stored events into `page_events` and `second_views` (the tables the
/// pages' engaged time and bounce rate read) once; a copy whose process stopped is not taken
/// for a finished one, and running `tally migrate` again after dropping the marker makes it
/// whole without doubling the events its views took in meanwhile.
#[tokio::test]
async fn upgrading_to_page_events_keeps_engaged_time_and_bounces() {
    let settings = tally_testkit::settings();
    let database = &settings.clickhouse.database;
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate_to(&settings.sites, 11).await.unwrap();
    let at = Utc
        .with_ymd_and_hms(2026, 3, 1, 3, 0, 0)
        .unwrap()
        .timestamp_millis();
    // (session, kind, page, seconds after `at`)
    let rows = |events: &[(u64, EventKind, &str, i64)], prefix: &str| {
        let mut events: Vec<Event> = events
            .iter()
            .map(|&(session, kind, page, s)| Event {
                kind,
                site: "demo".into(),
                ts_ms: at + s * 1000,
                page: page.into(),
                path: page.into(),
                visitor: session,
                session,
                ..Event::empty()
            })
            .collect();
        common::sequence(&mut events);
        // Written as the columns of version 12 (this build's rows carry later ones).
        let values: Vec<String> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "('{prefix}-{i}', 'demo', '{}', toDateTime({}, 'UTC'), '{}', '{}', {}, {}, {}, {})",
                    e.kind.as_str(),
                    e.ts_ms / 1000,
                    e.page,
                    e.page,
                    e.visitor,
                    e.session,
                    e.visit_seq,
                    e.gap_ms
                )
            })
            .collect();
        format!(
            "INSERT INTO {database}.events (event_id, site, kind, ts, page, path, visitor, \
             session, visit_seq, gap_ms) VALUES {}",
            values.join(", ")
        )
    };
    use EventKind::{Leave, Pageview, Ping};
    // Before the upgrade: a visit reading /a 30 s then leaving 10 s later (a bounce), a visit
    // going on from /a to /b after 20 s, a visit of /b alone.
    let before = rows(
        &[
            (1, Pageview, "/a", 0),
            (1, Ping, "/a", 30),
            (1, Leave, "/a", 40),
            (2, Pageview, "/a", 100),
            (2, Pageview, "/b", 120),
            (3, Pageview, "/b", 200),
        ],
        "old",
    );
    common::run_sql(&settings, &before).await;
    check_that_an_unfinished_copy_stops_migrating(&settings, &db, "page_events_copy", 12).await;
    // The views exist: a visit recorded now is in page_events once (its ping's 40 s gap
    // counts 37.5 s, the cap given below).
    common::run_sql(
        &settings,
        &rows(&[(4, Pageview, "/a", 300), (4, Ping, "/a", 340)], "new"),
    )
    .await;
    common::run_sql(
        &settings,
        &format!("DROP TABLE {database}.page_events_copy"),
    )
    .await;
    assert_eq!(
        db.migrate(&settings.sites).await.unwrap(),
        versions_from(12)
    );
    let found: Vec<(String, u64, u64, u64, u64)> = db
        .engagement(
            &range("2026-03-01", "2026-03-01"),
            &Filters::default(),
            &["/a".to_owned(), "/b".to_owned()],
            37_500,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.page, e.engaged_ms, e.views, e.entries, e.bounces))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        found,
        [
            ("/a".to_owned(), 30_000 + 10_000 + 37_500, 3, 3, 2),
            ("/b".to_owned(), 0, 2, 1, 1),
        ]
    );
    for (table, kinds) in [
        ("page_events", "kind IN ('pageview', 'ping', 'leave')"),
        ("second_views", "kind = 'pageview' AND visit_seq = 2"),
    ] {
        let copied = common::run_sql(
            &settings,
            &format!("SELECT count() FROM {database}.{table}"),
        )
        .await;
        let stored = common::run_sql(
            &settings,
            &format!("SELECT count() FROM {database}.events WHERE {kinds}"),
        )
        .await;
        assert_eq!(copied, stored, "{table}");
    }
}

/// The migrations from `version` to the latest, as `migrate` reports applying them.
fn versions_from(version: u32) -> Vec<u32> {
    (version..=tally_clickhouse::migrate::MIGRATIONS.len() as u32).collect()
}
