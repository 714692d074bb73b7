//! The beacon's write path.
//!
//! Round trips: one per batch. A batch goes to one `EVALSHA` of `lua/accept.lua`, which
//! counts its views and adds each partition's events to that partition's incoming stream
//! as one entry (see [`wire`](crate::wire) for the layout of both; the applier does the
//! rest a moment later, see [`apply`](crate::apply)). To a cluster, where partitions live
//! in different slots, it is one call per partition, sent together. Only when Redis has
//! lost its script cache (restart) does a batch take a second trip (`SCRIPT LOAD`).

use std::collections::BTreeMap;

use redis::Script;
use tally_core::{Event, settings::TrackingSettings};

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
    /// Events that an earlier try of the batch had accepted already.
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
    /// Accepts `events` atomically (on a cluster: per partition): the incoming streams'
    /// entries and the counters a reader must see at once (views, crawlers, custom event
    /// counts); visits, presence and unique visitors follow when the applier moves the
    /// entries on. `batch_id` must be unique per batch and reused on retry: a call that
    /// already accepted this batch id is skipped, so a retry after a lost reply never counts
    /// twice.
    pub async fn record(
        &self,
        batch_id: u64,
        events: &[TrackedEvent],
        tracking: &TrackingSettings,
        now_ms: i64,
    ) -> Result<Recorded> {
        if events.is_empty() {
            return Ok(Recorded {
                events: 0,
                already_applied: 0,
                over_page_cap: 0,
            });
        }
        let mut by_partition: BTreeMap<u16, Vec<&TrackedEvent>> = BTreeMap::new();
        for e in events {
            by_partition.entry(e.partition).or_default().push(e);
        }
        // Parts of one call: all partitions on one Redis, one per call on a cluster.
        let calls: Vec<Vec<(u16, Vec<&TrackedEvent>)>> = if self.is_cluster() {
            by_partition.into_iter().map(|part| vec![part]).collect()
        } else {
            vec![by_partition.into_iter().collect()]
        };
        let mut cmds = Vec::with_capacity(calls.len());
        let mut sizes = Vec::with_capacity(calls.len());
        for parts in &calls {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(ACCEPT.get_hash()).arg(parts.len());
            for (partition, _) in parts {
                cmd.arg(Keys::new(*partition).incoming());
            }
            wire::Header {
                batch_id,
                now_ms,
                max_pages: u64::from(tracking.max_pages),
                parts: parts.len(),
            }
            .push(&mut cmd);
            for (partition, events) in parts {
                let keys = Keys::new(*partition);
                let (layout, lines) =
                    wire::pack_lines(wire::json_lines(events.iter().map(|e| &e.event)));
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
                let mut counts = wire::Counts::default();
                for (place, e) in events.iter().enumerate() {
                    counts.add(place, &e.event);
                }
                wire::Part {
                    prefix: keys.prefix(),
                    count: events.len(),
                    layout,
                    lines: &lines,
                    context: &context,
                    counts: &counts,
                }
                .push(&mut cmd);
            }
            cmds.push(cmd);
            sizes.push(parts.iter().map(|(_, events)| events.len()).sum::<usize>());
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
