//! The applier: the second half of the write path.
//!
//! The beacon's `lua/accept.lua` counts what a reader must see at once (views) and appends
//! the batch to the partition's incoming stream. The applier, which runs in the worker,
//! takes a run of incoming entries at a time (hundreds of events), reads the visit records
//! of their visitors in one `HMGET` per site, works out in Rust what the old all-in-one
//! write script worked out in Lua — visits, the figures each event carries to ClickHouse,
//! reloads, who is online, unique visitors, titles — and commits it all at once: it appends
//! an entry to the events stream naming the run's incoming entries, with the figures, and
//! writes every change as one variadic command per key. On one server the commit is a
//! transaction (`MULTI` … `EXEC`) on a connection of the applier's own (`watch.rs`); on a
//! cluster, one call of `lua/apply.lua`. The
//! events' JSON stays where the beacon put it: the incoming entries are kept until the
//! worker has stored their events and deletes them with the events entry, so the JSON is
//! written to Redis and its append-only file once, and never handed to the commit script
//! (Lua hashes every string handed to it, byte by byte).
//!
//! Exactly once: the applier's cursor is the last delivered id of the incoming stream's
//! [`APPLIER`] consumer group (a group nobody reads through: the cursor lives in the
//! stream's own key). A run is read after the cursor; the commit moves the cursor past the
//! run, atomically with the rest, and only if no other commit came since the run was read:
//! the script checks the cursor, a transaction is failed by a `WATCH` sent before the
//! cursor was read, on the events stream and the [`applied`](Keys::applied) key, one of
//! which every commit writes. A second applier that read the same run (another worker
//! process) commits nothing; an
//! applier killed before its commit leaves the cursor, and the visit records it read, as
//! they were.
//!
//! Online presence costs O(1) per event: `here:S` counts visitors per 10-second slot of their
//! last event; a visitor seen again moves from its old slot (known from its visit record) to
//! the new one. "Online now" is the sum over the window's slots: exact to a slot, without a
//! set of visitors to keep sorted. Pages are counted the same way (`readers:S:PAGE`): the
//! visit record also lists the pages its visitor is on within the window, each with its slot,
//! so a visitor seen again on a page moves there from its old slot, and a `leave` takes it
//! off the page. A visitor may be on several pages at once (tabs).

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;
use tally_core::{Event, EventKind, settings::TrackingSettings};

use crate::keys::APPLIER;
use crate::wire::{self, Context, Figures};
use crate::{Error, Keys, Result, Store};

/// The commit script (see [`Store::apply`]).
static APPLY: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("lua/apply.lua")));

/// Variadic commands are sent in chunks of at most this many arguments (Lua's `unpack`
/// gives at most ~8,000 values; an even number keeps field-value pairs whole).
const CHUNK: usize = 1000;
/// Presence of a site counts visitors per slot of this many ms (of their last event): "online
/// now" is exact to a slot, and a read takes the window's slots (~30 fields for the default
/// five minutes, against ~300 with one-second slots, which made the public counters read
/// measurably slower).
pub(crate) const HERE_SLOT_MS: i64 = 10_000;
/// Presence kept past the online window (ms; then dropped by the trim).
const HERE_SLACK_MS: i64 = 60_000;
/// Visit records expire two days after their day's last write.
const VISITS_TTL_S: u64 = 172_800;
/// A day's unique-visitor sketch lasts two days.
const SKETCH_TTL_S: u64 = 172_800;
/// Most pages a visit record lists as being read at once (with their slots). A visitor on
/// more pages within the online window forgets the one seen longest ago: it still counts
/// there until its slot leaves the window, and is counted there twice if it comes back to
/// that page meanwhile.
const MAX_PAGES_READ: usize = 16;
/// What each of the limits of one apply (incoming entries, events) is by default: up to 64
/// beacon batches and 500 events. Redis runs the commit as one script, so the events bound
/// how long it holds Redis (a few ms).
pub const APPLY_LIMITS: (usize, usize) = (64, 500);

/// What one [`Store::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Incoming entries applied (named by the run's entry in the events stream).
    pub entries: usize,
    /// Events in them.
    pub events: usize,
    /// Another applier moved the entries first: nothing was written.
    pub lost_race: bool,
    /// The apply stopped at a limit: more entries may be waiting (the applier goes on at
    /// once rather than resting).
    pub more: bool,
}

/// A visitor's record in `visits:S:DAY`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visit {
    /// 0: no visit (a visitor seen, by a ping, outside any visit).
    session: u64,
    /// The visit's last event (ms).
    last: i64,
    /// Page views counted in the visit.
    views: u64,
    /// The last counted view (ms) and its page's [`page_tag`] (none before the first view):
    /// what a reload repeats.
    viewed: i64,
    page: Option<u32>,
    /// The visitor's last event of any kind (ms): when it was last online.
    seen: i64,
    /// The pages the visitor is on (a tag of each page held live, see [`page_tag`]) and the
    /// presence slot it was last seen in there; at most [`MAX_PAGES_READ`].
    reading: Vec<(u32, i64)>,
}

