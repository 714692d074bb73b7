//! What one anonymous client can do to a server on the public internet, through the real
//! binary: fill Redis, get around the site checks or the rate limits, hold connections.

mod common;

use std::time::Duration;

use common::{CHROME, Hit, Served, admin_html};
use serde_json::json;

/// Pages held live in the bounded-state test (`tracking.max_pages`).
const CAP: u64 = 1_000;

/// 20,000 page views of made-up pages with 512-byte titles from 20 addresses: the site's
/// live page hash stays at the cap, Redis grows by less than the bound below, every view is
/// in the totals and in ClickHouse, and the admin page shows the "(other pages)" row.
#[tokio::test]
async fn made_up_pages_cannot_fill_redis() {
    // A private Redis: its memory figure is this test's alone.
    let redis = tally_testkit::RedisServer::start();
    let settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    let served = Served::start(
        &settings,
        "beacon,worker,api",
        &[
            ("TALLY__TRACKING__MAX_PAGES", &CAP.to_string()),
            ("TALLY__SERVER__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#),
        ],
    )
    .await;
    let client = redis::Client::open(settings.redis.nodes()[0]).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let store = tally_redis::Store::connect(&settings.redis).await.unwrap();
    let before = store.memory().await.unwrap().used;

    const VIEWS: usize = 20_000;
    const SENDERS: usize = 40;
    let title = "T".repeat(512);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, url, title) = (
            reqwest::Client::new(),
            served.url("/collect"),
            title.clone(),
        );
        senders.push(tokio::spawn(async move {
            let ip = format!("203.0.113.{}", s % 20 + 1);
            for i in 0..VIEWS / SENDERS {
                let page = format!("/made-up/{s}/{i}/{:x}", rand_u64());
                let body = json!({"t": "pageview", "site": "demo",
                    "url": format!("http://localhost{page}"), "title": title});
                let r = http
                    .post(&url)
                    .header("user-agent", CHROME)
                    .header("x-forwarded-for", &ip)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204, "view {i} of sender {s}");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }

    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    wait_for_all(&settings, &db, &store, VIEWS as u64).await;

    // What stays: per page held live its address, count and title (~1.2 KB here: 1.2 MB),
    // the online sets of the window and a marker per beacon batch (an hour). Measured 1.9 MB;
    // without the cap the same views left 24.6 MB, and every further made-up page 1.2 KB.
    let grown = store.memory().await.unwrap().used.saturating_sub(before);
    const BOUND: u64 = 5 << 20;
    eprintln!("redis grew by {grown} bytes for {VIEWS} made-up pages");

    let site = tally_core::SiteId::parse("demo").unwrap();
    let keys = tally_redis::Keys::new(site.partition(settings.redis.partitions));
    let pages: u64 = redis::cmd("HLEN")
        .arg(keys.views("demo"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        pages,
        CAP + 1,
        "the cap's pages and the \"other pages\" row"
    );
    let titles: u64 = redis::cmd("HLEN")
        .arg(keys.titles("demo"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(titles <= CAP, "{titles} titles");
    let other: u64 = redis::cmd("HGET")
        .arg(keys.views("demo"))
        .arg("")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(other, VIEWS as u64 - CAP);
    assert!(grown < BOUND, "Redis grew by {grown} bytes");

    let http = reqwest::Client::new();
    let counters = common::demo_counters(&http, &served.base, "").await;
    assert_eq!(counters["total_views"], VIEWS as u64, "{counters}");
    let summary = db.summary(&common::all_time("demo")).await.unwrap();
    assert_eq!(summary.views, VIEWS as u64);
    let distinct = common::run_sql(
        &settings,
        &format!(
            "SELECT uniqExact(page) FROM {}.events WHERE kind = 'pageview'",
            settings.clickhouse.database
        ),
    )
    .await;
    assert_eq!(
        distinct.trim(),
        VIEWS.to_string(),
        "ClickHouse keeps every page"
    );

    let html = admin_html(&served.base, "/admin/sites/demo").await;
    assert!(html.contains("(other pages)"), "the live row");
    assert!(html.contains("id=\"page-cap\""), "the cap is shown");
}

/// Waits until ClickHouse holds `events` events and every stream is empty.
async fn wait_for_all(
    settings: &tally_core::Settings,
    db: &tally_clickhouse::Db,
    store: &tally_redis::Store,
    events: u64,
) {
    let start = std::time::Instant::now();
    loop {
        let mut backlog = 0;
        for p in 0..settings.redis.partitions {
            backlog += store.stream_len(p).await.unwrap_or(1);
        }
        if backlog == 0 && db.count_events().await.unwrap_or(0) == events {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{events} events in ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// `INFO commandstats` calls of `command` so far.
async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    common::redis_info(conn, "commandstats")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A realtime read of a site with 50,000 pages being read looks at the 200 with the latest
/// events (one reader count each), not at all 50,000, and still finds the most read.
#[tokio::test]
async fn a_realtime_read_of_50000_active_pages_reads_200() {
    let redis = tally_testkit::RedisServer::start();
    let settings = tally_testkit::settings_for(&redis, &tally_testkit::services().clickhouse);
    let store = tally_redis::Store::connect(&settings.redis).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    tally::bench::seed_realtime(&settings, &store, 50_000, now)
        .await
        .unwrap();
    let client = redis::Client::open(settings.redis.nodes()[0]).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The site's online figure is one read of its presence hash, a page's one ZCOUNT.
    let before = calls(&mut conn, "zcount").await + calls(&mut conn, "hgetall").await;
    let site = tally_core::SiteId::parse("demo").unwrap();
    let window = settings.tracking.online_window.as_millis() as i64;
    let rt = store.realtime(&site, now, window, 30, 10).await.unwrap();
    let counted = calls(&mut conn, "zcount").await + calls(&mut conn, "hgetall").await - before;
    assert_eq!(
        counted,
        tally_redis::REALTIME_CANDIDATES as u64 + 1,
        "one count per page read, and the site's"
    );
    assert_eq!(tally_redis::REALTIME_CANDIDATES, 200);
    assert_eq!(rt.online, 50_000 + 55);
    assert_eq!(rt.live_pages, 50_000);
    assert_eq!(rt.pages.len(), 10);
    assert_eq!(rt.pages[0], ("/live/49999".into(), "Bài 49999".into(), 11));
    assert_eq!(rt.pages[9], ("/live/49990".into(), "Bài 49990".into(), 2));
}

/// Reads from `stream` until it is closed by the server (Ok) or `limit` passes (Err),
/// returning how long it took; whatever the server sent is discarded.
async fn closed_within(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> Result<Duration, ()> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Err(()),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A client that sends its header one byte a second is cut off within the header timeout;
/// one that goes quiet after an answer is cut off after the idle timeout.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let settings = tally_testkit::settings();
    let served = Served::start(
        &settings,
        "beacon,api",
        &[
            ("TALLY__SERVER__HEADER_READ_TIMEOUT", "2s"),
            ("TALLY__SERVER__IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let addr = served.base.trim_start_matches("http://").to_owned();

    // One byte a second: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" would take 36 s.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut cut_after = None;
    for byte in request {
        let closed = slow.write_all(&[*byte]).await.is_err()
            || closed_within(&mut slow, Duration::from_secs(1))
                .await
                .is_ok();
        if closed {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slow client was never cut off");
    assert!(
        cut_after >= Duration::from_millis(1500) && cut_after < Duration::from_millis(3500),
        "cut off after {cut_after:?} (header timeout 2 s)"
    );

    // A whole request, its answer, then silence: closed after about a second.
    let mut quiet = tokio::net::TcpStream::connect(&addr).await.unwrap();
    quiet.write_all(request).await.unwrap();
    let idle = closed_within(&mut quiet, Duration::from_secs(5))
        .await
        .expect("an idle connection was never closed");
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
}

/// Sends a request on `stream` and reads its answer's status line (keep-alive).
async fn ask(stream: &mut tokio::net::TcpStream, path: &str, limit: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        // The answers here are small: the header and a short JSON body.
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}")) {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&got).lines().next()?.to_owned())
    })
    .await
    .ok()
    .flatten()
}

/// At the connection cap a new connection waits, while the open ones keep being answered;
/// it is answered once one of them closes.
#[tokio::test]
async fn connections_past_the_cap_wait_while_the_others_are_answered() {
    let settings = tally_testkit::settings();
    let served = Served::start(
        &settings,
        "beacon,api",
        &[("TALLY__SERVER__MAX_CONNECTIONS", "4")],
    )
    .await;
    let addr = served.base.trim_start_matches("http://").to_owned();
    let second = Duration::from_secs(1);
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert_eq!(
            ask(&mut c, "/healthz", second * 5).await.unwrap(),
            "HTTP/1.1 200 OK"
        );
        open.push(c);
    }
    // The fifth connects (the kernel queues it) but is not served...
    let mut fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let status = ask(&mut fifth, "/healthz", second * 10).await;
        (status, started.elapsed())
    });
    tokio::time::sleep(second).await;
    assert!(
        !waiting.is_finished(),
        "the fifth connection was served at the cap"
    );
    // ... while the four are.
    for c in &mut open {
        assert_eq!(
            ask(c, "/healthz", second * 5).await.unwrap(),
            "HTTP/1.1 200 OK"
        );
    }
    assert!(!waiting.is_finished());
    // One closes: the fifth gets its answer.
    drop(open.pop());
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(waited >= second, "waited {waited:?}");
}

/// Two beacon processes behind one proxy, each told that two share the clients
/// (`beacon.processes = 2`): one address spread over both gets the per-address budget once,
/// not twice; so do two addresses of one IPv6 /64.
#[tokio::test]
async fn two_beacons_do_not_double_a_clients_budget() {
    const LIMIT: usize = 40;
    let settings = tally_testkit::settings();
    let limit = LIMIT.to_string();
    let extra = [
        ("TALLY__BEACON__RATE_LIMIT_PER_MINUTE", limit.as_str()),
        ("TALLY__BEACON__PROCESSES", "2"),
        ("TALLY__SERVER__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#),
    ];
    let beacons = [
        Served::start(&settings, "beacon", &extra).await,
        Served::start(&settings, "beacon", &extra).await,
    ];
    let http = reqwest::Client::new();
    // Round robin, as a proxy spreads one client's requests; twice the budget is sent.
    let accepted = |addresses: [&'static str; 2]| {
        let (http, bases) = (http.clone(), beacons.each_ref().map(|b| b.base.clone()));
        async move {
            let mut accepted = 0;
            for i in 0..2 * LIMIT {
                let page = format!("/budget/{i}");
                let hit = Hit::view(&page).ip(addresses[i / 2 % 2]);
                match common::send_to(&http, &bases[i % 2], &hit).await {
                    204 => accepted += 1,
                    429 => {}
                    other => panic!("status {other}"),
                }
            }
            accepted
        }
    };
    assert_eq!(
        accepted(["203.0.113.7", "203.0.113.7"]).await,
        LIMIT,
        "one address"
    );
    assert_eq!(
        accepted(["2001:db8:5:6::1", "2001:db8:5:6:ffff::2"]).await,
        LIMIT,
        "two addresses of one /64"
    );
    assert_eq!(
        accepted(["203.0.113.8", "203.0.113.8"]).await,
        LIMIT,
        "another address has its own budget"
    );
}

/// No password or token in `tally config`, nor in what `tally serve` says when it cannot
/// reach Redis.
#[test]
fn secrets_stay_out_of_the_output() {
    let secrets = [
        (
            "TALLY__REDIS__URL",
            "redis://:redis-pass-0123@127.0.0.1:1/0",
        ),
        ("TALLY__CLICKHOUSE__PASSWORD", "clickhouse-pass-0123"),
        ("TALLY__ADMIN__TOKENS", "admin-token-secret-0123456789"),
    ];
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(args)
            .envs(secrets)
            .env("TALLY_CONFIG", tally_testkit::config_file())
            .env("TALLY__SERVER__LISTEN", "127.0.0.1:0")
            .env("TALLY__SERVER__METRICS_LISTEN", "")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, config) = run(&["config"]);
    assert!(ok, "{config}");
    assert!(
        config.contains("redis://:********@127.0.0.1:1/0"),
        "{config}"
    );
    let (ok, failed) = run(&["serve", "--roles", "beacon"]);
    assert!(!ok, "nothing listens on port 1");
    assert!(
        failed.contains("cannot connect to Redis at redis://:********@127.0.0.1:1/0"),
        "{failed}"
    );
    for (_, secret) in secrets {
        let secret = secret
            .trim_start_matches("redis://:")
            .split('@')
            .next()
            .unwrap();
        assert!(
            !config.contains(secret),
            "{secret} in tally config:\n{config}"
        );
        assert!(!failed.contains(secret), "{secret} in the error:\n{failed}");
    }
}

/// A tracker on an allowed origin that posts `application/json` is preflighted: the
/// preflight is answered and the POST counted. Every response carries a request id (a
/// proxy's is kept), and the log line of the request names it.
#[tokio::test]
async fn preflighted_posts_and_request_ids() {
    let settings = tally_testkit::settings();
    let log = tempfile::NamedTempFile::new().unwrap();
    let served = Served::start_logging_to(
        &settings,
        "beacon,api",
        &[("TALLY_LOG", "warn,tower_http=debug")],
        Some(&log.reopen().unwrap()),
    )
    .await;
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, served.url("/collect"))
        .header("origin", "http://localhost")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = |name: &str| {
        preflight.headers()[name]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
    };
    assert_eq!(allowed("access-control-allow-origin"), "*");
    assert!(allowed("access-control-allow-methods").contains("post"));
    assert!(allowed("access-control-allow-headers").contains("content-type"));

    let body = json!({"t": "pageview", "site": "demo", "url": "http://localhost/cors"});
    let posted = http
        .post(served.url("/collect"))
        .header("origin", "http://localhost")
        .header("content-type", "application/json")
        .header("user-agent", CHROME)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
    assert_eq!(posted.headers()["access-control-allow-origin"], "*");
    assert_eq!(posted.headers()["x-content-type-options"], "nosniff");
    let id = posted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 24, "{id}");
    let counters = common::demo_counters(&http, &served.base, "?page=/cors").await;
    assert_eq!(counters["page_views"], 1, "{counters}");

    // A proxy's id is kept; the admin API gets no CORS headers.
    let r = http
        .get(served.url("/api/v1/sites"))
        .header("x-request-id", "from-the-proxy-42")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "from-the-proxy-42");
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let mut logged = String::new();
    for _ in 0..50 {
        logged = std::fs::read_to_string(log.path()).unwrap();
        if logged.contains(&id) && logged.contains("from-the-proxy-42") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The access line of the POST, in the request's span: its id, path and status.
    let line = logged
        .lines()
        .find(|l| l.contains(&id) && l.contains("finished processing request"))
        .unwrap_or_else(|| panic!("{id} not in:\n{logged}"));
    assert!(
        line.contains("path=\"/collect\"") && line.contains("status=204"),
        "{line}"
    );
    assert!(logged.contains("from-the-proxy-42"), "{logged}");
}

/// A configuration without sites has none (Tally used to track the reference's `demo` site
/// on localhost); sites are then created live, in the admin pages or the API.
#[test]
fn no_site_in_the_configuration_means_no_site() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--config", "/dev/null", "config"])
        .env("TALLY__ADMIN__TOKENS", "admin-token-secret-0123456789")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8_lossy(&out.stdout);
    // No demo site on localhost from the defaults: sites are created live.
    assert!(config.contains("sites = []"), "{config}");
    assert!(!config.contains("id = \"demo\""), "{config}");
    assert!(!config.contains("[[sites]]"), "{config}");
}

/// The harness: a `tally serve` that exits before it listens (here: its metrics port is
/// taken, as when another test takes a free port first) is started again on other ports,
/// and one that keeps exiting fails the test at once, not after the 30 s wait.
#[tokio::test]
#[should_panic(expected = "exited before listening three times")]
async fn a_process_that_exits_before_listening_is_started_again_then_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let settings = tally_testkit::settings();
    let started = std::time::Instant::now();
    let _served = Served::start(
        &settings,
        "beacon",
        &[("TALLY__SERVER__METRICS_LISTEN", address.as_str())],
    )
    .await;
    unreachable!("started after {:?}", started.elapsed());
}
