//! # tally-testkit
//!
//! Test support, never shipped. It starts private `redis-server` and `clickhouse-server`
//! processes (generated config, temp data directory, free loopback ports) once per test
//! binary, gives each test its own Redis database and ClickHouse database, and runs the real
//! Tally roles on port 0 ([`TestApp`]).
//!
//! Servers die with the test binary, even when it panics or is killed: each is watched by a
//! small shell loop that kills the server and removes its directory once the test process is
//! gone (statics are never dropped, so `Drop` cannot do it).

mod app;
mod browser;
mod server;
mod tls;

use std::sync::{
    OnceLock,
    atomic::{AtomicU32, Ordering},
};

pub use app::TestApp;
pub use browser::{Browser, DESKTOP_UA};
pub use server::{
    ClickHouseCluster, ClickHouseServer, RedisCluster, RedisSentinel, RedisServer, ZooKeeper,
};
use tally_core::Settings;
pub use tls::TestCerts;

/// The Redis and ClickHouse servers shared by the tests of one test binary.
pub struct Services {
    pub redis: RedisServer,
    pub clickhouse: ClickHouseServer,
}

/// The shared services, started on first use.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| Services {
        redis: RedisServer::start(),
        clickhouse: ClickHouseServer::start(),
    })
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// Settings for one test: the reference defaults with a fresh Redis database and a fresh
/// ClickHouse database on the shared servers, listening on port 0, worker tuned for tests
/// (short batch age and claim idle), and one site `demo` allowing `localhost` and
/// `127.0.0.1`, plus an admin token `test-admin-token-0123456789`.
pub fn settings() -> Settings {
    let s = services();
    settings_for(&s.redis, &s.clickhouse)
}

/// The tests' config file: the site `demo` (domains `localhost` and `127.0.0.1`, zone
/// Asia/Ho_Chi_Minh), since Tally has no site by default. Written once per test process.
pub fn config_file() -> &'static std::path::Path {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("tally-test-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[[sites]]\nid = \"demo\"\ndomains = [\"localhost\", \"127.0.0.1\"]\n\
             timezone = \"Asia/Ho_Chi_Minh\"\n",
        )
        .expect("write the tests' config file");
        path
    })
}

/// Like [`settings`], against the given servers (e.g. a private Redis a test will kill).
pub fn settings_for(redis: &RedisServer, clickhouse: &ClickHouseServer) -> Settings {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let env = vec![
        ("TALLY__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "TALLY__SERVER__METRICS_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "TALLY__REDIS__URL".to_owned(),
            redis.url(n % redis::DATABASES),
        ),
        ("TALLY__CLICKHOUSE__URL".to_owned(), clickhouse.url()),
        (
            "TALLY__CLICKHOUSE__DATABASE".to_owned(),
            format!("test_{}_{n}", std::process::id()),
        ),
        ("TALLY__WORKER__MAX_AGE".to_owned(), "100ms".to_owned()),
        ("TALLY__WORKER__CLAIM_IDLE".to_owned(), "1s".to_owned()),
        ("TALLY__WORKER__MAX_BACKOFF".to_owned(), "500ms".to_owned()),
        (
            "TALLY__ADMIN__TOKENS".to_owned(),
            "test-admin-token-0123456789".to_owned(),
        ),
    ];
    Settings::load(Some(config_file()), env).expect("test settings are valid")
}

/// Settings against a Redis Cluster (database 0, the only one a cluster has) and the shared
/// ClickHouse.
pub fn settings_for_cluster(cluster: &RedisCluster) -> Settings {
    let mut s = settings();
    s.redis.cluster = true;
    s.redis.url = cluster.urls().into();
    s
}

/// The environment that makes a `tally` process use `settings` (for tests that run the
/// binary, e.g. to kill it): every key tests change, as `TALLY__SECTION__KEY`.
pub fn env_for(settings: &Settings) -> Vec<(String, String)> {
    let s = settings;
    let d = |d: std::time::Duration| format!("{}ms", d.as_millis());
    vec![
        ("TALLY_CONFIG".into(), config_file().display().to_string()),
        ("TALLY__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("TALLY__SERVER__METRICS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TALLY__REDIS__URL".into(), s.redis.nodes().join(",")),
        ("TALLY__REDIS__CLUSTER".into(), s.redis.cluster.to_string()),
        (
            "TALLY__REDIS__PARTITIONS".into(),
            s.redis.partitions.to_string(),
        ),
        ("TALLY__CLICKHOUSE__URL".into(), s.clickhouse.url.clone()),
        (
            "TALLY__CLICKHOUSE__DATABASE".into(),
            s.clickhouse.database.clone(),
        ),
        (
            "TALLY__WORKER__MAX_ROWS".into(),
            s.worker.max_rows.to_string(),
        ),
        ("TALLY__WORKER__MAX_AGE".into(), d(s.worker.max_age)),
        ("TALLY__WORKER__CLAIM_IDLE".into(), d(s.worker.claim_idle)),
        ("TALLY__WORKER__MAX_BACKOFF".into(), d(s.worker.max_backoff)),
        (
            "TALLY__REDIS__TLS_CA_FILE".into(),
            s.redis.tls_ca_file.clone(),
        ),
        (
            "TALLY__REDIS__TLS_CERT_FILE".into(),
            s.redis.tls_cert_file.clone(),
        ),
        (
            "TALLY__REDIS__TLS_KEY_FILE".into(),
            s.redis.tls_key_file.clone(),
        ),
        (
            "TALLY__CLICKHOUSE__TLS_CA_FILE".into(),
            s.clickhouse.tls_ca_file.clone(),
        ),
        (
            "TALLY__CLICKHOUSE__TLS_CERT_FILE".into(),
            s.clickhouse.tls_cert_file.clone(),
        ),
        (
            "TALLY__CLICKHOUSE__TLS_KEY_FILE".into(),
            s.clickhouse.tls_key_file.clone(),
        ),
        (
            "TALLY__CLICKHOUSE__CLUSTER".into(),
            s.clickhouse.cluster.clone(),
        ),
        ("TALLY_LOG".into(), "info".into()),
    ]
}

/// Constants of the private Redis servers.
pub mod redis {
    /// Databases each private Redis offers; tests take them round-robin.
    pub const DATABASES: u32 = 4096;
}
