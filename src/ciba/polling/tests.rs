//! Unit tests of the polling rules: admitting acks, decisions from the first poll to expiry,
//! wrong clients, what the OP's answers teach, probes of unknown ids, a compliant client's
//! run, and the mapping of decisions to the spec's errors.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const S: Duration = Duration::from_secs(1);

fn fixture() -> (PollPolicy, PollState, ClientId, Instant) {
    let policy = PollPolicy::default();
    let client = ClientId::new("client-a");
    // On a whole millisecond, so the instants the state hands back compare exactly.
    let t0 = clock::epoch() + 1_000 * S;
    let ack = admit_ack(&policy, Some(5), 120).unwrap();
    (policy, PollState::new(client.clone(), &ack, t0), client, t0)
}

/// The decision's kind and interval, without its `retry_after`.
fn slow(interval: Duration) -> PollDecision {
    PollDecision::SlowDown {
        interval,
        retry_after: Duration::ZERO,
    }
}

fn kind(d: PollDecision) -> PollDecision {
    match d {
        PollDecision::SlowDown { interval, .. } => slow(interval),
        other => other,
    }
}

#[test]
fn admit_ack_fills_and_clamps() {
    let p = PollPolicy::default();
    let a = admit_ack(&p, None, 300).unwrap();
    assert_eq!(a.interval, 5 * S);
    assert_eq!(a.expires_in, 300 * S);
    // An OP asking for faster polling than the spec default is overruled.
    assert_eq!(admit_ack(&p, Some(1), 60).unwrap().interval, 5 * S);
    assert_eq!(admit_ack(&p, Some(0), 60).unwrap().interval, 5 * S);
    assert_eq!(admit_ack(&p, Some(12), 60).unwrap().interval, 12 * S);
    assert_eq!(admit_ack(&p, Some(5), 86_400).unwrap().expires_in, 600 * S);
    assert_eq!(
        admit_ack(&p, Some(5), u64::MAX).unwrap().expires_in,
        600 * S
    );
    assert_eq!(admit_ack(&p, Some(5), 0), Err(AckError::NoExpiry));
    let strict = PollPolicy {
        min_interval: 10 * S,
        ..p
    };
    assert_eq!(admit_ack(&strict, None, 60).unwrap().interval, 10 * S);
}

#[test]
fn ack_seconds_round_safely() {
    let a = Ack {
        interval: Duration::from_millis(5_500),
        expires_in: Duration::from_millis(59_900),
    };
    assert_eq!(a.interval_secs(), 6);
    assert_eq!(a.expires_in_secs(), 59);
}

#[test]
fn first_poll_is_forwarded_even_immediately() {
    let (p, mut s, c, t0) = fixture();
    assert_eq!(decide(&mut s, &c, t0, &p), PollDecision::Forward);
    assert_eq!(s.last_poll(), Some(t0));
    assert_eq!(s.interval(), 5 * S);
}

#[test]
fn too_soon_slows_down_and_says_when_to_come_back() {
    let (p, mut s, c, t0) = fixture();
    assert_eq!(decide(&mut s, &c, t0, &p), PollDecision::Forward);
    // 2 s after a forwarded poll: the interval becomes 10 s, so a poll is accepted
    // 10 s (less the tolerance) after the forwarded one, 7.75 s from now.
    let d = decide(&mut s, &c, t0 + 2 * S, &p);
    assert_eq!(
        d,
        PollDecision::SlowDown {
            interval: 10 * S,
            retry_after: Duration::from_millis(7_750),
        }
    );
    assert_eq!(d.retry_after_secs(), Some(8));
    // The refused poll did not restart the clock.
    assert_eq!(s.last_poll(), Some(t0));
    let d = decide(&mut s, &c, t0 + 7 * S, &p);
    assert_eq!(
        d,
        PollDecision::SlowDown {
            interval: 15 * S,
            retry_after: Duration::from_millis(7_750),
        }
    );
    let at = t0 + 15 * S - p.tolerance;
    assert_eq!(decide(&mut s, &c, at, &p), PollDecision::Forward);
    assert_eq!(s.interval(), 15 * S);
    assert_eq!(s.last_poll(), Some(at));
}

