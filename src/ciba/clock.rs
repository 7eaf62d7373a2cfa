//! A source of monotonic time, and the compact millisecond form the poll store keeps.
//!
//! Time is injected rather than read with `Instant::now()` at the call site so the polling
//! state machine (intervals, `slow_down`, expiry) can be tested exactly and without sleeping.
//!
//! An `Instant` is 16 bytes; a million tracked requests keep a few of them each, so stored
//! times are instead whole milliseconds since one process-wide [`epoch`], in a `u64` (no
//! horizon worth naming: 584 million years).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The instant stored times count from: the first time anything in the process asked for it.
///
/// Every [`Clock`] here reads it before reading the time, so their instants are never earlier.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whole milliseconds from [`epoch`] to `t`, rounded down; an earlier instant counts as 0.
pub fn millis(t: Instant) -> u64 {
    // Truncating u128 -> u64 cannot happen within 584 million years of uptime.
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// The instant `ms` milliseconds after [`epoch`] (the inverse of [`millis`] on whole ms).
pub fn instant(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

/// Something that tells the time; `Send + Sync + 'static` so a store can hold it behind an `Arc`.
pub trait Clock: Send + Sync + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        // Fix the epoch first, so no instant this clock returns precedes it.
        epoch();
        Instant::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// Tests keep one handle to `advance` it and give another to the code under test.
#[derive(Debug, Clone)]
pub struct FakeClock {
    inner: Arc<FakeInner>,
}

#[derive(Debug)]
struct FakeInner {
    base: Instant,
    // Nanoseconds since `base`: an atomic rather than a mutex so `now()` from many
    // threads in a concurrency test observes one instant without contention.
    offset_nanos: AtomicU64,
}

impl FakeClock {
    /// A clock frozen at an arbitrary instant (the real now, which is as good as any).
    pub fn new() -> Self {
        FakeClock {
            inner: Arc::new(FakeInner {
                // After the epoch, like every instant a real clock returns.
                base: {
                    epoch();
                    Instant::now()
                },
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward by `by` for every clone of this clock.
    pub fn advance(&self, by: Duration) {
        // u64 nanoseconds last ~584 years; saturate rather than wrap if a test overdoes it.
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .inner
            .offset_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                Some(cur.saturating_add(nanos))
            });
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.inner.base + Duration::from_nanos(self.inner.offset_nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_advanced_and_clones_share_time() {
        let a = FakeClock::new();
        let b = a.clone();
        let t0 = a.now();
        assert_eq!(b.now(), t0);
        a.advance(Duration::from_millis(1500));
        assert_eq!(b.now(), t0 + Duration::from_millis(1500));
    }

    #[test]
    fn millis_round_trip_and_clamp_before_the_epoch() {
        let t = epoch() + Duration::from_micros(1_234_567);
        assert_eq!(millis(t), 1_234);
        assert_eq!(instant(millis(t)), epoch() + Duration::from_millis(1_234));
        assert_eq!(millis(epoch()), 0);
        if let Some(before) = epoch().checked_sub(Duration::from_secs(1)) {
            assert_eq!(millis(before), 0);
        }
        let fake = FakeClock::new();
        assert!(millis(SystemClock.now()) >= millis(fake.now()));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock;
        let t0 = c.now();
        assert!(c.now() >= t0);
    }
}
