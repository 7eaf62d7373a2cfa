//! Unit tests of the in-memory poll store: decisions through the store, expiry and tombstones,
//! wrong clients, keyed ids, limits and sweeping with exact counts, concurrent polls, and
//! learning unknown ids.

use super::*;
use crate::ciba::clock::FakeClock;
use std::collections::HashMap;
use std::sync::Barrier;

const S: Duration = Duration::from_secs(1);
/// How long the default policy keeps answering `expired_token`.
const GRACE: Duration = Duration::from_secs(300);

fn store_with(limits: StoreLimits) -> (PollStore, FakeClock) {
    let clock = FakeClock::new();
    let store = PollStore::new(PollPolicy::default(), limits, Arc::new(clock.clone()));
    (store, clock)
}

fn store() -> (PollStore, FakeClock) {
    store_with(StoreLimits::default())
}

fn id(s: &str) -> AuthReqId {
    AuthReqId::new(s)
}

fn client(s: &str) -> ClientId {
    ClientId::new(s)
}

/// A poll that learns nothing, with `retry_after` zeroed so decisions compare by kind.
fn poll(st: &PollStore, a: &AuthReqId, c: &ClientId) -> Option<PollDecision> {
    match st.poll(a, c, false) {
        Polled::Decided(PollDecision::SlowDown { interval, .. }) => Some(PollDecision::SlowDown {
            interval,
            retry_after: Duration::ZERO,
        }),
        Polled::Decided(d) => Some(d),
        Polled::Unknown => None,
        Polled::Full(f) => panic!("full: {f:?}"),
    }
}

/// The counters agree exactly with the entries, and no zero counter lingers.
fn assert_counts_exact(store: &PollStore) {
    let mut actual: HashMap<ClientId, usize> = HashMap::new();
    for e in store.table.states.iter() {
        *actual.entry(e.value().client().clone()).or_default() += 1;
    }
    let counted: HashMap<ClientId, usize> = store
        .table
        .per_client
        .iter()
        .map(|e| (e.key().clone(), *e.value()))
        .collect();
    assert_eq!(counted, actual);
    assert_eq!(store.len(), store.table.states.len());
}

#[test]
fn first_poll_forwarded_then_slow_down_then_forwarded_at_new_interval() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    let ack = st.record_ack(a.clone(), c.clone(), Some(5), 120).unwrap();
    assert_eq!(ack.interval, 5 * S);
    assert_eq!(ack.expires_in, 120 * S);
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    clock.advance(2 * S);
    assert_eq!(
        poll(&st, &a, &c),
        Some(PollDecision::SlowDown {
            interval: 10 * S,
            retry_after: Duration::ZERO
        })
    );
    clock.advance(5 * S);
    assert_eq!(
        poll(&st, &a, &c),
        Some(PollDecision::SlowDown {
            interval: 15 * S,
            retry_after: Duration::ZERO
        })
    );
    clock.advance(15 * S);
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    assert_counts_exact(&st);
}

#[test]
fn tolerance_absorbs_jitter() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    clock.advance(5 * S - Duration::from_millis(200));
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
}

#[test]
fn hammering_stays_throttled() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 600).unwrap();
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    for _ in 0..50 {
        clock.advance(S);
        assert!(matches!(
            poll(&st, &a, &c),
            Some(PollDecision::SlowDown { .. })
        ));
    }
}

#[test]
fn expiry_is_answered_through_the_grace_then_the_id_is_unknown() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 30).unwrap();
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    clock.advance(30 * S);
    for _ in 0..3 {
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Expired));
        assert_eq!(st.sweep(), 0);
        clock.advance(99 * S);
    }
    clock.advance(3 * S);
    assert_eq!(st.sweep(), 1);
    assert_eq!(poll(&st, &a, &c), None);
    assert!(st.is_empty());
    assert_eq!(st.tracked_for(&c), 0);
    assert_counts_exact(&st);
}