#[test]
fn escalation_stops_at_the_cap_and_an_op_interval_above_it_stays() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    let mut now = t0;
    for _ in 0..40 {
        now += Duration::from_millis(100);
        decide(&mut s, &c, now, &p);
    }
    assert_eq!(s.interval(), p.max_interval);
    // Waiting the capped interval from the forwarded poll gets through.
    assert_eq!(
        decide(&mut s, &c, t0 + p.max_interval, &p),
        PollDecision::Forward
    );
    let slow_op = admit_ack(&p, Some(90), 600).unwrap();
    let mut s = PollState::new(c.clone(), &slow_op, t0);
    decide(&mut s, &c, t0, &p);
    assert_eq!(kind(decide(&mut s, &c, t0 + S, &p)), slow(90 * S));
}

#[test]
fn tolerance_absorbs_jitter_but_no_more() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    let early = t0 + 5 * S - Duration::from_millis(250);
    assert_eq!(decide(&mut s, &c, early, &p), PollDecision::Forward);
    let too_early = early + 5 * S - Duration::from_millis(251);
    assert_eq!(kind(decide(&mut s, &c, too_early, &p)), slow(10 * S));
}

#[test]
fn hammering_reaches_the_op_at_most_once_per_capped_interval() {
    let (p, mut s, c, t0) = fixture();
    let mut forwarded = vec![];
    let mut now = t0;
    while now < t0 + 300 * S {
        if decide(&mut s, &c, now, &p) == PollDecision::Forward {
            forwarded.push(now);
        }
        now += Duration::from_millis(50);
    }
    for pair in forwarded.windows(2) {
        assert!(pair[1] - pair[0] >= p.max_interval - p.tolerance);
    }
    assert!(forwarded.len() <= 6, "{} forwarded", forwarded.len());
}

#[test]
fn expiry_is_answered_through_the_grace_period() {
    let (p, mut s, c, t0) = fixture();
    let at = s.expires_at();
    assert_eq!(decide(&mut s, &c, at, &p), PollDecision::Expired);
    assert_eq!(decide(&mut s, &c, at + 10 * S, &p), PollDecision::Expired);
    let ms = clock::millis(at);
    assert!(!s.droppable_at(ms, &p));
    assert!(!s.droppable_at(ms + 299_999, &p));
    assert!(s.droppable_at(ms + 300_000, &p));
    let other = ClientId::new("client-b");
    assert_eq!(decide(&mut s, &other, at, &p), PollDecision::WrongClient);
    assert!(t0 < at);
}

#[test]
fn wrong_client_does_not_touch_the_owner() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    let before = s.clone();
    let other = ClientId::new("client-b");
    for k in 0..5 {
        assert_eq!(
            decide(&mut s, &other, t0 + k * Duration::from_millis(10), &p),
            PollDecision::WrongClient
        );
    }
    assert_eq!(s, before);
    assert_eq!(decide(&mut s, &c, t0 + 5 * S, &p), PollDecision::Forward);
}

#[test]
fn an_ended_request_is_refused_until_it_is_dropped() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    learn(&mut s, OpVerdict::Ended, clock::millis(t0), &p);
    assert_eq!(s.phase(), Phase::Ended);
    // Even a well-spaced poll is refused: the grant is used up.
    assert_eq!(decide(&mut s, &c, t0 + 30 * S, &p), PollDecision::Ended);
    let at = s.expires_at();
    assert_eq!(decide(&mut s, &c, at + S, &p), PollDecision::Ended);
    // An acknowledged id keeps its own expiry as a tombstone.
    assert_eq!(s.expires_at(), t0 + 120 * S);
}

#[test]
fn an_op_expired_token_is_remembered() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    learn(&mut s, OpVerdict::Expired, clock::millis(t0), &p);
    assert_eq!(decide(&mut s, &c, t0 + 10 * S, &p), PollDecision::Expired);
}

#[test]
fn the_op_saying_slow_down_grows_the_interval() {
    let (p, mut s, c, t0) = fixture();
    decide(&mut s, &c, t0, &p);
    learn(&mut s, OpVerdict::SlowDown, clock::millis(t0), &p);
    assert_eq!(s.interval(), 10 * S);
    assert_eq!(kind(decide(&mut s, &c, t0 + 6 * S, &p)), slow(15 * S));
}

