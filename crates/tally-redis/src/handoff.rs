//! The events an apply has read, handed to the store step of the same process.
//!
//! The applier reads, unpacks and parses each incoming entry to apply it; the store step
//! then reads the events entry naming those incoming entries and, without a handoff, reads,
//! unpacks and parses them all again. The applier leaves its parsed events here, just
//! before its commit, under the ids it names in the events entry (and takes them back if the
//! commit fails), and [`Store::read_new`] takes them from here instead of from Redis when
//! the same process reads that entry. Anything not here —
//! another process' applies, entries read again after a restart or a takeover, an apply
//! left out because the handoff was full — is read from Redis as before: the handoff saves
//! work and never decides what is stored.
//!
//! [`Store::read_new`]: crate::Store::read_new

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_core::Event;

/// The most events the handoff holds; an apply that would exceed it is not handed over
/// (its events are read from Redis). ~500 bytes an event: ~32 MiB at most.
const MAX_EVENTS: usize = 65_536;
/// The most applies it holds.
const MAX_RUNS: usize = 4_096;
/// Runs not taken within this long are dropped (their events entry is being read by
/// another process, or was already read from Redis).
const MAX_AGE: Duration = Duration::from_secs(30);

struct Run {
    partition: u16,
    /// The events entry's incoming ids, as written in its `i` field.
    ids: String,
    at: Instant,
    events: Vec<Event>,
}

#[derive(Default)]
struct Runs {
    runs: VecDeque<Run>,
    events: usize,
}

/// Parsed events of applied runs, by partition and incoming ids: one per process, given to
/// its applying and its reading handles with [`Store::with_handoff`]. Cheap to clone (the
/// clones share it).
///
/// [`Store::with_handoff`]: crate::Store::with_handoff
#[derive(Default, Clone)]
pub struct Handoff {
    runs: Arc<Mutex<Runs>>,
}

impl Handoff {
    /// Leaves the `events` of the run `ids` of `partition`, unless the handoff is full.
    pub(crate) fn put(&self, partition: u16, ids: String, events: Vec<Event>) {
        self.put_at(Instant::now(), partition, ids, events);
    }

    fn put_at(&self, now: Instant, partition: u16, ids: String, events: Vec<Event>) {
        let mut held = self.runs.lock().expect("handoff lock");
        while held
            .runs
            .front()
            .is_some_and(|run| now.saturating_duration_since(run.at) > MAX_AGE)
        {
            let run = held.runs.pop_front().expect("a front run");
            held.events -= run.events.len();
        }
        if held.events + events.len() > MAX_EVENTS || held.runs.len() >= MAX_RUNS {
            return;
        }
        held.events += events.len();
        held.runs.push_back(Run {
            partition,
            ids,
            at: now,
            events,
        });
    }

    /// Takes the events of the run `ids` of `partition`, if they were left here.
    pub(crate) fn take(&self, partition: u16, ids: &str) -> Option<Vec<Event>> {
        let mut held = self.runs.lock().expect("handoff lock");
        let at = held
            .runs
            .iter()
            .position(|run| run.partition == partition && run.ids == ids)?;
        let run = held.runs.remove(at).expect("a run at its position");
        held.events -= run.events.len();
        Some(run.events)
    }

    /// How many runs are held: put and not yet taken (nor dropped).
    pub fn held(&self) -> usize {
        self.runs.lock().expect("handoff lock").runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                serde_json::from_str(&format!(
                    r#"{{"k":"pageview","s":"a","ts":{i},"p":"/p{i}"}}"#
                ))
                .expect("an event")
            })
            .collect()
    }

    #[test]
    fn a_run_is_taken_once_by_its_partition_and_ids() {
        let handoff = Handoff::default();
        handoff.put(1, "1-0 2-0".into(), events(2));
        handoff.put(2, "1-0 2-0".into(), events(3));
        assert!(handoff.take(1, "1-0").is_none());
        assert_eq!(handoff.take(2, "1-0 2-0").map(|e| e.len()), Some(3));
        assert_eq!(handoff.take(1, "1-0 2-0").map(|e| e.len()), Some(2));
        assert!(handoff.take(1, "1-0 2-0").is_none());
        assert_eq!(handoff.held(), 0);
    }

    #[test]
    fn a_full_handoff_leaves_new_runs_to_redis() {
        let handoff = Handoff::default();
        handoff.put(0, "1-0".into(), events(MAX_EVENTS - 1));
        handoff.put(0, "2-0".into(), events(2));
        assert!(handoff.take(0, "2-0").is_none());
        handoff.put(0, "3-0".into(), events(1));
        assert_eq!(handoff.take(0, "3-0").map(|e| e.len()), Some(1));
        // Taking frees room.
        assert!(handoff.take(0, "1-0").is_some());
        handoff.put(0, "4-0".into(), events(2));
        assert!(handoff.take(0, "4-0").is_some());
    }

    #[test]
    fn runs_left_untaken_are_dropped_after_max_age() {
        let handoff = Handoff::default();
        let start = Instant::now();
        handoff.put_at(start, 0, "1-0".into(), events(MAX_EVENTS));
        handoff.put_at(start + MAX_AGE, 0, "2-0".into(), events(1));
        assert!(
            handoff.take(0, "2-0").is_none(),
            "full until the first run ages out"
        );
        handoff.put_at(
            start + MAX_AGE + Duration::from_secs(1),
            0,
            "3-0".into(),
            events(1),
        );
        assert!(handoff.take(0, "1-0").is_none());
        assert_eq!(handoff.take(0, "3-0").map(|e| e.len()), Some(1));
    }
}
