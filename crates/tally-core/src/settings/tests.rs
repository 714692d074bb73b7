use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A config file of `text`, with a site `demo` added when it has none (Tally needs one).
fn file(text: &str) -> tempfile_lite::TempFile {
    let site = "\n[[sites]]\nid = \"demo\"\ndomains = [\"localhost\", \"127.0.0.1\"]\n\
                timezone = \"Asia/Ho_Chi_Minh\"\n";
    if text.contains("[[sites]]") {
        tempfile_lite::TempFile::with(text)
    } else {
        tempfile_lite::TempFile::with(&format!("{text}{site}"))
    }
}

/// A tiny temp-file helper: tally-core has no I/O dependencies to lean on.
mod tempfile_lite {
    use std::path::{Path, PathBuf};

    pub(super) struct TempFile(PathBuf);

    impl TempFile {
        pub(super) fn with(text: &str) -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("tally-cfg-{}-{n}.toml", std::process::id()));
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            Self(path)
        }
        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn err_text(result: Result<Settings, ConfigError>) -> String {
    result.expect_err("config should be refused").to_string()
}

#[test]
fn defaults_load_from_the_embedded_reference() {
    // Defaults have no site (sites are created live, or declared in the file).
    let s = Settings::load(None, env(&[])).unwrap();
    assert!(s.sites.is_empty());
    let empty = file("");
    let s = Settings::load(Some(empty.path()), env(&[])).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.redis.nodes()[0], "redis://127.0.0.1:6379");
    assert_eq!(s.redis.partitions, 4);
    assert_eq!(s.clickhouse.url, "http://127.0.0.1:8123");
    assert_eq!(s.clickhouse.database, "tally");
    assert_eq!(s.worker.max_rows, 50_000);
    assert_eq!(s.worker.max_age, Duration::from_secs(1));
    assert_eq!(s.worker.claim_idle, Duration::from_secs(30));
    assert_eq!(s.tracking.online_window, Duration::from_secs(300));
    assert_eq!(s.tracking.visit_timeout, Duration::from_secs(1800));
    assert_eq!(s.tracking.heartbeat, Duration::from_secs(30));
    assert_eq!(s.tracking.repeat_view_window, Duration::from_secs(1800));
    assert_eq!(s.admin.session_max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(s.server.public_url, "");
    assert!(s.admin.tokens.is_empty());
    assert_eq!(s.sites.len(), 1);
    assert_eq!(s.sites[0].id.as_str(), "demo");
    assert_eq!(s.sites[0].timezone, Tz::Asia__Ho_Chi_Minh);
    assert!(s.sites[0].public_counters);
}

#[test]
fn a_file_overrides_defaults_and_keeps_the_rest() {
    let f = file(
        r#"
        [redis]
        partitions = 8
        [[sites]]
        id = "news"
        domains = ["news.example"]
        "#,
    );
    let s = Settings::load(Some(f.path()), env(&[])).unwrap();
    assert_eq!(s.redis.partitions, 8);
    assert_eq!(s.redis.nodes()[0], "redis://127.0.0.1:6379");
    assert_eq!(s.sites.len(), 1);
    assert_eq!(s.sites[0].id.as_str(), "news");
    assert_eq!(s.sites[0].timezone, Tz::UTC, "timezone defaults to UTC");
}

#[test]
fn an_env_override_wins_over_the_file() {
    let f = file("[redis]\nurl = \"redis://file:6379\"\n");
    let s = Settings::load(
        Some(f.path()),
        env(&[
            ("TALLY__REDIS__URL", "redis://env:6379/3"),
            ("TALLY__REDIS__PARTITIONS", "16"),
            ("TALLY__CLICKHOUSE__PASSWORD", "1234"),
            (
                "TALLY__SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.1.1/32",
            ),
            ("TALLY__WORKER__MAX_AGE", "250ms"),
            ("UNRELATED", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(s.redis.nodes()[0], "redis://env:6379/3");
    assert_eq!(s.redis.partitions, 16);
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&s.clickhouse.password),
        "1234",
        "kept as a string"
    );
    assert_eq!(s.server.trusted_proxies.len(), 2);
    assert_eq!(s.worker.max_age, Duration::from_millis(250));
}

#[test]
fn bad_values_are_refused_with_the_key_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("TALLY__REDIS__PARTITIONS", "many")], "redis.partitions"),
        (&[("TALLY__REDIS__PARTITIONS", "0")], "redis.partitions"),
        (&[("TALLY__REDIS__URL", "http://x")], "redis.url"),
        (
            &[("TALLY__CLICKHOUSE__DATABASE", "x; DROP")],
            "clickhouse.database",
        ),
        (
            &[("TALLY__CLICKHOUSE__CLUSTER", "tally ON CLUSTER x")],
            "clickhouse.cluster",
        ),
        (&[("TALLY__WORKER__MAX_AGE", "soon")], "worker.max_age"),
        (&[("TALLY__SERVER__LISTEN", "nowhere")], "server.listen"),
        (
            &[("TALLY__SERVER__TRUSTED_PROXIES", "10.0.0.0/99")],
            "server.trusted_proxies",
        ),
        (&[("TALLY__REDIS__NOPE", "1")], "redis.nope"),
        (&[("TALLY__BEACON__BUFFER", "10")], "beacon.buffer"),
        (
            &[("TALLY__SERVER__COUNTRY_HEADER", "CF IPCountry")],
            "server.country_header",
        ),
        (
            &[("TALLY__TRACKING__REPEAT_VIEW_WINDOW", "2h")],
            "tracking.repeat_view_window",
        ),
        (
            &[("TALLY__ADMIN__SESSION_MAX_AGE", "1h")],
            "admin.session_max_age",
        ),
        (
            &[("TALLY__SERVER__PUBLIC_URL", "stats.example.vn")],
            "server.public_url",
        ),
        (&[("TALLY__BEACON__PROCESSES", "0")], "beacon.processes"),
        (
            &[("TALLY__SERVER__MAX_CONNECTIONS", "0")],
            "server.max_connections",
        ),
        (
            &[("TALLY__SERVER__HEADER_READ_TIMEOUT", "0s")],
            "server.header_read_timeout",
        ),
        (
            &[("TALLY__SERVER__IDLE_TIMEOUT", "0s")],
            "server.idle_timeout",
        ),
    ];
    for (vars, key) in cases {
        let text = err_text(Settings::load(None, env(vars)));
        assert!(text.contains(key), "{vars:?}: {text:?} should name {key}");
    }
}