#[test]
fn a_probe_that_the_op_confirms_is_tracked_like_an_ack() {
    let p = PollPolicy::default();
    let c = ClientId::new("client-a");
    let t0 = clock::millis(clock::epoch() + 1_000 * S);
    let mut s = PollState::probe(c.clone(), t0, &p);
    assert_eq!(s.phase(), Phase::Probing);
    // A second poll before the OP answered, or too soon after, is refused.
    let d = decide_at(&mut s, &c, t0 + 100, &p);
    assert_eq!(kind(d), slow(10 * S));
    learn(&mut s, OpVerdict::Pending, t0 + 200, &p);
    assert_eq!(s.phase(), Phase::Active);
    assert_eq!(clock::millis(s.expires_at()), t0 + 200 + 600_000);
    assert_eq!(
        decide_at(&mut s, &c, t0 + 10_000, &p),
        PollDecision::Forward
    );
}

#[test]
fn a_probe_the_op_ends_is_remembered_for_a_while() {
    let p = PollPolicy::default();
    let c = ClientId::new("client-a");
    let t0 = clock::millis(clock::epoch() + 1_000 * S);
    for (verdict, then) in [
        (OpVerdict::Ended, PollDecision::Ended),
        (OpVerdict::Expired, PollDecision::Expired),
    ] {
        let mut s = PollState::probe(c.clone(), t0, &p);
        learn(&mut s, verdict, t0 + 50, &p);
        assert_eq!(decide_at(&mut s, &c, t0 + 60_000, &p), then);
        let until = t0 + 50 + 600_000;
        assert_eq!(clock::millis(s.expires_at()), until);
        assert!(!s.droppable_at(until, &p));
        assert!(s.droppable_at(until + 300_000, &p));
    }
}

#[test]
fn an_unanswered_probe_is_retried_once_its_memory_runs_out() {
    let p = PollPolicy::default();
    let c = ClientId::new("client-a");
    let t0 = clock::millis(clock::epoch() + 1_000 * S);
    let mut s = PollState::probe(c.clone(), t0, &p);
    learn(&mut s, OpVerdict::Unclear, t0 + 10, &p);
    assert_eq!(s.phase(), Phase::Probing);
    assert!(matches!(
        decide_at(&mut s, &c, t0 + 599_000, &p),
        PollDecision::Forward
    ));
    let later = t0 + 600_000 + 5_000;
    assert_eq!(decide_at(&mut s, &c, later, &p), PollDecision::Probe);
    assert_eq!(s.phase(), Phase::Probing);
    assert_eq!(kind(decide_at(&mut s, &c, later + 10, &p)), slow(10 * S));
}

/// One simulated run: a client that follows CIBA 11 to the letter (waits the
/// acknowledged interval, adds 5 s after each `slow_down` it receives) while, during the
/// first minute, another instance of it polls the same id at random moments, ignoring
/// what it is told. The user approves at a random moment in the first two minutes.
/// Returns when the tokens went out (ms after the ack) and the moment from which the
/// compliant client is on its own (the approval or the last interference, if later).
fn compliant_client_run(rng: &mut StdRng, p: &PollPolicy) -> (u64, u64) {
    let c = ClientId::new("client-a");
    let t0 = clock::millis(clock::epoch() + 1_000 * S);
    let op_interval = rng.gen_range(1..=20u64);
    let ack = admit_ack(p, Some(op_interval), 600).unwrap();
    let mut s = PollState::new(c.clone(), &ack, clock::epoch() + 1_000 * S);
    let approved = t0 + rng.gen_range(0..120_000u64);
    let mut other: Vec<u64> = (0..rng.gen_range(1..=4))
        .map(|_| t0 + rng.gen_range(0..60_000u64))
        .collect();
    other.sort_unstable();
    let alone_from = approved.max(other.last().copied().unwrap_or(t0)) - t0;
    let mut wait = ack.interval_secs() * 1000;
    let mut next = t0 + wait;
    let mut others = other.into_iter().peekable();
    loop {
        while let Some(&o) = others.peek() {
            if o > next {
                break;
            }
            if decide_at(&mut s, &c, o, p) == PollDecision::Forward && o >= approved {
                // The other instance collected the tokens.
                return (o - t0, alone_from);
            }
            others.next();
        }
        // Network jitter of up to 50 ms on the compliant client's side.
        let at = next + rng.gen_range(0..50u64);
        match decide_at(&mut s, &c, at, p) {
            PollDecision::Forward if at >= approved => return (at - t0, alone_from),
            PollDecision::Forward => {}
            PollDecision::SlowDown { .. } => wait += 5_000,
            other => panic!("unexpected {other:?}"),
        }
        next = at + wait;
        assert!(next < t0 + 600_000, "the client never got through");
    }
}