#[test]
fn wrong_client_is_refused_and_owner_unaffected() {
    let (st, clock) = store();
    let (a, owner, thief) = (id("req-1"), client("c1"), client("c2"));
    st.record_ack(a.clone(), owner.clone(), None, 60).unwrap();
    assert_eq!(poll(&st, &a, &owner), Some(PollDecision::Forward));
    clock.advance(S);
    let key = st.table.key(&a);
    let before = st.table.states.get(&key).unwrap().clone();
    for _ in 0..10 {
        assert_eq!(poll(&st, &a, &thief), Some(PollDecision::WrongClient));
    }
    assert_eq!(*st.table.states.get(&key).unwrap(), before);
    clock.advance(4 * S);
    assert_eq!(poll(&st, &a, &owner), Some(PollDecision::Forward));
    // A thief never learns that the id expired, and does not remove it.
    clock.advance(60 * S);
    assert_eq!(poll(&st, &a, &thief), Some(PollDecision::WrongClient));
    assert_eq!(st.len(), 1);
    assert_eq!(st.tracked_for(&thief), 0);
    assert_counts_exact(&st);
}

#[test]
fn finish_leaves_a_tombstone_until_expiry_then_sweep_drops_it() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    assert!(st.report(&a, &c, OpVerdict::Ended));
    clock.advance(10 * S);
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
    assert_eq!(st.tracked_for(&c), 1);
    assert_eq!(st.sweep(), 0);
    clock.advance(50 * S);
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
    assert_eq!(st.sweep(), 0, "kept through the grace period");
    clock.advance(GRACE);
    assert_eq!(st.sweep(), 1);
    assert_eq!(poll(&st, &a, &c), None);
    assert_eq!(st.tracked_for(&c), 0);
    assert!(!st.report(&a, &c, OpVerdict::Ended));
    assert_counts_exact(&st);
}

#[test]
fn ids_are_keyed_by_a_secret_per_store_hash() {
    let (st, _clock) = store();
    let (other, _clock) = store();
    let (a, b) = (id("req-1"), id("req-2"));
    assert!(st.table.key(&a) == st.table.key(&a.clone()));
    assert!(st.table.key(&a) != st.table.key(&b));
    // Another store (another process) files the same id elsewhere.
    assert!(st.table.key(&a) != other.table.key(&a));
    let [lo, hi] = st.table.key(&a).0;
    assert_ne!(lo, hi);
    assert_eq!(PreHashed.hash_one(st.table.key(&a)), lo);
}