/// A page's tag in a visit record: FNV-1a of its live key, or of the page of the last view
/// (32 bits; two pages of one visitor's few sharing one is a one-in-hundreds-of-millions
/// chance). Stable across releases, as records outlive a process.
fn page_tag(page: &str) -> u32 {
    page.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The tag of the page of an earlier release's record (which held the page itself; empty:
/// no view yet).
fn old_page(page: &str) -> Option<u32> {
    (!page.is_empty()).then(|| page_tag(page))
}

impl Visit {
    /// Reads a record: `c|session:last:views:since-viewed:seen-since:reading:page`, where
    /// `session` and `page` (the tag of the last view's page, empty before one) are in hex,
    /// `since-viewed` = `last − viewed`, `seen-since` = `seen − last`, and `reading` is
    /// `tag.age` per page being read (tag in hex, age = the slot of `seen` − the page's slot)
    /// joined by `,`: differences are mostly 0, so a record takes ~60 bytes (of Redis'
    /// memory and of its append-only file per view) instead of the ~100 of its layout
    /// before, `r|session:last:views:viewed:seen:reading:page` (the same values, in decimal
    /// and whole, the page itself, and each page's slot). Earlier layouts list no pages
    /// being read: `w|session:last:views:viewed:seen:page`, `session:last:views:viewed:page`
    /// and `session:last:views` (their visitor was last seen at the visit's last event).
    fn parse(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("c|") {
            let mut p = rest.splitn(7, ':');
            let session = u64::from_str_radix(p.next()?, 16).ok()?;
            let last: i64 = p.next()?.parse().ok()?;
            let views = p.next()?.parse().ok()?;
            let viewed = last.wrapping_sub(p.next()?.parse().ok()?);
            let seen = last.wrapping_add(p.next()?.parse().ok()?);
            let seen_slot = seen.div_euclid(HERE_SLOT_MS);
            let mut reading = Vec::new();
            for one in p.next()?.split(',').filter(|s| !s.is_empty()) {
                let (tag, age) = one.split_once('.')?;
                let age: i64 = age.parse().ok()?;
                reading.push((
                    u32::from_str_radix(tag, 16).ok()?,
                    seen_slot.wrapping_sub(age),
                ));
            }
            let page = match p.next()? {
                "" => None,
                tag => Some(u32::from_str_radix(tag, 16).ok()?),
            };
            return Some(Self {
                session,
                last,
                views,
                viewed,
                page,
                seen,
                reading,
            });
        }
        if let Some(rest) = text.strip_prefix("r|") {
            let mut p = rest.splitn(7, ':');
            let mut visit = Self {
                session: p.next()?.parse().ok()?,
                last: p.next()?.parse().ok()?,
                views: p.next()?.parse().ok()?,
                viewed: p.next()?.parse().ok()?,
                seen: p.next()?.parse().ok()?,
                reading: Vec::new(),
                page: None,
            };
            for one in p.next()?.split(',').filter(|s| !s.is_empty()) {
                let (tag, slot) = one.split_once('.')?;
                visit
                    .reading
                    .push((u32::from_str_radix(tag, 16).ok()?, slot.parse().ok()?));
            }
            visit.page = old_page(p.next()?);
            return Some(visit);
        }
        if let Some(rest) = text.strip_prefix("w|") {
            let mut p = rest.splitn(6, ':');
            return Some(Self {
                session: p.next()?.parse().ok()?,
                last: p.next()?.parse().ok()?,
                views: p.next()?.parse().ok()?,
                viewed: p.next()?.parse().ok()?,
                seen: p.next()?.parse().ok()?,
                page: old_page(p.next()?),
                reading: Vec::new(),
            });
        }
        let mut p = text.splitn(5, ':');
        let session = p.next()?.parse().ok()?;
        let last = p.next()?.parse().ok()?;
        let views = p.next()?.parse().ok()?;
        let (viewed, page) = match (p.next(), p.next()) {
            (Some(viewed), Some(page)) => (viewed.parse().ok()?, old_page(page)),
            (None, None) => (0, None),
            _ => return None,
        };
        Some(Self {
            session,
            last,
            views,
            viewed,
            page,
            seen: last,
            reading: Vec::new(),
        })
    }

    /// The record in the layout [`Visit::parse`] reads first. Differences wrap (as their
    /// reading does): any values read back as written.
    fn write(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(64);
        let _ = write!(
            out,
            "c|{:x}:{}:{}:{}:{}:",
            self.session,
            self.last,
            self.views,
            self.last.wrapping_sub(self.viewed),
            self.seen.wrapping_sub(self.last)
        );
        let seen_slot = self.seen.div_euclid(HERE_SLOT_MS);
        for (i, (tag, slot)) in self.reading.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, "{comma}{tag:x}.{}", seen_slot.wrapping_sub(*slot));
        }
        out.push(':');
        if let Some(page) = self.page {
            let _ = write!(out, "{page:x}");
        }
        out
    }

    /// The visitor, seen in `slot` on the page held live as `live` (`leave`: leaving it),
    /// moves there from the slot it was last seen in on that page: the changes to the
    /// page's `readers:` counts, slots below `horizon` being gone already.
    fn read_page(&mut self, live: &str, slot: i64, leave: bool, horizon: i64) -> PageMove {
        let tag = page_tag(live);
        self.reading.retain(|&(_, s)| s >= horizon);
        let at = self.reading.iter().position(|&(t, _)| t == tag);
        let from = at.map(|i| self.reading[i].1);
        // Never back to an earlier slot (batches accepted by beacons whose clocks differ).
        let slot = from.map_or(slot, |from| from.max(slot));
        match (at, leave) {
            (Some(i), true) => {
                self.reading.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => self.reading[i].1 = slot,
            (None, false) => {
                if self.reading.len() == MAX_PAGES_READ {
                    let oldest = (0..self.reading.len())
                        .min_by_key(|&i| self.reading[i].1)
                        .unwrap_or(0);
                    self.reading.remove(oldest);
                }
                self.reading.push((tag, slot));
            }
        }
        PageMove {
            from,
            to: (!leave).then_some(slot),
        }
    }
}

