//! Caps on concurrent client connections: overall and per source address.
//!
//! A connection takes a [`Permit`] when it is accepted and gives it back when the permit is
//! dropped, so the counts follow the connections' lifetimes whichever way they end.
//! Synchronous and lock-light: the overall count is one atomic; the per-address counts are
//! dashmap entries, each touched under its shard's lock for one increment or decrement, never
//! across an `.await`. An address's entry is removed when its last connection closes, so the
//! map holds only addresses with open connections (at most `max_total` of them).

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `server.max_connections` are open.
    Total,
    /// `server.max_connections_per_address` are open from this address.
    PerAddress,
}

impl Refused {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerAddress => "max_connections_per_address",
        }
    }
}

/// The counters behind the caps.
#[derive(Debug)]
pub struct ConnLimits {
    // Atomics so a configuration reload can change the caps; connections already open
    // keep their permits.
    max_total: AtomicUsize,
    max_per_address: AtomicUsize,
    total: AtomicUsize,
    per_address: DashMap<IpAddr, usize>,
}

impl ConnLimits {
    /// Counters for at most `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_address: AtomicUsize::new(max_per_address),
            total: AtomicUsize::new(0),
            per_address: DashMap::new(),
        })
    }

    /// New caps for the connections accepted from now on; open ones are not closed, and
    /// while more than a cap are open no new one is admitted under it.
    pub fn set_caps(&self, max_total: usize, max_per_address: usize) {
        self.max_total.store(max_total, Ordering::Release);
        self.max_per_address
            .store(max_per_address, Ordering::Release);
    }

    /// Takes a permit for a connection from `address`, or says which cap is full.
    ///
    /// `address` is `None` when there is no IP peer (a Unix socket), and an `exempt`
    /// address (a trusted proxy carrying many clients) is counted overall only.
    pub fn acquire(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        exempt: bool,
    ) -> Result<Permit, Refused> {
        let max_total = self.max_total.load(Ordering::Acquire);
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_total).then_some(n + 1)
            })
            .map_err(|_| Refused::Total)?;
        let counted = match address {
            Some(ip) if !exempt => {
                if let Err(r) = self.enter_address(ip) {
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return Err(r);
                }
                Some(ip)
            }
            _ => None,
        };
        Ok(Permit {
            limits: self.clone(),
            address: counted,
        })
    }

    fn enter_address(&self, ip: IpAddr) -> Result<(), Refused> {
        let max_per_address = self.max_per_address.load(Ordering::Acquire);
        match self.per_address.entry(ip) {
            Entry::Occupied(mut e) => {
                if *e.get() >= max_per_address {
                    return Err(Refused::PerAddress);
                }
                *e.get_mut() += 1;
            }
            Entry::Vacant(v) => {
                if max_per_address == 0 {
                    return Err(Refused::PerAddress);
                }
                v.insert(1);
            }
        }
        Ok(())
    }

    fn leave_address(&self, ip: IpAddr) {
        if let Entry::Occupied(mut e) = self.per_address.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Connections holding a permit from `ip` now (exempt ones are not counted).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_address.get(&ip).map_or(0, |n| *n)
    }

    /// Addresses with at least one counted connection.
    pub fn addresses(&self) -> usize {
        self.per_address.len()
    }
}

/// One connection's place under the caps; released when dropped.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnLimits>,
    /// The address counted per address, if any.
    address: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.address {
            self.limits.leave_address(ip);
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn new_caps_apply_to_the_next_connection_and_leave_open_ones_alone() {
        let l = ConnLimits::new(10, 1);
        let _p1 = l.acquire(Some(A), false).unwrap();
        assert_eq!(l.acquire(Some(A), false).unwrap_err(), Refused::PerAddress);
        l.set_caps(10, 2);
        let _p2 = l.acquire(Some(A), false).unwrap();
        l.set_caps(2, 2);
        assert_eq!(l.acquire(Some(B), false).unwrap_err(), Refused::Total);
        assert_eq!(l.open(), 2);
    }

    #[test]
    fn the_per_address_cap_refuses_the_next_and_a_close_frees_a_place() {
        let l = ConnLimits::new(10, 2);
        let p1 = l.acquire(Some(A), false).unwrap();
        let _p2 = l.acquire(Some(A), false).unwrap();
        assert_eq!(l.acquire(Some(A), false).unwrap_err(), Refused::PerAddress);
        // The refusal took nothing: the counts are as before.
        assert_eq!((l.open(), l.open_from(A)), (2, 2));
        // Another address is not affected.
        let _pb = l.acquire(Some(B), false).unwrap();
        drop(p1);
        assert_eq!(l.open_from(A), 1);
        let _p3 = l.acquire(Some(A), false).unwrap();
        assert_eq!((l.open(), l.open_from(A), l.open_from(B)), (3, 2, 1));
    }

    #[test]
    fn the_total_cap_counts_every_address_and_exempt_ones() {
        let l = ConnLimits::new(3, 2);
        let _a = l.acquire(Some(A), false).unwrap();
        let _x1 = l.acquire(Some(B), true).unwrap();
        let x2 = l.acquire(Some(B), true).unwrap();
        // Exempt connections are not counted per address...
        assert_eq!(l.open_from(B), 0);
        // ...but they fill the overall cap.
        assert_eq!(l.acquire(Some(B), true).unwrap_err(), Refused::Total);
        assert_eq!(l.acquire(Some(A), false).unwrap_err(), Refused::Total);
        assert_eq!(l.acquire(None, false).unwrap_err(), Refused::Total);
        assert_eq!(l.open(), 3);
        drop(x2);
        let _n = l.acquire(None, false).unwrap();
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn an_exempt_address_passes_the_per_address_cap() {
        let l = ConnLimits::new(100, 1);
        let held: Vec<_> = (0..5).map(|_| l.acquire(Some(A), true).unwrap()).collect();
        assert_eq!(l.open(), 5);
        // The same address, not exempt, still has its own single place.
        let _one = l.acquire(Some(A), false).unwrap();
        assert_eq!(l.acquire(Some(A), false).unwrap_err(), Refused::PerAddress);
        drop(held);
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn addresses_leave_the_map_with_their_last_connection() {
        let l = ConnLimits::new(10, 5);
        let a = l.acquire(Some(A), false).unwrap();
        let b = l.acquire(Some(B), false).unwrap();
        assert_eq!(l.addresses(), 2);
        drop((a, b));
        assert_eq!((l.addresses(), l.open()), (0, 0));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_caps() {
        // Two addresses could hold 40 together; the overall cap of 30 binds first.
        let l = ConnLimits::new(30, 20);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..8 {
                let l = l.clone();
                let peak = peak.clone();
                s.spawn(move || {
                    let ip = if t % 2 == 0 { A } else { B };
                    for _ in 0..2_000 {
                        let held: Vec<_> = (0..8)
                            .filter_map(|_| l.acquire(Some(ip), false).ok())
                            .collect();
                        assert!(l.open_from(ip) <= 20);
                        peak.fetch_max(l.open(), Ordering::Relaxed);
                        drop(held);
                    }
                });
            }
        });
        // A refused attempt counts for an instant before it is undone: never past the cap.
        assert!(peak.load(Ordering::Relaxed) <= 30, "{peak:?}");
        assert_eq!((l.open(), l.addresses()), (0, 0));
    }
}
