//! TLS to Redis and ClickHouse (issue 21): views recorded through a Redis that speaks only
//! TLS and asks for a client certificate, and a ClickHouse that speaks only HTTPS, both with
//! certificates of a private CA made by the test; a wrong CA, a missing client certificate
//! and TLS files that cannot be used are refused with errors naming the setting.

mod common;

use common::{Hit, send, wait_for_rollups};
use tally_testkit::{ClickHouseServer, RedisServer, TestApp, TestCerts};

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn views_are_recorded_through_tls_only_redis_and_clickhouse() {
    let certs = TestCerts::generate();
    let redis = RedisServer::start_tls(&certs);
    let clickhouse = ClickHouseServer::start_tls(&certs);
    let mut settings = tally_testkit::settings_for(&redis, &clickhouse);
    assert!(settings.redis.nodes()[0].starts_with("rediss://"));
    assert!(settings.clickhouse.url.starts_with("https://"));
    settings.redis.tls_ca_file = path(certs.ca());
    settings.redis.tls_cert_file = path(certs.client_cert());
    settings.redis.tls_key_file = path(certs.client_key());
    settings.clickhouse.tls_ca_file = path(certs.ca());

    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::new();
    for (page, ip) in [
        ("/a", "203.0.113.1"),
        ("/b", "203.0.113.2"),
        ("/a", "203.0.113.3"),
    ] {
        assert_eq!(send(&http, &app, &Hit::view(page).ip(ip)).await, 204);
    }
    wait_for_rollups(&app, 3).await;
    assert_eq!(common::counters(&http, &app, None).await["total_views"], 3);
    let summary = common::get_admin_json(
        &http,
        &app.url("/api/v1/sites/demo/stats/summary"),
        common::TOKEN,
    )
    .await;
    assert_eq!(summary["views"], 3, "{summary}");
    app.stop().await;

    // A CA that did not sign the servers' certificates: refused, naming the setting.
    let mut wrong = settings.clone();
    wrong.redis.tls_ca_file = path(certs.other_ca());
    let err = tally_redis::Store::connect(&wrong.redis)
        .await
        .err()
        .expect("a wrong CA is refused")
        .to_string();
    assert!(err.contains("redis.tls_ca_file"), "{err}");
    eprintln!("a wrong CA for Redis: {err}");
    let mut wrong = settings.clone();
    wrong.clickhouse.tls_ca_file = path(certs.other_ca());
    let err = tally_clickhouse::Db::new(&wrong.clickhouse)
        .ping()
        .await
        .expect_err("a wrong CA is refused")
        .to_string();
    assert!(err.contains("clickhouse.tls_ca_file"), "{err}");
    eprintln!("a wrong CA for ClickHouse: {err}");
    // Trusting the system's CAs, which did not sign them either.
    let mut system = settings.clone();
    system.clickhouse.tls_ca_file = String::new();
    let err = tally_clickhouse::Db::new(&system.clickhouse)
        .ping()
        .await
        .expect_err("the system's CAs did not sign it")
        .to_string();
    assert!(err.contains("clickhouse.tls_ca_file"), "{err}");
    // This Redis asks for a client certificate.
    let mut anonymous = settings.clone();
    anonymous.redis.tls_cert_file = String::new();
    anonymous.redis.tls_key_file = String::new();
    let refused = match tally_redis::Store::connect(&anonymous.redis).await {
        Err(_) => true,
        Ok(store) => store.ping().await.is_err(),
    };
    assert!(refused, "a client without a certificate was let in");

    // The binary says which setting is wrong, at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("migrate")
        .envs(tally_testkit::env_for(&settings))
        .env("TALLY__CLICKHOUSE__TLS_CA_FILE", certs.other_ca())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("clickhouse.tls_ca_file"), "{stderr}");
    eprintln!("tally migrate with a wrong CA: {}", stderr.trim());
}

#[test]
fn tls_files_that_cannot_be_used_are_refused_when_the_settings_load() {
    let certs = TestCerts::generate();
    let load = |env: &[(&str, String)]| {
        let mut vars = vec![
            (
                "TALLY__REDIS__URL".to_owned(),
                "rediss://127.0.0.1:6380".to_owned(),
            ),
            (
                "TALLY__CLICKHOUSE__URL".to_owned(),
                "https://127.0.0.1:8443".to_owned(),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        tally_core::Settings::load(Some(tally_testkit::config_file()), vars)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        load(&[("TALLY__REDIS__TLS_CA_FILE", path(certs.ca()))]),
        None
    );
    for (key, value, named) in [
        (
            "TALLY__REDIS__TLS_CA_FILE",
            "/nonexistent/ca.pem".to_owned(),
            "redis.tls_ca_file",
        ),
        (
            "TALLY__REDIS__TLS_CA_FILE",
            path(certs.client_key()),
            "redis.tls_ca_file",
        ),
        (
            "TALLY__CLICKHOUSE__TLS_KEY_FILE",
            path(certs.client_cert()),
            "clickhouse.tls_key_file",
        ),
        (
            "TALLY__CLICKHOUSE__TLS_CERT_FILE",
            path(certs.client_cert()),
            "clickhouse.tls_key_file",
        ),
    ] {
        let err = load(&[(key, value.clone())]).unwrap_or_else(|| panic!("{key}={value} accepted"));
        assert!(err.contains(named), "{key}={value}: {err}");
    }
    // TLS files beside a URL without TLS.
    let err = tally_core::Settings::load(
        Some(tally_testkit::config_file()),
        vec![("TALLY__REDIS__TLS_CA_FILE".to_owned(), path(certs.ca()))],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("redis.tls_ca_file") && err.contains("redis.url"),
        "{err}"
    );
}
