//! How many client requests are being served right now, so that a shutdown can end as soon
//! as the last one is answered rather than after the whole grace period.

use std::sync::atomic::{AtomicUsize, Ordering};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one request for as long as it lives; dropping it (however the request ends)
/// uncounts it.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts a request that has just arrived.
    pub fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests being served now.
pub fn count() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_until_it_is_dropped() {
        // No other unit test counts requests, so the counter moves only here.
        let before = count();
        let a = InFlight::enter();
        let b = InFlight::enter();
        assert_eq!(count(), before + 2);
        drop(a);
        assert_eq!(count(), before + 1);
        drop(b);
        assert_eq!(count(), before);
    }
}