/// A visitor's move on one page: the slot it leaves there (if it was on it) and the one it
/// is in now (none after a `leave`).
#[derive(Debug, PartialEq, Eq)]
struct PageMove {
    from: Option<i64>,
    to: Option<i64>,
}

/// One incoming entry, read.
struct Entry {
    /// Per line: the event and its context, when both could be read.
    events: Vec<Option<(Event, Context)>>,
    /// When the batch was accepted (ms).
    accepted_ms: i64,
    /// Places of the events recorded live under "other pages".
    over: Vec<usize>,
}

impl Entry {
    fn read(fields: &[Vec<u8>]) -> Self {
        let get = |name| wire::incoming_field(fields, name);
        let batch = wire::incoming_lines(fields);
        let lines: Vec<&str> = match batch.as_ref() {
            "" => Vec::new(),
            batch => batch.split('\n').collect(),
        };
        let context: Vec<&str> = get(wire::incoming::CONTEXT).split(',').collect();
        let readable = [wire::incoming::PLAIN, wire::incoming::LZ4]
            .contains(&get(wire::incoming::VERSION))
            && context.len() == lines.len();
        let events = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                if !readable {
                    return None;
                }
                let event: Event = serde_json::from_str(line).ok()?;
                Some((event, Context::parse(context[i])?))
            })
            .collect();
        let accepted_ms = get(wire::incoming::NOW).parse().unwrap_or(0);
        let over = get(wire::incoming::OVER)
            .split(',')
            .filter_map(|i| i.parse().ok())
            .collect();
        Self {
            events,
            accepted_ms,
            over,
        }
    }
}

/// The events of `entries` (`events` of them), when every one could be parsed.
fn parsed_events(entries: Vec<Entry>, events: usize) -> Option<Vec<Event>> {
    let mut parsed = Vec::with_capacity(events);
    for entry in entries {
        for event in entry.events {
            parsed.push(event?.0);
        }
    }
    Some(parsed)
}

/// The visit records of an apply's visitors, by site and visitor; `None` for a visitor
/// without one.
type Visits<'a> = HashMap<(&'a str, u64), Option<Visit>>;

/// The changes of one commit, per site (and page), gathered before they are sent; the keys
/// are named once per site and page when the commit is written. Borrowed from the entries'
/// events.
#[derive(Default)]
struct Changes<'a> {
    /// site → `totals:` field → increment.
    totals: BTreeMap<&'a str, BTreeMap<&'static str, i64>>,
    /// site → page held live → views to take back (reloads).
    views: BTreeMap<&'a str, BTreeMap<&'a str, i64>>,
    /// (site, minute accepted) → views counted (reloads are not), for the realtime chart.
    minutes: BTreeMap<(&'a str, i64), i64>,
    /// site → slot → increment of `here:`.
    here: BTreeMap<&'a str, BTreeMap<i64, i64>>,
    /// (site, page held live) → slot → increment of `readers:`.
    readers: BTreeMap<(&'a str, &'a str), BTreeMap<i64, i64>>,
    /// site → page held live → last event (ms), for `active:`.
    active: BTreeMap<&'a str, BTreeMap<&'a str, i64>>,
    /// (site, day) → visitors, for the day's `uv:` sketch.
    sketches: BTreeMap<(&'a str, &'a str), Vec<u64>>,
    /// site → page → title.
    titles: BTreeMap<&'a str, BTreeMap<&'a str, &'a str>>,
}

/// A visitor moves from slot `from` (if any) to slot `to` (if any) of a presence hash.
fn moved(slots: &mut BTreeMap<i64, i64>, from: Option<i64>, to: Option<i64>) {
    if from == to {
        return;
    }
    if let Some(from) = from {
        *slots.entry(from).or_default() -= 1;
    }
    if let Some(to) = to {
        *slots.entry(to).or_default() += 1;
    }
}

/// The commit being built: the script's arguments, `command key count args…` per
/// operation, or a transaction's commands (variadic commands in chunks of at most [`CHUNK`]
/// arguments either way).
enum Ops {
    Script(redis::ScriptInvocation<'static>),
    Transaction {
        pipe: redis::Pipeline,
        /// The connection holding the `WATCH` (see [`Store::watched`]).
        watched: MultiplexedConnection,
        /// Presence hashes to trim and the oldest slot each keeps: their slots are read
        /// before the transaction is sent (a transaction cannot read what it deletes).
        trims: Vec<(String, i64)>,
    },
}

/// One operation's arguments, added with [`Args::arg`].
enum Args<'a> {
    Script(&'a mut redis::ScriptInvocation<'static>),
    Command(&'a mut redis::Pipeline),
}

impl Args<'_> {
    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        match self {
            Self::Script(invocation) => {
                invocation.arg(arg);
            }
            Self::Command(pipe) => {
                pipe.arg(arg);
            }
        }
        self
    }
}

