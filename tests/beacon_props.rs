//! Property test of the whole HTTP path: whatever a client posts, the beacon never panics and
//! answers only with a status of the contract.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use tally_testkit::TestApp;

const CONTRACT: [u16; 5] = [204, 400, 403, 404, 413];

fn bodies() -> impl Strategy<Value = (Vec<u8>, String)> {
    let origin = prop_oneof![
        Just("http://localhost".to_owned()),
        Just("https://evil.example".to_owned()),
        Just("null".to_owned()),
        "\\PC{0,20}",
    ];
    let raw = proptest::collection::vec(any::<u8>(), 0..5000);
    let structured = (
        prop_oneof![
            Just("pageview".to_owned()),
            Just("ping".to_owned()),
            Just("leave".to_owned()),
            "\\PC{0,10}"
        ],
        prop_oneof![
            Just("demo".to_owned()),
            Just("other".to_owned()),
            "\\PC{0,10}"
        ],
        prop_oneof![
            "http://localhost/\\PC{0,40}",
            "https://[a-z.]{1,12}/\\PC{0,40}",
            "\\PC{0,60}",
        ],
        proptest::option::of("\\PC{0,700}"),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(t, site, url, title, w)| {
            json!({"t": t, "site": site, "url": url, "title": title, "w": w})
                .to_string()
                .into_bytes()
        });
    (prop_oneof![raw, structured], origin)
}

#[test]
fn arbitrary_requests_get_only_contract_statuses() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut settings = tally_testkit::settings();
    settings.beacon.rate_limit_per_minute = 0;
    let app = rt.block_on(TestApp::spawn(settings));
    let http = reqwest::Client::new();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&bodies(), |(body, origin)| {
            let status = rt.block_on(async {
                let mut req = http
                    .post(app.url("/collect"))
                    .header("user-agent", common::CHROME)
                    .body(body.clone());
                if let Ok(origin) = reqwest::header::HeaderValue::from_str(&origin) {
                    req = req.header("origin", origin);
                }
                req.send().await.unwrap().status().as_u16()
            });
            prop_assert!(
                CONTRACT.contains(&status),
                "status {status} for {:?}",
                String::from_utf8_lossy(&body)
            );
            Ok(())
        })
        .unwrap();
    // The server is still healthy after all of it.
    let health =
        rt.block_on(async { http.get(app.url("/healthz")).send().await.unwrap().status() });
    assert_eq!(health, 200);
}
