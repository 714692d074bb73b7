//! # tally-clickhouse
//!
//! The history tier. This crate holds every SQL statement Tally sends.
//!
//! | table | engine | holds |
//! |---|---|---|
//! | `schema_migrations` | MergeTree | applied migration versions |
//! | `events` | MergeTree, monthly partitions | every accepted event, `event_id` = partition-streamid, `day` = its date in the site's zone, `hour` = the first instant of its hour in the site's zone; kind `repeat` = a reload within the repeat-view window, `unverified` = a pixel hit naming no page of the site (neither Referer nor Origin) |
//! | `page_events` | MergeTree ← `page_events_mv`, monthly partitions, ordered by (site, page, ts) | the page views, heartbeats and leaves of `events` again, ordered by page: the shown pages' engaged time and entries read alone (migration 12) |
//! | `second_views` | MergeTree ← `second_views_mv`, monthly partitions | the visits' second page views (their sessions did not bounce) |
//! | `counter_baselines` | MergeTree | imported counts per import (`import_id`); the newest import of a site counts, page `''` holds its site totals |
//! | `site_daily` | AggregatingMergeTree ← `site_daily_mv` | per site and local day: views, visits, visitor states |
//! | `site_hourly` | AggregatingMergeTree ← `site_hourly_mv` | per site and local hour (its first instant, from `events.hour`; UTC hours before migration 7): the same (hourly series, all-time totals) |
//! | `page_days` | AggregatingMergeTree ← `page_days_mv`, 256-row granules | per page and local day: path, title, views, visitor states |
//! | `dimension_daily` | AggregatingMergeTree ← `dimension_daily_mv` | per referrer/browser/os/device/country and local day |
//! | `visit_hourly` | AggregatingMergeTree ← `visit_hourly_mv` | per site and local hour: visits started, visits with a 2nd page view, summed gaps between a visit's events |
//! | `bots_hourly` | AggregatingMergeTree ← `bots_hourly_mv` | filtered crawler hits per local hour |
//! | `repeat_hourly` | AggregatingMergeTree ← `repeat_hourly_mv` | repeated views (reloads, not counted) per local hour |
//! | `unverified_hourly` | AggregatingMergeTree ← `unverified_hourly_mv` | pixel hits with neither Referer nor Origin (not counted) per local hour |
//! | `page_hourly`, `dimension_hourly` | AggregatingMergeTree | superseded by the daily tables in migration 5 (history copied, no longer fed) |
//! | `page_daily` | AggregatingMergeTree | superseded by `page_days` in migration 6 (history copied, no longer fed) |
//! | `managed_sites` | ReplacingMergeTree(version) | sites created in the admin pages or API: one row per change, the newest version counts, `deleted` = 1 a deletion |
//! | `people` | ReplacingMergeTree(version) | accounts: login name, role, sites, argon2id password hash, the SHA-256 of a pending invitation; one row per change, `deleted` = 1 a removal |
//! | `shares` | ReplacingMergeTree(version) | read-only links to a site's statistics page: the SHA-256 of the link's secret, an optional argon2id password hash; `deleted` = 1 a revocation |
//! | `api_tokens` | ReplacingMergeTree(version) | personal API tokens: the SHA-256 of the token, its person, sites and whether it is read-only; `deleted` = 1 a revocation |
//! | `audit_log` | MergeTree, monthly partitions | who changed what and when (sites created, edited, deleted…) |
//!
//! The comments of applied migrations are not edited (an applied migration never is), so one
//! is corrected here: migration 5's header says migration 6 drops `page_hourly` and
//! `dimension_hourly`. It does not — migration 6 keeps them, as its own header says, because
//! a repeat of migration 5's copy (after a copy that stopped halfway) reads them; migration
//! 5 itself dropped only the views that fed them. `page_daily`, made by migration 5, is in
//! turn superseded by `page_days` (migration 6 drops `page_daily_mv`, so it is no longer fed);
//! it and the hourly tables can be dropped by hand once migration 6 is applied and checked
//! (docs/operations.md, "Upgrading").
//!
//! Compatibility: every statement runs on Debian's ClickHouse 18.16 and on current releases.
//! Hence `with_validation(false)` (18.16 knows neither `RowBinaryWithNamesAndTypes` nor the
//! settings the crate's schema check sends) and client-side binds (`?` + `.bind()`) instead of
//! server-side parameters. When `TALLY_SQL_LOG` names a directory, every statement is also
//! appended to a file there, so `scripts/chdb-replay` can replay it on current ClickHouse.

