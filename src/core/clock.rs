//! The time the platform goes by. Code that stamps or compares times asks the [`Clock`] of the
//! app context (and binds its reading into SQL rather than calling `now()` there), so expiry and
//! period logic is tested by moving a [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, Utc};

/// Where the current time comes from.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, at PostgreSQL's precision (microseconds), so a stored time reads back equal.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock: what every deployment uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that stands still until it is moved (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing the system's time now, from then on moved only by hand.
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(SystemClock.now())))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::{Clock, ManualClock, SystemClock};

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::days(8));
        assert_eq!(clock.now() - start, chrono::Duration::days(8));
    }

    #[test]
    fn the_system_clock_reads_at_microsecond_precision() {
        let now = SystemClock.now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000, 0);
    }
}
