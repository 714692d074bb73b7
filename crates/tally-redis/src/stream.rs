//! The worker's side of the event streams: consumer group reads, reclaiming entries of dead
//! consumers, acknowledging and dead letters.
//!
//! Reads and claims parse replies from `redis::Value` by hand: the reply shapes of
//! XREADGROUP and XAUTOCLAIM are small and stable, and this keeps us independent of the
//! client's typed stream helpers.

use redis::Value;

use crate::wire::{self, DeadLetter, Payload, StreamEvent};
use crate::{Error, Keys, Result, Store, keys::GROUP};

/// The acknowledgement (see the script): sent whole with EVAL.
const ACK: &str = include_str!("lua/ack.lua");

/// An entry of a stream as read: its id and fields (name, value, …).
type RawEntry = (String, Vec<String>);

static FORGET_CONSUMERS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("lua/forget_consumers.lua")));

/// Deletes dead letter ARGV[1] from KEYS[1] and, only if it was there, adds an entry with
/// the fields ARGV[2..] (name, value, …) to the events stream KEYS[2]: two replays of one
/// dead letter add it once. Both keys carry the partition's hash tag.
static REPLAY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then \
           redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2)) return 1 \
         end return 0",
    )
});

/// A partition's backlog, for the metrics operators alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Entries (beacon batches) not yet inserted and acknowledged.
    pub entries: u64,
    /// How long the oldest of them has waited, in ms (0 when there is none).
    pub oldest_age_ms: u64,
    /// Events in the dead-letter stream.
    pub dead_letters: u64,
}

