//! The configuration tree and how it is loaded.
//!
//! Layers, later wins: the embedded reference `config/tally.toml` (which therefore holds every
//! default), the file given with `--config`, then `TALLY__SECTION__KEY` variables. Unknown
//! keys are refused rather than ignored, so a typo never silently falls back to a default.
//! After deserialising, [`Settings::validate`] checks what types alone cannot.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono_tz::Tz;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::site::SiteId;

/// The reference configuration, embedded so the binary always knows every default.
pub const REFERENCE: &str = include_str!("../../../config/tally.toml");

/// Prefix of environment variables that override settings.
pub const ENV_PREFIX: &str = "TALLY__";

/// Everything Tally can be configured with. See `config/tally.toml` for each key.
/// Most events the beacon sends to Redis in one script call (`beacon.batch`). Redis runs one
/// script at a time: a call of 5,000 events holds it for ~150 ms (about 30 µs of Redis time
/// an event), and batches past 1,000 save nothing more per event.
pub const MAX_BEACON_BATCH: usize = 5000;

/// Shortest admin token accepted: a token is a password that anyone on the internet may
/// try, and the api allows only ten wrong ones a minute per address; 24 random characters are
/// out of reach of that and of offline guessing alike.
pub const MIN_TOKEN_CHARS: usize = 24;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub clickhouse: ClickHouseSettings,
    pub worker: WorkerSettings,
    pub retention: RetentionSettings,
    pub geoip: GeoipSettings,
    pub tracking: TrackingSettings,
    pub beacon: BeaconSettings,
    pub admin: AdminSettings,
    pub sites: Vec<SiteSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    /// Request header in which a trusted proxy gives the visitor's country; empty: none.
    pub country_header: String,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Time a client has to send a request's header.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection without a byte read or written for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections served at once; past it, new ones wait to be accepted.
    pub max_connections: usize,
    pub demo_page: bool,
    /// The address people reach Tally at (`https://…`), or empty.
    pub public_url: String,
    /// Where `/metrics` is served (`host:port`), or empty for nowhere.
    pub metrics_listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// May hold a password (`redis://:PASSWORD@host`): kept secret, shown masked.
    #[serde(serialize_with = "masked_url")]
    pub url: SecretString,
    pub cluster: bool,
    pub partitions: u16,
    /// Redis Sentinel: the sentinels (URLs) that name the primary of `master_name`; empty:
    /// `url` is the server. With sentinels, `url` gives the database number, the password
    /// and the scheme (TLS or not) of the primary.
    #[serde(serialize_with = "masked_urls")]
    pub sentinels: Vec<String>,
    pub master_name: String,
    /// With `rediss://`: the CA (PEM) that signed the server's certificate; empty: the
    /// system's CAs.
    pub tls_ca_file: String,
    /// A client certificate (PEM) and its key, for a server that asks for one.
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl RedisSettings {
    /// The node URLs: one, or with `cluster` the comma-separated list. They may hold a
    /// password: only for connecting, never for messages (see [`shown_url`](Self::shown_url)).
    pub fn nodes(&self) -> Vec<&str> {
        let url = self.url.expose_secret();
        if self.cluster {
            url.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect()
        } else {
            vec![url]
        }
    }

    /// `url` with any password masked, for messages.
    pub fn shown_url(&self) -> String {
        mask_url_passwords(self.url.expose_secret())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    pub url: String,
    pub database: String,
    pub user: String,
    /// Kept secret, shown masked.
    #[serde(serialize_with = "masked")]
    pub password: SecretString,
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// With `https://`: the CA (PEM) that signed the server's certificate; empty: the
    /// system's CAs.
    pub tls_ca_file: String,
    /// A client certificate (PEM) and its key, for a server that asks for one.
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// A cluster of the servers' `remote_servers` (empty: one server). Migrations then make
    /// replicated `*_local` tables and Distributed tables over them `ON CLUSTER`, sharded by
    /// site; every statement goes through the Distributed tables.
    pub cluster: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub max_rows: usize,
    pub max_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub claim_idle: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Most events kept per partition in the dead-letter stream; the oldest go first.
    pub dead_letter_max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub raw_days: u32,
}

/// Where the beacon finds places (`[geoip]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipSettings {
    /// Path of a MaxMind-format city database; empty: none.
    pub database: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    #[serde(with = "humantime_serde")]
    pub online_window: Duration,
    #[serde(with = "humantime_serde")]
    pub visit_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A page view of the page the same visitor viewed last, within this long of its last
    /// counted view, is a repeat (a reload): not a view, though it keeps the visitor online.
    /// Zero counts every view.
    #[serde(with = "humantime_serde")]
    pub repeat_view_window: Duration,
    /// Most pages of one site held live in Redis (0 = no cap); later pages count live under
    /// "other pages".
    pub max_pages: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeaconSettings {
    pub buffer: usize,
    pub batch: usize,
    pub rate_limit_per_minute: u32,
    /// Page views per minute one client network may send for one page (0 = no limit).
    pub rate_limit_per_page_per_minute: u32,
    /// Beacon processes one client's requests are spread over; each enforces this share
    /// of the limits.
    pub processes: u32,
}

impl BeaconSettings {
    /// This process's share of a per-minute `limit` (0 stays 0, no limit), rounded up.
    pub fn share_of(&self, limit: u32) -> u32 {
        limit.div_ceil(self.processes.max(1))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub tokens: Vec<AdminToken>,
    pub max_range_days: u32,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Longest a session lasts from sign-in, however active.
    #[serde(with = "humantime_serde")]
    pub session_max_age: Duration,
}

/// An admin bearer token, either for every site or limited to some. The token is secret:
/// `Debug` and the serialised configuration show it masked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum AdminToken {
    All(#[serde(serialize_with = "masked")] SecretString),
    Limited {
        #[serde(serialize_with = "masked")]
        token: SecretString,
        sites: Vec<SiteId>,
    },
}

impl AdminToken {
    /// The secret itself.
    pub fn secret(&self) -> &str {
        match self {
            Self::All(token) | Self::Limited { token, .. } => token.expose_secret(),
        }
    }

    /// Whether this token may read `site`.
    pub fn allows(&self, site: &SiteId) -> bool {
        match self {
            Self::All(_) => true,
            Self::Limited { sites, .. } => sites.contains(site),
        }
    }
}

/// One tracked site.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    pub id: SiteId,
    /// Shown in the admin pages instead of the id (empty: the id).
    #[serde(default)]
    pub name: String,
    pub domains: Vec<String>,
    #[serde(default = "utc")]
    pub timezone: Tz,
    #[serde(default = "yes")]
    pub public_counters: bool,
}

fn utc() -> Tz {
    Tz::UTC
}

fn yes() -> bool {
    true
}

/// Why a configuration was refused. Every variant names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown config key `{key}` (from {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    /// Loads the reference defaults, then `path` (if any), then the `TALLY__…` entries of
    /// `env`, and validates the result. `env` is a parameter so tests need not touch the
    /// process environment; the binary passes `std::env::vars()`.
    pub fn load<I>(path: Option<&Path>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut tree: Table = toml::from_str(REFERENCE).expect("embedded reference config parses");
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let file: Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            merge(&mut tree, file, "", &path.display().to_string())?;
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            apply_env(&mut tree, &name, &value)?;
        }
        let settings: Settings = serde_path_to_error::deserialize(Value::Table(tree))
            .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules types cannot express, section by section. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.beacon.validate()?;
        self.redis.validate()?;
        self.clickhouse.validate()?;
        self.worker.validate()?;
        self.tracking.validate()?;
        self.validate_admin()?;
        self.validate_sites()
    }

    /// `[admin]`: its limited tokens name configured sites.
    fn validate_admin(&self) -> Result<(), ConfigError> {
        let a = &self.admin;
        for (i, token) in a.tokens.iter().enumerate() {
            if token.secret().chars().count() < MIN_TOKEN_CHARS {
                return Err(invalid(
                    format!("admin.tokens[{i}]"),
                    format!(
                        "a token must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 16`)"
                    ),
                ));
            }
            if let AdminToken::Limited { sites, .. } = token {
                for site in sites {
                    if self.site(site.as_str()).is_none() {
                        return Err(invalid(
                            format!("admin.tokens[{i}].sites"),
                            format!("names site `{site}`, which is not configured"),
                        ));
                    }
                }
            }
        }
        if a.max_range_days == 0 {
            return Err(invalid("admin.max_range_days", "must be at least 1"));
        }
        positive("admin.session_ttl", a.session_ttl)?;
        if a.session_max_age < a.session_ttl {
            return Err(invalid(
                "admin.session_max_age",
                "must be at least admin.session_ttl",
            ));
        }
        Ok(())
    }

    /// `[[sites]]`: each once, with lower-case host names. There may be none: sites can be
    /// created live (the admin pages, `POST /api/v1/sites`).
    fn validate_sites(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            if !seen.insert(&site.id) {
                return Err(invalid(
                    format!("sites[{i}].id"),
                    format!("site `{}` is configured twice", site.id),
                ));
            }
            if site.domains.is_empty() {
                return Err(invalid(
                    format!("sites[{i}].domains"),
                    "list at least one host allowed to send events",
                ));
            }
            for d in &site.domains {
                if !crate::site::valid_domain(d) {
                    return Err(invalid(
                        format!("sites[{i}].domains"),
                        format!("`{d}` is not a lower-case host name (no scheme, port or path)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings of site `id`, if it is configured.
    pub fn site(&self, id: &str) -> Option<&SiteSettings> {
        self.sites.iter().find(|s| s.id.as_str() == id)
    }

    /// The time zone of site `id`'s days; a site no longer configured counts in UTC.
    pub fn timezone_of(&self, id: &str) -> Tz {
        self.site(id).map_or(Tz::UTC, |s| s.timezone)
    }

    /// The configuration as TOML, for `tally config`: the secrets serialise masked.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).expect("settings serialise to TOML")
    }
}

impl ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self
            .country_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "server.country_header",
                "must be a header name (letters, digits, - and _) or empty",
            ));
        }
        positive("server.header_read_timeout", self.header_read_timeout)?;
        positive("server.idle_timeout", self.idle_timeout)?;
        if self.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        let metrics = &self.metrics_listen;
        if !metrics.is_empty() && metrics.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "server.metrics_listen",
                "must be empty or an address such as 127.0.0.1:9464",
            ));
        }
        let url = &self.public_url;
        let http = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!http || url.contains(['?', '#', ' '])) {
            return Err(invalid(
                "server.public_url",
                "must be empty or an http(s) address such as https://stats.example.vn",
            ));
        }
        Ok(())
    }
}