impl Ops {
    /// Starts an operation of `count` arguments, which the caller adds.
    fn op(&mut self, command: &str, key: &str, count: usize) -> Args<'_> {
        match self {
            Self::Script(invocation) => Args::Script(invocation.arg(command).arg(key).arg(count)),
            Self::Transaction { pipe, .. } => Args::Command(pipe.cmd(command).ignore().arg(key)),
        }
    }

    /// A command taking `pairs` (HSET's field-value, ZADD's score-member), in chunks.
    fn pairs<A: redis::ToRedisArgs, B: redis::ToRedisArgs>(
        &mut self,
        command: &str,
        key: &str,
        pairs: &[(A, B)],
    ) {
        for chunk in pairs.chunks(CHUNK / 2) {
            let mut cmd = self.op(command, key, chunk.len() * 2);
            for (a, b) in chunk {
                cmd.arg(a).arg(b);
            }
        }
    }

    /// Drops the slots of presence hash `key` older than `horizon`.
    fn trim(&mut self, key: &str, horizon: i64) {
        match self {
            Self::Script(_) => {
                self.op("TRIMHERE", key, 1).arg(horizon);
            }
            Self::Transaction { trims, .. } => trims.push((key.to_owned(), horizon)),
        }
    }
}

impl Store {
    /// Applies the oldest of `partition`'s incoming entries, up to `max_entries` of them and
    /// no more than `max_events` events (but at least one entry; see the module
    /// documentation). `now_ms` dates the visit records (their UTC day) and ages presence;
    /// `trim` also drops presence older than the online window (do it every few calls).
    pub async fn apply(
        &self,
        partition: u16,
        tracking: &TrackingSettings,
        (max_entries, max_events): (usize, usize),
        now_ms: i64,
        trim: bool,
    ) -> Result<Applied> {
        let keys = Keys::new(partition);
        // On one server the commit is a transaction, guarded by a WATCH sent before the
        // cursor is read (see `watched`); dropped with its connection on any error.
        let watched = self.watched(&keys).await?;
        let cursor = self.applied_cursor(&keys).await?;
        let mut conn = self.conn();
        let mut raw: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(keys.incoming())
            .arg(
                cursor
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| format!("({c}")),
            )
            .arg("+")
            .arg("COUNT")
            .arg(max_entries.max(1))
            .query_async(&mut conn)
            .await?;
        // Read (unpacked, parsed) up to the events limit: under a backlog the range holds
        // more entries than one apply takes, and the next apply reads those again.
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        let mut events_read = 0;
        for (_, fields) in &raw {
            let entry = Entry::read(fields);
            let before = events_read;
            events_read += entry.events.len();
            if before > 0 && events_read > max_events {
                break;
            }
            entries.push(entry);
        }
        let keep = entries.len();
        // Cut short by the events limit, or as many entries as asked for came back.
        let more = keep < raw.len() || raw.len() >= max_entries.max(1);
        raw.truncate(keep);
        let Some((last, _)) = raw.last() else {
            if let Some(watched) = watched {
                self.unwatch(watched).await?;
            }
            return Ok(Applied::default());
        };
        let last = last.clone();
        let cursor = match cursor {
            Some(cursor) => cursor,
            None => self.start_cursor(&keys).await?,
        };
        let ids: Vec<&str> = raw.iter().map(|(id, _)| id.as_str()).collect();
        let ids = ids.join(" ");

        let today = now_ms.div_euclid(86_400_000);
        let mut visits = self.read_visits(&keys, &entries, today).await?;
        let window_ms = tracking.online_window.as_millis() as i64;
        let timeout_ms = tracking.visit_timeout.as_millis() as i64;
        let repeat_ms = tracking.repeat_view_window.as_millis() as i64;
        let horizon = (now_ms - window_ms - HERE_SLACK_MS).div_euclid(HERE_SLOT_MS);

        let mut changes = Changes::default();
        let mut figures = String::new();
        let mut events = 0;
        for entry in &entries {
            let minute = entry.accepted_ms.div_euclid(60_000);
            for (i, event) in entry.events.iter().enumerate() {
                if events > 0 {
                    figures.push(',');
                }
                events += 1;
                let figure = match event {
                    Some((event, context))
                        if !matches!(event.kind, EventKind::Bot | EventKind::Unverified) =>
                    {
                        let live = if entry.over.contains(&i) {
                            ""
                        } else {
                            event.page.as_str()
                        };
                        let record = visits
                            .get_mut(&(event.site.as_str(), event.visitor))
                            .expect("every visitor's record was read");
                        apply_event(
                            event,
                            context,
                            live,
                            (entry.accepted_ms, minute),
                            record,
                            &mut changes,
                            (timeout_ms, repeat_ms, horizon),
                        )
                    }
                    _ => Figures::default(),
                };
                use std::fmt::Write as _;
                let _ = write!(figures, "{figure}");
            }
        }

