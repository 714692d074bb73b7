//! The tracker in a real browser: headless Chromium loads the demo article that embeds
//! `/t.js`; the view is counted, the counter elements are filled, and an SPA route change
//! (history.pushState) counts a second view.

mod common;

use common::{counters, wait_for};
use serde_json::json;
use tally_testkit::{Browser, TestApp};

#[tokio::test]
async fn the_tracker_counts_views_fills_counters_and_follows_spa_routes() {
    let mut settings = tally_testkit::settings();
    settings.server.demo_page = true;
    let app = TestApp::spawn(settings).await;
    let http = reqwest::Client::new();
    let browser = Browser::start(1000, 700).await;
    let c = &browser.client;

    c.goto(&app.url("/demo/thoi-su/bai-1")).await.unwrap();
    browser
        .wait_for_js(
            "return document.querySelector('[data-tally=\"page-views\"]').textContent",
            json!("1"),
        )
        .await;
    for (field, want) in [
        ("online", "1"),
        ("page-online", "1"),
        ("total-visits", "1"),
        ("total-views", "1"),
    ] {
        browser
            .wait_for_js(
                &format!("return document.querySelector('[data-tally=\"{field}\"]').textContent"),
                json!(want),
            )
            .await;
    }
    let live = counters(&http, &app, Some("/demo/thoi-su/bai-1")).await;
    assert_eq!(live["page_views"], 1);
    assert_eq!(live["total_views"], 1);
    browser.screenshot("tracker-demo-first-view").await;

    // The tab id lives in sessionStorage; nothing in cookies or localStorage.
    let storage = c
        .execute(
            "return [document.cookie, localStorage.length, !!sessionStorage.getItem('tally_sid')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(storage, json!(["", 0, true]));

    // An SPA route change: a second view, on the new page.
    c.execute(
        "document.querySelector('a[href=\"/demo/kinh-te/bai-2\"]').click(); return true",
        vec![],
    )
    .await
    .unwrap();
    wait_for("the SPA view in the counters", || async {
        counters(&http, &app, None).await["total_views"] == 2
    })
    .await;
    let second = counters(&http, &app, Some("/demo/kinh-te/bai-2")).await;
    assert_eq!(second["page_views"], 1);
    assert_eq!(second["total_visits"], 1, "same visitor, same visit");
    browser
        .wait_for_js(
            "return document.querySelector('[data-tally=\"total-views\"]').textContent",
            json!("2"),
        )
        .await;
    browser.screenshot("tracker-demo-after-spa-route").await;

    // A replaceState that keeps the path is not a new view: the total is exactly 3 after
    // the next page's view below (it would be 4), with no sleep to wait for a view that
    // should not come.
    c.execute(
        "history.replaceState({}, '', location.pathname + '?x=1'); return true",
        vec![],
    )
    .await
    .unwrap();

    // An address with UTF-8 escapes and a literal `%`: the counter the page shows is the
    // view the beacon counted under its page key (`/demo/giá-100%25`), not a key the
    // tracker would make on its own (decodeURIComponent turns `%25` into `%`).
    c.goto(&app.url("/demo/gi%C3%A1-100%25")).await.unwrap();
    wait_for("the third view in the counters", || async {
        counters(&http, &app, None).await["total_views"] == 3
    })
    .await;
    let third = counters(&http, &app, Some("/demo/gi%C3%A1-100%2525")).await;
    assert_eq!(
        (third["page_views"].as_u64(), third["total_views"].as_u64()),
        (Some(1), Some(3))
    );
    browser
        .wait_for_js(
            "return [document.querySelector('[data-tally=\"page-views\"]').textContent, \
             document.querySelector('[data-tally=\"total-views\"]').textContent]",
            json!(["1", "3"]),
        )
        .await;

    browser.close().await;
    app.stop().await;
}
