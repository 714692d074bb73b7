//! Helpers shared by the end-to-end tests.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_testkit::TestApp;

pub const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
/// The admin token of the test settings.
pub const TOKEN: &str = "test-admin-token-0123456789";
pub const GOOGLEBOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A tracking request as the tracker sends it.
pub struct Hit<'a> {
    pub kind: &'a str,
    pub path: &'a str,
    pub ua: &'a str,
    pub ip: Option<&'a str>,
    pub sid: &'a str,
}

impl<'a> Hit<'a> {
    pub fn view(path: &'a str) -> Self {
        Self {
            kind: "pageview",
            path,
            ua: CHROME,
            ip: None,
            sid: "tab1",
        }
    }
    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }
    pub fn ua(mut self, ua: &'a str) -> Self {
        self.ua = ua;
        self
    }
    pub fn ip(mut self, ip: &'a str) -> Self {
        self.ip = Some(ip);
        self
    }
    pub fn sid(mut self, sid: &'a str) -> Self {
        self.sid = sid;
        self
    }
}

/// Posts `hit` for site `demo` and returns the status.
pub async fn send(http: &reqwest::Client, app: &TestApp, hit: &Hit<'_>) -> u16 {
    send_to(http, &app.url(""), hit).await
}

/// Posts `hit` for site `demo` to the server at `base` (a `TestApp` or a `Served` process)
/// and returns the status.
pub async fn send_to(http: &reqwest::Client, base: &str, hit: &Hit<'_>) -> u16 {
    let body = json!({
        "t": hit.kind, "site": "demo", "url": format!("http://localhost{}", hit.path),
        "title": "T", "sid": hit.sid,
    });
    let mut req = http
        .post(format!("{base}/collect"))
        .header("origin", "http://localhost")
        .header("user-agent", hit.ua)
        .header("content-type", "text/plain")
        .body(body.to_string());
    if let Some(ip) = hit.ip {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The public counters of site `demo` (and `page`), once every accepted event is applied
/// (online and visits trail the views by a moment; `tests/trailing.rs` tests how long).
pub async fn counters(http: &reqwest::Client, app: &TestApp, page: Option<&str>) -> Value {
    app.settled().await;
    let mut url = app.url("/api/v1/sites/demo/counters");
    if let Some(page) = page {
        url = format!("{url}?page={page}");
    }
    get_json(http, &url).await
}

/// Polls `check` until it holds (at most 30 s).
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until ClickHouse holds `events` events and every stream is empty. The worker
/// deletes a stream entry only after the insert of its events returned, and an insert
/// returns after the rollups' materialized views ran; counting the events table alone is
/// not enough, since it takes a block before the views do.
pub async fn wait_for_rollups(app: &TestApp, events: u64) {
    let db = app.db();
    let store = app.store().await;
    wait_for(&format!("{events} events and their rollups"), || async {
        let mut backlog = 0;
        for p in 0..app.settings.redis.partitions {
            backlog += store.stream_len(p).await.unwrap_or(1);
        }
        backlog == 0 && db.count_events().await.unwrap_or(0) == events
    })
    .await;
}

/// Fills in what the Redis write script would for events inserted straight into ClickHouse:
/// per session, in time order, the page view's ordinal, the gap since the session's previous
/// event, and whether the event started the visit.
pub fn sequence(events: &mut [tally_core::Event]) {
    use std::collections::HashMap;
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].ts_ms);
    let mut state: HashMap<(String, u64), (i64, u16)> = HashMap::new();
    for i in order {
        let e = &mut events[i];
        if e.session == 0 {
            continue;
        }
        let entry = state
            .entry((e.site.clone(), e.session))
            .or_insert((e.ts_ms, 0));
        e.gap_ms = (e.ts_ms - entry.0).max(0) as u32;
        entry.0 = e.ts_ms;
        if e.kind == tally_core::EventKind::Pageview {
            entry.1 += 1;
            e.visit_seq = entry.1;
        }
        e.new_visit = e.visit_seq == 1;
    }
}

/// GETs `url` and parses the JSON body.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// GETs `url` and returns the body as text.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// GETs `url` with admin `token` and parses the JSON body.
pub async fn get_admin_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every day from 1970-01-02 to 2100-12-31 in UTC: "all time" for the statistics queries.
pub fn all_time(site: &str) -> tally_clickhouse::stats::Range {
    tally_clickhouse::stats::Range::new(
        site,
        &tally_core::dates::DayRange {
            from: chrono::NaiveDate::from_ymd_opt(1970, 1, 2).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2100, 12, 31).unwrap(),
            tz: chrono_tz::UTC,
        },
    )
}

/// A free loopback port (bound and released: a test races nobody for it in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tally serve` process — the real binary — for `settings`, on free loopback ports, with
/// `extra` settings as `TALLY__…` variables; killed when dropped.
pub struct Served {
    child: std::process::Child,
    pub base: String,
    pub metrics: String,
}

impl Served {
    pub async fn start(
        settings: &tally_core::Settings,
        roles: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_logging_to(settings, roles, extra, None).await
    }