        // One commit: it appends the events entry (the run's ids and the figures: the JSON
        // stays in the incoming entries), moves the cursor and writes every change. A
        // script checks the cursor itself; a transaction's WATCH fails it when another
        // commit came first.
        let figures = if events > 0 { figures.as_str() } else { "" };
        let mut ops = match watched {
            Some(watched) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                if events > 0 {
                    pipe.cmd("XADD")
                        .arg(keys.events())
                        .arg("*")
                        .arg(wire::field::VERSION)
                        .arg(wire::VERSION)
                        .arg(wire::field::INCOMING)
                        .arg(&ids)
                        .arg(wire::field::FIGURES)
                        .arg(figures)
                        .ignore();
                } else {
                    // No events: nobody else will delete these entries.
                    for chunk in raw.chunks(CHUNK) {
                        pipe.cmd("XDEL").arg(keys.incoming()).ignore();
                        for (id, _) in chunk {
                            pipe.arg(id);
                        }
                    }
                }
                pipe.cmd("XGROUP")
                    .arg("SETID")
                    .arg(keys.incoming())
                    .arg(APPLIER)
                    .arg(&last)
                    .ignore()
                    .cmd("SET")
                    .arg(keys.applied())
                    .arg(&last)
                    .ignore();
                Ops::Transaction {
                    pipe,
                    watched,
                    trims: Vec::new(),
                }
            }
            None => {
                let mut invocation = APPLY.key(keys.incoming());
                invocation
                    .key(keys.events())
                    .arg(APPLIER)
                    .arg(&cursor)
                    .arg(&last)
                    .arg(wire::field::VERSION)
                    .arg(wire::VERSION)
                    .arg(wire::field::INCOMING)
                    .arg(&ids)
                    .arg(wire::field::FIGURES)
                    .arg(figures);
                Ops::Script(invocation)
            }
        };
        write_visits(&mut ops, &keys, &visits, today);
        operations(&mut ops, &keys, changes, (now_ms, window_ms, trim, horizon));
        if let Ops::Transaction { pipe, trims, .. } = &mut ops {
            self.trim_slots(pipe, trims).await?;
        }
        drop(visits);
        let applied = entries.len();
        // The store step of this process reads these events next: it takes them from the
        // handoff rather than from Redis. They go there before the commit, whose events
        // entry wakes the store step's blocked read, which may be answered before this
        // call is. Any events entry naming these ids names the same incoming entries, so
        // the parsed events are right whichever commit wrote it; a run not committed is
        // taken back. A run with an event that could not be parsed here is not handed
        // over: the store step reads it from Redis (that event as a dead letter).
        let handed = match &self.handoff {
            Some(handoff) if events > 0 => parsed_events(entries, events).map(|parsed| {
                handoff.put(partition, ids.clone(), parsed);
                handoff
            }),
            _ => None,
        };
        let done: Result<i64> = match ops {
            Ops::Script(invocation) => invocation.invoke_async(&mut conn).await.map_err(Into::into),
            Ops::Transaction { pipe, watched, .. } => self.commit(watched, &pipe).await,
        };
        if let Some(handoff) = handed.filter(|_| !matches!(done, Ok(1..))) {
            handoff.take(partition, &ids);
        }
        if done? == 0 {
            return Ok(Applied {
                lost_race: true,
                ..Applied::default()
            });
        }
        Ok(Applied {
            entries: applied,
            events,
            lost_race: false,
            more,
        })
    }

    /// On one server, a connection of the applier's own with a `WATCH` on `keys`' events
    /// stream and [`applied`](Keys::applied) key, for the commit's transaction: every commit
    /// writes one of them (a transaction both, a script of an earlier release the events
    /// stream when the run holds events), so the `EXEC` fails when another commit came after
    /// the `WATCH`, which is sent before the cursor is read. `None` on a cluster (the commit
    /// is a script), and when the events stream's key holds something else: a transaction
    /// goes on past a command that fails, and would move the cursor past a run whose entry
    /// was refused; the script stops at it.
    async fn watched(&self, keys: &Keys) -> Result<Option<MultiplexedConnection>> {
        let Some(watcher) = &self.watcher else {
            return Ok(None);
        };
        let mut conn = watcher.take().await?;
        let (kind,): (String,) = redis::pipe()
            .cmd("WATCH")
            .arg(keys.events())
            .arg(keys.applied())
            .ignore()
            .cmd("TYPE")
            .arg(keys.events())
            .query_async(&mut conn)
            .await?;
        if kind == "stream" || kind == "none" {
            return Ok(Some(conn));
        }
        self.unwatch(conn).await?;
        Ok(None)
    }

    /// Ends the `WATCH` of a connection from [`Self::watched`] without a commit.
    async fn unwatch(&self, mut conn: MultiplexedConnection) -> Result<()> {
        let () = redis::cmd("UNWATCH").query_async(&mut conn).await?;
        if let Some(watcher) = &self.watcher {
            watcher.give_back(conn);
        }
        Ok(())
    }

    /// Sends a commit's transaction on its watched connection: 1 when it was applied, 0
    /// when the `WATCH` failed it (another commit came first; nothing was written).
    async fn commit(&self, mut conn: MultiplexedConnection, pipe: &redis::Pipeline) -> Result<i64> {
        let done: Option<redis::Value> = pipe.query_async(&mut conn).await?;
        // The EXEC ended the WATCH either way.
        if let Some(watcher) = &self.watcher {
            watcher.give_back(conn);
        }
        Ok(i64::from(done.is_some()))
    }

    /// Adds to a commit's transaction the deletion of the presence slots older than each
    /// trim's oldest slot kept, as the hashes hold them now: under the `WATCH`, no other
    /// commit writes them before this one (the script reads them as it deletes them).
    async fn trim_slots(&self, pipe: &mut redis::Pipeline, trims: &[(String, i64)]) -> Result<()> {
        if trims.is_empty() {
            return Ok(());
        }
        let mut read = redis::pipe();
        for (key, _) in trims {
            read.cmd("HKEYS").arg(key);
        }
        let slots: Vec<Vec<String>> = read.query_async(&mut self.conn()).await?;
        for ((key, horizon), slots) in trims.iter().zip(slots) {
            let old: Vec<String> = slots
                .into_iter()
                .filter(|slot| slot.parse::<i64>().is_ok_and(|slot| slot < *horizon))
                .collect();
            for chunk in old.chunks(CHUNK) {
                pipe.cmd("HDEL").arg(key).arg(chunk).ignore();
            }
        }
        Ok(())
    }

    /// The applier's cursor in `keys`' incoming stream: the last entry applied. `None` while
    /// the stream or its [`APPLIER`] group does not exist (nothing applied yet, or only by a
    /// release that deleted what it applied).
    pub(crate) async fn applied_cursor(&self, keys: &Keys) -> Result<Option<String>> {
        let mut conn = self.conn();
        let groups: redis::RedisResult<Vec<HashMap<String, redis::Value>>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(keys.incoming())
            .query_async(&mut conn)
            .await;
        let groups = match groups {
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            other => other?,
        };
        for mut group in groups {
            let name: Option<String> = group
                .remove("name")
                .map(redis::from_redis_value)
                .transpose()?;
            if name.as_deref() == Some(APPLIER) {
                let last = group
                    .remove("last-delivered-id")
                    .ok_or_else(|| Error::Reply("XINFO GROUPS without last-delivered-id".into()))?;
                return Ok(Some(redis::from_redis_value(last)?));
            }
        }
        Ok(None)
    }

    /// Creates the [`APPLIER`] group of `keys`' incoming stream before its first entry, and
    /// returns that cursor (`0-0`). If another applier created it first, the commit of a run
    /// read from the start finds the cursor moved, or not, as for any race.
    async fn start_cursor(&self, keys: &Keys) -> Result<String> {
        let mut conn = self.conn();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.incoming())
            .arg(APPLIER)
            .arg("0")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            other => other?,
        }
        Ok("0-0".to_owned())
    }

    /// Applies every partition's incoming entries, until none is left (tests, benchmarks
    /// and `tally rebuild-counters` use it; the worker's appliers run on their own).
    /// Returns the events applied.
    pub async fn apply_all(&self, tracking: &TrackingSettings, now_ms: i64) -> Result<usize> {
        let mut total = 0;
        for partition in 0..self.partitions() {
            loop {
                let applied = self
                    .apply(partition, tracking, APPLY_LIMITS, now_ms, false)
                    .await?;
                if applied.entries == 0 && !applied.lost_race {
                    break;
                }
                total += applied.events;
            }
        }
        Ok(total)
    }

    /// The visit records of the entries' visitors: today's, else yesterday's (visits running
    /// over midnight). `None` for a visitor without one.
    async fn read_visits<'a>(
        &self,
        keys: &Keys,
        entries: &'a [Entry],
        today: i64,
    ) -> Result<Visits<'a>> {
        let mut by_site: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut out = HashMap::new();
        for (event, _) in entries.iter().flat_map(|e| e.events.iter().flatten()) {
            if matches!(event.kind, EventKind::Bot | EventKind::Unverified) {
                continue;
            }
            if out
                .insert((event.site.as_str(), event.visitor), None)
                .is_none()
            {
                by_site.entry(&event.site).or_default().push(event.visitor);
            }
        }
        let mut missing: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (site, visitor, found) in self.hmget_visits(keys, &by_site, today).await? {
            match found {
                Some(v) => {
                    out.insert((site, visitor), Some(v));
                }
                None => missing.entry(site).or_default().push(visitor),
            }
        }
        for (site, visitor, found) in self.hmget_visits(keys, &missing, today - 1).await? {
            if found.is_some() {
                out.insert((site, visitor), found);
            }
        }
        Ok(out)
    }

    /// The records of `visitors` (per site) in the visits of UTC day `day`.
    async fn hmget_visits<'a>(
        &self,
        keys: &Keys,
        visitors: &BTreeMap<&'a str, Vec<u64>>,
        day: i64,
    ) -> Result<Vec<(&'a str, u64, Option<Visit>)>> {
        if visitors.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (site, visitors) in visitors {
            for chunk in visitors.chunks(CHUNK) {
                pipe.cmd("HMGET").arg(keys.visits(site, day)).arg(chunk);
            }
        }
        let mut conn = self.conn();
        let replies: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
        let mut replies = replies.into_iter().flatten();
        let mut out = Vec::new();
        for (site, visitors) in visitors {
            for &visitor in visitors {
                let found = replies.next().flatten().and_then(|r| Visit::parse(&r));
                out.push((*site, visitor, found));
            }
        }
        Ok(out)
    }
}

