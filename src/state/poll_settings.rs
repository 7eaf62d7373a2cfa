//! The poll rules' numbers and the tracking bounds a store enforces, replaceable while it
//! runs (a configuration reload) without touching what it tracks.

use crate::ciba::polling::PollPolicy;
use crate::state::poll_store::StoreLimits;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The policy and limits one store (and every handle or connection of it) reads on each
/// call; a new value applies from the next call on.
#[derive(Debug)]
pub struct PollSettings {
    current: ArcSwap<(PollPolicy, StoreLimits)>,
}

impl PollSettings {
    /// Settings starting at `policy` and `limits`.
    pub fn new(policy: PollPolicy, limits: StoreLimits) -> Arc<Self> {
        Arc::new(PollSettings {
            current: ArcSwap::from_pointee((policy, limits)),
        })
    }

    /// The policy now.
    pub fn policy(&self) -> PollPolicy {
        self.current.load().0
    }

    /// The limits now.
    pub fn limits(&self) -> StoreLimits {
        self.current.load().1
    }

    /// Replaces both; calls already running finish with the values they read.
    pub fn set(&self, policy: PollPolicy, limits: StoreLimits) {
        self.current.store(Arc::new((policy, limits)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_new_value_is_read_by_the_next_call() {
        let s = PollSettings::new(PollPolicy::default(), StoreLimits::default());
        assert_eq!(s.policy().min_interval, Duration::from_secs(5));
        let policy = PollPolicy {
            min_interval: Duration::from_secs(9),
            ..PollPolicy::default()
        };
        let limits = StoreLimits {
            max_tracked: 3,
            max_per_client: 2,
        };
        s.set(policy, limits);
        assert_eq!(s.policy(), policy);
        assert_eq!(s.limits(), limits);
    }
}
