//! The worker's delivery guarantee under faults, against real Redis and ClickHouse:
//! nothing lost, nothing doubled.

mod common;

use std::{
    process::{Child, Command, Stdio},
    str::FromStr,
    time::Duration,
};

use common::{CHROME, counters, wait_for};
use serde_json::json;
use tally::Roles;
use tally_clickhouse::Db;
use tally_core::Settings;
use tally_redis::{Attempt, Store, wire::StreamEvent};
use tally_testkit::{ClickHouseServer, TestApp};
use tally_worker::{PartitionWorker, StepOutcome};
use tokio_util::sync::CancellationToken;

/// What [`send_mixed`] sent and had accepted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    views: u64,
    /// Downloads (custom events), one request in four.
    downloads: u64,
}

impl Accepted {
    fn all(self) -> u64 {
        self.views + self.downloads
    }
}

/// The file the `i`th request of [`send_mixed`] downloads, if it is a download.
fn download_of(i: usize) -> Option<String> {
    (i % 4 == 3).then(|| format!("https://localhost/files/f{}.pdf", i % 5))
}

/// Sends `n` requests, `concurrency` at a time: page views, and one in four a download (a
/// custom event); returns how many of each were accepted.
async fn send_mixed(url: String, n: usize, concurrency: usize, pause: Duration) -> Accepted {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = Accepted::default();
            for i in (c..n).step_by(concurrency) {
                let page = format!("http://localhost/a{}", i % 13);
                let body = match download_of(i) {
                    Some(file) => json!({"t": "event", "site": "demo", "url": page, "name": "download", "target": file}),
                    None => json!({"t": "pageview", "site": "demo", "url": page}),
                };
                let r = http.post(&url).header("user-agent", CHROME).body(body.to_string()).send().await;
                if r.is_ok_and(|r| r.status() == 204) {
                    match download_of(i) {
                        Some(_) => accepted.downloads += 1,
                        None => accepted.views += 1,
                    }
                }
                tokio::time::sleep(pause).await;
            }
            accepted
        }));
    }
    let mut total = Accepted::default();
    for t in tasks {
        let a = t.await.unwrap();
        total.views += a.views;
        total.downloads += a.downloads;
    }
    total
}

/// The live download counts of the files [`send_mixed`] downloads, summed.
async fn downloads_counted(app: &TestApp) -> u64 {
    let targets: Vec<String> = (0..5)
        .map(|f| format!("target=https://localhost/files/f{f}.pdf"))
        .collect();
    let url = app.url(&format!(
        "/api/v1/sites/demo/event-counters?name=download&{}",
        targets.join("&")
    ));
    let counts = common::get_json(&reqwest::Client::new(), &url).await;
    counts["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts in {counts}"))
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

async fn backlog(store: &Store, partitions: u16) -> u64 {
    let mut total = 0;
    for p in 0..partitions {
        total += store.stream_len(p).await.unwrap();
    }
    total
}

/// Waits until ClickHouse holds `expected` events and the streams are empty, then checks
/// that no event_id appears twice.
async fn assert_exactly_once(db: &Db, store: &Store, partitions: u16, expected: u64) {
    wait_for(
        "every accepted event in ClickHouse and the streams drained",
        || async {
            db.count_events().await.unwrap_or(0) >= expected
                && backlog(store, partitions).await == 0
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rows, distinct) = db.event_id_counts().await.unwrap();
    assert_eq!(rows, expected, "rows in ClickHouse vs accepted views");
    assert_eq!(distinct, rows, "an event_id was inserted twice");
}

/// Asserts that ClickHouse holds no event row of `page`.
async fn assert_no_row_of(db: &Db, page: &str) {
    let rows = db.debug_rows().await.unwrap();
    assert!(
        rows.iter().all(|r| r.page != page),
        "a row of {page} was stored"
    );
}

/// Inserts `events` as a worker that read them would have, before dying without
/// acknowledging them.
async fn insert_then_die(db: &Db, settings: &Settings, partition: u16, events: &[StreamEvent]) {
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            let event = e.event.clone().unwrap();
            let tz = settings.timezone_of(&event.site);
            tally_clickhouse::EventRow::new(partition, &e.key.to_string(), event, tz)
        })
        .collect();
    db.insert_events(&rows).await.unwrap();
}

