//! The worker's side of the event streams: consumer group reads, reclaiming entries of dead
//! consumers, acknowledging and dead letters.
//!
//! Reads and claims parse replies from `redis::Value` by hand: the reply shapes of
//! XREADGROUP and XAUTOCLAIM are small and stable, and this keeps us independent of the
//! client's typed stream helpers.

use redis::Value;
use tally_core::{Event, EventKind};

use crate::{Error, Keys, Result, Store, keys::GROUP};

static FORGET_CONSUMERS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("lua/forget_consumers.lua")));

/// One event read from a partition's stream. A stream entry holds a beacon batch (fields
/// `b` and `m`) and yields one `StreamEntry` per event; entries written before batches
/// became entries hold one event (fields `e` and `m`, or `e`, `se`, `n`, `q`, `g`).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// Stream id (`ms-seq`) of the entry holding the event: what is acknowledged.
    pub id: String,
    /// The event's place in its entry's batch; `None` for an entry of one event in the
    /// earlier layout.
    pub item: Option<u32>,
    /// The event, or the raw payload and why it could not be decoded.
    pub event: std::result::Result<Event, (String, String)>,
}

/// Deletes dead letter ARGV[1] from KEYS[1] and, only if it was there, adds its event
/// (ARGV[2], figures ARGV[3]) to the events stream KEYS[2]: two replays of one dead letter
/// add it once. Both keys carry the partition's hash tag.
static REPLAY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then \
           redis.call('XADD', KEYS[2], '*', 'b', ARGV[2], 'm', ARGV[3]) return 1 \
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

/// An event the worker could not store, as the dead-letter stream keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub partition: u16,
    /// Its id in the dead-letter stream.
    pub id: String,
    /// The event's key in the events stream it came from (`ms-seq-i`).
    pub event_key: String,
    /// The event's JSON with its visit figures, or what could not be read as one.
    pub payload: String,
    /// Why it was not stored.
    pub reason: String,
}

impl StreamEntry {
    /// What names this event within its partition: the stream id, and for an event of a
    /// batch its place in it (`ms-seq-i`). Prefixed with the partition it is the
    /// `event_id` stored in ClickHouse.
    pub fn key(&self) -> String {
        match self.item {
            None => self.id.clone(),
            Some(i) => format!("{}-{i}", self.id),
        }
    }

    /// The stream id of the entry holding the event named `key` (see [`key`](Self::key)).
    pub fn entry_of(key: &str) -> &str {
        match key.match_indices('-').nth(1) {
            Some((at, _)) => &key[..at],
            None => key,
        }
    }

