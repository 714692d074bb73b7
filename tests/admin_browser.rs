//! The admin pages in headless Chromium against the real server with seeded data: sign-in,
//! the seeded numbers, the live online figure changing without a reload, a hostile title
//! shown as text, no console errors, no request to another host, Vietnamese labels, and
//! screenshots at desktop and phone width (target/screenshots/).

mod common;

use chrono::Utc;
use common::{Hit, send};
use fantoccini::Locator;
use serde_json::json;
use tally_clickhouse::EventRow;
use tally_core::{Event, EventKind, dates::DayRange, settings::AdminToken};
use tally_testkit::{Browser, TestApp};

const TOKEN: &str = "admin-browser-token-0123456";
const XSS: &str = "<img src=x onerror=alert(1)>";

/// 1,234 page views today (site time zone) by 300 visitors in 400 visits, a hostile title.
async fn seed(app: &TestApp) {
    let tz = app.settings.sites[0].timezone;
    let today = DayRange::parse(None, None, tz, Utc::now(), 1).unwrap();
    let start = i64::from(today.start_utc());
    let mut events = Vec::new();
    for i in 0..1234u64 {
        let (page, title) = match i % 3 {
            0 => ("/xss", XSS.to_owned()),
            1 => ("/thoi-su/bai-1", "Thời sự: bài một".to_owned()),
            _ => ("/kinh-te/bai-2", "Kinh tế: bài hai".to_owned()),
        };
        let session = 1 + i % 400;
        let event = Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: (start + (i % 600) as i64) * 1000,
            page: page.into(),
            path: page.into(),
            title,
            referrer_host: ["google.com", "facebook.com", ""][(i % 3) as usize].into(),
            browser: ["Chrome", "Safari"][(i % 2) as usize].into(),
            os: "Android".into(),
            device: "mobile".into(),
            visitor: 1 + session % 300,
            session,
            new_visit: i < 400,
            ..Event::empty()
        };
        events.push(event);
    }
    common::sequence(&mut events);
    let rows: Vec<EventRow> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| EventRow::new(7, &format!("seed-{i}"), e, tz))
        .collect();
    app.db().insert_events(&rows).await.unwrap();
}