/// The worker `rescuer` of `partition`, started once entries left by a dead worker are
/// idle long enough to be taken over.
async fn rescuer(store: &Store, db: &Db, settings: &Settings, partition: u16) -> PartitionWorker {
    tokio::time::sleep(settings.worker.claim_idle + Duration::from_millis(100)).await;
    PartitionWorker::new(
        partition,
        store.clone(),
        db.clone(),
        settings,
        tally_core::directory::Directory::new(&settings.sites),
        "rescuer".into(),
    )
}

/// A worker reads `partition`'s new entries (`events` events in all), inserts the first
/// `inserted` and dies before acknowledging them; a rescuer takes them over once they are
/// idle long enough. Returns what the dead worker read and what the rescuer's step did.
async fn die_after_inserting(
    store: &Store,
    db: &Db,
    settings: &Settings,
    partition: u16,
    events: usize,
    inserted: usize,
) -> (Vec<StreamEvent>, StepOutcome) {
    let read = store
        .read_new(partition, "dead-worker", 100, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), events);
    insert_then_die(db, settings, partition, &read[..inserted]).await;
    let mut rescuer = rescuer(store, db, settings, partition).await;
    let outcome = rescuer.step(&CancellationToken::new()).await.unwrap();
    (read, outcome)
}

#[tokio::test]
async fn reclaimed_entries_already_in_clickhouse_are_not_inserted_twice() {
    let settings = tally_testkit::settings();
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let store = app.store().await;
    let db = app.db();
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(settings.redis.partitions);
    store.ensure_group(partition).await.unwrap();
    assert_eq!(
        send_mixed(app.url("/collect"), 10, 1, Duration::ZERO)
            .await
            .all(),
        10
    );
    app.settled().await;

    // A worker read the ten events, inserted five and died before acknowledging.
    let (_, outcome) = die_after_inserting(&store, &db, &settings, partition, 10, 5).await;
    assert_eq!(
        outcome,
        StepOutcome {
            inserted: 5,
            skipped: 5,
            dead: 0
        }
    );
    assert_exactly_once(&db, &store, settings.redis.partitions, 10).await;
}

/// A `tally serve --roles worker` process.
fn spawn_worker(settings: &Settings, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--roles", "worker"])
        .envs(tally_testkit::env_for(settings))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a worker process")
}

#[tokio::test]
async fn killing_worker_processes_mid_batch_loses_and_doubles_nothing() {
    let mut settings = tally_testkit::settings();
    settings.worker.max_age = Duration::from_millis(150);
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let log = std::env::temp_dir().join(format!("tally-worker-kills-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let sender = tokio::spawn(send_mixed(
        app.url("/collect"),
        1600,
        4,
        Duration::from_millis(15),
    ));

    // Kill -9 a worker every 400–900 ms, eight times, under the stream of views. After each
    // kill, the entries the dead worker had read and not acknowledged are counted: those
    // kills came mid-batch, and only a takeover can deliver those entries.
    let store = app.store().await;
    let mut worker = spawn_worker(&settings, &log);
    let mut kills_mid_batch = 0;
    for i in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(400 + (i * 137) % 500)).await;
        worker.kill().unwrap();
        worker.wait().unwrap();
        if pending(&store, settings.redis.partitions).await > 0 {
            kills_mid_batch += 1;
        }
        worker = spawn_worker(&settings, &log);
    }
    let accepted = sender.await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            views: 1200,
            downloads: 400
        }
    );
    assert!(
        kills_mid_batch >= 2,
        "only {kills_mid_batch} of 8 kills left entries unacknowledged: the test did not kill mid-batch"
    );
    assert_exactly_once(&app.db(), &store, settings.redis.partitions, accepted.all()).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(
        counters(&reqwest::Client::new(), &app, None).await["total_views"],
        accepted.views
    );
    assert_eq!(downloads_counted(&app).await, accepted.downloads);
    let rows = app.db().debug_rows().await.unwrap();
    let stored = |kind: &str| rows.iter().filter(|r| r.kind == kind).count() as u64;
    assert_eq!(
        (stored("pageview"), stored("event")),
        (accepted.views, accepted.downloads),
        "page views and downloads in ClickHouse"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let takeovers = log.matches("took over idle entries").count();
    eprintln!("{kills_mid_batch} kills mid-batch, {takeovers} takeovers of idle entries");
    assert!(
        takeovers >= 1,
        "entries of killed workers were delivered without a takeover in the log"
    );
}