impl BeaconSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BEACON_BATCH).contains(&self.batch) {
            return Err(invalid(
                "beacon.batch",
                format!("must be between 1 and {MAX_BEACON_BATCH}"),
            ));
        }
        if self.buffer < self.batch {
            return Err(invalid("beacon.buffer", "must be at least beacon.batch"));
        }
        if self.processes == 0 {
            return Err(invalid("beacon.processes", "must be at least 1"));
        }
        Ok(())
    }
}

/// The TLS files of a connection (`redis.tls_*`, `clickhouse.tls_*`): paths, empty when
/// unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFiles<'a> {
    /// `redis` or `clickhouse`: the section that names them, for messages.
    pub section: &'static str,
    pub ca_file: &'a str,
    pub cert_file: &'a str,
    pub key_file: &'a str,
}

impl TlsFiles<'_> {
    /// Checks that each file given holds what its key says (a PEM certificate or private
    /// key), that a certificate comes with its key, and that they go with a TLS URL.
    fn validate(&self, tls_url: bool, url_key: &str) -> Result<(), ConfigError> {
        let s = self.section;
        let files = [
            (
                "tls_ca_file",
                self.ca_file,
                "CERTIFICATE-----",
                "a certificate",
            ),
            (
                "tls_cert_file",
                self.cert_file,
                "CERTIFICATE-----",
                "a certificate",
            ),
            // PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY.
            (
                "tls_key_file",
                self.key_file,
                "PRIVATE KEY-----",
                "a private key",
            ),
        ];
        for (key, path, marker, what) in files {
            if path.is_empty() {
                continue;
            }
            let key = format!("{s}.{key}");
            if !tls_url {
                return Err(invalid(
                    &key,
                    format!("is set, but {url_key} does not ask for TLS"),
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(&key, format!("cannot read {path}: {e}")))?;
            if !text
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.ends_with(marker))
            {
                return Err(invalid(&key, format!("{path} holds no PEM {what}")));
            }
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(invalid(
                format!("{s}.tls_key_file"),
                format!("{s}.tls_cert_file and {s}.tls_key_file go together"),
            ));
        }
        Ok(())
    }
}