async fn card_values(browser: &Browser) -> Vec<String> {
    let v = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.stat .value')].map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Types `token` into the sign-in form and sends it.
async fn submit_token(browser: &Browser, token: &str) {
    let c = &browser.client;
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for the list of sites a signed-in token sees (one site here).
async fn wait_for_sites(browser: &Browser) {
    browser
        .wait_for_js(
            "return document.querySelectorAll('.sites .site').length",
            json!(1),
        )
        .await;
}

/// Signs in with the admin token and waits for the list of sites.
async fn sign_in(browser: &Browser, app: &TestApp) {
    browser.client.goto(&app.url("/admin")).await.unwrap();
    submit_token(browser, TOKEN).await;
    wait_for_sites(browser).await;
}

#[tokio::test]
async fn admin_pages_in_a_real_browser() {
    let mut settings = tally_testkit::settings();
    settings.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn(settings).await;
    seed(&app).await;
    let http = reqwest::Client::new();
    assert_eq!(
        // Live views go to pages of their own, so the seeded pages keep their titles.
        send(&http, &app, &Hit::view("/tin-nong/1").ip("198.51.100.1")).await,
        204
    );
    common::wait_for_rollups(&app, 1235).await;

    let browser = Browser::start(1280, 1800).await;
    let c = &browser.client;

    // Sign-in: a wrong token is refused with a reason, the right one signs in.
    c.goto(&app.url("/admin")).await.unwrap();
    submit_token(&browser, "not-the-token").await;
    // The form posts and the refusal arrives as a new page: wait for it before reading it.
    browser
        .wait_for_js("return !!document.querySelector('.error')", json!(true))
        .await;
    assert!(browser.text(".error").await.contains("not valid"));
    browser.screenshot("admin-login-refused").await;
    // The refused sign-in answers 401, which the browser logs; nothing else may be logged.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/admin/login") && e.contains("401")),
        "{errors:?}"
    );
    submit_token(&browser, TOKEN).await;
    wait_for_sites(&browser).await;
    assert_eq!(
        browser.text(".site dd").await,
        "1,235",
        "1,234 seeded views and one live"
    );
    browser.screenshot("admin-sites").await;

    // The site page shows the seeded figures.
    c.find(Locator::Css(".site a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js("return location.pathname", json!("/admin/sites/demo"))
        .await;
    let cards = card_values(&browser).await;
    assert_eq!(cards[0], "1,235", "{cards:?}");
    assert_eq!(
        &cards[1..3],
        ["401", "301"],
        "visits and unique visitors ({cards:?})"
    );
    assert_eq!(browser.text("#online").await, "1");
    let body = c
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap();
    let body = body.as_str().unwrap();
    assert!(body.contains(XSS), "the hostile title is shown as text");
    assert!(body.contains("Thời sự: bài một"));
    assert!(body.contains("google.com"));
    let images = c
        .execute("return document.querySelectorAll('img').length", vec![])
        .await
        .unwrap();
    assert_eq!(images, json!(0), "no element was injected");
    browser.screenshot("admin-site-desktop").await;

    // A new visitor's page view shows up in "online now" without a reload.
    c.execute("window.notReloaded = true; return true", vec![])
        .await
        .unwrap();
    assert_eq!(
        send(&http, &app, &Hit::view("/tin-nong/2").ip("198.51.100.2")).await,
        204
    );
    browser
        .wait_for_js(
            "return document.getElementById('online').textContent",
            json!("2"),
        )
        .await;
    assert_eq!(
        c.execute("return window.notReloaded", vec![])
            .await
            .unwrap(),
        json!(true)
    );
    browser
        .wait_for_js(
            "return document.querySelectorAll('#reading li').length",
            json!(2),
        )
        .await;

    // Other ranges.
    common::wait_for_rollups(&app, 1236).await;
    c.goto(&app.url("/admin/sites/demo?range=7d"))
        .await
        .unwrap();
    assert_eq!(card_values(&browser).await[0], "1,236");
    assert_eq!(
        c.execute(
            "return document.querySelectorAll('.chart .bar').length",
            vec![]
        )
        .await
        .unwrap(),
        json!(7)
    );
    c.goto(&app.url("/admin/sites/demo?range=yesterday"))
        .await
        .unwrap();
    assert_eq!(card_values(&browser).await[0], "0");

    // Vietnamese, remembered.
    c.goto(&app.url("/admin/sites/demo?lang=vi")).await.unwrap();
    let body = c
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap();
    assert!(body.as_str().unwrap().contains("Lượt xem"));
    assert!(body.as_str().unwrap().contains("Đang online"));
    assert_eq!(card_values(&browser).await[0], "1.236");
    c.goto(&app.url("/admin/sites/demo")).await.unwrap();
    let lang = c
        .execute("return document.documentElement.lang", vec![])
        .await
        .unwrap();
    assert_eq!(lang, json!("vi"));
    browser.screenshot("admin-site-desktop-vi").await;

    // Nothing loaded from another host, nothing logged as an error.
    let resources = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    for r in resources.as_array().unwrap() {
        assert!(
            r.as_str().unwrap().starts_with(&app.url("/")),
            "request to another host: {r}"
        );
    }
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Sign out.
    c.find(Locator::Css("form[action='/admin/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js("return !!document.getElementById('token')", json!(true))
        .await;
    browser.close().await;

    // The phone layout.
    let phone = Browser::start(390, 2400).await;
    sign_in(&phone, &app).await;
    phone
        .client
        .goto(&app.url("/admin/sites/demo?lang=en"))
        .await
        .unwrap();
    assert!(
        fits_the_width(&phone).await,
        "the page fits a phone's width"
    );
    phone.screenshot("admin-site-phone").await;
    assert!(phone.console_errors().await.is_empty());
    phone.close().await;
    app.stop().await;
}

/// A Tally whose site lives in `tz`, with page views of `/a` recorded through the beacon at
/// the local times (`HH:MM`, the later one where a time comes twice) of `day`, each by a
/// reader (an address); returns once they are in the rollups.
async fn a_day_through_the_beacon(tz: chrono_tz::Tz, day: &str, views: &[(&str, u8)]) -> TestApp {
    use chrono::TimeZone;
    let mut settings = tally_testkit::settings();
    settings.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.sites[0].timezone = tz;
    let at = |time: &str| {
        let local =
            chrono::NaiveDateTime::parse_from_str(&format!("{day} {time}"), "%Y-%m-%d %H:%M")
                .unwrap();
        tz.from_local_datetime(&local)
            .latest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let clock = tally_core::Clock::manual(at("00:00"));
    let app = TestApp::spawn_with_clock(settings, tally::Roles::all(), clock.clone()).await;
    let http = reqwest::Client::new();
    for (time, reader) in views {
        clock.set(at(time));
        let ip = format!("198.51.100.{reader}");
        assert_eq!(send(&http, &app, &Hit::view("/a").ip(&ip)).await, 204);
    }
    common::wait_for_rollups(&app, views.len() as u64).await;
    app
}

/// The chart on screen: how many bars, and the tooltips of the bars that have views.
async fn chart_tooltips(browser: &Browser) -> (usize, Vec<String>) {
    let tooltips: Vec<String> = serde_json::from_value(
        browser
            .client
            .execute(
                "return [...document.querySelectorAll('.chart g title')].map(t => t.textContent)",
                vec![],
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let bars = tooltips.len();
    (
        bars,
        tooltips
            .into_iter()
            .filter(|t| !t.contains(": 0 "))
            .collect(),
    )
}

/// The days clocks change: New York's 23 hours (02:00 skipped), Berlin's 25 (02:00 twice, each
/// its own bar).
#[tokio::test]
async fn charts_of_the_days_clocks_change_have_23_and_25_hours() {
    let cases = [
        (
            chrono_tz::America::New_York,
            "2026-03-08",
            vec![("01:30", 1), ("03:30", 2)],
            23,
            vec![
                "01:00: 1 Views, 1 Unique visitors",
                "03:00: 1 Views, 1 Unique visitors",
            ],
        ),
        (
            chrono_tz::Europe::Berlin,
            "2026-10-25",
            vec![("01:30", 1), ("02:30", 2), ("03:30", 3)],
            25,
            vec![
                "01:00: 1 Views, 1 Unique visitors",
                "02:00: 1 Views, 1 Unique visitors",
                "03:00: 1 Views, 1 Unique visitors",
            ],
        ),
    ];
    for (tz, day, views, hours, want) in cases {
        let app = a_day_through_the_beacon(tz, day, &views).await;
        let browser = Browser::start(1280, 1800).await;
        sign_in(&browser, &app).await;
        browser
            .client
            .goto(&app.url(&format!(
                "/admin/sites/demo?range=custom&from={day}&to={day}&lang=en"
            )))
            .await
            .unwrap();
        let (bars, shown) = chart_tooltips(&browser).await;
        assert_eq!(bars, hours, "{tz}");
        assert_eq!(shown, want, "{tz}");
        // Berlin's second 02:00 (the later one, +01:00) is the fourth bar, not the third.
        if hours == 25 {
            let third_and_fourth = browser
                .client
                .execute(
                    "const t = [...document.querySelectorAll('.chart g title')]; \
                     return [t[2].textContent, t[3].textContent]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(
                third_and_fourth,
                json!([
                    "02:00: 0 Views, 0 Unique visitors",
                    "02:00: 1 Views, 1 Unique visitors"
                ])
            );
        }
        browser
            .screenshot(&format!("admin-day-{hours}-hours"))
            .await;
        assert!(browser.console_errors().await.is_empty());
        browser.close().await;
        app.stop().await;
    }
}

/// A day of a site in Asia/Kolkata (+05:30), recorded through the beacon at chosen times:
/// the chart has the day's 24 local hours, each view in the bar of its local hour, the
/// summary cards agree, and a reload shows as a repeat, not a view. Desktop and phone, English
/// and Vietnamese screenshots.
#[tokio::test]
async fn the_chart_of_a_half_hour_zone_day_shows_its_local_hours() {
    // 00:10 and 05:40 (UTC midnight is 05:30) and three readers at 23:xx; the reader of
    // 05:40 reloads at 05:41.
    let app = a_day_through_the_beacon(
        chrono_tz::Asia::Kolkata,
        "2026-03-10",
        &[
            ("00:10", 1),
            ("05:40", 2),
            ("05:41", 2),
            ("23:20", 3),
            ("23:25", 4),
            ("23:50", 5),
        ],
    )
    .await;
    let browser = Browser::start(1280, 1800).await;
    let c = &browser.client;
    sign_in(&browser, &app).await;
    c.goto(&app.url("/admin/sites/demo?range=custom&from=2026-03-10&to=2026-03-10&lang=en"))
        .await
        .unwrap();
    let (bars, shown) = chart_tooltips(&browser).await;
    assert_eq!(bars, 24);
    assert_eq!(
        shown,
        [
            "00:00: 1 Views, 1 Unique visitors",
            "05:00: 1 Views, 1 Unique visitors",
            "23:00: 3 Views, 3 Unique visitors"
        ],
        "each view in its local hour"
    );
    let cards = card_values(&browser).await;
    assert_eq!(
        &cards[..3],
        ["5", "5", "5"],
        "views, visits, visitors: {cards:?}"
    );
    // The cards after views, visits, visitors, bounce rate, visit length, bots: reloads, and
    // pixel hits without a referrer.
    assert_eq!(&cards[6..], ["1", "0"], "one reload: {cards:?}");
    let body = c
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap();
    assert!(body.as_str().unwrap().contains("Reloads not counted"));
    assert!(
        body.as_str().unwrap().contains("Desktop"),
        "device classes named"
    );
    browser.screenshot("admin-kolkata-day-desktop").await;
    c.goto(&app.url("/admin/sites/demo?range=custom&from=2026-03-10&to=2026-03-10&lang=vi"))
        .await
        .unwrap();
    let body = c
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap();
    assert!(body.as_str().unwrap().contains("Lượt tải lại không tính"));
    assert!(
        body.as_str().unwrap().contains("Máy tính"),
        "device classes named"
    );
    browser.screenshot("admin-kolkata-day-desktop-vi").await;
    assert!(browser.console_errors().await.is_empty());
    browser.close().await;
    app.stop().await;
}

/// Whether the page fits the browser's width (nothing scrolls sideways).
async fn fits_the_width(browser: &Browser) -> bool {
    browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap()
        == json!(true)
}

/// The names in the "being read now" list, as the page shows them.
async fn reading_names(browser: &Browser) -> Vec<String> {
    let v = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#reading .name')].map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// A site past `tracking.max_pages`: the page says so, and the readers of the later pages
/// are one "(other pages)" row — on the first render and after the live refresh — in English
/// and Vietnamese, desktop and phone.
#[tokio::test]
async fn pages_past_the_live_cap_are_read_as_other_pages() {
    let mut settings = tally_testkit::settings();
    settings.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.tracking.max_pages = 2;
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    for (i, page) in ["/a", "/b", "/c", "/d", "/e"].iter().enumerate() {
        let ip = format!("198.51.100.{}", i + 1);
        assert_eq!(send(&http, &app, &Hit::view(page).ip(&ip)).await, 204);
    }
    let browser = Browser::start(1280, 1400).await;
    sign_in(&browser, &app).await;
    let c = &browser.client;
    c.goto(&app.url("/admin/sites/demo?lang=en")).await.unwrap();
    let note = browser.text("#page-cap").await;
    assert!(note.contains("cap of 2 live pages"), "{note}");
    let names = reading_names(&browser).await;
    assert_eq!(names[0], "(other pages)", "three readers: {names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
    let readers = browser.text("#reading li:first-child strong").await;
    assert_eq!(readers, "3");
    browser.screenshot("admin-other-pages-desktop").await;
    // The live refresh renders the row the same way.
    browser
        .wait_for_js(
            "return new Promise(r => setTimeout(() => r(document.querySelector('#reading .name').textContent), 6000))",
            json!("(other pages)"),
        )
        .await;
    c.goto(&app.url("/admin/sites/demo?lang=vi")).await.unwrap();
    assert_eq!(reading_names(&browser).await[0], "(các trang khác)");
    assert!(browser.text("#page-cap").await.contains("tối đa 2 trang"));
    browser.screenshot("admin-other-pages-desktop-vi").await;
    assert!(browser.console_errors().await.is_empty());
    browser.close().await;

    let phone = Browser::start(390, 1600).await;
    sign_in(&phone, &app).await;
    phone
        .client
        .goto(&app.url("/admin/sites/demo?lang=vi"))
        .await
        .unwrap();
    assert!(
        fits_the_width(&phone).await,
        "the note fits a phone's width"
    );
    phone.screenshot("admin-other-pages-phone-vi").await;
    phone.close().await;
    app.stop().await;
}

/// Views of the drill-down test: yesterday 30 visits from google.com on `/a` (6 of them
/// going on to `/b`), 20 from facebook.com on `/b`, 10 direct on `/c` (66 views, 60 visits);
/// the same weekday a week earlier 20 from google.com on `/a` and 20 direct on `/c`.
async fn seed_visits(app: &TestApp) {
    let tz = app.settings.sites[0].timezone;
    let today = DayRange::parse(None, None, tz, Utc::now(), 1).unwrap();
    let yesterday = i64::from(today.start_utc()) - 86_400;
    let week_before = yesterday - 7 * 86_400;
    let mut events = Vec::new();
    let mut view = |at: i64, session: u64, page: &str, from: &str, place: (&str, &str, &str)| {
        let (country, region, city) = place;
        let google = from == "google.com";
        events.push(Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: at * 1000,
            page: page.into(),
            path: page.into(),
            title: format!("Bài {}", &page[1..]),
            referrer_host: from.into(),
            utm_source: if google { "newsletter" } else { "" }.into(),
            utm_medium: if google { "email" } else { "" }.into(),
            utm_campaign: if google { "thang-12" } else { "" }.into(),
            browser: "Chrome".into(),
            os: "Android".into(),
            device: "mobile".into(),
            country: country.into(),
            region: region.into(),
            city: city.into(),
            language: if google { "vi" } else { "en-US" }.into(),
            width: if google { 390 } else { 1440 },
            visitor: session,
            session,
            ..Event::empty()
        });
    };
    let saigon = ("VN", "Ho Chi Minh", "Ho Chi Minh City");
    let hanoi = ("VN", "Hanoi", "Hanoi");
    let abroad = ("US", "California", "Mountain View");
    for i in 0..60u64 {
        let at = yesterday + 3_600 + i as i64 * 60;
        let session = 1_000 + i;
        match i {
            0..30 => {
                view(at, session, "/a", "google.com", saigon);
                if i < 6 {
                    view(at + 30, session, "/b", "", saigon);
                }
            }
            30..50 => view(at, session, "/b", "facebook.com", hanoi),
            _ => view(at, session, "/c", "", abroad),
        }
    }
    for i in 0..40u64 {
        let at = week_before + 3_600 + i as i64 * 60;
        let (page, from) = if i < 20 {
            ("/a", "google.com")
        } else {
            ("/c", "")
        };
        view(at, 2_000 + i, page, from, saigon);
    }
    common::sequence(&mut events);
    let rows: Vec<EventRow> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| EventRow::new(7, &format!("visit-{i}"), e, tz))
        .collect();
    app.db().insert_events(&rows).await.unwrap();
}

/// The row names of the table `key` on the page (`pages`, `referrers`, `regions`…).
async fn table_names(browser: &Browser, key: &str) -> Vec<String> {
    let v = browser
        .client
        .execute(
            &format!(
                "return [...document.querySelectorAll('#table-{key} tbody .name')].map(e => e.textContent)"
            ),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// The views of the chart's bars, summed from their tooltips.
async fn chart_views(browser: &Browser) -> u64 {
    let v = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.chart g title')]\
             .map(t => Number(t.textContent.match(/: ([\\d,.]+) /)[1].replace(/[,.]/g, '')))\
             .reduce((a, b) => a + b, 0)",
            vec![],
        )
        .await
        .unwrap();
    v.as_u64().unwrap()
}

/// The percent changes under the cards.
async fn card_changes(browser: &Browser) -> Vec<String> {
    let v = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.stat')].map(s => s.querySelector('.change')?.textContent ?? '')",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Clicks the row named `name` in the table `key` and waits for the page it leads to.
async fn click_row(browser: &Browser, key: &str, name: &str) {
    let rows = browser
        .client
        .find_all(Locator::Css(&format!("#table-{key} tbody a.name")))
        .await
        .unwrap();
    for row in rows {
        if row.text().await.unwrap() == name {
            row.click().await.unwrap();
            browser
                .wait_for_js("return document.readyState", json!("complete"))
                .await;
            return;
        }
    }
    panic!("no row {name} in #table-{key}");
}

/// Every file of the zip `bytes`, read with Python's `zipfile`: name → text.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(common::python_json(
        "import json, sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         print(json.dumps({n: z.read(n).decode('utf-8') for n in z.namelist()}))",
        bytes,
        "zip",
    ))
    .unwrap()
}

/// The drill-down in a real browser: a referrer row filters the cards, the chart and every
/// table, and the URL; the chip takes the filter off; the comparison shows percent changes
/// and the compared line; the Vietnamese page names every new table and the provinces in
/// Vietnamese; the export holds each table as the API's CSV. Desktop and phone, English and
/// Vietnamese screenshots.
#[tokio::test]
async fn filters_comparison_and_export_in_a_real_browser() {
    let mut settings = tally_testkit::settings();
    settings.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    let app = TestApp::spawn(settings).await;
    seed_visits(&app).await;
    let browser = Browser::start(1280, 3200).await;
    let c = &browser.client;
    sign_in(&browser, &app).await;
    c.goto(&app.url("/admin/sites/demo?range=7d&lang=en"))
        .await
        .unwrap();
    let whole = |cards: &[String]| cards[..3].to_vec();
    assert_eq!(whole(&card_values(&browser).await), ["66", "60", "60"]);
    assert_eq!(chart_views(&browser).await, 66);
    assert_eq!(
        table_names(&browser, "pages").await,
        ["Bài a", "Bài b", "Bài c"]
    );
    assert_eq!(
        table_names(&browser, "referrers").await,
        ["google.com", "facebook.com", "(direct or unknown)"]
    );
    assert!(c.find(Locator::Css("#filters")).await.is_err(), "no chips");
    browser.screenshot("explore-whole-desktop").await;

    // A referrer row filters the whole page and the URL.
    click_row(&browser, "referrers", "google.com").await;
    let search = c.execute("return location.search", vec![]).await.unwrap();
    assert!(
        search.as_str().unwrap().contains("referrer=google.com"),
        "{search}"
    );
    assert_eq!(whole(&card_values(&browser).await), ["30", "30", "30"]);
    assert_eq!(chart_views(&browser).await, 30);
    assert_eq!(table_names(&browser, "pages").await, ["Bài a"]);
    assert_eq!(table_names(&browser, "entry-pages").await, ["Bài a"]);
    assert_eq!(table_names(&browser, "referrers").await, ["google.com"]);
    assert_eq!(table_names(&browser, "regions").await, ["Ho Chi Minh"]);
    assert_eq!(table_names(&browser, "utm-campaigns").await, ["thang-12"]);
    assert_eq!(table_names(&browser, "screens").await, ["Phone"]);
    assert_eq!(
        browser.text("#filters .chip").await,
        "Referrer: google.com ×"
    );
    browser.screenshot("explore-filtered-desktop").await;

    // Removing the chip restores the whole site.
    c.find(Locator::Css("#filters .chip a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js("return !!document.querySelector('#filters')", json!(false))
        .await;
    assert!(
        !c.execute("return location.search", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .contains("referrer")
    );
    assert_eq!(whole(&card_values(&browser).await), ["66", "60", "60"]);
    assert_eq!(chart_views(&browser).await, 66);
    assert_eq!(table_names(&browser, "pages").await.len(), 3);

    // Comparison with the previous period: 66 views against 40, then Google's 30 against 20.
    c.execute(
        "document.getElementById('compare').value = 'previous_period'; \
         document.getElementById('compare-form').submit(); return true",
        vec![],
    )
    .await
    .unwrap();
    browser
        .wait_for_js("return !!document.querySelector('#compared')", json!(true))
        .await;
    assert_eq!(&card_changes(&browser).await[..3], ["+65%", "+50%", "+50%"]);
    assert!(
        c.find(Locator::Css(".chart polyline.compared"))
            .await
            .is_ok(),
        "the compared views are drawn"
    );
    click_row(&browser, "referrers", "google.com").await;
    let search = c.execute("return location.search", vec![]).await.unwrap();
    let search = search.as_str().unwrap();
    assert!(
        search.contains("compare=previous_period") && search.contains("referrer=google.com"),
        "{search}"
    );
    assert_eq!(whole(&card_values(&browser).await), ["30", "30", "30"]);
    assert_eq!(
        &card_changes(&browser).await[..4],
        ["+50%", "+50%", "+50%", "−20%"]
    );
    assert_eq!(
        c.execute(
            "return document.querySelectorAll('.stat')[3].querySelector('.change').className",
            vec![]
        )
        .await
        .unwrap(),
        json!("change down better"),
        "a bounce rate going down is shown as better"
    );
    browser.screenshot("explore-compared-desktop").await;

    // The export of this view: each table is the API's CSV answer for the same query.
    let export = c
        .find(Locator::Css("#export"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookies = c.get_all_cookies().await.unwrap();
    let cookie = cookies
        .iter()
        .map(|k| format!("{}={}", k.name(), k.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let http = reqwest::Client::new();
    let answer = http
        .get(app.url(&export))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/zip");
    let files = unzip(&answer.bytes().await.unwrap());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "browsers.csv",
            "cities.csv",
            "countries.csv",
            "devices.csv",
            "downloads.csv",
            "entry-pages.csv",
            "events.csv",
            "exit-pages.csv",
            "goals.csv",
            "languages.csv",
            "os.csv",
            "outbound.csv",
            "pages.csv",
            "referrers.csv",
            "regions.csv",
            "screens.csv",
            "timeseries.csv",
            "utm-campaigns.csv",
            "utm-mediums.csv",
            "utm-sources.csv",
        ]
    );
    let tz = app.settings.sites[0].timezone;
    let today = DayRange::parse(None, None, tz, Utc::now(), 1).unwrap().from;
    let from = today - chrono::Days::new(6);
    for (report, limit) in [
        ("pages", "&limit=20"),
        ("entry-pages", "&limit=10"),
        ("exit-pages", "&limit=10"),
        ("referrers", "&limit=10"),
        ("regions", "&limit=10"),
        ("utm-sources", "&limit=8"),
        ("timeseries", "&compare=previous_period"),
        ("goals", ""),
        ("events", "&limit=10"),
        ("downloads", "&limit=10&name=download"),
    ] {
        let path = if report == "downloads" {
            "events/targets"
        } else {
            report
        };
        let want = http
            .get(app.url(&format!(
                "/api/v1/sites/demo/stats/{path}?from={from}&to={today}&referrer=google.com&format=csv{limit}"
            )))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(files[&format!("{report}.csv")], want, "{report}");
    }
    assert!(
        files["regions.csv"].contains("Ho Chi Minh,30,30"),
        "{}",
        files["regions.csv"]
    );
    let days = files["timeseries.csv"].lines().count();
    assert_eq!(days, 8, "a header and seven days");

    // Vietnamese: every table named in Vietnamese, the provinces too.
    c.goto(&app.url("/admin/sites/demo?range=7d&lang=vi&compare=previous_period"))
        .await
        .unwrap();
    let titles: Vec<String> = serde_json::from_value(
        c.execute(
            "return [...document.querySelectorAll('section[id^=table-] h2')].map(h => h.textContent)",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        titles,
        [
            "Trang được xem nhiều",
            "Trang vào",
            "Trang thoát",
            "Mục tiêu",
            "Lượt tải tệp",
            "Liên kết ra ngoài",
            "Sự kiện",
            "Nguồn truy cập",
            "Nguồn chiến dịch",
            "Kênh chiến dịch",
            "Chiến dịch",
            "Quốc gia",
            "Tỉnh, thành",
            "Thành phố",
            "Trình duyệt",
            "Hệ điều hành",
            "Thiết bị",
            "Kích thước màn hình",
            "Ngôn ngữ",
        ]
    );
    assert_eq!(
        table_names(&browser, "regions").await,
        ["TP. Hồ Chí Minh", "Hà Nội", "California"]
    );
    assert_eq!(
        table_names(&browser, "cities").await,
        ["TP. Hồ Chí Minh", "Hà Nội", "Mountain View"]
    );
    assert_eq!(&card_changes(&browser).await[..3], ["+65%", "+50%", "+50%"]);
    click_row(&browser, "regions", "TP. Hồ Chí Minh").await;
    assert_eq!(
        browser.text("#filters .chip").await,
        "Tỉnh, thành: TP. Hồ Chí Minh ×"
    );
    assert_eq!(whole(&card_values(&browser).await), ["36", "30", "30"]);
    browser.screenshot("explore-filtered-desktop-vi").await;
    assert!(browser.console_errors().await.is_empty());
    browser.close().await;

    // The phone layout, filtered and compared, in both languages.
    let phone = Browser::start(390, 3000).await;
    sign_in(&phone, &app).await;
    for lang in ["en", "vi"] {
        phone
            .client
            .goto(&app.url(&format!(
                "/admin/sites/demo?range=7d&lang={lang}&compare=previous_period&referrer=google.com"
            )))
            .await
            .unwrap();
        assert_eq!(whole(&card_values(&phone).await), ["30", "30", "30"]);
        assert!(fits_the_width(&phone).await, "{lang} fits a phone's width");
        phone
            .screenshot(&format!("explore-filtered-phone-{lang}"))
            .await;
    }
    assert!(phone.console_errors().await.is_empty());
    phone.close().await;
    app.stop().await;
}

/// The rows of the table `key` on the page: its name and figures, as shown.
async fn table_rows(browser: &Browser, key: &str) -> Vec<Vec<String>> {
    let v = browser
        .client
        .execute(
            &format!(
                "return [...document.querySelectorAll('#table-{key} tbody tr')]\
                 .map(tr => [...tr.querySelectorAll('.name, td.num')].map(e => e.textContent))"
            ),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect()
}

/// Goals made and removed in the settings page, and the site page's goals, downloads,
/// outbound links and custom events, in English and Vietnamese, desktop and phone.
#[tokio::test]
async fn goals_downloads_outbound_links_and_events_on_the_site_page() {
    let mut settings = tally_testkit::settings();
    settings.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    const F1: &str = "https://example.com/files/mau-don.pdf";
    const F2: &str = "https://example.com/files/bao-cao.xlsx";
    const OUT: &str = "https://dichvucong.gov.vn/p/home";
    // Four readers: two read procedures and download (one of them also leaves for the
    // national portal), one subscribes, one only reads.
    let readers: [(&str, &str, Vec<serde_json::Value>); 4] = [
        (
            "198.51.100.1",
            "/thu-tuc/a",
            vec![
                json!({"name": "download", "target": F1}),
                json!({"name": "outbound", "target": OUT}),
            ],
        ),
        (
            "198.51.100.2",
            "/thu-tuc/b",
            vec![
                json!({"name": "download", "target": F1}),
                json!({"name": "download", "target": F2}),
            ],
        ),
        (
            "198.51.100.3",
            "/tin-tuc/1",
            vec![json!({"name": "subscribe", "props": {"plan": "free"}})],
        ),
        ("198.51.100.4", "/tin-tuc/1", vec![]),
    ];
    for (ip, page, events) in &readers {
        let url = format!("http://localhost{page}");
        let mut bodies = vec![json!({"t": "pageview", "site": "demo", "url": url, "title": page})];
        for e in events {
            let mut e = e.clone();
            e["t"] = json!("event");
            e["site"] = json!("demo");
            e["url"] = json!(url);
            bodies.push(e);
        }
        for body in bodies {
            let r = http
                .post(app.url("/collect"))
                .header("origin", "http://localhost")
                .header("user-agent", common::CHROME)
                .header("x-forwarded-for", *ip)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204, "{body}");
        }
    }
    common::wait_for_rollups(&app, 9).await;

    let browser = Browser::start(1280, 2400).await;
    let c = &browser.client;
    sign_in(&browser, &app).await;

    // Goals are added in the settings page; a bad one is refused, naming the field.
    c.goto(&app.url("/admin/sites/demo/settings"))
        .await
        .unwrap();
    let goals_listed = "return document.querySelectorAll('#goals li').length";
    for (i, fields) in [
        &[("#goal-page", "/thu-tuc/*")][..],
        &[("#goal-event", "download")][..],
        &[
            ("#goal-event", "subscribe"),
            ("#goal-prop", "plan"),
            ("#goal-value", "free"),
            ("#goal-name", "Free plan"),
        ][..],
        &[("#goal-page", "/lien-he")][..],
    ]
    .iter()
    .enumerate()
    {
        for (field, text) in *fields {
            browser.fill(field, text).await;
        }
        browser.click("#add-goal button[type=submit]").await;
        browser.wait_for_js(goals_listed, json!(i + 1)).await;
    }
    browser.fill("#goal-page", "/thu-tuc").await;
    browser.fill("#goal-event", "download").await;
    browser.click("#add-goal button[type=submit]").await;
    browser
        .wait_for_js(
            "return !document.querySelector('#add-goal .error').hidden",
            json!(true),
        )
        .await;
    assert!(
        browser.text("#add-goal .error").await.contains("`page`"),
        "{}",
        browser.text("#add-goal .error").await
    );
    browser.screenshot("goals-settings-desktop").await;
    // The last goal is removed again.
    c.execute(
        "window.confirm = function () { return true; }; return true",
        vec![],
    )
    .await
    .unwrap();
    browser.click("#goals li:last-child button").await;
    browser.wait_for_js(goals_listed, json!(3)).await;

    // The site page: conversions over the four visitors.
    c.goto(&app.url("/admin/sites/demo")).await.unwrap();
    assert_eq!(
        table_rows(&browser, "goals").await,
        cells(&[
            &["/thu-tuc/*", "2", "50.0%"],
            &["download", "2", "50.0%"],
            &["Free plan", "1", "25.0%"],
        ])
    );
    assert_eq!(
        table_rows(&browser, "downloads").await,
        cells(&[&[F1, "2", "2"], &[F2, "1", "1"]])
    );
    assert_eq!(
        table_rows(&browser, "outbound").await,
        cells(&[&[OUT, "1", "1"]])
    );
    assert_eq!(
        table_rows(&browser, "events").await,
        cells(&[
            &["download", "3", "2"],
            &["outbound", "1", "1"],
            &["subscribe", "1", "1"]
        ])
    );
    // With a filter: the visits that read /tin-tuc/1 (two visitors, one subscribed).
    c.goto(&app.url("/admin/sites/demo?page=/tin-tuc/1"))
        .await
        .unwrap();
    assert_eq!(
        table_rows(&browser, "goals").await,
        cells(&[
            &["/thu-tuc/*", "0", "0.0%"],
            &["download", "0", "0.0%"],
            &["Free plan", "1", "50.0%"],
        ])
    );
    c.goto(&app.url("/admin/sites/demo")).await.unwrap();
    c.execute(
        "document.getElementById('table-goals').scrollIntoView(); return true",
        vec![],
    )
    .await
    .unwrap();
    browser.screenshot("goals-site-desktop-en").await;

    // Vietnamese.
    c.goto(&app.url("/admin/sites/demo?lang=vi")).await.unwrap();
    let heads: Vec<String> = serde_json::from_value(
        c.execute(
            "return ['goals', 'downloads', 'outbound', 'events'].map(k => \
             [...document.querySelectorAll('#table-' + k + ' h2, #table-' + k + ' th')]\
             .map(e => e.textContent).join(' | '))",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        heads,
        [
            "Mục tiêu | Mục tiêu | Khách duy nhất | Tỉ lệ chuyển đổi",
            "Lượt tải tệp | Tệp | Lượt | Khách duy nhất",
            "Liên kết ra ngoài | Liên kết | Lượt | Khách duy nhất",
            "Sự kiện | Sự kiện | Lượt | Khách duy nhất",
        ]
    );
    assert_eq!(
        table_rows(&browser, "goals").await[0],
        ["/thu-tuc/*", "2", "50,0%"]
    );
    c.execute(
        "document.getElementById('table-goals').scrollIntoView(); return true",
        vec![],
    )
    .await
    .unwrap();
    browser.screenshot("goals-site-desktop-vi").await;
    c.goto(&app.url("/admin/sites/demo/settings?lang=vi"))
        .await
        .unwrap();
    assert_eq!(browser.text("#goals h2").await, "Mục tiêu");
    assert_eq!(
        browser.text("#add-goal button[type=submit]").await,
        "Thêm mục tiêu"
    );
    // The refused goal answered 400, which the browser logs; nothing else may be logged.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/api/v1/sites/demo/goals") && e.contains("400")),
        "{errors:?}"
    );
    browser.close().await;

    let phone = Browser::start(390, 3000).await;
    sign_in(&phone, &app).await;
    for lang in ["en", "vi"] {
        for page in ["", "/settings"] {
            phone
                .client
                .goto(&app.url(&format!("/admin/sites/demo{page}?lang={lang}")))
                .await
                .unwrap();
            assert!(
                fits_the_width(&phone).await,
                "{page} in {lang} fits a phone's width"
            );
        }
        phone
            .client
            .execute(
                "document.getElementById('goals').scrollIntoView(); return true",
                vec![],
            )
            .await
            .unwrap();
        phone
            .screenshot(&format!("goals-settings-phone-{lang}"))
            .await;
        phone
            .client
            .goto(&app.url(&format!("/admin/sites/demo?lang={lang}")))
            .await
            .unwrap();
        phone
            .client
            .execute(
                "document.getElementById('table-goals').scrollIntoView(); return true",
                vec![],
            )
            .await
            .unwrap();
        phone.screenshot(&format!("goals-site-phone-{lang}")).await;
    }
    assert!(phone.console_errors().await.is_empty());
    phone.close().await;
    app.stop().await;
}