/// Works out one event's visit and presence, updates `record`, and gathers its changes.
/// `accepted` = when its batch was accepted (ms; presence goes by it, as the counters are
/// read by the time of the reader's request) and that minute; `limits` = (visit timeout,
/// repeat window, the oldest presence slot kept).
fn apply_event<'a>(
    event: &'a Event,
    context: &'a Context,
    live: &'a str,
    (accepted_ms, minute): (i64, i64),
    record: &mut Option<Visit>,
    changes: &mut Changes<'a>,
    (timeout_ms, repeat_ms, horizon): (i64, i64, i64),
) -> Figures {
    let site = event.site.as_str();
    let ts = event.ts_ms;
    let mut figures = Figures::default();
    // Presence: the visitor moves from the slot it was last seen in to this one.
    let old_seen = record.as_ref().map(|r| r.seen.div_euclid(HERE_SLOT_MS));
    let seen = record
        .as_ref()
        .map_or(accepted_ms, |r| r.seen.max(accepted_ms));
    let new_seen = seen.div_euclid(HERE_SLOT_MS);
    moved(
        changes.here.entry(site).or_default(),
        old_seen.filter(|&s| s >= horizon),
        Some(new_seen),
    );
    let running = record
        .as_ref()
        .is_some_and(|r| r.session != 0 && ts - r.last <= timeout_ms);
    let r = record.get_or_insert_with(|| Visit {
        session: 0,
        last: 0,
        views: 0,
        viewed: 0,
        page: None,
        seen,
        reading: Vec::new(),
    });
    r.seen = seen;
    let pageview = event.kind == EventKind::Pageview;
    let page_viewed = page_tag(&event.page);
    if pageview
        && running
        && repeat_ms > 0
        && r.page == Some(page_viewed)
        && ts - r.viewed <= repeat_ms
    {
        // A reload: the accept script counted it as a view; take it back.
        figures.repeat = true;
        figures.gap_ms = gap(ts, r.last);
        *changes
            .views
            .entry(site)
            .or_default()
            .entry(live)
            .or_default() -= 1;
        *changes
            .totals
            .entry(site)
            .or_default()
            .entry("views")
            .or_default() -= 1;
    } else if pageview {
        *changes.minutes.entry((site, minute)).or_default() += 1;
        if running {
            figures.gap_ms = gap(ts, r.last);
        } else {
            *r = Visit {
                session: context.session_candidate,
                last: ts,
                views: 0,
                viewed: ts,
                page: Some(page_viewed),
                seen,
                reading: std::mem::take(&mut r.reading),
            };
            figures.new_visit = true;
            *changes
                .totals
                .entry(site)
                .or_default()
                .entry("visits")
                .or_default() += 1;
        }
        r.views += 1;
        r.viewed = ts;
        r.page = Some(page_viewed);
        figures.visit_seq = u16::try_from(r.views).unwrap_or(u16::MAX);
        changes
            .sketches
            .entry((site, context.day.as_str()))
            .or_default()
            .push(event.visitor);
        if !event.title.is_empty() && !live.is_empty() {
            changes
                .titles
                .entry(site)
                .or_default()
                .insert(&event.page, &event.title);
        }
    } else if running {
        // Pings, leaves and custom events keep a running visit alive (and long) but never
        // start one.
        figures.gap_ms = gap(ts, r.last);
    }
    if running || figures.new_visit {
        figures.session = r.session;
        r.last = r.last.max(ts);
    }
    let leave = event.kind == EventKind::Leave;
    let page = r.read_page(live, accepted_ms.div_euclid(HERE_SLOT_MS), leave, horizon);
    moved(
        changes.readers.entry((site, live)).or_default(),
        page.from,
        page.to,
    );
    if !leave {
        let active = changes
            .active
            .entry(site)
            .or_default()
            .entry(live)
            .or_default();
        *active = (*active).max(accepted_ms);
    }
    figures
}