impl RedisSettings {
    /// The TLS files of the connection.
    pub fn tls(&self) -> TlsFiles<'_> {
        TlsFiles {
            section: "redis",
            ca_file: &self.tls_ca_file,
            cert_file: &self.tls_cert_file,
            key_file: &self.tls_key_file,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let nodes = self.nodes();
        if nodes.is_empty()
            || nodes
                .iter()
                .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            return Err(invalid(
                "redis.url",
                "must start with redis:// or rediss:// (with redis.cluster: a comma-separated list)",
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(invalid("redis.partitions", "must be between 1 and 1024"));
        }
        if !self.sentinels.is_empty() {
            if self.cluster {
                return Err(invalid(
                    "redis.sentinels",
                    "go with one primary, not with redis.cluster",
                ));
            }
            if self
                .sentinels
                .iter()
                .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return Err(invalid(
                    "redis.sentinels",
                    "must be redis:// or rediss:// URLs of the sentinels",
                ));
            }
            if self.master_name.trim().is_empty() {
                return Err(invalid(
                    "redis.master_name",
                    "must name the primary the sentinels watch",
                ));
            }
            if !(self.tls_ca_file.is_empty() && self.tls_cert_file.is_empty()) {
                return Err(invalid(
                    "redis.tls_ca_file",
                    "with redis.sentinels, TLS trusts the system's CAs only (no private CA or \
                     client certificate yet)",
                ));
            }
        }
        let tls = nodes.iter().all(|u| u.starts_with("rediss://"));
        self.tls().validate(tls, "redis.url")
    }
}

