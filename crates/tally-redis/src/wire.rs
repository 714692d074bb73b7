//! The wire between the beacon, the accept script, the applier and the worker, in one place.
//!
//! - **Script arguments.** The beacon calls `lua/accept.lua` with a [`Header`] (ARGV 1–4)
//!   followed, per partition, by a [`Part`]: its events' JSON and what they add to the live
//!   counters, by site and page ([`Counts`]). The script names every
//!   position with the constants of [`lua_layout`], which is pasted at its top and checked
//!   against this module by a test, so a position cannot change on one side only.
//! - **Incoming entries.** One entry of the partition's incoming stream per partition and
//!   batch, with the fields of [`incoming`]: the events' JSON (LZ4-compressed when that
//!   makes it smaller, see [`pack_lines`]), their [`Context`]s, when they were accepted and
//!   which went live under "other pages". The applier
//!   (`apply.rs`) reads them, works out the visits, and names them in an entry of the events
//!   stream; the worker deletes them with that entry once their events are stored.
//! - **Stream entries.** One entry of the events stream per applied run of incoming entries,
//!   with the fields [`field::VERSION`] ([`VERSION`]), [`field::INCOMING`] (the ids of the
//!   run's incoming entries, which keep the events' JSON until the worker has stored them:
//!   the JSON is written to Redis, and to its append-only file, once) and [`field::FIGURES`]
//!   (one [`Figures`] per event, joined by `,`). A dead letter sent back is an entry of
//!   [`INLINE_VERSION`], holding its JSON itself in [`field::BATCH`] (one line each), as
//!   every entry did before version 3.
//! - **Event keys.** An event is named within its partition by its entry's stream id and its
//!   place in the entry's batch ([`EventKey`], `ms-seq-i`); prefixed with the partition it is
//!   the `event_id` stored in ClickHouse.
//! - **Dead letters.** The worker keeps an event it cannot store as a one-event entry with
//!   its key and reason ([`DeadLetter`]): the same fields as a stream entry, so a replay adds
//!   them back unchanged.
//!
//! Versions: entries without a version field are version 1, the batch layout of the release
//! before the field existed; they differ from version 2 only in the tab's JSON name (`t`,
//! now `sid`, as in the tracker's body) and are read until the next release. Version 2
//! entries hold their JSON; version 3 entries name the incoming entries that hold it. Entries of
//! an unknown version, and the one-event entries of releases before batches (fields `e`,
//! `se`…), are not guessed at: they become dead letters with the reason, to be replayed by
//! a release that reads them. The upgrade rule in `docs/operations.md` says to let the
//! worker empty the streams before skipping a release.

use std::fmt;

use tally_core::{Event, EventKind};

use crate::Keys;

/// The stream entry format the applier writes: the events' JSON stays in the incoming
/// entries it names.
pub const VERSION: u32 = 3;
/// The stream entry format holding its events' JSON itself: what a dead letter sent back
/// is, and what the applier wrote before version 3.
pub const INLINE_VERSION: u32 = 2;

/// The fields of a stream entry (and of a dead letter).
pub mod field {
    /// The entry's wire version; absent in version 1.
    pub const VERSION: &str = "v";
    /// The events' JSON, one line each (entries of [`INLINE_VERSION`](super::INLINE_VERSION)).
    pub const BATCH: &str = "b";
    /// The ids of the incoming entries holding the events' JSON, joined by ` `, in order
    /// (entries of [`VERSION`](super::VERSION)).
    pub const INCOMING: &str = "i";
    /// The events' [`Figures`](super::Figures), joined by `,`.
    pub const FIGURES: &str = "m";
    /// A dead letter's [`EventKey`](super::EventKey) in the events stream.
    pub const KEY: &str = "key";
    /// Why a dead letter was not stored.
    pub const REASON: &str = "reason";
}

/// The accept script's header: ARGV 1–4, in this order. A [`Part`] per partition follows.
#[derive(Debug, Clone)]
pub struct Header {
    /// Unique per batch, reused on retry.
    pub batch_id: u64,
    pub now_ms: i64,
    /// 0 = no cap.
    pub max_pages: u64,
    /// Partitions that follow (one per call on a Redis Cluster, where partitions live in
    /// different slots).
    pub parts: usize,
}

/// The names of the header's positions, as the script knows them (`A_` + name = ARGV index).
const HEADER_NAMES: [&str; 4] = ["BATCH_ID", "NOW", "MAX_PAGES", "PARTS"];

/// One partition's part of a call: these values, then its [`Counts`]. Its incoming stream is
/// the call's key of the same place.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// Key prefix of the partition (`tally:{pN}:`).
    pub prefix: &'a str,
    /// Events in the part.
    pub count: usize,
    /// The incoming entry's layout ([`incoming::PLAIN`] or [`incoming::LZ4`]) and its
    /// events' JSON in it (see [`pack_lines`]).
    pub layout: &'a str,
    pub lines: &'a [u8],
    /// The events' [`Context`]s, joined by `,`.
    pub context: &'a str,
    /// What the events add to the live counters.
    pub counts: &'a Counts<'a>,
}