#[test]
fn cancel_removes() {
    let (st, _clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
    assert!(st.cancel(&a));
    assert!(!st.cancel(&a));
    assert_eq!(poll(&st, &a, &c), None);
    assert_eq!(st.tracked_for(&c), 0);
    assert!(st.is_empty());
    assert_counts_exact(&st);
}

#[test]
fn unknown_id_creates_no_state() {
    let (st, _clock) = store();
    let c = client("c1");
    for n in 0..100 {
        assert_eq!(poll(&st, &id(&format!("spoof-{n}")), &c), None);
        assert!(!st.report(&id(&format!("spoof-{n}")), &c, OpVerdict::Ended));
    }
    assert!(st.is_empty());
    assert!(st.table.states.is_empty());
    assert!(st.table.per_client.is_empty());
}

#[test]
fn zero_expires_in_is_rejected_and_tracks_nothing() {
    let (st, _clock) = store();
    let c = client("c1");
    assert_eq!(
        st.record_ack(id("req-1"), c.clone(), Some(5), 0),
        Err(AckError::NoExpiry)
    );
    assert!(st.is_empty());
    assert_eq!(st.tracked_for(&c), 0);
    assert!(st.table.per_client.is_empty());
}

#[test]
fn record_ack_clamps_like_admit_ack() {
    let (st, _clock) = store();
    let ack = st
        .record_ack(id("req-1"), client("c1"), Some(1), 86_400)
        .unwrap();
    assert_eq!(ack.interval, 5 * S);
    assert_eq!(ack.expires_in, 600 * S);
}

#[test]
fn replacing_an_id_keeps_counts_right() {
    let (st, clock) = store();
    let (a, c1, c2) = (id("req-1"), client("c1"), client("c2"));
    st.record_ack(a.clone(), c1.clone(), None, 60).unwrap();
    st.record_ack(a.clone(), c1.clone(), None, 60).unwrap();
    assert_eq!((st.len(), st.tracked_for(&c1)), (1, 1));
    st.record_ack(a.clone(), c2.clone(), None, 60).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!((st.tracked_for(&c1), st.tracked_for(&c2)), (0, 1));
    assert_counts_exact(&st);
    // The replacement starts afresh: its first poll is forwarded.
    assert_eq!(poll(&st, &a, &c2), Some(PollDecision::Forward));
    clock.advance(S);
    assert_eq!(poll(&st, &a, &c1), Some(PollDecision::WrongClient));
}

#[test]
fn entries_share_one_arc_per_client() {
    let (st, _clock) = store();
    for n in 0..3 {
        st.record_ack(id(&format!("req-{n}")), client("c1"), None, 60)
            .unwrap();
    }
    let entry = |s: &str| {
        let key = st.table.key(&id(s));
        st.table.states.get(&key).unwrap().client().clone()
    };
    let (a, b) = (entry("req-0"), entry("req-2"));
    assert!(std::ptr::eq(a.as_str(), b.as_str()));
}

#[test]
fn admit_limits_total_and_per_client_and_frees_up() {
    let limits = StoreLimits {
        max_tracked: 4,
        max_per_client: 2,
    };
    let (st, clock) = store_with(limits);
    let (c1, c2, c3) = (client("c1"), client("c2"), client("c3"));
    let retry = PollPolicy::default().min_interval;

    // Per-client limit, freed by cancel.
    assert_eq!(st.admit(&c1), Ok(()));
    st.record_ack(id("a1"), c1.clone(), None, 30).unwrap();
    st.record_ack(id("a2"), c1.clone(), None, 60).unwrap();
    assert_eq!(
        st.admit(&c1),
        Err(Full {
            retry_after: retry,
            scope: FullScope::Client
        })
    );
    assert!(st.cancel(&id("a2")));
    assert_eq!(st.admit(&c1), Ok(()));
    st.record_ack(id("a2"), c1.clone(), None, 60).unwrap();

    // Total limit, hit by another client.
    st.record_ack(id("b1"), c2.clone(), None, 60).unwrap();
    st.record_ack(id("b2"), c2.clone(), None, 60).unwrap();
    assert_eq!(
        st.admit(&c3),
        Err(Full {
            retry_after: retry,
            scope: FullScope::Total
        })
    );
    assert_counts_exact(&st);

    // An expired id still counts while its expiry is being answered...
    clock.advance(30 * S);
    assert_eq!(poll(&st, &id("a1"), &c1), Some(PollDecision::Expired));
    assert!(st.admit(&c3).is_err());
    // ...and is freed by the sweep after the grace period.
    clock.advance(GRACE);
    assert_eq!(st.sweep(), 1);
    assert_eq!(st.admit(&c3), Ok(()));
    st.record_ack(id("c1"), c3.clone(), None, 60).unwrap();
    assert!(st.admit(&c3).is_err());

    clock.advance(30 * S);
    assert_eq!(st.sweep(), 3);
    assert_eq!((st.len(), st.tracked_for(&c3)), (1, 1));
    assert_eq!(st.admit(&c1), Ok(()));
    assert_counts_exact(&st);
    clock.advance(60 * S + GRACE);
    assert_eq!(st.sweep(), 1);
    assert!(st.is_empty());
    assert!(st.table.per_client.is_empty());
    assert_eq!(st.admit(&c3), Ok(()));
}

#[test]
fn sweep_keeps_live_entries_and_counts_right() {
    let (st, clock) = store();
    let (c1, c2) = (client("c1"), client("c2"));
    for n in 0..10 {
        let c = if n % 2 == 0 { &c1 } else { &c2 };
        st.record_ack(id(&format!("short-{n}")), c.clone(), None, 10)
            .unwrap();
        st.record_ack(id(&format!("long-{n}")), c.clone(), None, 600)
            .unwrap();
    }
    assert_eq!(st.len(), 20);
    clock.advance(10 * S + GRACE);
    assert_eq!(st.sweep(), 10);
    assert_eq!((st.tracked_for(&c1), st.tracked_for(&c2)), (5, 5));
    assert_eq!(poll(&st, &id("long-0"), &c1), Some(PollDecision::Forward));
    assert_eq!(poll(&st, &id("short-0"), &c1), None);
    assert_counts_exact(&st);
}

#[test]
fn simultaneous_polls_forward_exactly_once() {
    const THREADS: usize = 8;
    for round in 0..50 {
        let (st, _clock) = store();
        let (a, c) = (id(&format!("req-{round}")), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
        let barrier = Barrier::new(THREADS);
        let decisions: Vec<PollDecision> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        poll(&st, &a, &c).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let forwarded = decisions
            .iter()
            .filter(|d| **d == PollDecision::Forward)
            .count();
        assert_eq!(forwarded, 1, "round {round}: {decisions:?}");
        assert_eq!(decisions.len(), THREADS);
    }
}

#[test]
fn concurrent_churn_keeps_counters_exact() {
    let (st, clock) = store();
    let clients: Vec<ClientId> = (0..4).map(|n| client(&format!("c{n}"))).collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (st, clients) = (st.clone(), &clients);
            scope.spawn(move || {
                for n in 0..500 {
                    let c = &clients[(t + n) % clients.len()];
                    let a = id(&format!("id-{}", n % 97));
                    match n % 5 {
                        0 | 1 => {
                            st.record_ack(a, c.clone(), None, 1 + (n % 3) as u64)
                                .unwrap();
                        }
                        2 => {
                            poll(&st, &a, c);
                        }
                        3 => {
                            st.cancel(&a);
                        }
                        _ => {
                            st.report(&a, c, OpVerdict::Ended);
                            st.sweep();
                        }
                    }
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..20 {
                clock.advance(Duration::from_millis(250));
                std::thread::yield_now();
            }
        });
    });
    assert_counts_exact(&st);
    clock.advance(10 * S + GRACE);
    st.sweep();
    assert!(st.is_empty());
    assert!(st.table.per_client.is_empty());
}

fn learn_poll(st: &PollStore, a: &AuthReqId, c: &ClientId) -> Polled {
    st.poll(a, c, true)
}

#[test]
fn an_unknown_id_is_probed_once_then_decided_at_the_edge() {
    let (st, clock) = store();
    let (a, c) = (id("lost-1"), client("c1"));
    assert_eq!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::Probe)
    );
    // A second poll while the first is still at the OP (or right after) is refused.
    assert!(matches!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::SlowDown { .. })
    ));
    assert!(st.report(&a, &c, OpVerdict::Pending));
    clock.advance(10 * S);
    assert_eq!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::Forward)
    );
    assert!(st.report(&a, &c, OpVerdict::Ended));
    clock.advance(10 * S);
    assert_eq!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::Ended)
    );
    assert_eq!(st.len(), 1);
    assert_counts_exact(&st);
}