    /// Approximate size in bytes, for the worker's batch byte limit.
    pub fn size(&self) -> usize {
        match &self.event {
            Ok(e) => 64 + e.page.len() + e.path.len() + e.title.len() + e.referrer_host.len(),
            Err((raw, _)) => raw.len(),
        }
    }
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
    ) -> Result<Vec<StreamEntry>> {
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
        match reply {
            Value::Nil => Ok(Vec::new()),
            Value::Array(streams) => match streams.into_iter().next() {
                Some(Value::Array(mut pair)) if pair.len() == 2 => parse_entries(pair.pop()),
                other => Err(Error::Reply(format!("XREADGROUP stream: {other:?}"))),
            },
            Value::Map(map) => match map.into_iter().next() {
                Some((_, entries)) => parse_entries(Some(entries)),
                None => Ok(Vec::new()),
            },
            other => Err(Error::Reply(format!("XREADGROUP: {other:?}"))),
        }
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
    ) -> Result<(String, Vec<StreamEntry>)> {
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
        Ok((next, parse_entries(parts.next())?))
    }

    /// Acknowledges and deletes `ids` from the stream (one atomic round trip).
    pub async fn ack(&self, partition: u16, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = Keys::new(partition).events();
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&key)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(ids)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves events to the partition's dead-letter stream, each as (key — see
    /// [`StreamEntry::key`] —, payload: the event's JSON with its visit figures, or what
    /// could not be read —, reason), keeping at most `max_len` dead letters (the oldest go),
    /// and acknowledges the entries holding them (one atomic round trip). The caller
    /// acknowledges the other events of those entries in the same batch. Returns how many
    /// older dead letters were dropped to stay within `max_len`.
    pub async fn dead_letter(
        &self,
        partition: u16,
        events: &[(String, String, String)],
        max_len: u64,
    ) -> Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let keys = Keys::new(partition);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("XLEN").arg(keys.dead_letters());
        for (key, payload, reason) in events {
            pipe.cmd("XADD")
                .arg(keys.dead_letters())
                .arg("MAXLEN")
                .arg(max_len)
                .arg("*")
                .arg("id")
                .arg(key)
                .arg("e")
                .arg(payload)
                .arg("reason")
                .arg(reason)
                .ignore();
        }
        let mut ids: Vec<&str> = events
            .iter()
            .map(|(key, _, _)| StreamEntry::entry_of(key))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        pipe.cmd("XLEN")
            .arg(keys.dead_letters())
            .cmd("XACK")
            .arg(keys.events())
            .arg(GROUP)
            .arg(&ids)
            .ignore()
            .cmd("XDEL")
            .arg(keys.events())
            .arg(&ids)
            .ignore();
        let mut conn = self.conn();
        let (before, after): (u64, u64) = pipe.query_async(&mut conn).await?;
        Ok((before + events.len() as u64).saturating_sub(after))
    }

    /// The partition's dead letters, oldest first (read in pages of 1,000).
    pub async fn dead_letters(&self, partition: u16) -> Result<Vec<DeadLetter>> {
        let key = Keys::new(partition).dead_letters();
        let get =
            |fields: &[String], name: &str| field(fields, name).unwrap_or_default().to_owned();
        Ok(self
            .range_all(&key)
            .await?
            .into_iter()
            .map(|(id, fields)| DeadLetter {
                partition,
                event_key: get(&fields, "id"),
                payload: get(&fields, "e"),
                reason: get(&fields, "reason"),
                id,
            })
            .collect())
    }

    /// Sends `letter` through the worker again: its event goes back into its partition's
    /// stream (a new entry of one event, its visit figures as they were) and the dead letter
    /// is deleted, in one transaction, so a replay never doubles an event. A payload that
    /// still cannot be read as an event stays and is reported as an error.
    pub async fn replay_dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let event: tally_core::Event = serde_json::from_str(&letter.payload)
            .map_err(|e| Error::Reply(format!("not an event: {e}")))?;
        let keys = Keys::new(letter.partition);
        let mut conn = self.conn();
        let json = serde_json::to_string(&event).map_err(|e| Error::Reply(e.to_string()))?;
        let meta = format!(
            "{} {} {} {}",
            event.session,
            u8::from(event.new_visit),
            event.visit_seq,
            event.gap_ms
        );
        let deleted: u64 = REPLAY
            .key(keys.dead_letters())
            .key(keys.events())
            .arg(&letter.id)
            .arg(json)
            .arg(meta)
            .invoke_async(&mut conn)
            .await?;
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

    /// Entries in the partition's stream not yet acknowledged and deleted (the backlog).
    pub async fn stream_len(&self, partition: u16) -> Result<u64> {
        let mut conn = self.conn();
        Ok(redis::cmd("XLEN")
            .arg(Keys::new(partition).events())
            .query_async(&mut conn)
            .await?)
    }

    /// The partition's backlog at `now_ms`: entries in its stream, the age (ms) of the
    /// oldest (0 when empty) and dead letters. One round trip.
    pub async fn backlog(&self, partition: u16, now_ms: i64) -> Result<Backlog> {
        let keys = Keys::new(partition);
        let mut conn = self.conn();
        let (entries, oldest, dead): (u64, Vec<(String, Value)>, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(keys.events())
            .cmd("XRANGE")
            .arg(keys.events())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XLEN")
            .arg(keys.dead_letters())
            .query_async(&mut conn)
            .await?;
        // A stream id starts with the milliseconds of the entry's append.
        let oldest_ms = oldest
            .first()
            .and_then(|(id, _)| id.split('-').next()?.parse::<i64>().ok());
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

fn parse_entries(value: Option<Value>) -> Result<Vec<StreamEntry>> {
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
        decode_entry(id, &fields, &mut out);
    }
    Ok(out)
}

/// The events of one stream entry, appended to `out`.
fn decode_entry(id: String, fields: &[String], out: &mut Vec<StreamEntry>) {
    let Some(batch) = field(fields, "b") else {
        out.push(StreamEntry {
            event: decode(fields),
            id,
            item: None,
        });
        return;
    };
    let metas: Vec<&str> = field(fields, "m").unwrap_or_default().split(',').collect();
    let lines: Vec<&str> = batch.split('\n').collect();
    let count = lines.len();
    if metas.len() != count {
        // Cannot happen with entries the write script made; keep the payload whole.
        out.push(StreamEntry {
            event: Err((
                batch.to_owned(),
                format!("{count} events but {} visit figures", metas.len()),
            )),
            id,
            item: None,
        });
        return;
    }
    for (i, (line, meta)) in lines.into_iter().zip(metas).enumerate() {
        out.push(StreamEntry {
            event: decode_one(line, Some(meta), |_| None),
            id: id.clone(),
            item: Some(i as u32),
        });
    }
}

/// The event of a one-event entry: `e` (the event's JSON) and `m` ("session new-visit
/// ordinal gap", see the write script), or the earlier layout with `se`, `n`, `q` and `g`
/// fields.
fn decode(fields: &[String]) -> std::result::Result<Event, (String, String)> {
    let get = |name: &str| field(fields, name);
    decode_one(get("e").unwrap_or_default(), get("m"), get)
}

/// The value of field `name` among an entry's `fields` (name, value, name, value, …).
fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks_exact(2)
        .find(|kv| kv[0] == name)
        .map(|kv| kv[1].as_str())
}

