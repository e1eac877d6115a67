//! The sidecar's one source of time. Key expiry, budget periods and
//! reservation expiry all read it, so tests (and `serve --test-clock`) can
//! move time instead of waiting for it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct Clock(Mode);

#[derive(Debug)]
enum Mode {
    /// The machine's clock; cannot be moved.
    System,
    /// The machine's clock plus an adjustable offset: time keeps flowing.
    Shifted(AtomicI64),
    /// Stands still until set or advanced.
    Manual(AtomicI64),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Mode::System)
    }

    /// Real time that `set` and `advance` can move (`serve --test-clock`).
    pub fn shifted() -> Clock {
        Clock(Mode::Shifted(AtomicI64::new(0)))
    }

    /// A clock frozen at `now` until moved (unit tests).
    pub fn manual(now: i64) -> Clock {
        Clock(Mode::Manual(AtomicI64::new(now)))
    }

    /// Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            Mode::System => system_now(),
            Mode::Shifted(offset) => system_now().saturating_add(offset.load(Ordering::Relaxed)),
            Mode::Manual(now) => now.load(Ordering::Relaxed),
        }
    }

    pub fn is_adjustable(&self) -> bool {
        !matches!(self.0, Mode::System)
    }

    /// Moves the clock to `now`; `None` if this clock cannot be moved.
    pub fn set(&self, now: i64) -> Option<i64> {
        match &self.0 {
            Mode::System => return None,
            Mode::Shifted(offset) => {
                offset.store(now.saturating_sub(system_now()), Ordering::Relaxed)
            }
            Mode::Manual(at) => at.store(now, Ordering::Relaxed),
        }
        Some(self.now())
    }

    /// Moves the clock by `secs` (may be negative); `None` if it cannot be moved.
    pub fn advance(&self, secs: i64) -> Option<i64> {
        match &self.0 {
            Mode::System => return None,
            Mode::Shifted(v) | Mode::Manual(v) => {
                v.fetch_add(secs, Ordering::Relaxed);
            }
        }
        Some(self.now())
    }

    /// Maps a timestamp taken from the real clock (usage reports carry the
    /// filter's time) onto this clock's timeline, so a shifted test clock
    /// charges reports to the periods it shows.
    pub fn from_real(&self, ts: i64) -> i64 {
        match &self.0 {
            Mode::Shifted(offset) => ts.saturating_add(offset.load(Ordering::Relaxed)),
            Mode::System | Mode::Manual(_) => ts,
        }
    }
}

/// Unix seconds from the machine's clock; a clock before 1970 reads as 0.
fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_cannot_move() {
        let c = Clock::system();
        assert!(!c.is_adjustable());
        assert_eq!(c.set(5), None);
        assert_eq!(c.advance(5), None);
        assert!(c.now() > 1_700_000_000);
    }

    #[test]
    fn manual_clock_stands_still_until_moved() {
        let c = Clock::manual(1_000);
        assert_eq!(c.now(), 1_000);
        assert_eq!(c.advance(60), Some(1_060));
        assert_eq!(c.set(10), Some(10));
        assert_eq!(c.from_real(5), 5);
    }

    #[test]
    fn shifted_clock_moves_real_timestamps_too() {
        let c = Clock::shifted();
        let real = system_now();
        let target = 4_000_000_000;
        let now = c.set(target).unwrap_or_default();
        assert!((now - target).abs() <= 1);
        assert!((c.from_real(real) - target).abs() <= 1);
        let later = c.advance(3_600).unwrap_or_default();
        assert!((later - target - 3_600).abs() <= 1);
    }
}
