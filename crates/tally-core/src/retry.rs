//! One retry policy for every write to a store: the beacon's Redis writes and the worker's
//! ClickHouse inserts and Redis reads.
//!
//! An error is classified ([`Classify`]) as one of three [`Verdict`]s, and the caller acts
//! on it the same way everywhere:
//! - [`Verdict::Retry`]: the store is down, restarting, timed out or full — wait
//!   ([`Backoff`]: exponential, jittered, capped) and try the same data again, without end;
//!   the data stays where it is (the beacon's buffer, the stream).
//! - [`Verdict::GiveUp`]: the store refuses this data and would refuse it again (a script
//!   error on this batch, a row ClickHouse cannot parse). Set it aside — dead letters, or
//!   counted and logged whole — so the lane goes on with the next batch.
//! - [`Verdict::Stop`]: the store refuses Tally itself (wrong password, no permission, a
//!   missing database or table): every batch would fail, and no data is at fault. Keep the
//!   data, tell the operator at error level on every attempt, and retry at the cap.

use std::time::Duration;

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    GiveUp,
    Stop,
}

/// Errors that know their [`Verdict`].
pub trait Classify {
    fn verdict(&self) -> Verdict;
}

/// Capped exponential backoff with jitter: after the n-th failure in a row, a random delay
/// in [d/2, d], d = `first`·2ⁿ⁻¹ capped at `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try (the cap, jittered,
    /// when `verdict` is [`Verdict::Stop`]: nothing will change soon).
    pub fn next(&mut self, verdict: Verdict) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let d = match verdict {
            Verdict::Stop => self.cap,
            _ => self
                .first
                .saturating_mul(1u32 << (self.failures - 1).min(16))
                .min(self.cap),
        };
        let half = d / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_failures_stay_within_half_and_whole_and_are_capped() {
        let (first, cap) = (Duration::from_millis(100), Duration::from_secs(30));
        let mut backoff = Backoff::new(first, cap);
        for n in 1..40u32 {
            let whole = first.saturating_mul(1u32 << (n - 1).min(16)).min(cap);
            let d = backoff.next(Verdict::Retry);
            assert_eq!(backoff.failures(), n);
            assert!(
                d >= whole / 2 && d <= whole,
                "{n}: {d:?} not in [{:?}, {whole:?}]",
                whole / 2
            );
        }
        backoff.reset();
        assert!(backoff.next(Verdict::Retry) <= first);
        // A deployment error waits the cap at once.
        backoff.reset();
        assert!(backoff.next(Verdict::Stop) >= cap / 2);
    }
}