impl ClickHouseSettings {
    /// The TLS files of the connection.
    pub fn tls(&self) -> TlsFiles<'_> {
        TlsFiles {
            section: "clickhouse",
            ca_file: &self.tls_ca_file,
            cert_file: &self.tls_cert_file,
            key_file: &self.tls_key_file,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(invalid(
                "clickhouse.url",
                "must start with http:// or https://",
            ));
        }
        if !is_identifier(&self.database) {
            return Err(invalid(
                "clickhouse.database",
                "must be letters, digits and _ (not starting with a digit)",
            ));
        }
        if !self.cluster.is_empty() && !is_identifier(&self.cluster) {
            return Err(invalid(
                "clickhouse.cluster",
                "must be empty or the name of a cluster in the servers' remote_servers \
                 (letters, digits and _, not starting with a digit)",
            ));
        }
        positive("clickhouse.query_timeout", self.query_timeout)?;
        self.tls()
            .validate(self.url.starts_with("https://"), "clickhouse.url")
    }
}

impl WorkerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_rows == 0 {
            return Err(invalid("worker.max_rows", "must be at least 1"));
        }
        if self.max_bytes < 4096 {
            return Err(invalid("worker.max_bytes", "must be at least 4096"));
        }
        positive("worker.max_age", self.max_age)?;
        positive("worker.claim_idle", self.claim_idle)?;
        positive("worker.max_backoff", self.max_backoff)
    }
}

