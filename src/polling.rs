//! The CIBA poll-mode rules (CIBA Core 1.0 sections 7.3, 10.1 and 11) as a pure state machine.
//!
//! Nothing here does I/O, takes a lock or reads the clock: the caller passes `now`, so every
//! transition is deterministic and testable without sleeping, and the concurrent store in
//! `poll_store` decides how states are shared.

use std::fmt;
use std::time::{Duration, Instant};

use crate::clock;
use crate::error::ErrorCode;
use crate::ids::ClientId;

/// The interval CIBA 7.3 tells a client to use when the OP's ack carries none.
const SPEC_DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How the gateway enforces polling; the defaults follow the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// The shortest interval ever handed to a client (CIBA 7.3 default: 5 s).
    pub min_interval: Duration,
    /// The longest `expires_in` the gateway will track, bounding memory per request.
    pub max_expires_in: Duration,
    /// Slack under the interval, so network jitter on a well-behaved client is not punished.
    pub tolerance: Duration,
    /// How much `slow_down` adds to the interval (CIBA 11 says 5 s; a field so tests can see it).
    pub slow_down_step: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            min_interval: SPEC_DEFAULT_INTERVAL,
            max_expires_in: Duration::from_secs(600),
            tolerance: Duration::from_millis(250),
            slow_down_step: Duration::from_secs(5),
        }
    }
}

/// The interval and lifetime the gateway enforces for one `auth_req_id` (CIBA 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The minimum wait between token requests.
    pub interval: Duration,
    /// How long the `auth_req_id` is tracked after the ack.
    pub expires_in: Duration,
}

impl Ack {
    /// `interval` in whole seconds for the wire, rounded up so the client never polls faster
    /// than the gateway enforces.
    pub fn interval_secs(&self) -> u64 {
        let s = self.interval.as_secs();
        if self.interval.subsec_nanos() > 0 {
            s + 1
        } else {
            s
        }
    }

    /// `expires_in` in whole seconds for the wire, rounded down so the client never expects
    /// the request to outlive its tracking.
    pub fn expires_in_secs(&self) -> u64 {
        self.expires_in.as_secs()
    }
}

/// Why an OP's backchannel acknowledgement cannot be enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// CIBA 7.3 makes a positive `expires_in` required; without one there is nothing to enforce.
    NoExpiry,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::NoExpiry => f.write_str("the OP's ack has no positive expires_in"),
        }
    }
}

impl std::error::Error for AckError {}

/// Turns the OP's ack values (seconds) into what the gateway enforces and tells the client.
///
/// The interval is never below the spec's 5 s default nor the policy minimum; the lifetime
/// is capped so a generous OP cannot make the gateway hold state indefinitely.
pub fn admit_ack(
    policy: &PollPolicy,
    op_interval: Option<u64>,
    op_expires_in: u64,
) -> Result<Ack, AckError> {
    if op_expires_in == 0 {
        return Err(AckError::NoExpiry);
    }
    let op_interval = op_interval.map_or(SPEC_DEFAULT_INTERVAL, Duration::from_secs);
    Ok(Ack {
        interval: op_interval.max(policy.min_interval),
        expires_in: Duration::from_secs(op_expires_in).min(policy.max_expires_in),
    })
}

/// Whether the OP has already answered this request for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still waiting for the end-user; polls may reach the OP.
    Active,
    /// The OP gave a terminal answer; kept as a tombstone until expiry so replays are refused
    /// locally.
    Ended,
}

/// What the gateway knows about one outstanding `auth_req_id`.
///
/// Kept small because a million of them live in the store at once (40 bytes, down from 72):
/// times are whole milliseconds since [`clock::epoch`] in a `u64` rather than 16-byte
/// `Instant`s, "never polled" is a sentinel rather than an `Option<Instant>`, and the interval
/// is `u32` milliseconds. That interval saturates at `u32::MAX` ms (about 49.7 days), longer
/// than any lifetime the configuration allows (at most a day): an interval that long already
/// means "not again before expiry", since expiry is decided first.
///
/// Rounding to the millisecond can move a decision by under 1 ms, far inside the tolerance;
/// intervals round up and the tolerance rounds down, so what rounding there is favours the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollState {
    /// The client the request was issued to.
    client: ClientId,
    /// When the `auth_req_id` stops being valid (ms since the epoch).
    expires_at: u64,
    /// When the last poll (forwarded or refused) arrived (ms since the epoch), or [`NEVER`].
    last_poll: u64,
    /// The current minimum wait between polls in ms; grows by `slow_down_step` on each
    /// `slow_down`.
    interval: u32,
    /// Whether the OP has already given a terminal answer.
    phase: Phase,
}