/// Entries read by some consumer and not yet acknowledged, over all partitions.
async fn pending(store: &Store, partitions: u16) -> u64 {
    let mut total = 0;
    for partition in 0..partitions {
        let consumers = store.consumers(partition).await.unwrap_or_default();
        total += consumers.iter().map(|(_, n)| n).sum::<u64>();
    }
    total
}

#[tokio::test]
async fn clickhouse_killed_and_restarted_under_load_loses_nothing() {
    let clickhouse = ClickHouseServer::start();
    let settings = tally_testkit::settings_for(&tally_testkit::services().redis, &clickhouse);
    let app = TestApp::spawn(settings.clone()).await;
    let sender = tokio::spawn(send_mixed(
        app.url("/collect"),
        800,
        4,
        Duration::from_millis(15),
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    clickhouse.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    clickhouse.restart();
    let accepted = sender.await.unwrap();
    assert_eq!(
        accepted,
        Accepted {
            views: 600,
            downloads: 200
        },
        "the beacon does not depend on ClickHouse"
    );
    let store = app.store().await;
    assert_exactly_once(&app.db(), &store, settings.redis.partitions, accepted.all()).await;
    assert_eq!(downloads_counted(&app).await, accepted.downloads);
    app.stop().await;
}

/// Rows ClickHouse refuses go to the dead letters, the rest is inserted. The dead-letter
/// stream keeps `worker.dead_letter_max` of them; `tally dead-letters list` shows each as a
/// JSON line (the event, or `raw` for a payload that is no event) and `replay` sends the
/// events through the worker again once the cause is gone, each once, leaving the rest.
#[tokio::test]
async fn refused_rows_go_to_capped_dead_letters_that_can_be_listed_and_replayed() {
    let mut settings = tally_testkit::settings();
    settings.worker.dead_letter_max = 3;
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let db = app.db();
    // A computed column that refuses some pages, standing in for any row the server rejects
    // as bad data. It is evaluated before anything is written (unlike a view, which runs
    // after the raw table took the block).
    db.execute_unchecked(
        "ALTER TABLE events ADD COLUMN refuse_poison UInt8 MATERIALIZED throwIf(page LIKE '/poison%')",
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let pages = [
        "/ok1", "/ok2", "/poison1", "/ok3", "/poison2", "/ok4", "/poison3", "/ok5",
    ];
    for page in pages {
        assert_eq!(
            common::send(&http, &app, &common::Hit::view(page)).await,
            204
        );
    }
    app.settled().await;
    let store = app.store().await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(settings.redis.partitions);
    // And an entry that is no batch of events at all.
    let mut conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(tally_redis::Keys::new(partition).events())
        .arg("*")
        .arg("b")
        .arg("garbage, not JSON")
        .arg("m")
        .arg("0 0 0 0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let worker = tally_worker::Worker::build(
        &settings,
        tally_core::directory::Directory::new(&settings.sites),
        db.clone(),
        tally_core::Clock::system(),
    )
    .await
    .unwrap();
    let tracker = tokio_util::task::TaskTracker::new();
    let stop = CancellationToken::new();
    worker.spawn(&tracker, stop.clone());
    assert_exactly_once(&db, &store, settings.redis.partitions, 5).await;
    for page in ["/poison1", "/poison2", "/poison3"] {
        assert_no_row_of(&db, page).await;
    }
    // Four dead letters, three kept: the oldest went.
    assert_eq!(store.dead_letter_len(partition).await.unwrap(), 3);
    // The rollups hold exactly the five stored rows.
    let all = common::all_time("demo");
    assert_eq!(db.summary(&all).await.unwrap().views, 5);

    let (ok, out, _) = tally_cli(&settings, &["dead-letters", "list"]);
    assert!(ok);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let events: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("event").is_some()).collect();
    let raw: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("raw").is_some()).collect();
    assert_eq!((events.len(), raw.len()), (2, 1), "{out}");
    assert_eq!(raw[0]["raw"], "garbage, not JSON");
    for line in &events {
        assert!(
            line["event"]["p"].as_str().unwrap().starts_with("/poison"),
            "{line}"
        );
        // The visit figures are kept: the reader's fifth and seventh page view.
        let page = line["event"]["p"].as_str().unwrap();
        let seq = pages.iter().position(|p| *p == page).unwrap() + 1;
        let figures: Vec<&str> = line["figures"].as_str().unwrap().split(' ').collect();
        assert_eq!(figures[2], seq.to_string(), "{line}");
        assert!(
            line["reason"].as_str().unwrap().contains("throwIf"),
            "{line}"
        );
        assert_eq!(line["partition"], partition);
    }

    // The cause is fixed: the events go through the worker again, once; the garbage stays.
    db.execute_unchecked("ALTER TABLE events DROP COLUMN refuse_poison")
        .await
        .unwrap();
    let (ok, out, err) = tally_cli(&settings, &["dead-letters", "replay"]);
    assert!(!ok, "a dead letter was left: {err}");
    assert!(out.contains("replayed 2 dead letters; 1 left"), "{out}");
    assert_exactly_once(&db, &store, settings.redis.partitions, 7).await;
    assert_eq!(store.dead_letter_len(partition).await.unwrap(), 1);
    let (_, out, _) = tally_cli(&settings, &["dead-letters", "replay"]);
    assert!(out.contains("replayed 0 dead letters; 1 left"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.count_events().await.unwrap(),
        7,
        "a replay adds an event once"
    );
    assert_eq!(db.summary(&all).await.unwrap().views, 7);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Runs the `tally` binary with `args` against `settings`: (success, stdout, stderr).
fn tally_cli(settings: &Settings, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .envs(tally_testkit::env_for(settings))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A beacon batch is one stream entry. A worker that dies after inserting part of it leaves
/// the whole entry pending; the rescuer inserts the rest once. An event of the entry that
/// ClickHouse refuses goes to the dead letters alone, and the entry is acknowledged.
#[tokio::test]
async fn a_batch_entry_is_delivered_whole_once_even_in_parts() {
    let settings = tally_testkit::settings();
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("api").unwrap()).await;
    let store = app.store().await;
    let db = app.db();
    db.execute_unchecked(
        "ALTER TABLE events ADD COLUMN guard UInt8 MATERIALIZED throwIf(page = '/poison')",
    )
    .await
    .unwrap();
    let mut events = tally::bench::synth_events(&settings, 12, 7);
    events[4].event.page = "/poison".into();
    let partition = events[0].partition;
    store.ensure_group(partition).await.unwrap();
    record_applied(&store, &settings, 1, &events).await;
    assert_eq!(store.stream_len(partition).await.unwrap(), 1, "one entry");

    // A worker read the entry, inserted three of its events and died before acknowledging.
    let (read, outcome) = die_after_inserting(&store, &db, &settings, partition, 12, 3).await;
    assert!(read.iter().all(|e| e.key.entry == read[0].key.entry));
    assert_eq!(
        outcome,
        StepOutcome {
            inserted: 8,
            skipped: 3,
            dead: 1
        }
    );
    assert_exactly_once(&db, &store, settings.redis.partitions, 11).await;
    assert_eq!(store.dead_letter_len(partition).await.unwrap(), 1);
    assert_no_row_of(&db, "/poison").await;
}

/// Reads and takeovers ask for entries by the events they hold: a batch of the worker stays
/// within `max_rows` but for less than one entry, and a takeover of more than a batch is
/// delivered in several, each event once.
#[tokio::test]
async fn batches_are_bounded_by_events_not_entries() {
    let mut settings = tally_testkit::settings();
    settings.worker.max_rows = 10;
    settings.beacon.batch = 4;
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("api").unwrap()).await;
    let store = app.store().await;
    let db = app.db();
    let events = tally::bench::synth_events(&settings, 40, 11);
    let partition = events[0].partition;
    store.ensure_group(partition).await.unwrap();
    // Ten entries of four events: five that a worker takes over, five that are new.
    for (i, chunk) in events.chunks(4).enumerate() {
        record_applied(&store, &settings, i as u64 + 1, chunk).await;
        if i == 4 {
            let read = store
                .read_new(partition, "dead-worker", 100, 10)
                .await
                .unwrap();
            assert_eq!(read.len(), 20);
        }
    }

    let mut worker = rescuer(&store, &db, &settings, partition).await;
    let stop = CancellationToken::new();
    // The takeover: twenty events, delivered as 12 + 8 (three entries, then two).
    let taken = worker.step(&stop).await.unwrap();
    assert_eq!(taken.inserted, 20);
    assert_eq!(db.count_events().await.unwrap(), 20);
    // New entries: two entries fit the first read, a third passes ten; then the rest.
    assert_eq!(worker.step(&stop).await.unwrap().inserted, 12);
    assert_eq!(worker.step(&stop).await.unwrap().inserted, 8);
    assert_exactly_once(&db, &store, settings.redis.partitions, 40).await;
}

/// Records `events` as beacon batch `id` and applies it at once, as the worker's applier
/// would: one events entry.
async fn record_applied(
    store: &Store,
    settings: &Settings,
    id: u64,
    events: &[tally_redis::TrackedEvent],
) {
    let now = chrono::Utc::now().timestamp_millis();
    store
        .record(id, events, &settings.tracking, now, Attempt::First)
        .await
        .unwrap();
    store.apply_all(&settings.tracking, now).await.unwrap();
}

/// `worker.max_age` bounds how long a batch gathers events; a backlog whose first event has
/// already waited that long in the stream (a worker that was down, a burst it is catching up
/// on) is inserted as soon as it is read, not held for a further `max_age` to gather more.
#[tokio::test]
async fn a_backlog_older_than_max_age_is_inserted_as_soon_as_it_is_read() {
    let mut settings = tally_testkit::settings();
    settings.worker.max_age = Duration::from_secs(3);
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("api").unwrap()).await;
    let store = app.store().await;
    let db = app.db();
    let events = tally::bench::synth_events(&settings, 12, 7);
    let partition = events[0].partition;
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| e.partition == partition)
        .collect();
    store.ensure_group(partition).await.unwrap();
    record_applied(&store, &settings, 1, &events).await;
    tokio::time::sleep(settings.worker.max_age + Duration::from_millis(100)).await;

    let mut worker = PartitionWorker::new(
        partition,
        store.clone(),
        db.clone(),
        &settings,
        tally_core::directory::Directory::new(&settings.sites),
        "late".into(),
    );
    let started = std::time::Instant::now();
    let outcome = worker.step(&CancellationToken::new()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.inserted, events.len());
    assert!(
        took < settings.worker.max_age / 2,
        "events that waited max_age were held {took:?} more"
    );
    assert_exactly_once(&db, &store, settings.redis.partitions, events.len() as u64).await;
}