#[test]
fn what_one_client_taught_never_decides_another_clients_polls() {
    let (st, _clock) = store();
    let (a, c1, c2) = (id("lost-1"), client("c1"), client("c2"));
    assert_eq!(
        learn_poll(&st, &a, &c1),
        Polled::Decided(PollDecision::Probe)
    );
    assert!(st.report(&a, &c1, OpVerdict::Ended));
    // c2 is not told invalid_grant because c1 was; its own poll is probed.
    assert_eq!(
        learn_poll(&st, &a, &c2),
        Polled::Decided(PollDecision::Probe)
    );
    assert!(!st.report(&a, &client("c3"), OpVerdict::Ended));
    assert_eq!(
        learn_poll(&st, &a, &c1),
        Polled::Decided(PollDecision::Ended)
    );
    assert_counts_exact(&st);
}

#[test]
fn spoofed_ids_cannot_grow_memory_past_the_limits() {
    let limits = StoreLimits {
        max_tracked: 50,
        max_per_client: 20,
    };
    let (st, clock) = store_with(limits);
    let spoofer = client("spoofer");
    let mut full = 0;
    for n in 0..1_000 {
        match learn_poll(&st, &id(&format!("spoof-{n}")), &spoofer) {
            Polled::Decided(PollDecision::Probe) => {
                st.report(&id(&format!("spoof-{n}")), &spoofer, OpVerdict::Ended);
            }
            Polled::Full(f) => {
                assert_eq!(f.scope, FullScope::Client);
                full += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((st.len(), full), (20, 980));
    // Another client still has room, and the remembered answers are bounded in time.
    assert_eq!(
        learn_poll(&st, &id("real"), &client("c1")),
        Polled::Decided(PollDecision::Probe)
    );
    clock.advance(PollPolicy::default().remember + GRACE);
    assert_eq!(st.sweep(), 21);
    assert!(st.is_empty());
    assert_counts_exact(&st);
}

#[test]
fn without_learning_an_unknown_id_creates_no_state() {
    let (st, _clock) = store();
    assert_eq!(st.poll(&id("x"), &client("c1"), false), Polled::Unknown);
    assert!(st.is_empty());
}

#[test]
fn new_settings_keep_a_tracked_interval_and_apply_to_new_acks_and_the_limits() {
    let (st, clock) = store();
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 120).unwrap();
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    // A reload raises the minimum interval and lowers the per-client bound.
    let policy = PollPolicy {
        min_interval: 10 * S,
        ..PollPolicy::default()
    };
    st.set_settings(
        policy,
        StoreLimits {
            max_tracked: 100,
            max_per_client: 2,
        },
    );
    // The tracked id keeps the 5 s its ack announced: too early at 2 s, fine at 5 s.
    clock.advance(2 * S);
    assert!(matches!(
        poll(&st, &a, &c),
        Some(PollDecision::SlowDown { .. })
    ));
    clock.advance(10 * S);
    assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    // A new ack gets the new minimum, and the new bound counts what is already tracked.
    let ack = st.record_ack(id("req-2"), c.clone(), None, 120).unwrap();
    assert_eq!(ack.interval, 10 * S);
    assert_eq!(st.admit(&c).unwrap_err().scope, FullScope::Client);
    assert_counts_exact(&st);
}

#[test]
fn the_table_has_room_for_max_tracked_from_the_start_and_does_not_grow_up_to_it() {
    let limits = StoreLimits {
        max_tracked: 30_000,
        max_per_client: 30_000,
    };
    let (st, _) = store_with(limits);
    let room = st.table.states.capacity();
    assert!(room >= 30_000, "room for {room}");
    let c = client("c");
    for n in 0..30_000 {
        let polled = st.poll(&id(&format!("id-{n}")), &c, true);
        assert_eq!(polled, Polled::Decided(PollDecision::Probe));
    }
    assert_eq!(st.len(), 30_000);
    assert_eq!(st.table.states.capacity(), room, "the table grew");
    // Past the limit new ids are refused, so nothing grows it from here either.
    assert!(matches!(
        st.poll(&id("one-more"), &c, true),
        Polled::Full(_)
    ));
}

#[test]
fn a_probe_reported_as_a_probe_is_learned_as_by_report() {
    let (st, clock) = store();
    let (a, c) = (id("made-up"), client("c1"));
    // A probe's verdict, looked up by its learned key first.
    assert_eq!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::Probe)
    );
    assert!(st.report_probe(&a, &c, OpVerdict::Ended));
    clock.advance(10 * S);
    assert_eq!(
        learn_poll(&st, &a, &c),
        Polled::Decided(PollDecision::Ended)
    );
    // Another client's report reaches neither entry.
    assert!(!st.report_probe(&a, &client("c2"), OpVerdict::Pending));
    // An acknowledged id (no learned entry) is still found.
    let (b, c3) = (id("req-b"), client("c3"));
    st.record_ack(b.clone(), c3.clone(), None, 60).unwrap();
    assert_eq!(poll(&st, &b, &c3), Some(PollDecision::Forward));
    assert!(st.report_probe(&b, &c3, OpVerdict::Ended));
    clock.advance(10 * S);
    assert_eq!(poll(&st, &b, &c3), Some(PollDecision::Ended));
    // Nothing known: nothing learned.
    assert!(!st.report_probe(&id("never"), &c, OpVerdict::Ended));
    assert_counts_exact(&st);
}
