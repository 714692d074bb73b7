//! Every Redis key Tally uses. Nothing outside this crate builds a key.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tally:{pN}:incoming` | stream | accepted events not yet in ClickHouse: one entry per beacon batch and partition, in the layout of [`wire::incoming`](crate::wire::incoming): `v`, `b` (the events' JSON, one line each), `c` (their context), `n` (accepted at, ms), `o` (events recorded under "other pages"). Consumer group `applier`, read by nobody: its last delivered id is the last entry applied. The applier applies a run of them at once and names it in an entry of `events`; the worker deletes them with that entry, once their events are stored |
//! | `tally:{pN}:applied` | string | the last incoming entry applied, as the applier's cursor (which stays the group's): set by every commit sent as a transaction, which the appliers `WATCH` with `events`, so a commit fails when another applier's came first. Not on a cluster, where the commit is a script |
//! | `tally:{pN}:events` | stream | applied events, one entry per applied run of incoming entries, in the layout of [`wire`](crate::wire): `v` (the wire version), `i` (the run's incoming entries, which hold the events' JSON) and `m` (their visit figures, joined by `,`); a dead letter sent back holds its JSON in `b` instead (version 2). Consumer group `tally` |
//! | `tally:{pN}:dead` | stream, at most `worker.dead_letter_max` entries | events ClickHouse refused or that could not be decoded ([`wire::DeadLetter`](crate::wire::DeadLetter)): `v`, `key` (the event's key, `ms-seq-i`), `reason`, and `b` + `m` (the event and its figures, as in a stream entry) or `raw`; `tally dead-letters list|replay` |
//! | `tally:{pN}:views:S` | hash | page → live view count of site S: at most `tracking.max_pages` pages, then the field `""` ("other pages") counts the views of every later page |
//! | `tally:{pN}:totals:S` | hash | `views`, `visits`, `bots`, `unverified` (pixel hits naming no page, not counted) of site S |
//! | `tally:{pN}:here:S` | hash, TTL = online window + 1 minute (renewed by every apply) | 10-second slot (Unix ms / 10,000) → how many visitors of site S were last seen in that slot: "online now" is the sum over the window's slots. A visitor seen again moves from its old slot to the new one (the applier knows the old one from the visit record); slots older than the window by a minute are dropped |
//! | `tally:{pN}:readers:S:PAGE` | hash, the same TTL | the same per page held live (`readers:S:` for the other pages): slot → visitors last seen on the page in it. A visitor may be on several pages at once; its visit record lists them (up to 16) with their slots, and a `leave` takes it off the page |
//! | `tally:{pN}:visits:S:DAY` | hash, 2-day TTL | visitor → `r|session:last event ms:page views:last counted view ms:last seen ms:reading:last page` of visitors seen on UTC day DAY (days since the epoch), where `reading` lists the pages the visitor is on (`tag.slot`, the tag a hash of the page in hex, joined by `,`); a visit is over once its last event is older than the visit timeout, and session 0 means a visitor seen (a ping) outside any visit. Records of earlier versions are read too: `w|session:last:views:viewed:seen:page`, and without a prefix `session:last:views[:viewed:page]` (they list no pages being read) |
//! | `tally:{pN}:uv:S:YYYYMMDD` | HyperLogLog, 2-day TTL | unique visitors of the day (site's time zone) |
//! | `tally:{pN}:active:S` | sorted set, the same TTL | page held live (`""` for the other pages) → last event (ms) of pages read within the online window |
//! | `tally:{pN}:titles:S` | hash | page held live → latest title seen (none for the other pages) |
//! | `tally:{pN}:vpm:S:MINUTE` | string, 1-hour TTL | page views in that minute (Unix minutes), for the realtime chart |
//! | `tally:{pN}:baseline:S` | hash | page → imported view count (added to live page views) |
//! | `tally:{pN}:baseline_totals:S` | hash | imported `views`, `visits` (added to live totals) |
//! | `tally:{pN}:batch:ID` | string, 1-hour TTL | marks a beacon batch as applied, so a retried batch is not counted twice |
//! | `tally:salt:YYYYMMDD` | string, expires when the day has ended in every time zone (13:00 UTC the next day) | the visitor-id salt of local day YYYYMMDD: a site's visitors are hashed with the salt of the site's own date |
//! | `tally:aof_rewrite:YYYYMMDD` | string, 3-day TTL | the append-only file was rewritten that UTC day to drop expired salts (one beacon does it) |
//! | `tally:{directory}:sites` | string | the announced managed sites (JSON list of sites), written after each change to their durable copy in ClickHouse; rewritten from ClickHouse when missing |
//! | `tally:{directory}:version` | integer | grows with each announcement: every process polls it and reloads the sites when it changes |
//! | `tally:session:HASH` | string, TTL = `admin.session_ttl` (sliding) | an admin page session, under the SHA-256 of its id (the cookie's value is never stored) → `T fingerprint-of-its-token since`, `P name role sites since` (a person's) or `S share-id site since` (a shared dashboard's); since = sign-in time, Unix s |
//! | `tally:sessions_of:OWNER` | set, TTL = `admin.session_max_age` | the storage keys of the sessions of `person:NAME` or `share:ID` (a shared dashboard), so that removing the person or revoking the link ends them all at once |
//!
//! `pN` is the site's partition (`SiteId::partition`); the `{…}` hash tag keeps all keys of
//! a partition in one Redis Cluster slot, so the accept and apply scripts stay atomic on a cluster.

