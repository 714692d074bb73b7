//! `tally dead-letters list|replay`: the events the worker could not store.
//!
//! Every dead letter is listed as one JSON line: `partition`, `id` (in the dead-letter
//! stream), `event_key` (where it was in the events stream), `reason`, and `event` (the
//! event with its visit figures) or, when the payload is no event, `raw` (what could not be
//! read). A replay sends events back through the worker, each once, and leaves the rest.

use anyhow::Context;
use serde_json::{Value, json};
use tally_core::Settings;
use tally_redis::{Store, stream::DeadLetter};

/// Every dead letter of every partition, oldest first per partition.
pub async fn all(settings: &Settings) -> anyhow::Result<(Store, Vec<DeadLetter>)> {
    let store = Store::connect(&settings.redis)
        .await
        .context("cannot connect to Redis")?;
    let mut letters = Vec::new();
    for partition in 0..settings.redis.partitions {
        letters.extend(store.dead_letters(partition).await?);
    }
    Ok((store, letters))
}

/// One dead letter as its JSON line.
pub fn line(letter: &DeadLetter) -> Value {
    let mut out = json!({
        "partition": letter.partition,
        "id": letter.id,
        "event_key": letter.event_key,
        "reason": letter.reason,
    });
    match serde_json::from_str::<tally_core::Event>(&letter.payload) {
        Ok(event) => out["event"] = json!(event),
        Err(_) => out["raw"] = json!(letter.payload),
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
            letters.iter().any(|l| &l.id == id),
            "no dead letter has the id `{id}` (see `tally dead-letters list`)"
        );
    }
    let mut out = Replayed::default();
    for letter in letters
        .iter()
        .filter(|l| ids.is_empty() || ids.contains(&l.id))
    {
        match store.replay_dead_letter(letter).await {
            Ok(()) => out.replayed += 1,
            Err(e) => out.left.push((letter.id.clone(), e.to_string())),
        }
    }
    Ok(out)
}
