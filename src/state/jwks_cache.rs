//! Keys fetched from clients' `jwks_uri`, per client: used until they are `cache` old,
//! fetched again on an unknown `kid`, but never more often than once per `refresh_min`
//! per client, however many requests name unknown keys. Only configured clients have
//! entries, so the map is bounded by the configuration. Time is an argument.

use crate::ciba::jwt::KeySet;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Entry {
    keys: Option<(Arc<KeySet>, Instant)>,
    last_attempt: Option<Instant>,
}

/// The cache (see the module doc).
#[derive(Default)]
pub struct JwksCache {
    entries: DashMap<String, Entry>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwksCache({} clients)", self.entries.len())
    }
}

impl JwksCache {
    /// The client's keys, and whether they are younger than `max_age`.
    pub fn get(
        &self,
        client: &str,
        now: Instant,
        max_age: Duration,
    ) -> (Option<Arc<KeySet>>, bool) {
        match self.entries.get(client).and_then(|e| e.keys.clone()) {
            Some((keys, at)) => {
                let fresh = now.saturating_duration_since(at) < max_age;
                (Some(keys), fresh)
            }
            None => (None, false),
        }
    }

    /// Whether this caller may fetch the client's keys now: true at most once per
    /// `min_interval` (the attempt is recorded before the fetch, so concurrent callers do
    /// not all fetch).
    pub fn begin_fetch(&self, client: &str, now: Instant, min_interval: Duration) -> bool {
        let mut e = self.entries.entry(client.to_string()).or_default();
        match e.last_attempt {
            Some(at) if now.saturating_duration_since(at) < min_interval => false,
            _ => {
                e.last_attempt = Some(now);
                true
            }
        }
    }

    /// Stores freshly fetched keys.
    pub fn store(&self, client: &str, keys: KeySet, now: Instant) -> Arc<KeySet> {
        let keys = Arc::new(keys);
        self.entries.entry(client.to_string()).or_default().keys = Some((keys.clone(), now));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_are_rate_limited_per_client() {
        let c = JwksCache::default();
        let t0 = Instant::now();
        let min = Duration::from_secs(30);
        assert!(c.begin_fetch("a", t0, min));
        assert!(!c.begin_fetch("a", t0 + Duration::from_secs(1), min));
        assert!(c.begin_fetch("b", t0, min));
        assert!(c.begin_fetch("a", t0 + min, min));
        assert_eq!(c.get("a", t0, min).0.map(|k| k.len()), None);
        c.store("a", KeySet::default(), t0);
        assert!(c.get("a", t0, min).1);
        assert!(!c.get("a", t0 + min, min).1);
    }
}