/// The names of a part's positions (`P_` + name = offset from its first value).
const PART_NAMES: [&str; 6] = ["PREFIX", "COUNT", "LAYOUT", "LINES", "CONTEXT", "SITES"];

/// What a part's events add to the live counters, added up by site, page and custom event:
/// the script's work is then per site and page, not per event (Lua's cost per value handled
/// was most of the call's). Per site (in the order of [`SITE_NAMES`]) its counts, then its
/// pages (each [`PAGE_NAMES`]), then its custom events' counter fields (each
/// [`FIELD_NAMES`]).
#[derive(Debug, Default)]
pub struct Counts<'a> {
    sites: std::collections::BTreeMap<&'a str, SiteCounts<'a>>,
}

#[derive(Debug, Default)]
struct SiteCounts<'a> {
    bots: u64,
    unverified: u64,
    pages: std::collections::BTreeMap<&'a str, PageCounts>,
    fields: std::collections::BTreeMap<String, u64>,
}

/// A page's events in a part: the views among them, and all of them, by their place in the
/// part's batch (joined by `,`): the script lists those places in [`incoming::OVER`] when the
/// page goes live under "other pages".
#[derive(Debug, Default)]
struct PageCounts {
    views: u64,
    events: u64,
    at: String,
}

/// The names of a site's positions (`S_` + name), a page's (`G_`) and a custom event
/// field's (`C_`), as offsets from their first value.
const SITE_NAMES: [&str; 6] = ["SITE", "BOTS", "UNVERIFIED", "VIEWS", "PAGES", "FIELDS"];
const PAGE_NAMES: [&str; 4] = ["PAGE", "VIEWS", "EVENTS", "AT"];
const FIELD_NAMES: [&str; 2] = ["FIELD", "COUNT"];

impl<'a> Counts<'a> {
    /// Counts `event`, at `place` in the part's batch.
    pub fn add(&mut self, place: usize, event: &'a Event) {
        use std::fmt::Write as _;
        let counts = self.sites.entry(&event.site).or_default();
        match event.kind {
            // Counts of the site only: a crawler's hit, a pixel hit naming no page of it.
            EventKind::Bot => counts.bots += 1,
            EventKind::Unverified => counts.unverified += 1,
            kind => {
                let on_page = counts.pages.entry(&event.page).or_default();
                if on_page.events > 0 {
                    on_page.at.push(',');
                }
                let _ = write!(on_page.at, "{place}");
                on_page.events += 1;
                if kind == EventKind::Pageview {
                    on_page.views += 1;
                }
                if kind == EventKind::Custom {
                    let field = event_field(&event.name, &event.target);
                    *counts.fields.entry(field).or_default() += 1;
                }
            }
        }
    }

    /// The same counts as the script's commands, for a transaction (see
    /// [`Store::record`](crate::Store::record)): what the script does for a part when every
    /// page and custom event field fits under the page cap.
    pub fn push_commands(&self, pipe: &mut redis::Pipeline, keys: &Keys) {
        for (site, counts) in &self.sites {
            let totals = keys.totals(site);
            if counts.bots > 0 {
                pipe.cmd("HINCRBY")
                    .arg(&totals)
                    .arg("bots")
                    .arg(counts.bots)
                    .ignore();
            }
            if counts.unverified > 0 {
                pipe.cmd("HINCRBY")
                    .arg(&totals)
                    .arg("unverified")
                    .arg(counts.unverified)
                    .ignore();
            }
            let views = keys.views(site);
            let mut site_views = 0;
            for (page, on_page) in counts.pages.iter().filter(|(_, p)| p.views > 0) {
                pipe.cmd("HINCRBY")
                    .arg(&views)
                    .arg(*page)
                    .arg(on_page.views)
                    .ignore();
                site_views += on_page.views;
            }
            if site_views > 0 {
                pipe.cmd("HINCRBY")
                    .arg(&totals)
                    .arg("views")
                    .arg(site_views)
                    .ignore();
            }
            let events = keys.event_counts(site);
            for (field, count) in &counts.fields {
                pipe.cmd("HINCRBY")
                    .arg(&events)
                    .arg(field)
                    .arg(*count)
                    .ignore();
            }
        }
    }

    /// The hashes the page cap bounds that these counts may add members to, each with how
    /// many they may add: per site its view counts (its pages) and, with custom events, its
    /// event counts (their fields).
    pub fn capped(&self, keys: &Keys) -> Vec<(String, usize)> {
        let mut capped = Vec::new();
        for (site, counts) in &self.sites {
            if !counts.pages.is_empty() {
                capped.push((keys.views(site), counts.pages.len()));
            }
            if !counts.fields.is_empty() {
                capped.push((keys.event_counts(site), counts.fields.len()));
            }
        }
        capped
    }

