//! A source of monotonic time.
//!
//! Time is injected rather than read with `Instant::now()` at the call site so the polling
//! state machine (intervals, `slow_down`, expiry) can be tested exactly and without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
                base: Instant::now(),
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
    fn system_clock_is_monotonic() {
        let c = SystemClock;
        let t0 = c.now();
        assert!(c.now() >= t0);
    }
}