#[test]
fn a_client_following_ciba_11_gets_its_tokens_despite_a_second_instance() {
    let p = PollPolicy::default();
    let mut rng = StdRng::seed_from_u64(0x00c1_ba11);
    let mut worst = 0;
    for _ in 0..20_000 {
        let (got, alone_from) = compliant_client_run(&mut rng, &p);
        worst = worst.max(got.saturating_sub(alone_from));
        assert!(got < 300_000, "tokens only {got} ms after the ack");
    }
    // Once left alone, the client needs at most about two of its own (grown) waits.
    assert!(worst <= 120_000, "worst delay: {worst} ms");
}

#[test]
fn huge_intervals_saturate_instead_of_panicking() {
    let (p, mut s, c, t0) = fixture();
    s.interval = u32::MAX;
    s.last_poll = clock::millis(t0);
    let max = Duration::from_millis(u64::from(u32::MAX));
    assert_eq!(kind(decide(&mut s, &c, t0 + S, &p)), slow(max));
    let huge = Ack {
        interval: Duration::MAX,
        expires_in: Duration::MAX,
    };
    let s = PollState::new(c, &huge, t0);
    assert_eq!(s.interval(), max);
    assert!(s.expires_at() > t0 + 1_000_000 * S);
}

#[test]
fn state_is_compact_and_rounds_in_favour_of_the_rules() {
    assert!(std::mem::size_of::<PollState>() <= 40);
    let (p, _, c, t0) = fixture();
    let ack = Ack {
        interval: Duration::from_micros(5_000_001),
        expires_in: Duration::from_micros(60_000_999),
    };
    let mut s = PollState::new(c.clone(), &ack, t0);
    assert_eq!(s.interval(), Duration::from_millis(5_001));
    assert_eq!(s.expires_at(), t0 + 60 * S);
    assert_eq!(s.last_poll(), None);
    assert_eq!(decide(&mut s, &c, t0, &p), PollDecision::Forward);
    // 5001 ms less 250 ms of tolerance: 4750 ms is too soon, 4751 ms is not.
    let mut early = s.clone();
    assert!(matches!(
        decide(&mut early, &c, t0 + Duration::from_millis(4_750), &p),
        PollDecision::SlowDown { .. }
    ));
    assert_eq!(
        decide(&mut s, &c, t0 + Duration::from_millis(4_751), &p),
        PollDecision::Forward
    );
}

#[test]
fn decisions_map_to_the_spec_errors() {
    assert_eq!(PollDecision::Forward.error_code(), None);
    assert!(PollDecision::Probe.refusal().is_none());
    let sd = PollDecision::SlowDown {
        interval: 10 * S,
        retry_after: Duration::from_millis(1),
    };
    assert_eq!(sd.error_code(), Some(ErrorCode::SlowDown));
    let e = sd.refusal().unwrap();
    assert_eq!((e.status, e.retry_after), (400, Some(1)));
    assert!(e.description.contains("10 s"));
    for (d, code) in [
        (PollDecision::Expired, ErrorCode::ExpiredToken),
        (PollDecision::WrongClient, ErrorCode::InvalidGrant),
        (PollDecision::Ended, ErrorCode::InvalidGrant),
    ] {
        assert_eq!(d.error_code(), Some(code));
        let e = d.refusal().unwrap();
        assert_eq!((e.code, e.status, e.retry_after), (code, 400, None));
    }
}

#[test]
fn the_slow_down_description_reads_as_the_formatter_writes_it() {
    for secs in [0, 1, 5, 9, 10, 15, 99, 100, 3600, u64::MAX] {
        assert_eq!(
            slow_down_description(secs),
            format!("polled too soon; wait at least {secs} s between polls of this auth_req_id")
        );
    }
}