    /// Appends the counts to `cmd` (after the part's own values).
    fn push(&self, cmd: &mut redis::Cmd) {
        for (site, counts) in &self.sites {
            let views: u64 = counts.pages.values().map(|p| p.views).sum();
            cmd.arg(*site)
                .arg(counts.bots)
                .arg(counts.unverified)
                .arg(views)
                .arg(counts.pages.len())
                .arg(counts.fields.len());
            for (page, on_page) in &counts.pages {
                cmd.arg(*page)
                    .arg(on_page.views)
                    .arg(on_page.events)
                    .arg(&on_page.at);
            }
            for (field, count) in &counts.fields {
                cmd.arg(field).arg(*count);
            }
        }
    }
}

impl Header {
    /// Appends the header to `cmd` (after the script's keys).
    pub fn push(&self, cmd: &mut redis::Cmd) {
        cmd.arg(self.batch_id)
            .arg(self.now_ms)
            .arg(self.max_pages)
            .arg(self.parts);
    }
}

impl Part<'_> {
    /// Appends the part, its counts included, to `cmd`.
    pub fn push(&self, cmd: &mut redis::Cmd) {
        cmd.arg(self.prefix)
            .arg(self.count)
            .arg(self.layout)
            .arg(self.lines)
            .arg(self.context)
            .arg(self.counts.sites.len());
        self.counts.push(cmd);
    }
}

/// What the beacon knows of an event beside the event itself, for the applier: the session
/// id to use if the event starts a visit, and the event's day in its site's time zone
/// (`YYYYMMDD`, the day of its unique-visitor sketch). Written `candidate day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub session_candidate: u64,
    pub day: String,
}

impl Context {
    /// Reads `candidate day`.
    pub fn parse(text: &str) -> Option<Self> {
        let (candidate, day) = text.split_once(' ')?;
        Some(Self {
            session_candidate: candidate.parse().ok()?,
            day: day.to_owned(),
        })
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.session_candidate, self.day)
    }
}

/// The fields of an entry of the incoming stream (written by `lua/accept.lua`, read by the
/// applier and by the worker, which deletes it once its events are stored).
pub mod incoming {
    /// The layout's version: [`PLAIN`] or [`LZ4`].
    pub const VERSION: &str = "v";
    /// The events' JSON, one line each, as the version says.
    pub const BATCH: &str = "b";
    /// The events' [`Context`](super::Context)s, joined by `,`.
    pub const CONTEXT: &str = "c";
    /// When the batch was accepted (ms): the minute whose view count it raised.
    pub const NOW: &str = "n";
    /// The events recorded live under "other pages" (places in the batch, joined by `,`).
    pub const OVER: &str = "o";
    /// [`BATCH`] holds the JSON lines as they are.
    pub const PLAIN: &str = "1";
    /// [`BATCH`] holds the JSON lines as one LZ4 block, their length (4 bytes, little
    /// endian) before it: what `lz4_flex::compress_prepend_size` writes.
    pub const LZ4: &str = "2";
}

/// The value of field `name` of an incoming entry with `fields` (names and values, as read);
/// empty when absent.
fn incoming_bytes<'a>(fields: &'a [Vec<u8>], name: &str) -> &'a [u8] {
    value(fields, name).map_or(&[][..], Vec::as_slice)
}

/// A text field of an incoming entry ([`incoming::VERSION`], [`incoming::CONTEXT`],
/// [`incoming::NOW`], [`incoming::OVER`]); empty when absent or not UTF-8.
pub fn incoming_field<'a>(fields: &'a [Vec<u8>], name: &str) -> &'a str {
    std::str::from_utf8(incoming_bytes(fields, name)).unwrap_or_default()
}

/// Batches shorter than this are written as they are: a single event's JSON hardly shrinks
/// (193 bytes to 185 in the benchmark's events), two events' by 1.6 times.
const COMPRESS_FROM: usize = 256;

/// The layout and bytes of a batch's JSON lines in its incoming entry: LZ4-compressed when
/// that makes them smaller. The JSON of one batch repeats its field names and most values
/// (site, browser, pages), so LZ4 makes it 3 to 4 times smaller from about ten events: the
/// entry is most of what each accepted event writes to Redis' append-only file, and
/// compressing it costs the beacon ~0.25 µs per event, a fraction of what Redis saves in
/// copying and appending it.
pub fn pack_lines(lines: Vec<u8>) -> (&'static str, Vec<u8>) {
    if lines.len() >= COMPRESS_FROM {
        let packed = lz4_flex::compress_prepend_size(&lines);
        if packed.len() < lines.len() {
            return (incoming::LZ4, packed);
        }
    }
    (incoming::PLAIN, lines)
}

/// The JSON lines of the incoming entry with `fields` (names and values, as read), as both
/// the applier and the worker read them: one line per event, or, for a batch that cannot be
/// unpacked, one line saying so (no JSON: the worker keeps it as a dead letter, the applier
/// gives it no visit). An entry of a version this release does not know is read as plain
/// text.
pub fn incoming_lines(fields: &[Vec<u8>]) -> std::borrow::Cow<'_, str> {
    let batch = incoming_bytes(fields, incoming::BATCH);
    if incoming_field(fields, incoming::VERSION) != incoming::LZ4 {
        return String::from_utf8_lossy(batch);
    }
    // An LZ4 block is at most 255 times smaller than what it holds: a larger length
    // prepended is damage, not a batch (and would be allocated before the block is read).
    let unpacked = match batch.get(..4) {
        Some(len)
            if u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize
                > batch.len() * 255 =>
        {
            Err("its length exceeds what LZ4 can hold".to_owned())
        }
        _ => lz4_flex::decompress_size_prepended(batch).map_err(|e| e.to_string()),
    };
    match unpacked.and_then(|lines| String::from_utf8(lines).map_err(|e| e.to_string())) {
        Ok(lines) => std::borrow::Cow::Owned(lines),
        Err(error) => std::borrow::Cow::Owned(format!(
            "an LZ4 batch of {} bytes that cannot be unpacked: {}",
            batch.len(),
            error.replace('\n', " ")
        )),
    }
}

