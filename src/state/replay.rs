//! `jti` values seen once (FAPI-CIBA request objects, `private_key_jwt` assertions): each
//! kept until its JWT's `exp`, so a replayed JWT is refused while it could still be
//! accepted. In memory here, bounded; in Redis (`redis_store.rs`, `SET NX` with an expiry)
//! when replicas share state (`store.rs` picks).
//!
//! Keys are a SHA-256 of the namespace, the client and the `jti` (lengths first, so no
//! pair of values can spell another), so what is kept is fixed-size and holds no value a
//! client sent.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a `jti` was used: request objects and assertions are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// A request object's `jti`.
    RequestObject,
    /// A client assertion's `jti`.
    Assertion,
}

impl Namespace {
    /// The short tag used in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::RequestObject => "ro",
            Namespace::Assertion => "ca",
        }
    }
}

/// What claiming a `jti` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: now remembered until its expiry.
    Fresh,
    /// Seen before, and not yet expired.
    Replayed,
    /// The cache is full of unexpired values: nothing could be remembered.
    Full,
}

/// The fixed-size key of a `jti` used by `client` in `ns`.
pub fn replay_key(ns: Namespace, client: &str, jti: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [ns.as_str(), client, jti] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The in-memory `jti` cache, bounded to `max` entries.
#[derive(Debug)]
pub struct ReplayCache {
    seen: DashMap<[u8; 32], u64>,
    max: usize,
    /// The earliest time (unix seconds) a sweep could free something.
    next_sweep: AtomicU64,
}

impl ReplayCache {
    /// An empty cache holding at most `max` values.
    pub fn new(max: usize) -> Self {
        ReplayCache {
            seen: DashMap::new(),
            max: max.max(1),
            next_sweep: AtomicU64::new(0),
        }
    }

    /// Claims `key` until `until` (unix seconds), at `now`.
    pub fn claim(&self, key: [u8; 32], until: u64, now: u64) -> Claim {
        if self.seen.len() >= self.max {
            self.sweep(now);
            if self.seen.len() >= self.max {
                return Claim::Full;
            }
        }
        match self.seen.entry(key) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                if *e.get() > now {
                    Claim::Replayed
                } else {
                    e.insert(until);
                    Claim::Fresh
                }
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(until);
                Claim::Fresh
            }
        }
    }

    /// Drops expired values; at most once a second does it walk the map.
    pub fn sweep(&self, now: u64) {
        if self.next_sweep.swap(now + 1, Ordering::Relaxed) > now {
            return;
        }
        self.seen.retain(|_, until| *until > now);
    }

    /// How many values are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_until_expiry_then_again() {
        let c = ReplayCache::new(10);
        let k = replay_key(Namespace::RequestObject, "c", "j");
        assert_eq!(c.claim(k, 100, 50), Claim::Fresh);
        assert_eq!(c.claim(k, 100, 99), Claim::Replayed);
        assert_eq!(c.claim(k, 200, 100), Claim::Fresh);
        // Namespaces and clients are apart, and no two values spell one key.
        let other = replay_key(Namespace::Assertion, "c", "j");
        assert_eq!(c.claim(other, 100, 50), Claim::Fresh);
        assert_ne!(
            replay_key(Namespace::Assertion, "ab", "c"),
            replay_key(Namespace::Assertion, "a", "bc")
        );
    }

    #[test]
    fn bounded_and_swept() {
        let c = ReplayCache::new(3);
        for i in 0..3u8 {
            assert_eq!(c.claim([i; 32], 10, 0), Claim::Fresh);
        }
        assert_eq!(c.claim([9; 32], 10, 5), Claim::Full);
        assert_eq!(c.len(), 3);
        // Once they expire, room again.
        assert_eq!(c.claim([9; 32], 20, 10), Claim::Fresh);
        assert_eq!(c.len(), 1);
    }
}
