//! The time the roles go by. Production reads the system clock; tests hand the app a
//! [`Clock::manual`] clock and set it, so a local day in any time zone — its midnight, the
//! UTC midnight inside it, a daylight-saving change — can be driven through the real
//! beacon, Redis and ClickHouse without waiting for it.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Utc};

/// A source of "now": the system clock, or a clock that a test sets.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds since the epoch while set by hand; `None` reads the system clock.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `at` until [`set`](Self::set) or [`advance`](Self::advance)
    /// moves it.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(at.timestamp_millis()))),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(ms) => DateTime::from_timestamp_millis(ms.load(Ordering::Relaxed))
                .unwrap_or(DateTime::UNIX_EPOCH),
        }
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves a manual clock to `at` (every copy of it follows); the system clock ignores it.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(ms) = &self.manual {
            ms.store(at.timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(ms) = &self.manual {
            ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_copies_follow() {
        let at = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        let clock = Clock::manual(at);
        let copy = clock.clone();
        assert_eq!(copy.now(), at);
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(copy.now(), at + chrono::Duration::seconds(90));
        clock.set(at);
        assert_eq!(copy.now_ms(), at.timestamp_millis());
        let system = Clock::system();
        system.set(at);
        assert!(system.now() > at, "the system clock is not set by hand");
    }
}
