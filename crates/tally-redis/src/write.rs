//! The beacon's write path.
//!
//! Round trips: one per batch. A batch is split by partition and each partition's events go
//! to one `EVALSHA` of `lua/accept.lua` (which counts their views and adds them to the
//! partition's incoming stream as one entry, see [`wire`](crate::wire) for the layout of
//! both; the applier does the rest a moment later, see [`apply`](crate::apply)); all of
//! them travel in one pipeline (to a cluster: one call per partition, sent together, as
//! partitions live in different slots). Only when Redis has lost its script cache (restart)
//! does a batch take a second trip (`SCRIPT LOAD`).

use std::collections::BTreeMap;

use redis::Script;
use tally_core::{Event, EventKind, settings::TrackingSettings};

use crate::{Keys, Result, Store, wire};

static ACCEPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/accept.lua")));

/// An event ready to be recorded, with what the script needs beside the event itself.
#[derive(Debug, Clone)]
pub struct TrackedEvent {
    pub event: Event,
    /// Partition of the event's site.
    pub partition: u16,
    /// Day of the event in the site's time zone (`YYYYMMDD`), for the unique-visitor count.
    pub day: String,
    /// Session id to use if this event starts a visit.
    pub session_candidate: u64,
}

/// What a recorded batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Events written by this call.
    pub events: usize,
    /// Events of partitions whose part of the batch had been applied by an earlier try.
    pub already_applied: usize,
    /// Events recorded live under "other pages" (their site is at `tracking.max_pages`).
    pub over_page_cap: usize,
}

/// The accept script's answer for one partition.
enum Applied {
    /// This batch id had been applied by an earlier try (the script answered -1).
    Before,
    /// Recorded now (the script answered {events, events under "other pages"}).
    Now { over_page_cap: usize },
}

impl redis::FromRedisValue for Applied {
    fn from_redis_value(v: redis::Value) -> std::result::Result<Self, redis::ParsingError> {
        match v {
            redis::Value::Int(n) if n < 0 => Ok(Self::Before),
            other => {
                let (_, over_page_cap): (usize, usize) = redis::from_redis_value(other)?;
                Ok(Self::Now { over_page_cap })
            }
        }
    }
}

impl Store {
    /// Accepts `events` atomically per partition: the incoming stream's entry and the
    /// counters a reader must see at once (views, crawlers, custom event counts); visits,
    /// presence and unique visitors follow when the applier moves the entry on. `batch_id` must be unique per batch and reused on retry:
    /// a partition that already applied this batch id is skipped, so a retry after a lost
    /// reply never counts twice.
    pub async fn record(
        &self,
        batch_id: u64,
        events: &[TrackedEvent],
        tracking: &TrackingSettings,
        now_ms: i64,
    ) -> Result<Recorded> {
        let mut by_partition: BTreeMap<u16, Vec<&TrackedEvent>> = BTreeMap::new();
        for e in events {
            by_partition.entry(e.partition).or_default().push(e);
        }
        let mut cmds = Vec::with_capacity(by_partition.len());
        let mut sizes = Vec::with_capacity(by_partition.len());
        for (partition, events) in &by_partition {
            let keys = Keys::new(*partition);
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(ACCEPT.get_hash()).arg(1).arg(keys.incoming());
            let lines = wire::json_lines(events.iter().map(|e| &e.event));
            let context = events
                .iter()
                .map(|e| {
                    wire::Context {
                        session_candidate: e.session_candidate,
                        day: e.day.clone(),
                    }
                    .to_string()
                })
                .collect::<Vec<_>>()
                .join(",");
            wire::Header {
                prefix: keys.prefix(),
                batch_id,
                now_ms,
                max_pages: u64::from(tracking.max_pages),
                count: events.len(),
                lines: &lines,
                context: &context,
            }
            .push(&mut cmd);
            for e in events {
                let field = if e.event.kind == EventKind::Custom {
                    wire::event_field(&e.event.name, &e.event.target)
                } else {
                    String::new()
                };
                wire::EventArgs {
                    kind: e.event.kind,
                    site: &e.event.site,
                    page: &e.event.page,
                    field: &field,
                }
                .push(&mut cmd);
            }
            cmds.push(cmd);
            sizes.push(events.len());
        }
        let mut conn = self.conn();
        let replies: Vec<Applied> = if self.is_cluster() {
            // Partitions live in different slots: one call each, all at once.
            let calls = cmds.iter().map(|cmd| {
                let mut conn = self.conn();
                async move {
                    match cmd.query_async::<Applied>(&mut conn).await {
                        Err(e) if e.code() == Some("NOSCRIPT") => {
                            ACCEPT.prepare_invoke().load_async(&mut conn).await?;
                            cmd.query_async::<Applied>(&mut conn).await
                        }
                        other => other,
                    }
                }
            });
            futures_util::future::try_join_all(calls).await?
        } else {
            let mut pipe = redis::pipe();
            for cmd in &cmds {
                pipe.add_command(cmd.clone());
            }
            match pipe.query_async(&mut conn).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    ACCEPT.prepare_invoke().load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await?
                }
                other => other?,
            }
        };
        let mut recorded = Recorded {
            events: 0,
            already_applied: 0,
            over_page_cap: 0,
        };
        for (reply, size) in replies.into_iter().zip(sizes) {
            match reply {
                Applied::Before => recorded.already_applied += size,
                Applied::Now { over_page_cap } => {
                    recorded.events += size;
                    recorded.over_page_cap += over_page_cap;
                }
            }
        }
        Ok(recorded)
    }
}