/// Each worker process reads under its own name. Once a stopped worker's entries are taken
/// over and it has been idle for ten `claim_idle` periods, it leaves the consumer group; a
/// consumer still holding entries never does.
#[tokio::test]
async fn stopped_workers_leave_the_consumer_group() {
    let mut settings = tally_testkit::settings();
    settings.worker.claim_idle = Duration::from_millis(300);
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("api").unwrap()).await;
    let store = app.store().await;
    let db = app.db();
    let events = tally::bench::synth_events(&settings, 8, 5);
    let partition = events[0].partition;
    store.ensure_group(partition).await.unwrap();
    record_applied(&store, &settings, 1, &events[..4]).await;
    assert_eq!(
        store
            .read_new(partition, "stopped", 10, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    record_applied(&store, &settings, 2, &events[4..]).await;
    assert_eq!(
        store
            .read_new(partition, "holder", 10, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    // Nothing is deleted while it holds entries, however long idle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store
            .forget_idle_consumers(partition, "nobody", 0)
            .await
            .unwrap(),
        0
    );

    let mut rescuer = rescuer(&store, &db, &settings, partition).await;
    let stop = CancellationToken::new();
    assert_eq!(rescuer.step(&stop).await.unwrap().inserted, 8);
    let mut names: Vec<(String, u64)> = store.consumers(partition).await.unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            ("holder".to_owned(), 0),
            ("rescuer".to_owned(), 0),
            ("stopped".to_owned(), 0)
        ],
        "the takeover moved the entries; the stopped consumers are not idle long enough yet"
    );
    tokio::time::sleep(settings.worker.claim_idle * 10).await;
    rescuer.step(&stop).await.unwrap();
    assert_eq!(
        store.consumers(partition).await.unwrap(),
        [("rescuer".to_owned(), 0)]
    );
    assert_exactly_once(&db, &store, settings.redis.partitions, 8).await;
}