/// The field of a custom event's live count in its site's `events:` hash: its name and
/// target joined by a tab (neither holds one: names refuse control characters, a target is
/// a URL).
pub fn event_field(name: &str, target: &str) -> String {
    format!("{name}\t{target}")
}

/// The Lua that names the layout, pasted at the top of `lua/accept.lua` (a test checks it
/// is there, as written here).
pub fn lua_layout() -> String {
    let names = |prefix: &str, names: &[&str], first: usize| {
        let names: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
        let at: Vec<String> = (first..first + names.len())
            .map(|i| i.to_string())
            .collect();
        format!("local {} = {}\n", names.join(", "), at.join(", "))
    };
    format!(
        "-- wire layout (tally-redis/src/wire.rs: lua_layout)\n\
         {}{}{}{}{}\
         local PART_ARGS, SITE_ARGS, PAGE_ARGS, FIELD_ARGS, FIRST_PART = {}, {}, {}, {}, {}\n\
         local F_VERSION, F_BATCH, F_CONTEXT, F_NOW, F_OVER = '{}', '{}', '{}', '{}', '{}'\n",
        names("A_", &HEADER_NAMES, 1),
        names("P_", &PART_NAMES, 0),
        names("S_", &SITE_NAMES, 0),
        names("G_", &PAGE_NAMES, 0),
        names("C_", &FIELD_NAMES, 0),
        PART_NAMES.len(),
        SITE_NAMES.len(),
        PAGE_NAMES.len(),
        FIELD_NAMES.len(),
        HEADER_NAMES.len() + 1,
        incoming::VERSION,
        incoming::BATCH,
        incoming::CONTEXT,
        incoming::NOW,
        incoming::OVER,
    )
}

/// The events' JSON, one line each: the [`field::BATCH`] of their entry. JSON as serde
/// writes it never holds a raw newline (control characters are escaped).
pub fn json_lines<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(&to_json(e));
    }
    out
}

/// `event` as one line of JSON. An [`Event`] is strings and numbers only, so this cannot
/// fail.
fn to_json(event: &Event) -> Vec<u8> {
    serde_json::to_vec(event).expect("an Event always serialises")
}

/// What the applier found out about one event: its visit, and whether a page view
/// repeats the visitor's last. Written as `session new ordinal gap` (`new` is 0 or 1) and
/// ` r` for a repeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub session: u64,
    pub new_visit: bool,
    /// The page view's ordinal in its visit (1 = the first); 0 for other kinds.
    pub visit_seq: u16,
    /// Milliseconds since the visit's previous event.
    pub gap_ms: u32,
    /// A page view repeating the visitor's last one (stored as [`EventKind::Repeat`]).
    pub repeat: bool,
}

impl Figures {
    /// The figures an event carries (a repeat is a page view whose kind says so).
    pub fn of(event: &Event) -> Self {
        Self {
            session: event.session,
            new_visit: event.new_visit,
            visit_seq: event.visit_seq,
            gap_ms: event.gap_ms,
            repeat: false,
        }
    }

    /// Reads `session new ordinal gap[ r]`; `None` if any number is missing or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let figures = Self {
            session: parts.next()?.parse().ok()?,
            new_visit: match parts.next()? {
                "1" => true,
                "0" => false,
                _ => return None,
            },
            visit_seq: parts.next()?.parse().ok()?,
            gap_ms: parts.next()?.parse().ok()?,
            repeat: match parts.next() {
                None => false,
                Some("r") => true,
                Some(_) => return None,
            },
        };
        parts.next().is_none().then_some(figures)
    }

    /// Puts the figures into `event`.
    pub fn apply(self, event: &mut Event) {
        event.session = self.session;
        event.new_visit = self.new_visit;
        event.visit_seq = self.visit_seq;
        event.gap_ms = self.gap_ms;
        if self.repeat && event.kind == EventKind::Pageview {
            event.kind = EventKind::Repeat;
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}{}",
            self.session,
            u8::from(self.new_visit),
            self.visit_seq,
            self.gap_ms,
            if self.repeat { " r" } else { "" }
        )
    }
}

/// What names an event within its partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    /// Stream id (`ms-seq`) of the entry holding the event: what is acknowledged.
    pub entry: String,
    /// The event's place in its entry's batch; `None` names an entry that could not be read
    /// as events (it is kept whole).
    pub item: Option<u32>,
}