impl TrackingSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("tracking.online_window", self.online_window)?;
        positive("tracking.heartbeat", self.heartbeat)?;
        if self.visit_timeout < Duration::from_secs(1)
            || self.visit_timeout > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "tracking.visit_timeout",
                "must be between 1s and 24h",
            ));
        }
        if self.repeat_view_window > self.visit_timeout {
            // The visit's record in Redis holds the last counted view; it is gone once the
            // visit is over, so a longer window could not be kept.
            return Err(invalid(
                "tracking.repeat_view_window",
                "must be at most tracking.visit_timeout (0 turns it off)",
            ));
        }
        Ok(())
    }
}

const MASK: &str = "********";

/// Serialises a secret as the mask (empty stays empty: "no password" is no secret).
fn masked<S: serde::Serializer>(secret: &SecretString, out: S) -> Result<S::Ok, S::Error> {
    if secret.expose_secret().is_empty() {
        out.serialize_str("")
    } else {
        out.serialize_str(MASK)
    }
}

/// Serialises a (comma-separated list of) URL(s) with the passwords masked.
fn masked_url<S: serde::Serializer>(url: &SecretString, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&mask_url_passwords(url.expose_secret()))
}

/// Serialises a list of URLs with the passwords masked.
fn masked_urls<S: serde::Serializer>(urls: &[String], out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(urls.iter().map(|u| mask_url_password(u)))
}

/// A comma-separated list of URLs with every password masked.
fn mask_url_passwords(urls: &str) -> String {
    urls.split(',')
        .map(mask_url_password)
        .collect::<Vec<_>>()
        .join(",")
}

fn mask_url_password(url: &str) -> String {
    // redis://user:password@host → redis://user:********@host
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}"),
        None => url.to_owned(),
    }
}

fn positive(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(invalid(key, "must be longer than zero"))
    } else {
        Ok(())
    }
}

/// Letters, digits and `_`, not starting with a digit: safe to write into SQL unquoted.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 64
}

/// Merges `from` into `into`; every key of `from` must exist in `into` (the reference), except
/// below arrays, whose items the typed structs check.
fn merge(into: &mut Table, from: Table, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (None, _) => {
                return Err(ConfigError::UnknownKey {
                    key: path,
                    origin: origin.to_owned(),
                });
            }
            (Some(Value::Table(inner)), Value::Table(value)) => merge(inner, value, &path, origin)?,
            (Some(slot), value) => *slot = value,
        }
    }
    Ok(())
}

/// Applies one `TALLY__SECTION__KEY=value` override. The value is read as the type the key
/// already has, so `TALLY__CLICKHOUSE__PASSWORD=1234` stays a string.
fn apply_env(tree: &mut Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let key = parts.join(".");
    let unknown = || ConfigError::UnknownKey {
        key: key.clone(),
        origin: format!("environment variable {name}"),
    };
    let (last, sections) = parts.split_last().ok_or_else(unknown)?;
    let mut table = tree;
    for section in sections {
        table = match table.get_mut(section) {
            Some(Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let slot = table.get_mut(last).ok_or_else(unknown)?;
    let bad = |what: &str| invalid(key.clone(), format!("{name}={raw:?} is not {what}"));
    *slot = match slot {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(bad("true or false")),
        }),
        Value::Array(items) if items.iter().any(Value::is_table) || key == "sites" => {
            return Err(invalid(
                key.clone(),
                "tables cannot be set from the environment; use the config file",
            ));
        }
        Value::Array(_) => parse_env_list(raw).ok_or_else(|| bad("a list"))?,
        Value::Table(_) | Value::Datetime(_) => return Err(unknown()),
    };
    Ok(())
}

/// A list from the environment: TOML (`["a", "b"]`) or comma-separated (`a,b`).
fn parse_env_list(raw: &str) -> Option<Value> {
    let raw = raw.trim();
    if raw.starts_with('[') {
        let table: Table = toml::from_str(&format!("v = {raw}")).ok()?;
        return table.get("v").cloned();
    }
    Some(Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
