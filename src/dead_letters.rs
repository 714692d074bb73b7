//! `tally dead-letters list|replay`: the events the worker could not store.
//!
//! Every dead letter is listed as one JSON line: `partition`, `id` (in the dead-letter
//! stream), `event_key` (where it was in the events stream), `reason`, and `event` (the
//! event) with `figures` (its visit figures, `session new ordinal gap`) or, when the payload
//! is no event, `raw` (what could not be read). The stored format is
//! `tally_redis::wire::DeadLetter`. A replay sends events back through the worker, each
//! once, and leaves the rest.

use anyhow::Context;
use serde_json::{Value, json};
use tally_core::Settings;
use tally_redis::Store;
use tally_redis::wire::{DeadLetter, Figures, Payload};

/// Every dead letter of every partition with its partition, oldest first per partition.
pub async fn all(settings: &Settings) -> anyhow::Result<(Store, Vec<(u16, DeadLetter)>)> {
    let store = Store::connect(&settings.redis)
        .await
        .context("cannot connect to Redis")?;
    let mut letters = Vec::new();
    for partition in 0..settings.redis.partitions {
        let found = store.dead_letters(partition).await?;
        letters.extend(found.into_iter().map(|letter| (partition, letter)));
    }
    Ok((store, letters))
}

/// One dead letter of `partition` as its JSON line.
pub fn line(partition: u16, letter: &DeadLetter) -> Value {
    let mut out = json!({
        "partition": partition,
        "id": letter.id,
        "event_key": letter.key.to_string(),
        "reason": letter.reason,
    });
    match &letter.payload {
        Payload::Event(event) => {
            out["event"] = json!(event);
            out["figures"] = json!(Figures::of(event).to_string());
        }
        Payload::Raw(raw) => out["raw"] = json!(raw),
    }
    out
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: usize,
    /// Dead letters left, with why.
    pub left: Vec<(String, String)>,
}

/// Replays the dead letters named in `ids`, or every one when `ids` is empty.
pub async fn replay(settings: &Settings, ids: &[String]) -> anyhow::Result<Replayed> {
    let (store, letters) = all(settings).await?;
    for id in ids {
        anyhow::ensure!(
            letters.iter().any(|(_, l)| &l.id == id),
            "no dead letter has the id `{id}` (see `tally dead-letters list`)"
        );
    }
    let mut out = Replayed::default();
    for (partition, letter) in letters
        .iter()
        .filter(|(_, l)| ids.is_empty() || ids.contains(&l.id))
    {
        match store.replay_dead_letter(*partition, letter).await {
            Ok(()) => out.replayed += 1,
            Err(e) => out.left.push((letter.id.clone(), e.to_string())),
        }
    }
    Ok(out)
}
