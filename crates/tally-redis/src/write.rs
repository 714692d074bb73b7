//! The beacon's write path.
//!
//! Round trips: one per batch. A batch is accepted atomically in one of two ways, which
//! write the same keys and entries (see [`wire`](crate::wire) for the layout; the applier does
//! the rest a moment later, see [`apply`](crate::apply)):
//! - a transaction (`MULTI` … `EXEC`) of plain commands: the batch marker, each partition's
//!   incoming entry, the view and custom event counts. It is what a beacon sends on one Redis
//!   for a batch id it has never sent, when every site of the batch is known to be far from
//!   the page cap. It costs Redis about a third less than the script: Lua takes in every
//!   argument as a string of its own, hashing all of its bytes, and wraps every command it
//!   calls (docs/benchmarks.md, "eleventh stage");
//! - one `EVALSHA` of `lua/accept.lua`, which checks the batch marker first: for a retry
//!   (the reply of an earlier call with the same batch id was lost, so that call may have
//!   been accepted), for a site near its page cap (the script decides page by page which
//!   fit), for a site whose hashes' sizes this handle does not know yet, and on a Redis
//!   Cluster, where partitions live in different slots, as one call per partition, sent
//!   together. Only when Redis has lost its script cache (restart) does a batch take a
//!   second trip (`SCRIPT LOAD`).
//!
//! The sizes of the capped hashes (a site's view counts and custom event counts) come back
//! with every call on one Redis: an `HLEN` of each after it. They can be stale by what other
//! beacons added since, so with several beacons a hash can pass the cap by what each of the
//! others adds in one batch before they all see it near the cap; the script is exact.

use std::collections::{BTreeMap, HashMap};

use redis::Script;
use tally_core::{Event, settings::TrackingSettings};

use crate::{Keys, Result, Store, wire};

static ACCEPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/accept.lua")));

/// How long a batch marker lives: a retry comes within seconds (the script's `EX` is the
/// same).
const BATCH_MARKER_SECONDS: u64 = 3600;

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

/// Whether a batch id may have reached Redis before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No call has carried this batch id.
    First,
    /// An earlier call with this batch id may have been accepted (its reply was lost).
    Retry,
}

/// Most capped hashes whose size a handle remembers; past it, it forgets them all (sites
/// are few, so this is only a bound).
const KNOWN_SIZES: usize = 4096;

/// The sizes of the capped hashes as last read by this handle (an `HLEN` after each call).
#[derive(Debug, Default)]
pub(crate) struct CappedSizes(std::sync::Mutex<HashMap<String, u64>>);

