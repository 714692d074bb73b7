//! Retention of raw events (`retention.raw_days`): whole monthly partitions of `events` (and
//! of its copies `page_events` and `second_views`) are dropped once every day in them is
//! older than the limit. The rollups are never touched, so statistics for old ranges stay;
//! only the raw rows go. Dropping partitions works on every
//! ClickHouse release (18.16 has no TTL).

use chrono::{Months, NaiveDate};
use serde::Deserialize;

use crate::{Db, Result};

#[derive(Deserialize, clickhouse::Row)]
struct Partition {
    partition: String,
}

/// Whether every day of month `yyyymm` is before `cutoff`.
fn month_is_older(yyyymm: u32, cutoff: NaiveDate) -> bool {
    let (y, m) = ((yyyymm / 100) as i32, yyyymm % 100);
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.checked_add_months(Months::new(1)))
        .is_some_and(|next_month| next_month <= cutoff)
}

/// The raw events and the copies of them ordered for the page figures (migration 12),
/// partitioned alike by month.
const RAW_TABLES: [&str; 3] = ["events", "page_events", "second_views"];

impl Db {
    /// Drops the monthly partitions of `events` (and its copies) lying wholly before `cutoff` (a UTC date).
    /// Returns the partitions dropped, e.g. `[202101]`.
    pub async fn drop_raw_before(&self, cutoff: NaiveDate) -> Result<Vec<u32>> {
        // On a cluster, the partitions of every shard's local table.
        let parts: Vec<Partition> = match &self.cluster {
            None => self.query(
                "SELECT DISTINCT partition FROM system.parts \
                 WHERE database = ? AND table = 'events' AND active",
            ),
            Some(cluster) => self
                .query(
                    "SELECT DISTINCT partition FROM cluster(?, system, parts) \
                     WHERE database = ? AND table = 'events_local' AND active",
                )
                .bind(&cluster.name),
        }
        .bind(self.database())
        .fetch_all()
        .await?;
        let mut dropped = Vec::new();
        for p in parts {
            let Ok(month) = p.partition.trim_matches('\'').parse::<u32>() else {
                continue;
            };
            if !month_is_older(month, cutoff) {
                continue;
            }
            // The partition id is a number read back from the server and re-checked above,
            // so it can be written into the statement (DDL cannot bind it).
            for table in RAW_TABLES {
                let table = self.local_tables(table);
                self.query(&format!("ALTER TABLE {table} DROP PARTITION {month}"))
                    .execute()
                    .await?;
            }
            dropped.push(month);
        }
        dropped.sort_unstable();
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_months_before_the_cutoff_go() {
        let cutoff = NaiveDate::from_ymd_opt(2021, 3, 15).unwrap();
        assert!(month_is_older(202101, cutoff));
        assert!(month_is_older(202102, cutoff));
        assert!(!month_is_older(202103, cutoff));
        assert!(!month_is_older(202104, cutoff));
        assert!(month_is_older(202012, cutoff));
        assert!(!month_is_older(202113, cutoff), "not a month");
        let first = NaiveDate::from_ymd_opt(2021, 3, 1).unwrap();
        assert!(month_is_older(202102, first));
    }
}