mod baselines;
mod cluster;
mod directory;
pub mod explore;
mod goals;
mod insert;
pub mod migrate;
mod people;
pub mod retention;
mod row;
mod shares;
mod sqllog;
pub mod stats;
mod tls;
mod tokens;

use std::time::Duration;

use sqllog::Query;
use tally_core::settings::ClickHouseSettings;

pub use baselines::{Baseline, BaselineRow};
pub use directory::AuditEntry;
pub use goals::Goal;
pub use insert::StoredEvent;
pub use people::Person;
pub use row::{EventRow, event_id};
pub use shares::Share;
pub use tokens::ApiToken;

/// Errors from the history tier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The message holds the causes (see `explained`), so the variants name no `source`:
    // a report printing the chain would repeat them.
    #[error("clickhouse: {}", explained(.0))]
    ClickHouse(clickhouse::error::Error),
    #[error("migration {version} ({name}) failed: {}", explained(.cause))]
    Migration {
        version: u32,
        name: &'static str,
        cause: clickhouse::error::Error,
    },
}

impl From<clickhouse::error::Error> for Error {
    fn from(e: clickhouse::error::Error) -> Self {
        Self::ClickHouse(e)
    }
}

/// `e` with its causes ("network error: client error (Connect): invalid peer certificate:
/// UnknownIssuer"), and for a certificate Tally does not trust, the setting that decides
/// which ones it does.
fn explained(e: &clickhouse::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    if text.contains("certificate") {
        text.push_str(
            " (the server's certificate must be signed by the CA of clickhouse.tls_ca_file, \
             or without it by one of the system's CAs)",
        );
    }
    text
}

impl Error {
    /// Whether the server refused the data itself (retrying the same rows cannot succeed).
    pub fn is_bad_data(&self) -> bool {
        let Self::ClickHouse(clickhouse::error::Error::BadResponse(text)) = self else {
            return false;
        };
        // Codes of parse and type errors: CANNOT_PARSE_TEXT 6, CANNOT_PARSE_INPUT_ASSERTION
        // 27, CANNOT_READ_ALL_DATA 33, BAD_ARGUMENTS 36 (bad enum value), CANNOT_PARSE_DATE 38,
        // CANNOT_PARSE_DATETIME 41, TYPE_MISMATCH 53, ARGUMENT_OUT_OF_BOUND 69,
        // CANNOT_CONVERT_TYPE 70, CANNOT_PARSE_NUMBER 72, INCORRECT_DATA 117,
        // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO 395 (a view refusing a row), UNKNOWN_ELEMENT_OF_ENUM 691.
        const BAD_DATA: [u32; 13] = [6, 27, 33, 36, 38, 41, 53, 69, 70, 72, 117, 395, 691];
        error_code(text).is_some_and(|code| BAD_DATA.contains(&code))
    }
}

impl tally_core::retry::Classify for Error {
    /// Give up: bad data (see [`is_bad_data`](Error::is_bad_data)). Stop: ClickHouse refuses
    /// Tally's user, its rights, or has no such database or table. Retry: anything else
    /// (down, timed out, too many parts, memory).
    fn verdict(&self) -> tally_core::retry::Verdict {
        use tally_core::retry::Verdict;
        // UNKNOWN_TABLE 60, UNKNOWN_DATABASE 81, UNKNOWN_USER 192, WRONG_PASSWORD 193,
        // REQUIRED_PASSWORD 194, IP_ADDRESS_NOT_ALLOWED 195, ACCESS_DENIED 497,
        // AUTHENTICATION_FAILED 516.
        const DEPLOYMENT: [u32; 8] = [60, 81, 192, 193, 194, 195, 497, 516];
        if self.is_bad_data() {
            return Verdict::GiveUp;
        }
        match self {
            Self::ClickHouse(clickhouse::error::Error::BadResponse(text))
                if error_code(text).is_some_and(|c| DEPLOYMENT.contains(&c)) =>
            {
                Verdict::Stop
            }
            _ => Verdict::Retry,
        }
    }
}