/// Name of the consumer group that workers share.
pub const GROUP: &str = "tally";

/// Name of the consumer group of each incoming stream whose last delivered id is the
/// applier's cursor: the last incoming entry applied. Nobody reads through it; it keeps the
/// cursor in the stream's own key (see `apply.rs`).
pub const APPLIER: &str = "applier";

/// Key builder for one partition.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(partition: u16) -> Self {
        Self {
            prefix: format!("tally:{{p{partition}}}:"),
        }
    }

    /// The `tally:{pN}:` prefix, handed to the accept script.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Accepted batches the applier has not yet moved to [`events`](Self::events).
    pub fn incoming(&self) -> String {
        format!("{}incoming", self.prefix)
    }

    /// The last incoming entry applied, written by every commit sent as a transaction: the
    /// appliers `WATCH` it, so a commit fails when another applier committed first (see
    /// `apply.rs`). The cursor itself is the [`APPLIER`] group's.
    pub fn applied(&self) -> String {
        format!("{}applied", self.prefix)
    }

    /// Marks beacon batch `id` as accepted (the accept script builds the same name from the
    /// first part's prefix).
    pub fn batch(&self, id: u64) -> String {
        format!("{}batch:{id}", self.prefix)
    }

    /// Visits of site `site` active on UTC day `day` (days since the epoch).
    pub fn visits(&self, site: &str, day: i64) -> String {
        format!("{}visits:{site}:{day}", self.prefix)
    }

    /// Who is online on site `site`: 10-second slot → visitors last seen in it.
    pub fn here(&self, site: &str) -> String {
        format!("{}here:{site}", self.prefix)
    }

    pub fn dead_letters(&self) -> String {
        format!("{}dead", self.prefix)
    }

    pub fn views(&self, site: &str) -> String {
        format!("{}views:{site}", self.prefix)
    }

    pub fn totals(&self, site: &str) -> String {
        format!("{}totals:{site}", self.prefix)
    }

    /// Who is reading page `page` of site `site`: 10-second slot → visitors last seen there
    /// in it.
    pub fn page_readers(&self, site: &str, page: &str) -> String {
        format!("{}readers:{site}:{page}", self.prefix)
    }

    pub fn baseline(&self, site: &str) -> String {
        format!("{}baseline:{site}", self.prefix)
    }

    pub fn baseline_totals(&self, site: &str) -> String {
        format!("{}baseline_totals:{site}", self.prefix)
    }

    pub fn active_pages(&self, site: &str) -> String {
        format!("{}active:{site}", self.prefix)
    }

    pub fn titles(&self, site: &str) -> String {
        format!("{}titles:{site}", self.prefix)
    }

    pub fn views_in_minute(&self, site: &str, minute: i64) -> String {
        format!("{}vpm:{site}:{minute}", self.prefix)
    }

    pub fn unique_visitors(&self, site: &str, day: &str) -> String {
        format!("{}uv:{site}:{day}", self.prefix)
    }

    /// Live custom event counts: "name\ttarget" → events (see `wire::event_field`).
    pub fn event_counts(&self, site: &str) -> String {
        format!("{}event_counts:{site}", self.prefix)
    }

    /// Imported custom event counts (`tally import-counters`), same fields.
    pub fn event_baseline(&self, site: &str) -> String {
        format!("{}event_baseline:{site}", self.prefix)
    }
}

/// The visitor-id salt of a local day (`YYYYMMDD`).
/// The announced managed sites (JSON) and its version: one slot (`{directory}`), so both
/// change in one transaction on a cluster too.
pub const DIRECTORY_SITES: &str = "tally:{directory}:sites";
pub const DIRECTORY_VERSION: &str = "tally:{directory}:version";

pub fn salt(day: &str) -> String {
    format!("tally:salt:{day}")
}

/// Marks that the append-only file was rewritten for `marker` (a UTC day, `YYYYMMDD`).
pub fn aof_rewrite(marker: &str) -> String {
    format!("tally:aof_rewrite:{marker}")
}

/// An admin page session (`tally:session:HASH`, the hash of its id), holding the
/// fingerprint of its token and its sign-in time.
pub fn admin_session(hash: &str) -> String {
    format!("tally:session:{hash}")
}

/// The sessions of one owner: `person:NAME`, or `share:ID` (a shared dashboard's).
pub fn sessions_of(owner: &str) -> String {
    format!("tally:sessions_of:{owner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_partition_hash_tag() {
        let k = Keys::new(3);
        assert_eq!(k.events(), "tally:{p3}:events");
        assert_eq!(k.views("demo"), "tally:{p3}:views:demo");
        assert_eq!(k.page_readers("demo", "/a"), "tally:{p3}:readers:demo:/a");
        assert_eq!(salt("20261126"), "tally:salt:20261126");
    }
}
