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