impl EventKey {
    /// Reads `ms-seq-i` (an event) or `ms-seq` (a whole entry).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('-');
        let ms: u64 = parts.next()?.parse().ok()?;
        let seq: u64 = parts.next()?.parse().ok()?;
        let item = parts.next().map(str::parse).transpose().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            entry: format!("{ms}-{seq}"),
            item,
        })
    }

    /// When Redis appended the entry (see [`appended_ms`]).
    pub fn appended_ms(&self) -> Option<i64> {
        appended_ms(&self.entry)
    }
}

/// When Redis appended the stream entry `id`: an id starts with the milliseconds of the
/// append, by Redis' clock.
pub fn appended_ms(id: &str) -> Option<i64> {
    id.split_once('-')?.0.parse().ok()
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(i) => write!(f, "{}-{i}", self.entry),
            None => f.write_str(&self.entry),
        }
    }
}

/// What could not be read as an event, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub raw: String,
    pub reason: String,
}

/// One event read from a partition's stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub key: EventKey,
    /// The event with its figures, or what could not be read.
    pub event: Result<Event, Undecodable>,
}

impl StreamEvent {
    /// Approximate size in bytes, for the worker's batch byte limit.
    pub fn size(&self) -> usize {
        match &self.event {
            Ok(e) => 64 + e.page.len() + e.path.len() + e.title.len() + e.referrer_host.len(),
            Err(u) => u.raw.len(),
        }
    }
}

/// The value of field `name` among an entry's `fields` (name, value, name, value, …), read
/// as text or as bytes.
fn value<'a, T: AsRef<[u8]>>(fields: &'a [T], name: &str) -> Option<&'a T> {
    fields
        .chunks_exact(2)
        .find(|kv| kv[0].as_ref() == name.as_bytes())
        .map(|kv| &kv[1])
}

/// The value of field `name` among an entry's `fields`, read as text.
pub(crate) fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    value(fields, name).map(String::as_str)
}

/// The incoming entries an entry of [`VERSION`] names ([`field::INCOMING`]); `None` for an
/// entry of another version.
pub fn linked_ids(fields: &[String]) -> Option<Vec<&str>> {
    Some(
        linked_field(fields)?
            .split(' ')
            .filter(|id| !id.is_empty())
            .collect(),
    )
}

/// The [`field::INCOMING`] field of an entry of [`VERSION`], as written; `None` for an
/// entry of another version.
pub fn linked_field(fields: &[String]) -> Option<&str> {
    if field(fields, field::VERSION)? != VERSION.to_string() {
        return None;
    }
    Some(field(fields, field::INCOMING).unwrap_or_default())
}

/// The events of stream entry `id`, appended to `out`: one per event, or one for the whole
/// entry when it cannot be read as events. `linked` is, for an entry of [`VERSION`], the
/// JSON lines of the incoming entries it names, read by the caller (`None`: they are gone).
pub fn decode_entry(
    id: String,
    fields: &[String],
    linked: Option<&str>,
    out: &mut Vec<StreamEvent>,
) {
    let whole = |raw: String, reason: String| StreamEvent {
        key: EventKey {
            entry: id.clone(),
            item: None,
        },
        event: Err(Undecodable { raw, reason }),
    };
    let version = match field(fields, field::VERSION) {
        None => 1,
        Some(v) => v.parse::<u32>().unwrap_or(0),
    };
    let batch = match version {
        VERSION => linked,
        _ => field(fields, field::BATCH),
    };
    let (Some(batch), 1 | INLINE_VERSION | VERSION) = (batch, version) else {
        let raw = serde_json::to_string(&fields).unwrap_or_default();
        let reason = if version == VERSION {
            "the incoming entries holding its events are gone (or `i` names no stream entries)"
                .to_owned()
        } else if batch.is_none() {
            "not a batch entry (one-event entries of releases before 2026-09 are not read: \
             see the upgrade rule in docs/operations.md)"
                .to_owned()
        } else {
            format!("wire version {version} is not known to this release (it reads 1 to {VERSION})")
        };
        out.push(whole(raw, reason));
        return;
    };
    let figures: Vec<&str> = field(fields, field::FIGURES)
        .unwrap_or_default()
        .split(',')
        .collect();
    let lines: Vec<&str> = batch.split('\n').collect();
    if figures.len() != lines.len() {
        // Cannot happen with entries the applier made; keep the payload whole.
        let reason = format!("{} events but {} visit figures", lines.len(), figures.len());
        out.push(whole(batch.to_owned(), reason));
        return;
    }
    for (i, (line, figures)) in lines.into_iter().zip(figures).enumerate() {
        out.push(StreamEvent {
            key: EventKey {
                entry: id.clone(),
                item: Some(i as u32),
            },
            event: decode_event(line, figures, version),
        });
    }
}