impl Store {
    /// Creates the consumer group of `partition` (and the stream) if missing.
    pub async fn ensure_group(&self, partition: u16) -> Result<()> {
        let mut conn = self.conn();
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(Keys::new(partition).events())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match result {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Reads up to `count` new entries for `consumer`, waiting up to `block_ms` for some.
    ///
    /// Blocking ties up the connection: use a `Store` of its own for each reading loop.
    pub async fn read_new(
        &self,
        partition: u16,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<StreamEvent>> {
        let mut conn = self.conn();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(Keys::new(partition).events())
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let raw = match reply {
            Value::Nil => Vec::new(),
            Value::Array(streams) => match streams.into_iter().next() {
                Some(Value::Array(mut pair)) if pair.len() == 2 => parse_entries(pair.pop())?,
                other => return Err(Error::Reply(format!("XREADGROUP stream: {other:?}"))),
            },
            Value::Map(map) => match map.into_iter().next() {
                Some((_, entries)) => parse_entries(Some(entries))?,
                None => Vec::new(),
            },
            other => return Err(Error::Reply(format!("XREADGROUP: {other:?}"))),
        };
        self.decode(partition, &raw).await
    }

    /// The events of `entries` of `partition`'s events stream: the JSON of an entry of the
    /// current wire version is read from the incoming entries it names (one round trip for
    /// all of them), or taken parsed from the handoff when this handle applied them.
    async fn decode(&self, partition: u16, entries: &[RawEntry]) -> Result<Vec<StreamEvent>> {
        let keys = Keys::new(partition);
        // One event per visit figure (an entry without figures is read as one), so the
        // batch is not grown push by push: under load its reallocations went to fresh pages.
        let events = entries
            .iter()
            .map(|(_, fields)| {
                wire::field(fields, wire::field::FIGURES).map_or(1, |m| m.matches(',').count() + 1)
            })
            .sum();
        let mut out = Vec::with_capacity(events);
        // Per entry applied by this process: its events, from the handoff (see `handoff`);
        // the others are read from Redis.
        let handed: Vec<Option<Vec<StreamEvent>>> = entries
            .iter()
            .map(|(id, fields)| {
                let handoff = self.handoff.as_ref()?;
                let events = handoff.take(partition, wire::linked_field(fields)?)?;
                let mut decoded = Vec::new();
                wire::decode_applied(id, fields, events, &mut decoded).then_some(decoded)
            })
            .collect();
        // Per entry: `None` for one holding its JSON or handed over, else the incoming
        // entries it names when they can be read (ids written by hand may be no stream ids
        // at all: empty).
        let linked: Vec<Option<Vec<&str>>> = entries
            .iter()
            .zip(&handed)
            .map(|((_, fields), handed)| {
                handed
                    .is_none()
                    .then(|| wire::linked_ids(fields))
                    .flatten()
                    .map(|ids| if readable(&ids) { ids } else { Vec::new() })
            })
            .collect();
        let mut pipe = redis::pipe();
        for ids in linked.iter().flatten().filter(|ids| !ids.is_empty()) {
            // The ids of a run are consecutive in the stream: one range reads them all.
            pipe.cmd("XRANGE")
                .arg(keys.incoming())
                .arg(ids[0])
                .arg(ids[ids.len() - 1]);
        }
        let mut sources = if pipe.cmd_iter().next().is_some() {
            let mut conn = self.conn();
            let read: Vec<Vec<(String, Vec<Vec<u8>>)>> = pipe.query_async(&mut conn).await?;
            read.into_iter()
        } else {
            Vec::new().into_iter()
        };
        for (((id, fields), ids), handed) in entries.iter().zip(&linked).zip(handed) {
            if let Some(events) = handed {
                out.extend(events);
                continue;
            }
            let lines = match ids {
                Some(ids) if !ids.is_empty() => {
                    let read = sources.next().unwrap_or_default();
                    // Every named entry, and no other (none is deleted before its events
                    // are stored).
                    let whole =
                        read.len() == ids.len() && read.iter().zip(ids).all(|(r, id)| r.0 == *id);
                    whole.then(|| {
                        read.iter()
                            .map(|(_, f)| wire::incoming_lines(f))
                            .filter(|batch| !batch.is_empty())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                }
                _ => None,
            };
            wire::decode_entry(id.clone(), fields, lines.as_deref(), &mut out);
        }
        Ok(out)
    }

    /// Takes over up to `count` entries that other consumers read but have not acknowledged
    /// for at least `min_idle_ms`, scanning from `cursor` (`0-0` to start). Returns the
    /// cursor for the next call (`0-0` when the scan is complete) and the entries.
    pub async fn claim_idle(
        &self,
        partition: u16,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<StreamEvent>)> {
        let mut conn = self.conn();
        let reply: Vec<Value> = redis::cmd("XAUTOCLAIM")
            .arg(Keys::new(partition).events())
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        let mut parts = reply.into_iter();
        let next = parts
            .next()
            .map(redis::from_redis_value::<String>)
            .transpose()?
            .ok_or_else(|| Error::Reply("XAUTOCLAIM without cursor".into()))?;
        let raw = parse_entries(parts.next())?;
        Ok((next, self.decode(partition, &raw).await?))
    }

    /// Acknowledges and deletes `ids` from the stream, with the incoming entries holding
    /// their events' JSON: [`ACK_ENTRIES`] entries per call (each atomic), one call after
    /// the other.
    pub async fn ack(&self, partition: u16, ids: &[String]) -> Result<()> {
        let keys = Keys::new(partition);
        let mut conn = self.conn();
        for chunk in ids.chunks(ACK_ENTRIES) {
            let _: () = ack_cmd(&keys, chunk).query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Moves `letters` to the partition's dead-letter stream, keeping at most `max_len` dead
    /// letters (the oldest go), and acknowledges the entries holding them (one atomic round
    /// trip). The caller acknowledges the other events of those entries in the same batch.
    /// Returns how many older dead letters were dropped to stay within `max_len`.
    pub async fn dead_letter(
        &self,
        partition: u16,
        letters: &[DeadLetter],
        max_len: u64,
    ) -> Result<u64> {
        if letters.is_empty() {
            return Ok(0);
        }
        let keys = Keys::new(partition);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("XLEN").arg(keys.dead_letters());
        for letter in letters {
            let cmd = pipe
                .cmd("XADD")
                .arg(keys.dead_letters())
                .arg("MAXLEN")
                .arg(max_len)
                .arg("*");
            for (name, value) in letter.fields() {
                cmd.arg(name).arg(value);
            }
            cmd.ignore();
        }
        let mut ids: Vec<&str> = letters.iter().map(|l| l.key.entry.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        pipe.cmd("XLEN").arg(keys.dead_letters());
        pipe.add_command(ack_cmd(&keys, &ids)).ignore();
        let mut conn = self.conn();
        let (before, after): (u64, u64) = pipe.query_async(&mut conn).await?;
        Ok((before + letters.len() as u64).saturating_sub(after))
    }

    /// The partition's dead letters, oldest first.
    pub async fn dead_letters(&self, partition: u16) -> Result<Vec<DeadLetter>> {
        let key = Keys::new(partition).dead_letters();
        Ok(self
            .range_all(&key)
            .await?
            .into_iter()
            .map(|(id, fields)| DeadLetter::decode(id, &fields))
            .collect())
    }

    /// Sends the dead letter `letter` of `partition` through the worker again: its event
    /// goes back into the partition's stream (an entry of one event, its visit figures as
    /// they were) and the dead letter is deleted, in one transaction, so a replay never
    /// doubles an event. A payload that is no event stays and is reported as an error.
    pub async fn replay_dead_letter(&self, partition: u16, letter: &DeadLetter) -> Result<()> {
        let Payload::Event(event) = &letter.payload else {
            return Err(Error::Reply("not an event: it cannot be replayed".into()));
        };
        let keys = Keys::new(partition);
        let mut invocation = REPLAY.key(keys.dead_letters());
        invocation.key(keys.events()).arg(&letter.id);
        for (name, value) in wire::entry_fields(event, wire::Figures::of(event)) {
            invocation.arg(name).arg(value);
        }
        let mut conn = self.conn();
        let deleted: u64 = invocation.invoke_async(&mut conn).await?;
        if deleted == 0 {
            return Err(Error::Reply(format!(
                "dead letter {} was already gone",
                letter.id
            )));
        }
        Ok(())
    }

    /// Deletes the consumers of `partition`'s group other than `keep` that have nothing
    /// pending and have been idle for `min_idle_ms` (stopped workers); returns how many.
    pub async fn forget_idle_consumers(
        &self,
        partition: u16,
        keep: &str,
        min_idle_ms: u64,
    ) -> Result<u64> {
        let mut conn = self.conn();
        Ok(FORGET_CONSUMERS
            .key(Keys::new(partition).events())
            .arg(GROUP)
            .arg(keep)
            .arg(min_idle_ms)
            .invoke_async(&mut conn)
            .await?)
    }

    /// The consumers of `partition`'s group with their pending entries.
    pub async fn consumers(&self, partition: u16) -> Result<Vec<(String, u64)>> {
        let mut conn = self.conn();
        let reply: Vec<std::collections::HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(Keys::new(partition).events())
            .arg(GROUP)
            .query_async(&mut conn)
            .await?;
        reply
            .into_iter()
            .map(|c| {
                let name = c.get("name").cloned().unwrap_or(Value::Nil);
                let pending = c.get("pending").cloned().unwrap_or(Value::Int(0));
                Ok((
                    redis::from_redis_value(name)?,
                    redis::from_redis_value(pending)?,
                ))
            })
            .collect()
    }

    /// Entries of the partition not yet in ClickHouse: accepted and not yet applied, or
    /// applied and not yet acknowledged and deleted (an events entry, whose incoming entries
    /// are not counted again). Reads the unapplied entries: for tests and tools.
    pub async fn stream_len(&self, partition: u16) -> Result<u64> {
        let unapplied = self.incoming_len(partition).await?;
        let mut conn = self.conn();
        let events: u64 = redis::cmd("XLEN")
            .arg(Keys::new(partition).events())
            .query_async(&mut conn)
            .await?;
        Ok(unapplied + events)
    }

    /// Accepted batches of the partition not yet applied: the incoming entries past the
    /// applier's cursor (see `apply.rs`), counted by reading them: for tests and tools.
    pub async fn incoming_len(&self, partition: u16) -> Result<u64> {
        let keys = Keys::new(partition);
        let cursor = self.applied_cursor(&keys).await?;
        let after = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let unapplied: Vec<(String, Value)> = self.range_from(&keys.incoming(), after).await?;
        Ok(unapplied.len() as u64)
    }

    /// The partition's backlog at `now_ms`: accepted beacon batches not yet in ClickHouse
    /// (every one stays in the incoming stream until the worker has stored its events; a
    /// dead letter sent back is not counted), the age (ms) of the oldest entry of the
    /// incoming and events streams (0 when both are empty) and dead letters. One round trip.
    pub async fn backlog(&self, partition: u16, now_ms: i64) -> Result<Backlog> {
        let keys = Keys::new(partition);
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(keys.incoming());
        for stream in [keys.incoming(), keys.events()] {
            pipe.cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        type Oldest = Vec<(String, Value)>;
        let (entries, oldest_in, oldest, dead): (u64, Oldest, Oldest, u64) = pipe
            .cmd("XLEN")
            .arg(keys.dead_letters())
            .query_async(&mut conn)
            .await?;
        let oldest_ms = oldest_in
            .first()
            .into_iter()
            .chain(oldest.first())
            .filter_map(|(id, _)| wire::appended_ms(id))
            .min();
        Ok(Backlog {
            entries,
            oldest_age_ms: oldest_ms.map_or(0, |ms| (now_ms - ms).max(0) as u64),
            dead_letters: dead,
        })
    }

    /// Entries in the partition's dead-letter stream.
    pub async fn dead_letter_len(&self, partition: u16) -> Result<u64> {
        let mut conn = self.conn();
        Ok(redis::cmd("XLEN")
            .arg(Keys::new(partition).dead_letters())
            .query_async(&mut conn)
            .await?)
    }
}

/// Whether `ids` can be read from a stream: at least one, each `ms-seq` (64-bit numbers).
fn readable(ids: &[&str]) -> bool {
    let id = |id: &str| {
        id.split_once('-').is_some_and(|(ms, seq)| {
            [ms, seq]
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u64>().is_ok())
        })
    };
    !ids.is_empty() && ids.iter().all(|i| id(i))
}

/// Acknowledges and deletes the events entries `ids`, with the incoming entries they name
/// (`lua/ack.lua`).
fn ack_cmd(keys: &Keys, ids: &[impl redis::ToRedisArgs]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ACK)
        .arg(2)
        .arg(keys.events())
        .arg(keys.incoming())
        .arg(GROUP)
        .arg(wire::field::INCOMING)
        .arg(ids);
    cmd
}

fn parse_entries(value: Option<Value>) -> Result<Vec<RawEntry>> {
    let Some(Value::Array(items)) = value else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            // XAUTOCLAIM on old servers reports deleted entries as nil.
            continue;
        };
        let mut pair = pair.into_iter();
        let id: String = match pair.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => continue,
        };
        let fields: Vec<String> = match pair.next() {
            Some(Value::Nil) | None => Vec::new(),
            Some(v) => redis::from_redis_value(v)?,
        };
        out.push((id, fields));
    }
    Ok(out)
}

impl Store {
    /// Every event still in `partition`'s stream, oldest first (see [`range_all`](Self::range_all)).
    pub async fn all_entries(&self, partition: u16) -> Result<Vec<StreamEvent>> {
        let mut out = Vec::new();
        let entries = self.range_all(&Keys::new(partition).events()).await?;
        for page in entries.chunks(RANGE_PAGE) {
            out.extend(self.decode(partition, page).await?);
        }
        Ok(out)
    }

    /// Every entry of stream `key` as (id, fields), oldest first, read in pages of
    /// [`RANGE_PAGE`] entries.
    async fn range_all(&self, key: &str) -> Result<Vec<RawEntry>> {
        self.range_from(key, "-".to_owned()).await
    }

    /// The entries of stream `key` from `start` (an id, `(id` after it, or `-`) on, oldest
    /// first, read in pages of [`RANGE_PAGE`] entries.
    async fn range_from<F: redis::FromRedisValue>(
        &self,
        key: &str,
        mut start: String,
    ) -> Result<Vec<(String, F)>> {
        let mut out = Vec::new();
        loop {
            let mut conn = self.conn();
            let page: Vec<(String, F)> = redis::cmd("XRANGE")
                .arg(key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(RANGE_PAGE)
                .query_async(&mut conn)
                .await?;
            let full = page.len() == RANGE_PAGE;
            if let Some((id, _)) = page.last() {
                start = format!("({id}");
            }
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
}

/// Events entries acknowledged per call of `lua/ack.lua`. An insert's worth of entries (~70
/// of ~450 events each at 40,000 views a second, ~1,500 incoming entries) held Redis for
/// ~5 ms in one call, and every beacon's accept call waited behind it; in calls of this
/// many, one after the other, Redis serves the beacons between them. A worker stopped
/// between two calls leaves the rest pending: they are taken over and found stored, as
/// after a stop before any call.
const ACK_ENTRIES: usize = 8;

/// Entries read per XRANGE call when reading a whole stream.
const RANGE_PAGE: usize = 1000;