fn gap(ts: i64, last: i64) -> u32 {
    u32::try_from((ts - last).max(0)).unwrap_or(u32::MAX)
}

/// Writes the visit records of `visits` to today's hashes (a record read from yesterday's
/// moves to today's).
fn write_visits(ops: &mut Ops, keys: &Keys, visits: &Visits<'_>, today: i64) {
    let mut by_site: BTreeMap<&str, Vec<(u64, String)>> = BTreeMap::new();
    for (&(site, visitor), record) in visits {
        if let Some(record) = record {
            by_site
                .entry(site)
                .or_default()
                .push((visitor, record.write()));
        }
    }
    for (site, records) in by_site {
        let key = keys.visits(site, today);
        ops.pairs("HSET", &key, &records);
        ops.op("EXPIRE", &key, 1).arg(VISITS_TTL_S);
    }
}

/// Adds the commit's operations for `changes`: `(now, online window, trim, oldest slot
/// kept)`.
fn operations(
    ops: &mut Ops,
    keys: &Keys,
    changes: Changes<'_>,
    (now_ms, window_ms, trim, horizon): (i64, i64, bool, i64),
) {
    for (site, fields) in changes.totals {
        let key = keys.totals(site);
        for (field, by) in fields.into_iter().filter(|&(_, by)| by != 0) {
            ops.op("HINCRBY", &key, 2).arg(field).arg(by);
        }
    }
    for (site, pages) in changes.views {
        let key = keys.views(site);
        for (page, by) in pages.into_iter().filter(|&(_, by)| by != 0) {
            ops.op("HINCRBY", &key, 2).arg(page).arg(by);
        }
    }
    for ((site, minute), by) in changes.minutes.into_iter().filter(|&(_, by)| by != 0) {
        let key = keys.views_in_minute(site, minute);
        ops.op("INCRBY", &key, 1).arg(by);
        ops.op("EXPIRE", &key, 1).arg(3600);
    }
    let presence = changes
        .here
        .into_iter()
        .map(|(site, slots)| (keys.here(site), slots))
        .chain(
            changes
                .readers
                .into_iter()
                .map(|((site, page), slots)| (keys.page_readers(site, page), slots)),
        );
    for (key, slots) in presence {
        for (slot, by) in slots.into_iter().filter(|&(_, by)| by != 0) {
            ops.op("HINCRBY", &key, 2).arg(slot).arg(by);
        }
        if trim {
            ops.trim(&key, horizon);
        }
        ops.op("PEXPIRE", &key, 1).arg(window_ms + HERE_SLACK_MS);
    }
    for (site, pages) in changes.active {
        let key = keys.active_pages(site);
        let scored: Vec<(i64, &str)> = pages.into_iter().map(|(page, last)| (last, page)).collect();
        ops.pairs("ZADD", &key, &scored);
        ops.op("PEXPIRE", &key, 1).arg(window_ms);
        if trim {
            ops.op("ZREMRANGEBYSCORE", &key, 2)
                .arg("-inf")
                .arg(now_ms - window_ms);
        }
    }
    for ((site, day), visitors) in changes.sketches {
        let key = keys.unique_visitors(site, day);
        for chunk in visitors.chunks(CHUNK) {
            ops.op("PFADD", &key, chunk.len()).arg(chunk);
        }
        ops.op("EXPIRE", &key, 1).arg(SKETCH_TTL_S);
    }
    for (site, pages) in changes.titles {
        let titled: Vec<(&str, &str)> = pages.into_iter().collect();
        ops.pairs("HSET", &keys.titles(site), &titled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visit_records_of_every_version_are_read() {
        let now = Visit {
            session: 7,
            last: 1_000,
            views: 2,
            viewed: 900,
            page: Some(page_tag("/a:b")),
            seen: 25_200,
            reading: vec![(page_tag("/a:b"), 2), (0xff, 1)],
        };
        assert_eq!(Visit::parse(&now.write()), Some(now.clone()));
        let reading_none = Visit {
            reading: Vec::new(),
            ..now.clone()
        };
        assert_eq!(reading_none.write(), "c|7:1000:2:100:24200::21d50cf5");
        assert_eq!(Visit::parse(&reading_none.write()), Some(reading_none));
        // A running visit as most are: its differences 0.
        let busy = Visit {
            session: u64::MAX,
            last: 1_796_325_716_314,
            views: 1,
            viewed: 1_796_325_716_314,
            page: None,
            seen: 1_796_325_716_314,
            reading: vec![(0xaa94_4031, 179_632_571)],
        };
        assert_eq!(
            busy.write(),
            "c|ffffffffffffffff:1796325716314:1:0:0:aa944031.0:"
        );
        assert_eq!(Visit::parse(&busy.write()), Some(busy));
        // Any values come back as written, extremes too (their differences wrap).
        let extreme = Visit {
            session: 0,
            last: i64::MIN,
            views: u64::MAX,
            viewed: i64::MAX,
            page: Some(0),
            seen: i64::MAX,
            reading: vec![(u32::MAX, i64::MIN), (0, i64::MAX)],
        };
        assert_eq!(Visit::parse(&extreme.write()), Some(extreme));
        // The layout before: the same values whole, and the page itself.
        let r = Visit::parse("r|7:1000:2:900:25200:21d50cf5.2,ff.1:/a:b").unwrap();
        assert_eq!(r, now);
        // Earlier releases: no pages being read.
        let before = Visit::parse("w|7:1000:2:900:25200:/a:b").unwrap();
        assert_eq!((before.seen, before.page), (25_200, Some(page_tag("/a:b"))));
        assert!(before.reading.is_empty());
        let short = Visit::parse("7:1000:2:900:/a:b").unwrap();
        assert_eq!((short.page, short.seen), (Some(page_tag("/a:b")), 1_000));
        let oldest = Visit::parse("7:1000:2").unwrap();
        assert_eq!((oldest.viewed, oldest.page), (0, None));
        for bad in [
            "",
            "x:1:2",
            "w|1:2",
            "7:1000:2:900",
            "r|7:1000:2:900:25200:/a",
            "r|7:1000:2:900:25200:zz.1:/a",
            "r|7:1000:2:900:25200:1.x:/a",
            "c|7:1000:2:0:0:",
            "c|x7:1000:2:0:0::",
            "c|7:1000:2:0:0:zz.1:",
            "c|7:1000:2:0:0::/a",
        ] {
            assert_eq!(Visit::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_visitor_moves_between_the_slots_of_the_pages_it_reads() {
        let mut v = Visit::parse("7:1000:2:900:/a").unwrap();
        let moved = |from, to| PageMove { from, to };
        // New on /a, then seen again there in a later slot: it moves.
        assert_eq!(v.read_page("/a", 10, false, 0), moved(None, Some(10)));
        assert_eq!(v.read_page("/a", 10, false, 0), moved(Some(10), Some(10)));
        assert_eq!(v.read_page("/a", 12, false, 0), moved(Some(10), Some(12)));
        // An earlier slot (another beacon's clock) does not move it back.
        assert_eq!(v.read_page("/a", 11, false, 0), moved(Some(12), Some(12)));
        // A second tab: on /b too; leaving /a takes it off /a only.
        assert_eq!(v.read_page("/b", 12, false, 0), moved(None, Some(12)));
        assert_eq!(v.read_page("/a", 13, true, 0), moved(Some(12), None));
        assert_eq!(v.read_page("/a", 13, true, 0), moved(None, None));
        assert_eq!(v.reading, vec![(page_tag("/b"), 12)]);
        // A slot older than the horizon is gone from the counts already: not taken again.
        assert_eq!(v.read_page("/b", 40, false, 20), moved(None, Some(40)));
        // At most MAX_PAGES_READ pages: the one seen longest ago is forgotten.
        for i in 0..MAX_PAGES_READ as i64 {
            v.read_page(&format!("/p{i}"), 50 + i, false, 0);
        }
        assert_eq!(v.reading.len(), MAX_PAGES_READ);
        assert!(!v.reading.contains(&(page_tag("/b"), 40)));
        assert_eq!(v.read_page("/p0", 70, false, 0), moved(Some(50), Some(70)));
    }

    #[test]
    fn page_tags_are_fnv_1a() {
        // The published FNV-1a test vectors: the tags must never change (records keep them).
        assert_eq!(page_tag(""), 0x811c_9dc5);
        assert_eq!(page_tag("a"), 0xe40c_292c);
        assert_eq!(page_tag("foobar"), 0xbf9c_f968);
    }
}