/// The events of stream entry `id` of [`VERSION`] from `events`, parsed from its incoming
/// entries by this process' applier (see `handoff`), appended to `out` with the figures of
/// the entry. `false`, with nothing appended, when the figures do not fit the events: the
/// caller then reads the entry from Redis.
pub fn decode_applied(
    id: &str,
    fields: &[String],
    events: Vec<Event>,
    out: &mut Vec<StreamEvent>,
) -> bool {
    let figures: Option<Vec<Figures>> = field(fields, field::FIGURES)
        .unwrap_or_default()
        .split(',')
        .map(Figures::parse)
        .collect();
    let Some(figures) = figures.filter(|f| f.len() == events.len()) else {
        return false;
    };
    out.reserve(events.len());
    for (i, (mut event, figures)) in events.into_iter().zip(figures).enumerate() {
        figures.apply(&mut event);
        out.push(StreamEvent {
            key: EventKey {
                entry: id.to_owned(),
                item: Some(i as u32),
            },
            event: Ok(event),
        });
    }
    true
}

/// One event's JSON line and figures.
fn decode_event(line: &str, figures: &str, version: u32) -> Result<Event, Undecodable> {
    let fail = |reason: String| Undecodable {
        raw: line.to_owned(),
        reason,
    };
    let mut event: Event = if version == 1 {
        let v1: V1Event =
            serde_json::from_str(line).map_err(|e| fail(format!("undecodable event: {e}")))?;
        let mut event = v1.event;
        event.tab = v1.t;
        event
    } else {
        serde_json::from_str(line).map_err(|e| fail(format!("undecodable event: {e}")))?
    };
    let figures = Figures::parse(figures)
        .ok_or_else(|| fail(format!("undecodable visit figures `{figures}`")))?;
    figures.apply(&mut event);
    Ok(event)
}

/// A version 1 event: the tab was called `t`.
#[derive(serde::Deserialize)]
struct V1Event {
    #[serde(default)]
    t: String,
    #[serde(flatten)]
    event: Event,
}

/// The fields of a stream entry of one event: how a dead letter's event goes back.
pub fn entry_fields(event: &Event, figures: Figures) -> [(&'static str, String); 3] {
    [
        (field::VERSION, INLINE_VERSION.to_string()),
        (
            field::BATCH,
            String::from_utf8(to_json(event)).expect("JSON is UTF-8"),
        ),
        (field::FIGURES, figures.to_string()),
    ]
}

/// What a dead letter holds: an event that can be sent again, or what could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The event with its visit figures.
    Event(Box<Event>),
    /// Not an event (an entry the worker could not read).
    Raw(String),
}

/// An event the worker could not store, as the dead-letter stream keeps it: fields
/// [`field::VERSION`], [`field::KEY`], [`field::REASON`] and either [`field::BATCH`] and
/// [`field::FIGURES`] (an event, as in a stream entry) or `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (empty before it is added).
    pub id: String,
    pub key: EventKey,
    pub payload: Payload,
    pub reason: String,
}

impl DeadLetter {
    /// The fields to add to the dead-letter stream.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (field::VERSION, INLINE_VERSION.to_string()),
            (field::KEY, self.key.to_string()),
            (field::REASON, self.reason.clone()),
        ];
        match &self.payload {
            Payload::Event(event) => {
                let [_, batch, figures] = entry_fields(event, Figures::of(event));
                out.extend([batch, figures]);
            }
            Payload::Raw(raw) => out.push(("raw", raw.clone())),
        }
        out
    }

    /// Reads the dead letter `id` from its `fields`. Dead letters written before the version
    /// field (`id`, `e` holding the event's JSON with its figures, or raw text, and `reason`)
    /// are read too: they stay until replayed, possibly across releases.
    pub fn decode(id: String, fields: &[String]) -> Self {
        let get = |name| field(fields, name).unwrap_or_default().to_owned();
        let reason = get(field::REASON);
        let (key, payload) = if field(fields, field::VERSION).is_some() {
            let payload = match (field(fields, field::BATCH), field(fields, field::FIGURES)) {
                (Some(line), Some(figures)) => match decode_event(line, figures, INLINE_VERSION) {
                    Ok(event) => Payload::Event(Box::new(event)),
                    Err(u) => Payload::Raw(u.raw),
                },
                _ => Payload::Raw(get("raw")),
            };
            (get(field::KEY), payload)
        } else {
            let raw = get("e");
            let payload = match serde_json::from_str::<V1Letter>(&raw) {
                Ok(v1) => {
                    let mut event = v1.event.event;
                    event.tab = v1.event.t;
                    v1.figures.apply(&mut event);
                    Payload::Event(Box::new(event))
                }
                Err(_) => Payload::Raw(raw),
            };
            (get("id"), payload)
        };
        Self {
            key: EventKey::parse(&key).unwrap_or(EventKey {
                entry: key,
                item: None,
            }),
            id,
            payload,
            reason,
        }
    }
}

/// A dead letter's event before the version field: the figures were in the JSON.
#[derive(serde::Deserialize)]
struct V1Letter {
    #[serde(flatten)]
    event: V1Event,
    #[serde(flatten)]
    figures: V1Figures,
}

#[derive(serde::Deserialize)]
struct V1Figures {
    #[serde(default)]
    se: u64,
    #[serde(default)]
    n: bool,
    #[serde(default)]
    q: u16,
    #[serde(default)]
    g: u32,
}

