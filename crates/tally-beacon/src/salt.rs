//! Visitor-id salts, one per local date. A site's visitors are hashed with the salt of the
//! site's own date, so one reader is one visitor through a whole local day in any time zone,
//! and a new one the next local day (ids do not rotate at UTC midnight, which is 07:00 in
//! Vietnam). All beacons share the salts through Redis.
//!
//! At any instant the world's clocks show at most three dates — the UTC date, the day before
//! (zones down to UTC−12) and the day after (up to UTC+14) — so the cache holds those and a
//! background task fetches each a day ahead: the hot path never waits for Redis. A salt
//! expires in Redis at 13:00 UTC the day after its date, an hour after its date has ended
//! in UTC−12, and the task rewrites Redis' append-only file once a day after that, so a
//! retired salt is gone from Redis and from its persistence files within the day.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use tally_core::{Clock, visitor::Salt};
use tally_redis::Store;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Hours after a date's UTC end when its salt expires: UTC−12 ends the date 12 hours after
/// UTC does, and one more hour covers clocks that run a little late.
const RETIRE_AFTER_HOURS: u64 = 13;

/// The salts of the dates in use, fetched ahead of need.
#[derive(Clone)]
pub struct SaltCache {
    store: Store,
    clock: Clock,
    salts: Arc<std::sync::RwLock<BTreeMap<NaiveDate, Salt>>>,
}

fn day_key(day: NaiveDate) -> String {
    day.format("%Y%m%d").to_string()
}

/// When the salt of `day` expires.
fn retired_at(day: NaiveDate) -> DateTime<Utc> {
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    next.and_time(NaiveTime::MIN).and_utc() + Duration::from_secs(RETIRE_AFTER_HOURS * 3600)
}

/// The dates some time zone shows at `now`.
fn dates_in_use(now: DateTime<Utc>) -> [NaiveDate; 3] {
    let today = now.date_naive();
    [
        today.checked_sub_days(Days::new(1)).unwrap_or(today),
        today,
        today.checked_add_days(Days::new(1)).unwrap_or(today),
    ]
}

impl SaltCache {
    /// Loads the salts of the dates in use now.
    pub async fn load(store: Store, clock: Clock) -> Result<Self, tally_redis::Error> {
        let cache = Self {
            store,
            clock,
            salts: Arc::default(),
        };
        cache.fetch_ahead().await?;
        Ok(cache)
    }

    /// The salt of local date `day`: from memory, or fetched when a date comes into use
    /// before the background task saw it (a clock that jumped).
    pub async fn for_date(&self, day: NaiveDate) -> Result<Salt, tally_redis::Error> {
        if let Some(salt) = self.read().get(&day) {
            return Ok(*salt);
        }
        self.fetch(day).await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NaiveDate, Salt>> {
        self.salts.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self, day: NaiveDate) -> Result<Salt, tally_redis::Error> {
        let now = self.clock.now();
        let ttl = (retired_at(day) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(60));
        let salt = self.store.salt(&day_key(day), ttl).await?;
        let mut salts = self.salts.write().unwrap_or_else(|e| e.into_inner());
        salts.insert(day, salt);
        // Forget dates no zone shows any more.
        let oldest = dates_in_use(now)[0];
        salts.retain(|d, _| *d >= oldest);
        Ok(salt)
    }

    async fn fetch_ahead(&self) -> Result<(), tally_redis::Error> {
        for day in dates_in_use(self.clock.now()) {
            if !self.read().contains_key(&day) {
                self.fetch(day).await?;
            }
        }
        Ok(())
    }

    /// Every few seconds: fetches the dates coming into use, and once a day, after the
    /// previous date's salt expired, has Redis rewrite its append-only file. Until Redis
    /// answers, the salts in memory stay in use.
    pub async fn keep_ahead(self, shutdown: CancellationToken) {
        // The UTC day this beacon last saw the rewrite made (by itself or another beacon), so
        // Redis is asked once a day, not every few seconds.
        let mut rewritten: Option<NaiveDate> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            if let Err(error) = self.fetch_ahead().await {
                warn!(message = "cannot fetch the coming day's salt", %error);
                continue;
            }
            let now = self.clock.now();
            let today = now.date_naive();
            let yesterday = dates_in_use(now)[0];
            if now >= retired_at(yesterday) && rewritten != Some(today) {
                match self.store.rewrite_aof_once(&day_key(today)).await {
                    Ok(_) => rewritten = Some(today),
                    Err(error) => warn!(message = "cannot rewrite the append-only file", %error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_salt_retires_once_its_date_has_ended_everywhere() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        // The date ends in UTC−12 (Baker Island) at 12:00 UTC on the 2nd.
        let end_everywhere = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        assert!(retired_at(day) > end_everywhere);
        assert!(retired_at(day) - end_everywhere <= chrono::Duration::hours(1));
        // Kiribati (UTC+14) starts the date at 10:00 UTC on 30 November; the UTC date then
        // is the 30th, whose dates in use include the 1st.
        let kiribati_start = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        assert!(dates_in_use(kiribati_start).contains(&day));
        assert!(dates_in_use(end_everywhere - chrono::Duration::seconds(1)).contains(&day));
    }
}
