//! Records every SQL statement sent, when `TALLY_SQL_LOG` names a directory. The test suite
//! sets it and `scripts/chdb-replay` replays the recorded statements on current ClickHouse,
//! so SQL that only works on 18.16 (or only on new releases) is caught.

use std::{io::Write, path::PathBuf, sync::Mutex};

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

/// Records a query as it will be sent (values bound) when it is executed.
pub(crate) trait Logged {
    fn logged(self) -> Self;
}

impl Logged for clickhouse::query::Query {
    fn logged(self) -> Self {
        record(&self.sql_display().to_string());
        self
    }
}

/// Appends `sql` (one statement) followed by a `;;` line.
pub(crate) fn record(sql: &str) {
    if let Some(log) = LOG.as_ref() {
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{}\n;;", sql.trim());
    }
}