/// An event's JSON and its visit figures (`meta`, or else the separate fields `get` finds).
fn decode_one<'a>(
    raw: &str,
    meta: Option<&str>,
    get: impl Fn(&str) -> Option<&'a str>,
) -> std::result::Result<Event, (String, String)> {
    let mut event: Event = serde_json::from_str(raw)
        .map_err(|e| (raw.to_owned(), format!("undecodable event: {e}")))?;
    if let Some(meta) = meta {
        let mut m = meta.split(' ');
        event.session = m.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        event.new_visit = m.next() == Some("1");
        event.visit_seq = m.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        event.gap_ms = m.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // A fifth figure `r`: the script found this page view to repeat the visitor's last.
        if m.next() == Some("r") && event.kind == EventKind::Pageview {
            event.kind = EventKind::Repeat;
        }
    } else {
        event.session = get("se").and_then(|s| s.parse().ok()).unwrap_or(0);
        event.new_visit = get("n") == Some("1");
        event.visit_seq = get("q").and_then(|s| s.parse().ok()).unwrap_or(0);
        event.gap_ms = get("g").and_then(|s| s.parse().ok()).unwrap_or(0);
    }
    Ok(event)
}

impl Store {
    /// Every event still in `partition`'s stream, oldest first (see [`range_all`](Self::range_all)).
    pub async fn all_entries(&self, partition: u16) -> Result<Vec<StreamEntry>> {
        let mut out = Vec::new();
        for (id, fields) in self.range_all(&Keys::new(partition).events()).await? {
            decode_entry(id, &fields, &mut out);
        }
        Ok(out)
    }

    /// Every entry of stream `key` as (id, fields), oldest first, read in pages of
    /// [`RANGE_PAGE`] entries.
    async fn range_all(&self, key: &str) -> Result<Vec<(String, Vec<String>)>> {
        let mut out = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let mut conn = self.conn();
            let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
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

/// Entries read per XRANGE call when reading a whole stream.
const RANGE_PAGE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kv: &[(&str, &str)]) -> Vec<String> {
        kv.iter()
            .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
            .collect()
    }

    const EVENT: &str = r#"{"k":"pageview","s":"news","ts":1795722928472,"p":"/a","v":7}"#;

    #[test]
    fn entries_carry_the_visit_figures_in_one_field() {
        let event = decode(&fields(&[("e", EVENT), ("m", "42 1 3 1500")])).unwrap();
        assert_eq!(event.site, "news");
        assert_eq!(
            (
                event.session,
                event.new_visit,
                event.visit_seq,
                event.gap_ms
            ),
            (42, true, 3, 1500)
        );
    }

    /// Entries written before the figures moved into `m` (still in a stream at an upgrade).
    #[test]
    fn entries_of_the_earlier_layout_still_decode() {
        let event = decode(&fields(&[
            ("e", EVENT),
            ("se", "42"),
            ("n", "0"),
            ("q", "2"),
            ("g", "900"),
        ]))
        .unwrap();
        assert_eq!(
            (
                event.session,
                event.new_visit,
                event.visit_seq,
                event.gap_ms
            ),
            (42, false, 2, 900)
        );
    }

    #[test]
    fn a_batch_entry_yields_its_events_in_order_with_their_figures() {
        let second = EVENT.replace("/a", "/b");
        let lines = format!("{EVENT}\n{second}\n{{not json");
        let mut out = Vec::new();
        decode_entry(
            "1700000000000-3".into(),
            &fields(&[("b", &lines), ("m", "42 1 1 0,42 0 2 1500,0 0 0 0")]),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        let first = out[0].event.as_ref().unwrap();
        let next = out[1].event.as_ref().unwrap();
        assert_eq!(
            (first.page.as_str(), first.new_visit, first.visit_seq),
            ("/a", true, 1)
        );
        assert_eq!(
            (next.page.as_str(), next.session, next.gap_ms),
            ("/b", 42, 1500)
        );
        // A bad line spoils only its own event.
        assert_eq!(out[2].event.as_ref().unwrap_err().0, "{not json");
        let keys: Vec<String> = out.iter().map(StreamEntry::key).collect();
        assert_eq!(
            keys,
            [
                "1700000000000-3-0",
                "1700000000000-3-1",
                "1700000000000-3-2"
            ]
        );
        for key in &keys {
            assert_eq!(StreamEntry::entry_of(key), "1700000000000-3");
        }
        assert_eq!(StreamEntry::entry_of("1700000000000-3"), "1700000000000-3");
    }

    #[test]
    fn a_batch_entry_whose_figures_do_not_match_is_kept_whole() {
        let mut out = Vec::new();
        decode_entry(
            "5-0".into(),
            &fields(&[("b", &format!("{EVENT}\n{EVENT}")), ("m", "1 1 1 0")]),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key(), "5-0");
        let (raw, reason) = out[0].event.as_ref().unwrap_err();
        assert_eq!(raw, &format!("{EVENT}\n{EVENT}"));
        assert!(reason.contains("2 events but 1 visit figures"), "{reason}");
    }

    #[test]
    fn an_undecodable_payload_is_kept_with_the_reason() {
        let (raw, reason) = decode(&fields(&[("e", "{not json"), ("m", "0 0 0 0")])).unwrap_err();
        assert_eq!(raw, "{not json");
        assert!(reason.starts_with("undecodable event"), "{reason}");
    }
}
