//! Places of visitors' addresses (`geoip.database`): a MaxMind-format city database, read
//! with the `maxminddb` crate. The address is looked up and forgotten; only the country code,
//! region and city names go into the event. Two record layouts are read: MaxMind's GeoIP2 /
//! GeoLite2 City (`country.iso_code`, `subdivisions[0].names.en`, `city.names.en`) and the
//! flat one of the ip-location-db files (`country_code`, `state1`, `city`).
//!
//! The file is reopened when its modification time or size changes ([`Places::watch`],
//! every [`CHECK_EVERY`]); a file that cannot be read keeps the database already open.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How often the file is checked for a new version.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Longest region or city name kept (the databases' are far shorter).
const MAX_NAME: usize = 100;

/// Where an address is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// Two-letter code, upper case; empty when unknown.
    pub country: String,
    /// Region (province, state), in English; empty when unknown.
    pub region: String,
    /// City, in English; empty when unknown.
    pub city: String,
}

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
#[error("geoip.database: cannot read {path}: {message}")]
pub struct OpenError {
    path: String,
    message: String,
}

type Reader = maxminddb::Reader<Vec<u8>>;

/// The database in use (none when `geoip.database` is empty).
#[derive(Clone, Default)]
pub struct Places {
    inner: Option<Arc<Watched>>,
}

struct Watched {
    path: PathBuf,
    reader: RwLock<(Arc<Reader>, Version)>,
}

/// What tells one version of the file from another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
}

fn version(path: &Path) -> std::io::Result<Version> {
    let meta = std::fs::metadata(path)?;
    Ok(Version {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

fn open(path: &Path) -> Result<(Reader, Version), OpenError> {
    let error = |message: String| OpenError {
        path: path.display().to_string(),
        message,
    };
    let before = version(path).map_err(|e| error(e.to_string()))?;
    let reader = Reader::open_readfile(path).map_err(|e| error(e.to_string()))?;
    Ok((reader, before))
}

impl Places {
    /// Opens `path`; an empty path is no database.
    pub fn open(path: &str) -> Result<Self, OpenError> {
        if path.is_empty() {
            return Ok(Self::default());
        }
        let path = PathBuf::from(path);
        let (reader, v) = open(&path)?;
        tracing::info!(
            message = "geoip database opened",
            path = %path.display(),
            kind = %reader.metadata().database_type,
        );
        Ok(Self {
            inner: Some(Arc::new(Watched {
                path,
                reader: RwLock::new((Arc::new(reader), v)),
            })),
        })
    }

    /// The place of `ip`; empty fields for what the database does not know (or without one).
    pub fn lookup(&self, ip: IpAddr) -> Place {
        let Some(w) = &self.inner else {
            return Place::default();
        };
        let reader = w.reader.read().map(|r| r.0.clone());
        let Ok(reader) = reader else {
            return Place::default();
        };
        let record = reader
            .lookup(ip)
            .and_then(|found| found.decode::<Record<'_>>())
            .ok()
            .flatten();
        record.map(Record::place).unwrap_or_default()
    }

    /// Reopens the file whenever it changes, until `shutdown`.
    pub async fn watch(self, shutdown: CancellationToken) {
        let Some(w) = self.inner else { return };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            w.reload_if_changed().await;
        }
    }

    /// Checks the file now and reopens it if it changed (what [`Self::watch`] does each time).
    pub async fn reload_now(&self) {
        if let Some(w) = &self.inner {
            w.reload_if_changed().await;
        }
    }
}

impl Watched {
    async fn reload_if_changed(&self) {
        let current = self.reader.read().map(|r| r.1.clone()).ok();
        let path = self.path.clone();
        let Ok(Ok(now)) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || version(&path)
        })
        .await
        else {
            return;
        };
        if current.as_ref() == Some(&now) {
            return;
        }
        match tokio::task::spawn_blocking(move || open(&path)).await {
            Ok(Ok((reader, v))) => {
                if let Ok(mut slot) = self.reader.write() {
                    *slot = (Arc::new(reader), v);
                }
                tracing::info!(message = "geoip database reopened", path = %self.path.display());
            }
            Ok(Err(error)) => {
                tracing::warn!(message = "geoip database changed but cannot be read; the one open stays", %error);
            }
            Err(_) => {}
        }
    }
}

/// The fields of both layouts that name a place.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    subdivisions: Option<Vec<Names<'a>>>,
    #[serde(borrow)]
    city: Option<City<'a>>,
    country_code: Option<&'a str>,
    state1: Option<&'a str>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    names: Option<BTreeMap<&'a str, &'a str>>,
}

impl Names<'_> {
    fn english(&self) -> &str {
        self.names
            .as_ref()
            .and_then(|n| n.get("en"))
            .copied()
            .unwrap_or_default()
    }
}

/// GeoIP2 gives the city as names by language, ip-location-db as a name.
#[derive(Deserialize)]
#[serde(untagged)]
enum City<'a> {
    Name(&'a str),
    #[serde(borrow)]
    Names(Names<'a>),
}

impl Record<'_> {
    fn place(self) -> Place {
        let country = self
            .country
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .unwrap_or_default();
        let region = match (&self.subdivisions, self.state1) {
            (Some(s), _) if !s.is_empty() => s[0].english(),
            (_, Some(state)) => state,
            _ => "",
        };
        let city = match &self.city {
            Some(City::Name(n)) => n,
            Some(City::Names(n)) => n.english(),
            None => "",
        };
        let country = if country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()) {
            country.to_ascii_uppercase()
        } else {
            String::new()
        };
        Place {
            country,
            region: clean(region),
            city: clean(city),
        }
    }
}

/// A name as stored: no control characters, at most [`MAX_NAME`] bytes (on a char boundary).
fn clean(name: &str) -> String {
    let mut out: String = name.trim().chars().filter(|c| !c.is_control()).collect();
    if out.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}