/// The value of `name{partition="P"}` in a Prometheus text.
fn gauge_of(text: &str, name: &str, partition: u16) -> Option<f64> {
    common::metric(text, &format!("{name}{{partition=\"{partition}\"}}"))
}

/// While ClickHouse is down the worker's backlog gauges show how far behind it is (entries
/// and the age of the oldest, refreshed every few seconds whether or not batches go through),
/// and fall back to zero once it is back.
#[tokio::test]
async fn the_backlog_gauges_grow_while_clickhouse_is_down() {
    let clickhouse = ClickHouseServer::start();
    let settings = tally_testkit::settings_for(&tally_testkit::services().redis, &clickhouse);
    // The real binary: its /metrics are its own (this test process's are shared by tests).
    let served = common::Served::start(&settings, "beacon,worker,api", &[]).await;
    let partition = tally_core::SiteId::parse("demo")
        .unwrap()
        .partition(settings.redis.partitions);
    clickhouse.stop();
    let http = reqwest::Client::new();
    for page in ["/a", "/b", "/c"] {
        let hit = common::Hit::view(page);
        assert_eq!(common::send_to(&http, &served.base, &hit).await, 204);
    }
    let gauges = || async {
        let text = common::get_text(&http, &served.metrics).await;
        (
            gauge_of(&text, "tally_worker_stream_lag", partition),
            gauge_of(&text, "tally_worker_stream_lag_seconds", partition),
        )
    };
    let started = std::time::Instant::now();
    loop {
        if let (Some(entries), Some(seconds)) = gauges().await
            && entries >= 1.0
            && seconds >= 2.0
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            gauges().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    clickhouse.restart();
    let started = std::time::Instant::now();
    while gauges().await != (Some(0.0), Some(0.0)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            gauges().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let db = Db::new(&settings.clickhouse);
    assert_eq!(db.count_events().await.unwrap(), 3);
}

/// A site's event as the beacon hands it to the store.
fn event_of(
    site: &tally_core::SiteId,
    partitions: u16,
    page: &str,
    visitor: u64,
) -> tally_redis::TrackedEvent {
    tally_redis::TrackedEvent {
        event: tally_core::Event {
            kind: tally_core::EventKind::Pageview,
            site: site.as_str().into(),
            ts_ms: chrono::Utc::now().timestamp_millis(),
            page: page.into(),
            visitor,
            ..tally_core::Event::empty()
        },
        partition: site.partition(partitions),
        day: "20260101".into(),
        session_candidate: visitor * 10,
    }
}

/// The batches of several partitions that are ready together go into ClickHouse as one
/// insert (its cost is mostly per insert); when that insert fails for one partition's bad
/// row, each batch goes in on its own: the bad row to the dead letters, every other row once.
#[tokio::test]
async fn partitions_ready_together_share_one_insert_and_a_bad_row_costs_the_others_nothing() {
    let mut settings = tally_testkit::settings();
    let partitions = settings.redis.partitions;
    let demo = tally_core::SiteId::parse("demo").unwrap();
    let others: Vec<tally_core::SiteId> = (0..)
        .map(|i| tally_core::SiteId::parse(&format!("other{i}")).unwrap())
        .filter(|id| id.partition(partitions) != demo.partition(partitions))
        .take(2)
        .collect();
    for other in &others {
        let mut site = settings.sites[0].clone();
        site.id = other.clone();
        site.domains = vec![format!("{other}.example")];
        settings.sites.push(site);
    }
    let app = TestApp::spawn_roles(settings.clone(), Roles::from_str("beacon,api").unwrap()).await;
    let (db, store) = (app.db(), app.store().await);
    // Records `batch` while no worker runs, so that every partition's part waits; then a
    // worker starts, finds them all at once, and stores every event once before it stops.
    let deliver = |id: u64, batch: Vec<tally_redis::TrackedEvent>, expected: u64| {
        let (settings, db, store, app) = (&settings, &db, &store, &app);
        async move {
            let now = chrono::Utc::now().timestamp_millis();
            store
                .record(id, &batch, &settings.tracking, now, Attempt::First)
                .await
                .unwrap();
            app.settled().await;
            let worker = tally_worker::Worker::build(
                settings,
                tally_core::directory::Directory::new(&settings.sites),
                db.clone(),
                tally_core::Clock::system(),
            )
            .await
            .unwrap();
            let (tracker, stop) = (
                tokio_util::task::TaskTracker::new(),
                CancellationToken::new(),
            );
            worker.spawn(&tracker, stop.clone());
            assert_exactly_once(db, store, settings.redis.partitions, expected).await;
            stop.cancel();
            tracker.close();
            tracker.wait().await;
        }
    };
    let sites = [&demo, &others[0], &others[1]];
    let mut partitions_used: Vec<u16> = sites.iter().map(|s| s.partition(partitions)).collect();
    partitions_used.sort_unstable();
    partitions_used.dedup();
    assert!(partitions_used.len() >= 2, "the sites share one partition");

    let batch: Vec<_> = sites
        .iter()
        .enumerate()
        .flat_map(|(i, site)| {
            (0..3u64)
                .map(move |v| event_of(site, partitions, &format!("/ok{v}"), 100 * i as u64 + v))
        })
        .collect();
    deliver(1, batch, 9).await;
    assert_eq!(
        db.events_inserts().await.unwrap(),
        1,
        "one insert for every partition's batch"
    );

    // Now one partition's batch holds a row ClickHouse refuses, in the same insert as the
    // others' batches.
    db.execute_unchecked(
        "ALTER TABLE events ADD COLUMN refuse_poison UInt8 MATERIALIZED throwIf(page LIKE '/poison%')",
    )
    .await
    .unwrap();
    let batch = vec![
        event_of(&demo, partitions, "/poison", 900),
        event_of(&demo, partitions, "/ok9", 901),
        event_of(&others[0], partitions, "/ok9", 902),
        event_of(&others[1], partitions, "/ok9", 903),
    ];
    deliver(2, batch, 12).await;
    assert_no_row_of(&db, "/poison").await;
    assert_eq!(
        store
            .dead_letter_len(demo.partition(partitions))
            .await
            .unwrap(),
        1
    );
    let all = common::all_time("demo");
    assert_eq!(
        db.summary(&all).await.unwrap().views,
        4,
        "the rollups hold demo's rows once"
    );
    for other in &others {
        let all = common::all_time(other.as_str());
        assert_eq!(db.summary(&all).await.unwrap().views, 4);
    }
}
