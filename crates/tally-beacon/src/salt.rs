//! Today's visitor-id salt. Held in memory so the hot path never waits for Redis; a
//! background task fetches the new day's salt (UTC) from Redis, where all beacons share it.

use std::{sync::Arc, time::Duration};

use chrono::{Days, NaiveDate, Utc};
use tally_core::visitor::Salt;
use tally_redis::Store;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The cached salt and the day it belongs to.
#[derive(Clone)]
pub struct SaltCache {
    current: Arc<std::sync::RwLock<(NaiveDate, Salt)>>,
}

fn day_key(day: NaiveDate) -> String {
    day.format("%Y%m%d").to_string()
}

async fn fetch(store: &Store, day: NaiveDate) -> Result<Salt, tally_redis::Error> {
    let previous = day.checked_sub_days(Days::new(1)).unwrap_or(day);
    store.salt(&day_key(day), &day_key(previous)).await
}

impl SaltCache {
    /// Loads today's salt.
    pub async fn load(store: &Store) -> Result<Self, tally_redis::Error> {
        let today = Utc::now().date_naive();
        let salt = fetch(store, today).await?;
        Ok(Self {
            current: Arc::new(std::sync::RwLock::new((today, salt))),
        })
    }

    /// The salt in use.
    pub fn get(&self) -> Salt {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Checks every few seconds whether the UTC day changed and, if so, switches to the new
    /// day's salt. Until Redis answers, yesterday's salt stays in use.
    pub async fn refresh_daily(self, store: Store, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let today = Utc::now().date_naive();
            if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == today {
                continue;
            }
            match fetch(&store, today).await {
                Ok(salt) => {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = (today, salt)
                }
                Err(error) => warn!(message = "cannot fetch today's salt", %error),
            }
        }
    }
}
