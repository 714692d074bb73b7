//! Managing sites in headless Chromium against the real server: an owner signs in with a
//! name and password, adds a site from the sites page, copies its embed snippet from the
//! settings page, and a page of that site embedding the snippet is counted within seconds —
//! no restart. Screenshots at desktop and phone width, in English and Vietnamese
//! (target/screenshots/manage-*).

mod common;

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;
use tally_testkit::{Browser, TestApp};

const PASSWORD: &str = "owner-browser-password-1";

/// Serves `html` at every path of a free loopback port (the site's own web server); returns
/// its address.
async fn serve_page(html: String) -> String {
    let app = axum::Router::new().fallback(move || async move { axum::response::Html(html) });
    format!("http://127.0.0.1:{}", common::serve(|_| app).await)
}

#[tokio::test]
async fn an_owner_adds_a_site_and_its_pages_are_counted_without_a_restart() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    tally_api::add_person(
        &app.db(),
        "chief",
        "owner",
        Vec::new(),
        Some(PASSWORD.into()),
    )
    .await
    .unwrap();
    let browser = Browser::start(1280, 900).await;
    let c = &browser.client;

    // Sign in with a name and password.
    c.goto(&app.url("/admin")).await.unwrap();
    browser.fill("#name", "chief").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_js("return !!document.getElementById('add-site')", json!(true))
        .await;
    browser.screenshot("manage-sites-desktop-en").await;

    // A bad field is refused with the API's message, on the page.
    browser.fill("#site-id", "ward-7").await;
    browser.fill("#site-domains", "127.0.0.1").await;
    browser.fill("#site-tz", "Mars/Olympus").await;
    browser.click("#add-site button[type=submit]").await;
    browser
        .wait_for_js(
            "var e = document.querySelector('#add-site .error'); return !e.hidden && e.textContent.includes('timezone')",
            json!(true),
        )
        .await;
    // (The refused request is the only thing the console shows.)
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("400")), "{errors:?}");

    // Added: the settings page, with the snippet.
    browser.fill("#site-name", "Phường 7 <b>bold</b>").await;
    browser.fill("#site-tz", "Asia/Ho_Chi_Minh").await;
    browser.click("#add-site button[type=submit]").await;
    browser
        .wait_for_js(
            "return location.pathname",
            json!("/admin/sites/ward-7/settings"),
        )
        .await;
    let snippet = browser.text("#snippet").await;
    assert_eq!(
        snippet,
        format!(
            "<script defer src=\"{}/t.js\" data-site=\"ward-7\"></script>",
            app.url("")
        )
    );
    // The name is shown as text, not markup.
    let heading = browser.text("h1").await;
    assert!(heading.contains("Phường 7 <b>bold</b>"), "{heading}");
    browser.click("[data-copy='#snippet']").await;
    browser.screenshot("manage-settings-desktop-en").await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");

    // A page of the new site embeds the snippet and is counted within seconds.
    let page = serve_page(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Bài 1</title>{snippet}</head>\
         <body><h1>Bài 1</h1><p>Lượt xem: <span data-tally=\"page-views\">…</span></p></body></html>"
    ))
    .await;
    let added = Instant::now();
    c.goto(&format!("{page}/tin-tuc/bai-1")).await.unwrap();
    let http = reqwest::Client::new();
    common::wait_for("the new site's view to be counted", || async {
        let c = common::get_json(
            &http,
            &app.url("/api/v1/sites/ward-7/counters?page=/tin-tuc/bai-1"),
        )
        .await;
        c["page_views"] == 1
    })
    .await;
    eprintln!("counted {:?} after opening the page", added.elapsed());
    assert!(added.elapsed() < Duration::from_secs(10));
    browser
        .wait_for_js(
            "return document.querySelector('[data-tally=page-views]').textContent",
            json!("1"),
        )
        .await;

    // The same pages in Vietnamese and at phone width.
    c.goto(&app.url("/admin/sites/ward-7/settings?lang=vi"))
        .await
        .unwrap();
    browser
        .wait_for_js("return document.documentElement.lang", json!("vi"))
        .await;
    let h2 = browser.text(".manage h2").await;
    assert_eq!(h2, "Đoạn mã nhúng");
    browser.screenshot("manage-settings-desktop-vi").await;
    c.set_window_size(390, 844).await.unwrap();
    browser.screenshot("manage-settings-phone-vi").await;
    c.goto(&app.url("/admin?lang=en")).await.unwrap();
    browser
        .wait_for_js("return !!document.getElementById('add-site')", json!(true))
        .await;
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the sites page fits a phone's width");
    browser.screenshot("manage-sites-phone-en").await;

    // A personal token made in the account page, shown once, reads the statistics.
    c.goto(&app.url("/admin/account")).await.unwrap();
    browser.fill("#token-label", "wall display").await;
    browser.click("#new-token button[type=submit]").await;
    browser
        .wait_for_js(
            "return !document.querySelector('#new-token .shown').hidden",
            json!(true),
        )
        .await;
    let token = browser.text("#new-token .shown .value").await;
    assert!(token.starts_with("tly_"), "{token}");
    let summary = http
        .get(app.url("/api/v1/sites/ward-7/stats/summary"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(summary.status(), 200);
    browser.screenshot("manage-account-phone-en").await;
    c.refresh().await.unwrap();
    browser
        .wait_for_js(
            "return document.querySelectorAll('#tokens li').length",
            json!(1),
        )
        .await;
    assert!(!c.source().await.unwrap().contains(&token), "shown once");
    browser.close().await;
    app.stop().await;
}

/// Owner and viewer in two browsers: the owner invites a viewer of one site; the viewer sets
/// a password with the one-time link, sees only that site and no edit controls; removing the
/// viewer signs them out at once. A shared link shows the statistics without signing in and
/// stops once revoked.
#[tokio::test]
async fn an_owner_invites_a_viewer_and_shares_a_site() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let db = app.db();
    tally_api::add_person(&db, "chief", "owner", Vec::new(), Some(PASSWORD.into()))
        .await
        .unwrap();
    let owner = Browser::start(1280, 900).await;
    let o = &owner.client;
    o.goto(&app.url("/admin")).await.unwrap();
    owner.fill("#name", "chief").await;
    owner.fill("#password", PASSWORD).await;
    owner.click("form button[type=submit]").await;
    owner
        .wait_for_js("return !!document.getElementById('add-site')", json!(true))
        .await;
    owner.fill("#site-id", "ward-8").await;
    owner.fill("#site-domains", "p8.example.vn").await;
    owner.click("#add-site button[type=submit]").await;
    owner
        .wait_for_js(
            "return location.pathname",
            json!("/admin/sites/ward-8/settings"),
        )
        .await;

    // The invitation, for ward-8 only.
    o.goto(&app.url("/admin/people")).await.unwrap();
    owner.fill("#person-name", "ward-leader").await;
    owner.click("input[name=sites][value=ward-8]").await;
    owner.click("#invite button[type=submit]").await;
    owner
        .wait_for_js(
            "return !document.querySelector('#invite .shown').hidden",
            json!(true),
        )
        .await;
    let link = owner.text("#invite .shown .value").await;
    assert!(link.contains("/admin/invite/"), "{link}");
    owner.screenshot("manage-people-desktop-en").await;

    // The viewer, in a browser of their own.
    let viewer = Browser::start(390, 844).await;
    let v = &viewer.client;
    v.goto(&link).await.unwrap();
    assert_eq!(
        v.find(Locator::Css("#name"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("ward-leader")
    );
    viewer.fill("#password", "leader-password-7").await;
    viewer.click("form button[type=submit]").await;
    viewer
        .wait_for_js(
            "return document.querySelectorAll('.sites .site').length",
            json!(1),
        )
        .await;
    assert_eq!(viewer.text(".sites .site h2").await, "ward-8");
    let controls = v
        .execute(
            "return [!!document.getElementById('add-site'), !!document.querySelector('.site .settings'), \
             !!document.querySelector('a[href=\"/admin/people\"]')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        controls,
        json!([false, false, false]),
        "a viewer has no edit controls"
    );
    viewer.screenshot("manage-viewer-phone-en").await;
    v.goto(&app.url("/admin/sites/ward-8/settings"))
        .await
        .unwrap();
    assert!(v.source().await.unwrap().contains("forbidden"));

    // Removed: the viewer's next page is the sign-in form.
    o.goto(&app.url("/admin/people?lang=vi")).await.unwrap();
    owner
        .wait_for_js(
            "return document.querySelectorAll('#people tbody tr').length",
            json!(2),
        )
        .await;
    owner.screenshot("manage-people-desktop-vi").await;
    o.execute(
        "window.confirm = function () { return true; }; return true",
        vec![],
    )
    .await
    .unwrap();
    owner.click("#people button[data-api=DELETE]").await;
    owner
        .wait_for_js(
            "return document.querySelectorAll('#people tbody tr').length",
            json!(1),
        )
        .await;
    v.goto(&app.url("/admin")).await.unwrap();
    viewer
        .wait_for_js(
            "return !!document.getElementById('password') && !document.querySelector('.sites')",
            json!(true),
        )
        .await;

    // A shared link: the statistics without signing in, until revoked.
    o.goto(&app.url("/admin/sites/ward-8/settings"))
        .await
        .unwrap();
    owner.click("#share button[type=submit]").await;
    owner
        .wait_for_js(
            "return !document.querySelector('#share .shown').hidden",
            json!(true),
        )
        .await;
    let shared = owner.text("#share .shown .value").await;
    v.goto(&shared).await.unwrap();
    viewer
        .wait_for_js("return !!document.getElementById('live')", json!(true))
        .await;
    assert_eq!(viewer.text("h1").await, "ward-8");
    viewer.screenshot("manage-shared-phone-en").await;
    o.refresh().await.unwrap();
    owner
        .wait_for_js(
            "return document.querySelectorAll('.shares li').length",
            json!(1),
        )
        .await;
    o.execute(
        "window.confirm = function () { return true; }; return true",
        vec![],
    )
    .await
    .unwrap();
    owner.click(".shares button[data-api=DELETE]").await;
    owner
        .wait_for_js(
            "return document.querySelectorAll('.shares li').length",
            json!(0),
        )
        .await;
    v.goto(&shared).await.unwrap();
    assert!(v.source().await.unwrap().contains("not_found"));

    // Owners see who changed what.
    o.goto(&app.url("/admin/changes")).await.unwrap();
    let log = owner.text("#changes").await;
    for action in [
        "site.created",
        "person.invited",
        "person.joined",
        "person.removed",
        "share.created",
        "share.revoked",
    ] {
        assert!(log.contains(action), "{action}: {log}");
    }
    owner.screenshot("manage-changes-desktop-en").await;
    assert!(owner.console_errors().await.is_empty());
    owner.close().await;
    viewer.close().await;
    app.stop().await;
}