/// `last_poll` before the first poll; no real time gets there (584 million years of uptime).
const NEVER: u64 = u64::MAX;

/// `d` in whole milliseconds, rounded up and capped at `u32::MAX`.
fn ms_u32_ceil(d: Duration) -> u32 {
    // Spelled out rather than via `as_nanos` to keep 128-bit division off the poll path.
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// `d` in whole milliseconds, rounded down and capped at `u64::MAX`.
fn ms_floor(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

impl PollState {
    /// The state right after the ack: active, never polled.
    pub fn new(client: ClientId, ack: &Ack, now: Instant) -> Self {
        PollState {
            client,
            expires_at: clock::millis(now).saturating_add(ms_floor(ack.expires_in)),
            last_poll: NEVER,
            interval: ms_u32_ceil(ack.interval),
            phase: Phase::Active,
        }
    }

    /// The client the request was issued to.
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// When the `auth_req_id` stops being valid.
    pub fn expires_at(&self) -> Instant {
        clock::instant(self.expires_at)
    }

    /// The current minimum wait between polls.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval))
    }

    /// When the last poll (forwarded or refused) arrived; `None` until the first one.
    pub fn last_poll(&self) -> Option<Instant> {
        (self.last_poll != NEVER).then(|| clock::instant(self.last_poll))
    }

    /// Whether the OP has already given a terminal answer.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the state has expired at `now_ms` (ms since the epoch): the store's sweep test,
    /// without converting an `Instant` per entry.
    pub(crate) fn expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at
    }
}

/// What to do with one token request in poll mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollDecision {
    /// CIBA 10.1: within the rules; send it to the OP.
    Forward,
    /// CIBA 11 `slow_down`: polled before the interval elapsed; the interval is now this.
    SlowDown {
        /// The interval after the increase.
        interval: Duration,
    },
    /// CIBA 11 `expired_token`: the `auth_req_id` has expired; the caller drops the state.
    Expired,
    /// CIBA 11 / RFC 6749 5.2 `invalid_grant`: issued to another client; the owner's state is
    /// untouched.
    WrongClient,
    /// CIBA 11 / RFC 6749 5.2 `invalid_grant`: the OP already gave a terminal answer.
    Ended,
}

impl PollDecision {
    /// The error to answer locally, or `None` for [`PollDecision::Forward`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            PollDecision::Forward => None,
            PollDecision::SlowDown { .. } => Some(ErrorCode::SlowDown),
            PollDecision::Expired => Some(ErrorCode::ExpiredToken),
            PollDecision::WrongClient | PollDecision::Ended => Some(ErrorCode::InvalidGrant),
        }
    }
}

/// Applies one token request from `client` at `now` to `state`.
pub fn decide(
    state: &mut PollState,
    client: &ClientId,
    now: Instant,
    policy: &PollPolicy,
) -> PollDecision {
    decide_at(state, client, clock::millis(now), policy)
}

/// [`decide`] with `now` already in ms since the epoch, as the store reads it once per poll.
pub(crate) fn decide_at(
    state: &mut PollState,
    client: &ClientId,
    now: u64,
    policy: &PollPolicy,
) -> PollDecision {
    // First, and before looking at anything else: another client must learn nothing about the
    // request (not even that it expired) and must not be able to throttle its owner.
    if state.client != *client {
        return PollDecision::WrongClient;
    }
    if now >= state.expires_at {
        return PollDecision::Expired;
    }
    if state.phase == Phase::Ended {
        return PollDecision::Ended;
    }
    // The first poll after the ack is always allowed: some OPs answer slow_down to it, which
    // the spec does not sanction since no interval has been broken yet.
    if state.last_poll != NEVER {
        let wait = u64::from(state.interval).saturating_sub(ms_floor(policy.tolerance));
        // Saturating: an instant too far out to represent is certainly not reached yet.
        if now < state.last_poll.saturating_add(wait) {
            state.interval = state
                .interval
                .saturating_add(ms_u32_ceil(policy.slow_down_step));
            // Restart the clock on a refused poll too, so a client that hammers never gets
            // through by accident of timing.
            state.last_poll = now;
            return PollDecision::SlowDown {
                interval: state.interval(),
            };
        }
    }
    state.last_poll = now;
    PollDecision::Forward
}

