//! Inserting events and checking which are already stored.

use std::{borrow::Borrow, collections::HashSet};

use crate::{Db, EventRow, INSERT_TIMEOUT, Result, sqllog};

/// How many ids one existence check sends (keeps the query well under `max_query_size`).
const IDS_PER_CHECK: usize = 2000;

impl Db {
    /// Inserts `rows` into `events` in one INSERT (RowBinary). Rollups follow through their
    /// materialized views.
    pub async fn insert_events<R: Borrow<EventRow>>(&self, rows: &[R]) -> Result<()> {
        self.insert_event_rows("events", rows).await
    }

    /// One RowBinary INSERT of `rows` into `table` (a table with the columns of `events`).
    async fn insert_event_rows<R: Borrow<EventRow>>(&self, table: &str, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqllog::record(&format!(
            "INSERT INTO {table} ({}) FORMAT RowBinary",
            <EventRow as clickhouse::Row>::COLUMN_NAMES.join(", ")
        ));
        let mut insert = self
            .client
            .insert::<EventRow>(table)
            .await?
            .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
        for row in rows {
            insert.write(row.borrow()).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// Which of `ids` are already in `events`. `min_ts`/`max_ts` (seconds) bound the events'
    /// timestamps, so only the partitions that can hold them are read.
    pub async fn existing_event_ids(
        &self,
        ids: &[String],
        min_ts: u32,
        max_ts: u32,
    ) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(IDS_PER_CHECK) {
            let rows: Vec<String> = self
                .query(
                    "SELECT event_id FROM events \
                     WHERE ts >= toDateTime(?, 'UTC') AND ts <= toDateTime(?, 'UTC') \
                     AND has(?, event_id)",
                )
                .bind(min_ts)
                .bind(max_ts)
                .bind(chunk)
                .fetch_all()
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Rows in `events` and distinct `event_id`s among them: equal when nothing was doubled.
    pub async fn event_id_counts(&self) -> Result<(u64, u64)> {
        Ok(self
            .query("SELECT count(), uniqExact(event_id) FROM events")
            .fetch_one()
            .await?)
    }

    /// How many inserts `events` has taken: its highest block number (a MergeTree numbers
    /// each insert's block, merges keep the numbers). For tests on a single server.
    pub async fn events_inserts(&self) -> Result<u64> {
        Ok(self
            .query(
                "SELECT toUInt64(max(max_block_number)) FROM system.parts \
                 WHERE database = currentDatabase() AND table = 'events'",
            )
            .fetch_one()
            .await?)
    }

    /// Number of rows in `events` (all sites).
    pub async fn count_events(&self) -> Result<u64> {
        Ok(self.query("SELECT count() FROM events").fetch_one().await?)
    }
}

/// A stored event as the tests read it back.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub site: String,
    pub kind: String,
    pub page: String,
    pub title: String,
    pub referrer_host: String,
    pub utm_source: String,
    pub browser: String,
    pub visitor: u64,
    pub session: u64,
    pub new_visit: u8,
}

impl Db {
    /// Every stored event, oldest first (for tests and debugging; unbounded).
    pub async fn debug_rows(&self) -> Result<Vec<StoredEvent>> {
        Ok(self
            .query(
                "SELECT event_id, site, toString(kind), page, title, referrer_host, utm_source, \
                 browser, visitor, session, new_visit FROM events ORDER BY ts, event_id",
            )
            .fetch_all()
            .await?)
    }
}

impl Db {
    /// Runs a statement as given, for tests that need to shape the server (never called with
    /// input from a request).
    pub async fn execute_unchecked(&self, sql: &str) -> Result<()> {
        Ok(self.query(sql).execute().await?)
    }
}

impl Db {
    /// Creates `events_plain`, a copy of `events` without rollups, for the benchmark that
    /// compares the worker's drain rate with a plain batch insert.
    pub async fn create_plain_events_copy(&self) -> Result<()> {
        self.query("DROP TABLE IF EXISTS events_plain")
            .execute()
            .await?;
        self.query("CREATE TABLE events_plain AS events")
            .execute()
            .await?;
        Ok(())
    }

    /// Merges ClickHouse is running in this database (the benchmark waits for none before
    /// measuring its baseline, so that the parts a drain left do not slow it down).
    pub async fn merges_running(&self) -> Result<u64> {
        Ok(self
            .query("SELECT count() FROM system.merges WHERE database = currentDatabase()")
            .fetch_one()
            .await?)
    }

    /// Inserts `rows` into `events_plain` (benchmark baseline).
    pub async fn insert_plain<R: Borrow<EventRow>>(&self, rows: &[R]) -> Result<()> {
        self.insert_event_rows("events_plain", rows).await
    }
}

impl Db {
    /// Events of `site` whose page starts with `prefix` (benchmarks follow marked events).
    pub async fn count_pages_with_prefix(&self, site: &str, prefix: &str) -> Result<u64> {
        Ok(self
            .query("SELECT count() FROM events WHERE site = ? AND startsWith(page, ?)")
            .bind(site)
            .bind(prefix)
            .fetch_one()
            .await?)
    }
}