    /// Like [`start`](Self::start), with the process's log (stderr) going to `log` (the
    /// test's own stderr with `None`).
    pub async fn start_logging_to(
        settings: &tally_core::Settings,
        roles: &str,
        extra: &[(&str, &str)],
        log: Option<&std::fs::File>,
    ) -> Self {
        Self::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_tally")),
            settings,
            roles,
            extra,
            log,
        )
        .await
    }

    /// Like [`start_logging_to`](Self::start_logging_to), running the binary at `binary`
    /// (an installed one). A free port can be taken by another test between being found and
    /// being listened on: a process that exits before it answers is started again on other
    /// ports (three times at most).
    pub async fn start_binary(
        binary: &std::path::Path,
        settings: &tally_core::Settings,
        roles: &str,
        extra: &[(&str, &str)],
        log: Option<&std::fs::File>,
    ) -> Self {
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let (port, metrics) = (free_port(), free_port());
            let stderr = match log {
                Some(file) => std::process::Stdio::from(file.try_clone().unwrap()),
                None => std::process::Stdio::inherit(),
            };
            let child = std::process::Command::new(binary)
                .args(["serve", "--roles", roles])
                .envs(tally_testkit::env_for(settings))
                .env("TALLY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .env(
                    "TALLY__SERVER__METRICS_LISTEN",
                    format!("127.0.0.1:{metrics}"),
                )
                .env("TALLY__ADMIN__TOKENS", "test-admin-token-0123456789")
                .env("TALLY_LOG", "warn")
                .envs(extra.iter().map(|(k, v)| (*k, *v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap();
            let mut served = Self {
                child,
                base: format!("http://127.0.0.1:{port}"),
                metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            };
            let health = served.url("/healthz");
            let mut exited = None;
            wait_for("the tally process to listen", || {
                exited = served.child.try_wait().unwrap();
                let up = exited.is_none().then(|| http.get(&health).send());
                async move {
                    match up {
                        Some(request) => request.await.is_ok(),
                        None => true,
                    }
                }
            })
            .await;
            match exited {
                None => return served,
                Some(status) => eprintln!("tally serve exited before listening ({status}); again"),
            }
        }
        panic!("tally serve exited before listening three times (see its log)");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves the router `app` makes for its port on a free loopback port for the rest of the
/// test (a publisher's own web server, on another origin than Tally's); returns the port.
pub async fn serve(app: impl FnOnce(u16) -> axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = app(port);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// The text of Redis' `INFO section`.
pub async fn redis_info(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap()
}

/// The HTML of an admin page, signed in with the test token from `ip`.
pub async fn admin_html(base: &str, path: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{base}/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=test-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let r = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

/// Sends `sql` to the test's ClickHouse as it is (statements the store has no call for)
/// and returns the answer.
pub async fn run_sql(settings: &tally_core::Settings, sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(&settings.clickhouse.url)
        .body(sql.to_owned())
        .send()
        .await
        .unwrap();
    let ok = response.status().is_success();
    let text = response.text().await.unwrap();
    assert!(ok, "{sql}: {text}");
    text
}

/// Rows of `table` (in the test's database) that belong to `site`.
pub async fn site_rows(settings: &tally_core::Settings, table: &str, site: &str) -> u64 {
    let database = &settings.clickhouse.database;
    run_sql(
        settings,
        &format!("SELECT count() FROM {database}.{table} WHERE site = '{site}'"),
    )
    .await
    .trim()
    .parse()
    .unwrap()
}

/// The value of the sample `series` (a metric name, with its labels if it has any, e.g.
/// `tally_worker_stream_lag{partition="2"}`) in a Prometheus text; `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The public counters of site `demo` from a server at `base`, with `query` (e.g.
/// `?page=/a`, or empty).
pub async fn demo_counters(http: &reqwest::Client, base: &str, query: &str) -> Value {
    get_json(http, &format!("{base}/api/v1/sites/demo/counters{query}")).await
}

/// A token limited to the site `demo`: an admin of it, not an owner.
pub const LIMITED: &str = "limited-token-demo-0123456789";

/// Settings on a Redis of the test's own (the sites' announcement is one key per Redis
/// database, and some tests flush it), with the owner token [`TOKEN`] and [`LIMITED`].
pub fn settings_with_limited_token(redis: &tally_testkit::RedisServer) -> tally_core::Settings {
    use tally_core::{SiteId, settings::AdminToken};
    let mut s = tally_testkit::settings_for(redis, &tally_testkit::services().clickhouse);
    s.admin.tokens = vec![
        AdminToken::All(TOKEN.into()),
        AdminToken::Limited {
            token: LIMITED.into(),
            sites: vec![SiteId::parse("demo").unwrap()],
        },
    ];
    s
}

/// How an admin API call is authorised.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    Token(&'a str),
    Cookie(&'a str),
    None,
}

/// (status, JSON body — `null` when there is none) of an admin API call.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    request = match auth {
        Auth::Token(token) => request.bearer_auth(token),
        Auth::Cookie(cookie) => request.header("cookie", cookie),
        Auth::None => request,
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Runs the Python `script` on `bytes` written to a file (its path is `sys.argv[1]`, ending
/// `.ext`) and parses what it prints as JSON: how the tests read files the way another
/// program would (Python's `csv` and `zipfile`).
pub fn python_json(script: &str, bytes: &[u8], ext: &str) -> Value {
    let dir = std::env::temp_dir().join(format!("tally-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}-{}.{ext}", bytes.len(), content_hash(bytes)));
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A name telling two files of the same length apart (a hash of their bytes).
fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