impl CappedSizes {
    /// Whether every capped hash `parts` may add to is known to stay within `cap` (0: none)
    /// whatever they add.
    fn fit(&self, parts: &[Packed<'_>], cap: u64) -> bool {
        if cap == 0 {
            return true;
        }
        let known = self.0.lock().expect("capped sizes lock");
        parts.iter().all(|part| {
            part.capped
                .iter()
                .all(|(key, n)| known.get(key).is_some_and(|size| size + *n as u64 <= cap))
        })
    }

    fn learn(&self, parts: &[Packed<'_>], sizes: impl IntoIterator<Item = u64>) {
        let mut known = self.0.lock().expect("capped sizes lock");
        if known.len() > KNOWN_SIZES {
            known.clear();
        }
        for ((key, _), size) in parts.iter().flat_map(|p| &p.capped).zip(sizes) {
            known.insert(key.clone(), size);
        }
    }
}

/// One partition's part of a batch, ready for either way of accepting it.
struct Packed<'a> {
    keys: Keys,
    events: usize,
    layout: &'static str,
    lines: Vec<u8>,
    context: String,
    counts: wire::Counts<'a>,
    /// The capped hashes its counts may add to, with how many members each (see
    /// [`wire::Counts::capped`]).
    capped: Vec<(String, usize)>,
}

impl<'a> Packed<'a> {
    fn new(partition: u16, events: &[&'a TrackedEvent]) -> Self {
        let keys = Keys::new(partition);
        let (layout, lines) = wire::pack_lines(wire::json_lines(events.iter().map(|e| &e.event)));
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
        let capped = counts.capped(&keys);
        Self {
            keys,
            events: events.len(),
            layout,
            lines,
            context,
            counts,
            capped,
        }
    }
}

/// The accept script's call for `parts`.
fn accept_cmd(batch_id: u64, now_ms: i64, cap: u64, parts: &[Packed<'_>]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(ACCEPT.get_hash()).arg(parts.len());
    for part in parts {
        cmd.arg(part.keys.incoming());
    }
    wire::Header {
        batch_id,
        now_ms,
        max_pages: cap,
        parts: parts.len(),
    }
    .push(&mut cmd);
    for part in parts {
        wire::Part {
            prefix: part.keys.prefix(),
            count: part.events,
            layout: part.layout,
            lines: &part.lines,
            context: &part.context,
            counts: &part.counts,
        }
        .push(&mut cmd);
    }
    cmd
}

/// An `HLEN` of every capped hash of `parts`, in order, appended to `pipe` (none without a
/// cap).
fn read_sizes(pipe: &mut redis::Pipeline, parts: &[Packed<'_>], cap: u64) {
    if cap > 0 {
        for (key, _) in parts.iter().flat_map(|p| &p.capped) {
            pipe.cmd("HLEN").arg(key);
        }
    }
}

impl Store {
    /// Accepts `events` atomically (on a cluster: per partition): the incoming streams'
    /// entries and the counters a reader must see at once (views, crawlers, custom event
    /// counts); visits, presence and unique visitors follow when the applier moves the
    /// entries on. `batch_id` must be unique per batch and reused on retry, with
    /// [`Attempt::Retry`]: a call that already accepted this batch id is skipped, so a retry
    /// after a lost reply never counts twice. [`Attempt::First`] promises that no call has
    /// carried `batch_id` before; it may then go as a plain transaction (see the module).
    pub async fn record(
        &self,
        batch_id: u64,
        events: &[TrackedEvent],
        tracking: &TrackingSettings,
        now_ms: i64,
        attempt: Attempt,
    ) -> Result<Recorded> {
        let mut recorded = Recorded {
            events: 0,
            already_applied: 0,
            over_page_cap: 0,
        };
        if events.is_empty() {
            return Ok(recorded);
        }
        let mut by_partition: BTreeMap<u16, Vec<&TrackedEvent>> = BTreeMap::new();
        for e in events {
            by_partition.entry(e.partition).or_default().push(e);
        }
        let parts: Vec<Packed<'_>> = by_partition
            .into_iter()
            .map(|(partition, events)| Packed::new(partition, &events))
            .collect();
        let cap = u64::from(tracking.max_pages);
        let replies: Vec<(Applied, usize)> = if self.is_cluster() {
            // Partitions live in different slots: one call each, all at once.
            let calls = parts.chunks(1).map(|part| {
                let mut conn = self.conn();
                let cmd = accept_cmd(batch_id, now_ms, cap, part);
                async move {
                    let applied = match cmd.query_async::<Applied>(&mut conn).await {
                        Err(e) if e.code() == Some("NOSCRIPT") => {
                            ACCEPT.prepare_invoke().load_async(&mut conn).await?;
                            cmd.query_async::<Applied>(&mut conn).await
                        }
                        other => other,
                    }?;
                    Ok::<_, redis::RedisError>((applied, part[0].events))
                }
            });
            futures_util::future::try_join_all(calls).await?
        } else if attempt == Attempt::First && self.capped_sizes.fit(&parts, cap) {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("SET")
                .arg(parts[0].keys.batch(batch_id))
                .arg("1")
                .arg("NX")
                .arg("EX")
                .arg(BATCH_MARKER_SECONDS)
                .ignore();
            for part in &parts {
                pipe.cmd("XADD")
                    .arg(part.keys.incoming())
                    .arg("*")
                    .arg(wire::incoming::VERSION)
                    .arg(part.layout)
                    .arg(wire::incoming::BATCH)
                    .arg(&part.lines)
                    .arg(wire::incoming::CONTEXT)
                    .arg(&part.context)
                    .arg(wire::incoming::NOW)
                    .arg(now_ms)
                    .arg(wire::incoming::OVER)
                    .arg("")
                    .ignore();
                part.counts.push_commands(&mut pipe, &part.keys);
            }
            read_sizes(&mut pipe, &parts, cap);
            let sizes: Vec<u64> = pipe.query_async(&mut self.conn()).await?;
            self.capped_sizes.learn(&parts, sizes);
            vec![(Applied::Now { over_page_cap: 0 }, events.len())]
        } else {
            let mut pipe = redis::pipe();
            pipe.add_command(accept_cmd(batch_id, now_ms, cap, &parts));
            read_sizes(&mut pipe, &parts, cap);
            let mut conn = self.conn();
            let replies: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    ACCEPT.prepare_invoke().load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await?
                }
                other => other?,
            };
            let mut replies = replies.into_iter();
            let applied: Applied = redis::from_redis_value(
                replies
                    .next()
                    .ok_or_else(|| crate::Error::Reply("no reply to the accept script".into()))?,
            )?;
            let sizes = replies
                .map(redis::from_redis_value::<u64>)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.capped_sizes.learn(&parts, sizes);
            vec![(applied, events.len())]
        };
        for (reply, size) in replies {
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