/// The `Code: N` of a ClickHouse exception text.
fn error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A handle on ClickHouse, cheap to clone.
#[derive(Clone)]
pub struct Db {
    client: clickhouse::Client,
    settings: ClickHouseSettings,
    /// With `clickhouse.cluster`: the cluster the tables are spread over.
    cluster: Option<cluster::Cluster>,
}

impl Db {
    /// A client for the configured database. Nothing is sent until the first query.
    pub fn new(settings: &ClickHouseSettings) -> Self {
        let client = base_client(settings).with_database(&settings.database);
        Self {
            client,
            settings: settings.clone(),
            cluster: (!settings.cluster.is_empty()).then(|| cluster::Cluster {
                name: settings.cluster.clone(),
                database: settings.database.clone(),
            }),
        }
    }

    /// The database name (validated as an identifier when the settings were loaded).
    pub fn database(&self) -> &str {
        &self.settings.database
    }

    /// `SELECT 1`, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let one: u8 = self.query("SELECT toUInt8(1)").fetch_one().await?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// The server version, e.g. `18.16.1`.
    pub async fn version(&self) -> Result<String> {
        Ok(self.query("SELECT version()").fetch_one().await?)
    }

    /// A statement on this database. Values must be bound with `?`.
    fn query(&self, sql: &str) -> Query {
        Query::new(self.client.query(sql))
    }

    /// A statistics query: bounded by `query_timeout` on the server, because ClickHouse keeps
    /// running a query whose HTTP client went away.
    fn stats_query(&self, sql: &str) -> Query {
        self.query(sql).with_setting(
            "max_execution_time",
            self.settings.query_timeout.as_secs().max(1).to_string(),
        )
    }
}

fn base_client(settings: &ClickHouseSettings) -> clickhouse::Client {
    let client = if settings.url.starts_with("https://") {
        clickhouse::Client::with_http_client(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                // ClickHouse closes idle connections after 3 s.
                .pool_idle_timeout(Duration::from_secs(2))
                .build(tls::connector(settings)),
        )
    } else {
        clickhouse::Client::default()
    };
    let client = if settings.cluster.is_empty() {
        client
    } else {
        cluster::SETTINGS
            .iter()
            .fold(client, |c, (name, value)| c.with_setting(*name, *value))
    };
    // Compressing what goes to a server on this machine only costs CPU on both sides (the
    // worker's LZ4 was ~8 % of its CPU in a drain); across a network it saves bandwidth.
    let compression = if is_loopback(&settings.url) {
        clickhouse::Compression::None
    } else {
        clickhouse::Compression::Lz4
    };
    client
        .with_compression(compression)
        .with_url(&settings.url)
        .with_user(&settings.user)
        .with_password(tally_core::secrecy::ExposeSecret::expose_secret(
            &settings.password,
        ))
        .with_validation(false)
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address (host as the
/// beacon reads a page's URL: user info, port and IPv6 brackets taken off, lower-cased).
fn is_loopback(url: &str) -> bool {
    tally_core::page::split_url(url).is_some_and(|parts| {
        parts.host == "localhost"
            || parts
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// How long a single insert may take before it is abandoned and retried.
pub const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_server_on_this_machine() {
        for url in [
            "http://127.0.0.1:8123",
            "http://localhost:8123/",
            "https://user:pw@127.0.0.2:8443",
            "http://[::1]:8123",
            "http://LOCALHOST",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.5:8123",
            "https://clickhouse.example.com:8443",
            "http://[2001:db8::1]:8123",
            "http://localhost.example.com:8123",
            "http://user:pw@db:8123?x=127.0.0.1",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn reads_error_codes() {
        assert_eq!(
            error_code("Code: 36, e.displayText() = DB::Exception: Unexpected value"),
            Some(36)
        );
        assert_eq!(
            error_code("Code: 691. DB::Exception: Unknown element"),
            Some(691)
        );
        assert_eq!(error_code("connection refused"), None);
    }
}
