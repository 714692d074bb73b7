//! The tracker in a real browser: headless Chromium loads the demo article that embeds
//! `/t.js`; the view is counted, the counter elements are filled, and an SPA route change
//! (history.pushState) counts a second view. On a publisher's own page, downloads, outbound
//! links and custom events are each counted once, also when the click leaves the page.

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

/// A publisher's article on its own host (`localhost:PORT`, another origin than Tally's):
/// a PDF link with its download counter, an outbound link (to `127.0.0.1:PORT`, another
/// host), a button calling `window.tally`, a `data-tally-event` button, and a call to
/// `window.tally` queued before the tracker loads.
async fn publisher(tally: &str) -> u16 {
    let tally = tally.to_owned();
    common::serve(move |port| site(&tally, port)).await
}

/// The publisher's pages, on `port`.
fn site(tally: &str, port: u16) -> axum::Router {
    let article = format!(
        r#"<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>Thủ tục cấp phép</title>
<script>window.tally = window.tally || function () {{ (window.tally.q = window.tally.q || []).push(arguments) }};
tally("early", {{ "from": "queue" }});</script>
<script defer src="{tally}/t.js" data-site="demo"></script></head>
<body><h1>Thủ tục cấp phép</h1>
<p><a id="pdf" href="/files/mau-don.pdf#page=1">Mẫu đơn (PDF)</a> · Lượt tải:
<span id="downloads" data-tally="downloads" data-tally-target="/files/mau-don.pdf">–</span></p>
<p><a id="out" href="http://127.0.0.1:{port}/elsewhere">Cổng dịch vụ công</a></p>
<button id="share" onclick="tally('share', {{ network: 'zalo' }})">Chia sẻ</button>
<button id="subscribe" data-tally-event="subscribe" data-tally-prop-plan="free"><span id="inner">Đăng ký</span></button>
</body></html>"#
    );
    axum::Router::new()
        .route(
            "/article",
            axum::routing::get(move || async move { axum::response::Html(article) }),
        )
        // Shown, not saved: the click navigates away from the article.
        .route(
            "/files/mau-don.pdf",
            axum::routing::get(|| async {
                ([("content-type", "text/plain")], "%PDF-1.4 mẫu đơn")
            }),
        )
        .route(
            "/favicon.ico",
            axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/elsewhere",
            axum::routing::get(|| async { axum::response::Html("<p>Elsewhere</p>") }),
        )
}

/// `(value, events)` of an events report, or why not.
async fn report(http: &reqwest::Client, app: &TestApp, path: &str) -> Vec<(String, u64)> {
    common::get_admin_json(
        http,
        &app.url(&format!("/api/v1/sites/demo/{path}")),
        common::TOKEN,
    )
    .await["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["value"].as_str().unwrap().to_owned(),
                        r["events"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn downloads_outbound_links_and_custom_events_are_each_counted_once() {
    let app = TestApp::spawn(tally_testkit::settings()).await;
    let http = reqwest::Client::new();
    let port = publisher(&app.url("")).await;
    let article = format!("http://localhost:{port}/article");
    let file = format!("http://localhost:{port}/files/mau-don.pdf");
    // The portal counted 1,234 downloads of the form before Tally.
    let csv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(csv.path(), format!("url,downloads\n{file},1234\n")).unwrap();
    let site = tally_core::SiteId::parse("demo").unwrap();
    tally::import::import_downloads(&app.settings, &site, csv.path(), false)
        .await
        .unwrap();

    let browser = Browser::start(1000, 700).await;
    let c = &browser.client;
    c.goto(&article).await.unwrap();
    browser
        .wait_for_js(
            "return document.getElementById('downloads').textContent",
            json!("1.234"),
        )
        .await;
    // The button calling window.tally, and the data-tally-event button (clicked on its
    // inner text: the attribute is on an ancestor).
    browser.click("#share").await;
    browser.click("#inner").await;
    // The outbound link and the PDF navigate away; the events must survive that.
    browser.click("#out").await;
    browser
        .wait_for_js("return location.pathname", json!("/elsewhere"))
        .await;
    c.goto(&article).await.unwrap();
    browser.click("#pdf").await;
    browser
        .wait_for_js("return location.pathname", json!("/files/mau-don.pdf"))
        .await;
    // Back on the article, the counter shows the click, once the browser's copy of the
    // counts (cached for 5 s, like every public counter) is stale: the article is loaded
    // again until it does, at most ten times.
    let mut shown = String::new();
    let mut loads = 2;
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        c.goto(&article).await.unwrap();
        loads += 1;
        browser
            .wait_for_js(
                "return document.getElementById('downloads').textContent !== '–'",
                json!(true),
            )
            .await;
        shown = browser.text("#downloads").await;
        if shown == "1.235" {
            break;
        }
    }
    assert_eq!(shown, "1.235", "the live download count");
    browser.screenshot("tracker-downloads-counter").await;

    // A queued call per load of the article (reloads within the repeat window are not
    // views, but the calls are sent); one of every click.
    let want: Vec<(String, u64)> = [
        ("early", loads),
        ("download", 1),
        ("outbound", 1),
        ("share", 1),
        ("subscribe", 1),
    ]
    .iter()
    .map(|(n, e)| ((*n).to_owned(), *e))
    .collect();
    wait_for("every event in ClickHouse", || async {
        report(&http, &app, "stats/events").await == want
    })
    .await;
    // Nothing arrives twice later (a beacon retried, a click handled twice).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(report(&http, &app, "stats/events").await, want);
    assert_eq!(
        report(&http, &app, "stats/events/targets?name=download").await,
        [(file.clone(), 1)],
        "the file's URL, without its fragment"
    );
    assert_eq!(
        report(&http, &app, "stats/events/targets?name=outbound").await,
        [(format!("http://127.0.0.1:{port}/elsewhere"), 1)]
    );
    assert_eq!(
        report(&http, &app, "stats/events/props?name=subscribe&prop=plan").await,
        [("free".to_owned(), 1)]
    );
    assert_eq!(
        report(&http, &app, "stats/events/props?name=share&prop=network").await,
        [("zalo".to_owned(), 1)]
    );
    assert_eq!(
        report(&http, &app, "stats/events/props?name=early&prop=from").await,
        [("queue".to_owned(), loads)]
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");

    browser.close().await;
    app.stop().await;
}