#[test]
fn bad_files_are_refused_with_the_key_named() {
    let cases = [
        ("[server]\nlisten = 8080\n", "server.listen"),
        ("[servr]\nlisten = \"x\"\n", "servr"),
        (
            "[[sites]]\nid = \"Bad Id\"\ndomains = [\"a\"]\n",
            "sites[0].id",
        ),
        (
            "[[sites]]\nid = \"a\"\ndomains = [\"a\"]\ntimezone = \"Mars/Base\"\n",
            "sites[0].timezone",
        ),
        (
            "[[sites]]\nid = \"a\"\ndomains = [\"a\"]\ncolour = 1\n",
            "sites[0]",
        ),
        ("[[sites]]\nid = \"a\"\ndomains = []\n", "sites[0].domains"),
        (
            "[[sites]]\nid = \"a\"\ndomains = [\"https://a\"]\n",
            "sites[0].domains",
        ),
        (
            "[[sites]]\nid = \"a\"\ndomains = [\"a\"]\n[[sites]]\nid = \"a\"\ndomains = [\"a\"]\n",
            "sites[1].id",
        ),
        ("[admin]\ntokens = [\"short\"]\n", "admin.tokens[0]"),
        // Ten characters, as the issue's attacker would hope for: refused.
        ("[admin]\ntokens = [\"0123456789\"]\n", "admin.tokens[0]"),
        (
            "[admin]\ntokens = [\"twenty-three-characters\"]\n",
            "admin.tokens[0]",
        ),
        (
            "[admin]\ntokens = [{ token = \"long-enough-token-0123456789\", sites = [\"ghost\"] }]\n",
            "admin.tokens[0].sites",
        ),
    ];
    for (text, key) in cases {
        let f = file(text);
        let msg = err_text(Settings::load(Some(f.path()), env(&[])));
        assert!(msg.contains(key), "{text:?}: {msg:?} should name {key}");
    }
    let msg = err_text(Settings::load(
        Some(Path::new("/nonexistent/tally.toml")),
        env(&[]),
    ));
    assert!(msg.contains("/nonexistent/tally.toml"), "{msg}");
}

#[test]
fn limited_tokens_see_only_their_sites() {
    let f = file(
        r#"
        [admin]
        tokens = ["all-sites-token-0123456789", { token = "only-news-token-0123456789", sites = ["news"] }]
        [[sites]]
        id = "news"
        domains = ["news.example"]
        [[sites]]
        id = "ward"
        domains = ["ward.example"]
        "#,
    );
    let s = Settings::load(Some(f.path()), env(&[])).unwrap();
    let news = SiteId::parse("news").unwrap();
    let ward = SiteId::parse("ward").unwrap();
    assert!(s.admin.tokens[0].allows(&ward));
    assert!(s.admin.tokens[1].allows(&news));
    assert!(!s.admin.tokens[1].allows(&ward));
}

#[test]
fn redacted_output_hides_every_secret() {
    let f = file(
        r#"
        [redis]
        url = "redis://tally:redis-secret@cache:6379"
        [clickhouse]
        password = "ch-secret"
        [admin]
        tokens = ["admin-secret-1-0123456789", { token = "admin-secret-2-0123456789", sites = ["demo"] }]
        "#,
    );
    let s = Settings::load(Some(f.path()), env(&[])).unwrap();
    let out = s.to_redacted_toml();
    for secret in [
        "redis-secret",
        "ch-secret",
        "admin-secret-1-0123456789",
        "admin-secret-2-0123456789",
    ] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains("redis://tally:********@cache:6379"));
    // Nor does Debug (logs of a settings value) or the URL shown in messages.
    let debug = format!("{s:?}");
    for secret in [
        "redis-secret",
        "ch-secret",
        "admin-secret-1",
        "admin-secret-2",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug:\n{debug}");
    }
    assert_eq!(s.redis.shown_url(), "redis://tally:********@cache:6379");
    assert_eq!(s.redis.nodes(), ["redis://tally:redis-secret@cache:6379"]);
    // The printed configuration is itself a loadable config file.
    let f2 = file(&out.replace(MASK, "replaced-secret-0123456789"));
    Settings::load(Some(f2.path()), env(&[])).unwrap();
}

#[test]
fn each_beacon_enforces_its_share_of_the_limits() {
    let only_a_site = file("");
    let mut s = Settings::load(Some(only_a_site.path()), env(&[])).unwrap();
    assert_eq!(s.beacon.share_of(3000), 3000);
    s.beacon.processes = 2;
    assert_eq!(s.beacon.share_of(3000), 1500);
    s.beacon.processes = 7;
    assert_eq!(s.beacon.share_of(120), 18, "rounded up");
    assert_eq!(s.beacon.share_of(0), 0, "no limit stays no limit");
}