impl V1Figures {
    fn apply(&self, event: &mut Event) {
        Figures {
            session: self.se,
            new_visit: self.n,
            visit_seq: self.q,
            gap_ms: self.g,
            repeat: false,
        }
        .apply(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kv: &[(&str, &str)]) -> Vec<String> {
        kv.iter()
            .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
            .collect()
    }

    const EVENT: &str =
        r#"{"k":"pageview","s":"news","ts":1795722928472,"p":"/a","v":7,"sid":"tab1"}"#;

    #[test]
    fn the_script_names_the_wire_layout() {
        let script = include_str!("lua/accept.lua");
        assert!(
            script.contains(&lua_layout()),
            "lua/accept.lua must hold, as written, the layout of wire::lua_layout():\n{}",
            lua_layout()
        );
    }

    /// An incoming entry's fields as read: names and values, bytes.
    fn incoming_entry(version: &str, batch: &[u8]) -> Vec<Vec<u8>> {
        vec![
            b"v".to_vec(),
            version.as_bytes().to_vec(),
            b"b".to_vec(),
            batch.to_vec(),
            b"c".to_vec(),
            b"1 20261203".to_vec(),
        ]
    }

    #[test]
    fn a_batch_is_compressed_when_that_makes_it_smaller_and_read_back_whole() {
        let (layout, packed) = pack_lines(EVENT.as_bytes().to_vec());
        assert_eq!(
            (layout, packed.as_slice()),
            (incoming::PLAIN, EVENT.as_bytes())
        );
        let lines: Vec<String> = (0..20)
            .map(|i| EVENT.replace("/a", &format!("/page-{i}")))
            .collect();
        let json = lines.join("\n");
        let (layout, packed) = pack_lines(json.clone().into_bytes());
        assert_eq!(layout, incoming::LZ4);
        assert!(
            packed.len() * 3 < json.len(),
            "{} of {}",
            packed.len(),
            json.len()
        );
        assert_eq!(incoming_lines(&incoming_entry(layout, &packed)), json);
        assert_eq!(
            incoming_lines(&incoming_entry(incoming::PLAIN, json.as_bytes())),
            json
        );
        // Bytes that are no LZ4 (a short text) stay as they are.
        let text = "x".repeat(300).into_bytes();
        let (layout, packed) = pack_lines(text.clone());
        assert_eq!(layout, incoming::LZ4, "300 equal bytes shrink");
        assert_eq!(
            incoming_lines(&incoming_entry(layout, &packed)).as_bytes(),
            text
        );
    }

    #[test]
    fn a_damaged_batch_reads_as_one_line_saying_so() {
        let json = [EVENT; 10].join("\n");
        let (_, mut packed) = pack_lines(json.into_bytes());
        // Its length says 4 GiB: refused before anything is allocated.
        packed[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let read = incoming_lines(&incoming_entry(incoming::LZ4, &packed)).into_owned();
        assert!(
            read.contains("cannot be unpacked: its length exceeds"),
            "{read}"
        );
        let truncated = pack_lines([EVENT; 10].join("\n").into_bytes()).1[..40].to_vec();
        for damaged in [truncated, b"no lz4".to_vec(), Vec::new()] {
            let read = incoming_lines(&incoming_entry(incoming::LZ4, &damaged)).into_owned();
            assert!(read.starts_with("an LZ4 batch of"), "{read}");
            assert!(!read.contains('\n'), "one line: {read}");
        }
        // A version this release does not know is read as plain text.
        assert_eq!(
            incoming_lines(&incoming_entry("9", EVENT.as_bytes())),
            EVENT
        );
    }

    #[test]
    fn figures_read_back_what_they_write() {
        for text in ["42 1 3 1500", "42 0 1 0 r", "0 0 0 0"] {
            assert_eq!(Figures::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "1 1 1",
            "1 2 1 0",
            "1 1 1 0 x",
            "1 1 1 0 r r",
            "a 1 1 0",
        ] {
            assert_eq!(Figures::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_keys_read_back_what_they_write() {
        for text in ["1700000000000-3-2", "1700000000000-3"] {
            assert_eq!(EventKey::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(EventKey::parse("1-2-3").unwrap().item, Some(3));
        for bad in ["", "1", "1-x", "1-2-3-4", "1-2-x"] {
            assert_eq!(EventKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_batch_entry_yields_its_events_in_order_with_their_figures() {
        let second = EVENT.replace("/a", "/b");
        let lines = format!("{EVENT}\n{second}\n{{not json");
        let mut out = Vec::new();
        decode_entry(
            "1700000000000-3".into(),
            &fields(&[
                ("v", "2"),
                ("b", &lines),
                ("m", "42 1 1 0,42 0 2 1500 r,0 0 0 0"),
            ]),
            None,
            &mut out,
        );
        assert_eq!(out.len(), 3);
        let first = out[0].event.as_ref().unwrap();
        let next = out[1].event.as_ref().unwrap();
        assert_eq!(
            (first.page.as_str(), first.new_visit, first.visit_seq),
            ("/a", true, 1)
        );
        assert_eq!(first.tab, "tab1");
        assert_eq!(
            (next.page.as_str(), next.session, next.gap_ms, next.kind),
            ("/b", 42, 1500, EventKind::Repeat)
        );
        // A bad line spoils only its own event.
        assert_eq!(out[2].event.as_ref().unwrap_err().raw, "{not json");
        let keys: Vec<String> = out.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "1700000000000-3-0",
                "1700000000000-3-1",
                "1700000000000-3-2"
            ]
        );
    }

    /// An entry of the current version names its incoming entries; the lines read from them
    /// are its events, with the entry's figures and keys.
    #[test]
    fn a_linked_entry_yields_the_lines_of_its_incoming_entries() {
        let entry = fields(&[("v", "3"), ("i", "4-0 4-1"), ("m", "7 1 1 0,7 0 2 900")]);
        assert_eq!(linked_ids(&entry), Some(vec!["4-0", "4-1"]));
        assert_eq!(linked_ids(&fields(&[("v", "2"), ("b", EVENT)])), None);
        let lines = format!("{EVENT}\n{}", EVENT.replace("/a", "/b"));
        let mut out = Vec::new();
        decode_entry("6-0".into(), &entry, Some(&lines), &mut out);
        let read: Vec<(String, String, u16)> = out
            .iter()
            .map(|e| {
                let event = e.event.as_ref().unwrap();
                (e.key.to_string(), event.page.clone(), event.visit_seq)
            })
            .collect();
        assert_eq!(
            read,
            [
                ("6-0-0".to_owned(), "/a".to_owned(), 1),
                ("6-0-1".to_owned(), "/b".to_owned(), 2)
            ]
        );
    }

    /// Entries written by the release before the version field (still in a stream at an
    /// upgrade): the tab was `t`.
    #[test]
    fn version_1_entries_are_read() {
        let v1 = r#"{"k":"ping","s":"news","ts":1,"p":"/a","v":7,"t":"tab1","se":0,"n":false,"q":0,"g":0}"#;
        let mut out = Vec::new();
        decode_entry(
            "5-0".into(),
            &fields(&[("b", v1), ("m", "9 0 0 30")]),
            None,
            &mut out,
        );
        let event = out[0].event.as_ref().unwrap();
        assert_eq!(
            (event.tab.as_str(), event.session, event.gap_ms),
            ("tab1", 9, 30)
        );
    }

    #[test]
    fn entries_of_other_layouts_are_kept_whole_with_the_reason() {
        let cases = [
            (
                fields(&[("e", EVENT), ("m", "0 0 0 0")]),
                "not a batch entry",
            ),
            (
                fields(&[("v", "4"), ("b", EVENT), ("m", "0 0 0 0")]),
                "wire version 4",
            ),
            (
                fields(&[("v", "3"), ("i", "4-0"), ("m", "0 0 0 0")]),
                "incoming entries holding its events are gone",
            ),
            (
                fields(&[
                    ("v", "2"),
                    ("b", &format!("{EVENT}\n{EVENT}")),
                    ("m", "1 1 1 0"),
                ]),
                "2 events but 1 visit figures",
            ),
        ];
        for (fields, want) in cases {
            let mut out = Vec::new();
            decode_entry("5-0".into(), &fields, None, &mut out);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].key.to_string(), "5-0");
            let u = out[0].event.as_ref().unwrap_err();
            assert!(u.reason.contains(want), "{}", u.reason);
            assert!(!u.raw.is_empty());
        }
    }

    #[test]
    fn dead_letters_read_back_what_they_write() {
        let mut event: Event = serde_json::from_str(EVENT).unwrap();
        Figures::parse("42 0 2 1500").unwrap().apply(&mut event);
        for payload in [
            Payload::Event(Box::new(event)),
            Payload::Raw("{not json".into()),
        ] {
            let letter = DeadLetter {
                id: "9-0".into(),
                key: EventKey::parse("5-0-1").unwrap(),
                payload,
                reason: "refused".into(),
            };
            let stored: Vec<String> = letter
                .fields()
                .into_iter()
                .flat_map(|(k, v)| [k.to_owned(), v])
                .collect();
            assert_eq!(DeadLetter::decode("9-0".into(), &stored), letter);
        }
    }

    /// Dead letters written before the version field: the figures were in the JSON.
    #[test]
    fn version_1_dead_letters_are_read() {
        let json = r#"{"k":"pageview","s":"news","ts":1,"p":"/a","v":7,"t":"x","se":42,"n":true,"q":1,"g":0}"#;
        let letter = DeadLetter::decode(
            "9-0".into(),
            &fields(&[("id", "5-0-1"), ("e", json), ("reason", "refused")]),
        );
        let Payload::Event(event) = letter.payload else {
            panic!("{letter:?}")
        };
        assert_eq!(
            (event.session, event.new_visit, event.tab.as_str()),
            (42, true, "x")
        );
        assert_eq!(letter.key.to_string(), "5-0-1");
        let raw = DeadLetter::decode("9-1".into(), &fields(&[("id", "5-0"), ("e", "{x")]));
        assert_eq!(raw.payload, Payload::Raw("{x".into()));
    }
}
