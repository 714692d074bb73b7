//! Every statement goes through [`Query`], which records it (values bound) when it runs and
//! `TALLY_SQL_LOG` names a directory. The test suite sets it and `scripts/chdb-replay`
//! replays the recorded statements on current ClickHouse, so SQL that only works on 18.16
//! (or only on new releases) is caught. Recording at execution, in one wrapper, means no
//! statement can skip the log.

use std::{io::Write, path::PathBuf, sync::Mutex};

use clickhouse::{RowOwned, RowRead, sql::Bind};

static LOG: std::sync::LazyLock<Option<Mutex<std::fs::File>>> = std::sync::LazyLock::new(|| {
    let dir = PathBuf::from(std::env::var_os("TALLY_SQL_LOG")?);
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.sql", std::process::id())))
        .ok()?;
    Some(Mutex::new(file))
});

/// Appends `sql` (one statement) followed by a `;;` line.
pub(crate) fn record(sql: &str) {
    if let Some(log) = LOG.as_ref() {
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{}\n;;", sql.trim());
    }
}

/// A statement about to be sent; values are bound client-side with `?` (ClickHouse 18.16
/// knows no server-side parameters), escaped by the `clickhouse` crate.
pub(crate) struct Query(clickhouse::query::Query);

impl Query {
    pub(crate) fn new(inner: clickhouse::query::Query) -> Self {
        Self(inner)
    }

    pub(crate) fn bind(self, value: impl Bind) -> Self {
        Self(self.0.bind(value))
    }

    pub(crate) fn with_setting(self, name: &str, value: impl Into<String>) -> Self {
        Self(self.0.with_setting(name, value))
    }

    fn record(&self) {
        record(&self.0.sql_display().to_string());
    }

    pub(crate) async fn execute(self) -> clickhouse::error::Result<()> {
        self.record();
        self.0.execute().await
    }

    pub(crate) async fn fetch_one<T: RowOwned + RowRead>(self) -> clickhouse::error::Result<T> {
        self.record();
        self.0.fetch_one().await
    }

    pub(crate) async fn fetch_all<T: RowOwned + RowRead>(
        self,
    ) -> clickhouse::error::Result<Vec<T>> {
        self.record();
        self.0.fetch_all().await
    }
}