/// Records that the OP gave a terminal answer (tokens or an error such as `access_denied`).
pub fn end(state: &mut PollState) {
    state.phase = Phase::Ended;
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn fixture() -> (PollPolicy, PollState, ClientId, Instant) {
        let policy = PollPolicy::default();
        let client = ClientId::new("client-a");
        // On a whole millisecond, so the instants the state hands back compare exactly.
        let t0 = clock::epoch() + 1_000 * S;
        let ack = admit_ack(&policy, Some(5), 120).unwrap();
        (policy, PollState::new(client.clone(), &ack, t0), client, t0)
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
    fn too_soon_slows_down_and_the_new_interval_binds() {
        let (p, mut s, c, t0) = fixture();
        assert_eq!(decide(&mut s, &c, t0, &p), PollDecision::Forward);
        let t1 = t0 + 2 * S;
        assert_eq!(
            decide(&mut s, &c, t1, &p),
            PollDecision::SlowDown { interval: 10 * S }
        );
        // The old interval no longer suffices...
        let t2 = t1 + 5 * S;
        assert_eq!(
            decide(&mut s, &c, t2, &p),
            PollDecision::SlowDown { interval: 15 * S }
        );
        // ...the current one does.
        let t3 = t2 + 15 * S;
        assert_eq!(decide(&mut s, &c, t3, &p), PollDecision::Forward);
        assert_eq!(s.interval(), 15 * S);
        assert_eq!(s.last_poll(), Some(t3));
    }

    #[test]
    fn waiting_the_new_interval_after_one_slow_down_is_forwarded() {
        let (p, mut s, c, t0) = fixture();
        decide(&mut s, &c, t0, &p);
        let t1 = t0 + S;
        assert_eq!(
            decide(&mut s, &c, t1, &p),
            PollDecision::SlowDown { interval: 10 * S }
        );
        assert_eq!(decide(&mut s, &c, t1 + 10 * S, &p), PollDecision::Forward);
    }

    #[test]
    fn tolerance_absorbs_jitter_but_no_more() {
        let (p, mut s, c, t0) = fixture();
        decide(&mut s, &c, t0, &p);
        let early = t0 + 5 * S - Duration::from_millis(250);
        assert_eq!(decide(&mut s, &c, early, &p), PollDecision::Forward);
        let too_early = early + 5 * S - Duration::from_millis(251);
        assert_eq!(
            decide(&mut s, &c, too_early, &p),
            PollDecision::SlowDown { interval: 10 * S }
        );
    }

    #[test]
    fn hammering_stays_throttled() {
        let (p, mut s, c, t0) = fixture();
        decide(&mut s, &c, t0, &p);
        let mut now = t0;
        for n in 1..=20u32 {
            now += S;
            assert_eq!(
                decide(&mut s, &c, now, &p),
                PollDecision::SlowDown {
                    interval: (5 + 5 * n) * S
                }
            );
        }
        // Waiting only the original interval after the last refusal is still too soon.
        assert!(matches!(
            decide(&mut s, &c, now + 5 * S, &p),
            PollDecision::SlowDown { .. }
        ));
    }

    #[test]
    fn expiry_wins_over_everything_but_wrong_client() {
        let (p, mut s, c, t0) = fixture();
        let at = s.expires_at();
        assert_eq!(decide(&mut s, &c, at, &p), PollDecision::Expired);
        end(&mut s);
        assert_eq!(decide(&mut s, &c, at + S, &p), PollDecision::Expired);
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
    fn ended_refuses_until_expiry() {
        let (p, mut s, c, t0) = fixture();
        decide(&mut s, &c, t0, &p);
        end(&mut s);
        assert_eq!(s.phase(), Phase::Ended);
        // Even a well-spaced poll is refused: the grant is used up.
        assert_eq!(decide(&mut s, &c, t0 + 30 * S, &p), PollDecision::Ended);
        assert_eq!(decide(&mut s, &c, t0 + 31 * S, &p), PollDecision::Ended);
        let at = s.expires_at();
        assert_eq!(decide(&mut s, &c, at, &p), PollDecision::Expired);
    }

    #[test]
    fn huge_intervals_saturate_instead_of_panicking() {
        let (p, mut s, c, t0) = fixture();
        s.interval = u32::MAX;
        s.last_poll = clock::millis(t0);
        let max = Duration::from_millis(u64::from(u32::MAX));
        assert_eq!(
            decide(&mut s, &c, t0 + S, &p),
            PollDecision::SlowDown { interval: max }
        );
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
        assert_eq!(
            PollDecision::SlowDown { interval: S }.error_code(),
            Some(ErrorCode::SlowDown)
        );
        assert_eq!(
            PollDecision::Expired.error_code(),
            Some(ErrorCode::ExpiredToken)
        );
        assert_eq!(
            PollDecision::WrongClient.error_code(),
            Some(ErrorCode::InvalidGrant)
        );
        assert_eq!(
            PollDecision::Ended.error_code(),
            Some(ErrorCode::InvalidGrant)
        );
    }
}
