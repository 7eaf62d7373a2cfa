//! The CIBA poll-mode rules (CIBA Core 1.0 sections 7.3, 10.1 and 11) as a pure state machine.
//!
//! Nothing here does I/O, takes a lock or reads the clock: the caller passes `now`, so every
//! transition is deterministic and testable without sleeping, and the concurrent store in
//! `poll_store` decides how states are shared.

use std::fmt;
use std::time::{Duration, Instant};

use crate::ciba::clock;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::ClientId;

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
    /// Where `slow_down` stops growing the interval, so a client that missed one `slow_down`
    /// (another instance of it caused it) still catches up; an OP's longer interval is kept.
    pub max_interval: Duration,
    /// How long after expiry an `auth_req_id` is still answered `expired_token` at the edge.
    pub expired_grace: Duration,
    /// How long what the OP said about an id the gateway never acknowledged is remembered.
    pub remember: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            min_interval: SPEC_DEFAULT_INTERVAL,
            max_expires_in: Duration::from_secs(600),
            tolerance: Duration::from_millis(250),
            slow_down_step: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            expired_grace: Duration::from_secs(300),
            remember: Duration::from_secs(600),
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

/// Where one `auth_req_id` stands, as far as the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Acknowledged (or confirmed pending by the OP); polls may reach the OP at the interval.
    Active = 0,
    /// The OP gave a terminal answer (tokens, `access_denied`, `invalid_grant`): later polls
    /// are `invalid_grant` at the edge.
    Ended = 1,
    /// The OP answered `expired_token`: later polls get the same at the edge.
    Expired = 2,
    /// Never acknowledged through this gateway (a restart, another replica): one poll was
    /// forwarded to learn what the OP thinks of it, and its answer is awaited.
    Probing = 3,
}

impl Phase {
    /// The phase from its stored number (the Redis store keeps it as one digit).
    pub fn from_u8(n: u8) -> Option<Phase> {
        match n {
            0 => Some(Phase::Active),
            1 => Some(Phase::Ended),
            2 => Some(Phase::Expired),
            3 => Some(Phase::Probing),
            _ => None,
        }
    }
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
    /// When the `auth_req_id` stops being valid (ms since the epoch); for a remembered answer
    /// or a probe, when the memory of it ends.
    expires_at: u64,
    /// When the last poll that reached the OP was sent (ms since the epoch), or [`NEVER`].
    /// Refused polls do not move it: see [`decide`].
    last_poll: u64,
    /// The current minimum wait between polls in ms; grows by `slow_down_step` on each
    /// `slow_down`, up to the policy's cap.
    interval: u32,
    /// Where the request stands.
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

    /// The state of an id the gateway never acknowledged, as its first poll is forwarded
    /// (at `now`, ms since the epoch) to learn what the OP thinks of it.
    pub fn probe(client: ClientId, now: u64, policy: &PollPolicy) -> Self {
        PollState {
            client,
            expires_at: now.saturating_add(ms_floor(policy.remember)),
            last_poll: now,
            interval: ms_u32_ceil(policy.min_interval),
            phase: Phase::Probing,
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

    /// When the last poll that reached the OP was sent; `None` until the first one.
    pub fn last_poll(&self) -> Option<Instant> {
        (self.last_poll != NEVER).then(|| clock::instant(self.last_poll))
    }

    /// Where the request stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the store may drop the state at `now_ms` (ms since the epoch): past expiry and
    /// the grace after it, in which late polls are still answered `expired_token`. The
    /// store's sweep test, without converting an `Instant` per entry.
    pub(crate) fn droppable_at(&self, now_ms: u64, policy: &PollPolicy) -> bool {
        now_ms
            >= self
                .expires_at
                .saturating_add(ms_floor(policy.expired_grace))
    }
}

/// What to do with one token request in poll mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollDecision {
    /// CIBA 10.1: within the rules; send it to the OP.
    Forward,
    /// An id the gateway never acknowledged: send this one poll to the OP and report its
    /// answer (see [`learn`]), so that later polls are decided at the edge.
    Probe,
    /// CIBA 11 `slow_down`: polled before the interval elapsed.
    SlowDown {
        /// The interval after the increase.
        interval: Duration,
        /// How long until a poll would be forwarded (for `Retry-After`).
        retry_after: Duration,
    },
    /// CIBA 11 `expired_token`: the `auth_req_id` has expired.
    Expired,
    /// CIBA 11 / RFC 6749 5.2 `invalid_grant`: issued to another client; the owner's state is
    /// untouched.
    WrongClient,
    /// CIBA 11 / RFC 6749 5.2 `invalid_grant`: the OP already gave a terminal answer.
    Ended,
}

impl PollDecision {
    /// The error to answer locally, or `None` when the poll goes to the OP.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            PollDecision::Forward | PollDecision::Probe => None,
            PollDecision::SlowDown { .. } => Some(ErrorCode::SlowDown),
            PollDecision::Expired => Some(ErrorCode::ExpiredToken),
            PollDecision::WrongClient | PollDecision::Ended => Some(ErrorCode::InvalidGrant),
        }
    }

    /// The answer the gateway gives itself, or `None` when the poll goes to the OP.
    pub fn refusal(&self) -> Option<OAuthError> {
        let code = self.error_code()?;
        let description: std::borrow::Cow<'static, str> = match self {
            PollDecision::SlowDown { interval, .. } => {
                slow_down_description(interval.as_secs()).into()
            }
            PollDecision::Expired => {
                "the auth_req_id has expired; start a new authentication request".into()
            }
            PollDecision::WrongClient => "the auth_req_id was not issued to this client".into(),
            PollDecision::Ended | PollDecision::Forward | PollDecision::Probe => {
                "the auth_req_id has already been used up".into()
            }
        };
        // Every poll error is 400 at the token endpoint (RFC 6749 5.2, CIBA 11).
        let e = OAuthError::new(code, description).with_status(code.token_endpoint_status());
        Some(match self.retry_after_secs() {
            Some(s) => e.with_retry_after(s),
            None => e,
        })
    }

    /// `Retry-After` in whole seconds for a `slow_down`, rounded up and at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            PollDecision::SlowDown { retry_after, .. } => {
                let whole = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(whole.max(1))
            }
            _ => None,
        }
    }
}

/// The `error_description` of a `slow_down`, built without the formatter: it is written
/// for every poll that comes too soon.
fn slow_down_description(interval_secs: u64) -> String {
    const HEAD: &str = "polled too soon; wait at least ";
    const TAIL: &str = " s between polls of this auth_req_id";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = interval_secs;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&digits[at..]).expect("ASCII digits");
    let mut out = String::with_capacity(HEAD.len() + digits.len() + TAIL.len());
    out.push_str(HEAD);
    out.push_str(digits);
    out.push_str(TAIL);
    out
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
///
/// The interval is measured from the last poll that reached the OP, not from the last
/// refused one. That is what lets a client that follows CIBA 11 to the letter (wait the
/// interval, add 5 s after each `slow_down`) get through even when another instance of it
/// earned a `slow_down` it never saw: each of its refused polls makes its own wait longer,
/// while the gateway's interval stops growing at `max_interval`. A client that hammers still
/// reaches the OP at most once per (capped) interval.
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
    match state.phase {
        Phase::Ended => return PollDecision::Ended,
        Phase::Expired => return PollDecision::Expired,
        Phase::Active | Phase::Probing => {}
    }
    if now >= state.expires_at {
        if state.phase == Phase::Probing {
            // The OP never said what the id is (it was unreachable, or answered oddly), and
            // the memory of the probe ran out: probe again, once.
            *state = PollState::probe(state.client.clone(), now, policy);
            return PollDecision::Probe;
        }
        return PollDecision::Expired;
    }
    // The first poll after the ack is always allowed: some OPs answer slow_down to it, which
    // the spec does not sanction since no interval has been broken yet.
    if state.last_poll != NEVER {
        let wait = u64::from(state.interval).saturating_sub(ms_floor(policy.tolerance));
        // Saturating: an instant too far out to represent is certainly not reached yet.
        let open_at = state.last_poll.saturating_add(wait);
        if now < open_at {
            grow_interval(state, policy);
            let open_at = state.last_poll.saturating_add(
                u64::from(state.interval).saturating_sub(ms_floor(policy.tolerance)),
            );
            return PollDecision::SlowDown {
                interval: state.interval(),
                retry_after: Duration::from_millis(open_at.saturating_sub(now)),
            };
        }
    }
    state.last_poll = now;
    PollDecision::Forward
}

/// CIBA 11: `slow_down` adds the step to the interval, until the policy's cap; an interval
/// already above the cap (the OP asked for it) is left as it is.
fn grow_interval(state: &mut PollState, policy: &PollPolicy) {
    let cap = ms_u32_ceil(policy.max_interval);
    if state.interval < cap {
        state.interval = state
            .interval
            .saturating_add(ms_u32_ceil(policy.slow_down_step))
            .min(cap);
    }
}

/// What the OP answered to a poll the gateway forwarded, as far as the poll rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpVerdict {
    /// `authorization_pending`: the id is real and still open.
    Pending,
    /// The OP itself said `slow_down`.
    SlowDown,
    /// Tokens, `access_denied` or `invalid_grant`: nothing more will come of this id.
    Ended,
    /// `expired_token`.
    Expired,
    /// Anything else (a client error, an OP fault): nothing learned.
    Unclear,
}

/// Records what the OP answered to a forwarded poll (at `now`, ms since the epoch).
///
/// For an acknowledged id a terminal answer leaves a tombstone until expiry, so replays are
/// refused at the edge. For a probed id, a pending answer starts tracking it as if it had
/// been acknowledged with the gateway's own interval and longest lifetime, and a terminal
/// answer is remembered for `policy.remember`.
pub fn learn(state: &mut PollState, verdict: OpVerdict, now: u64, policy: &PollPolicy) {
    let probing = state.phase == Phase::Probing;
    match verdict {
        OpVerdict::Pending | OpVerdict::SlowDown => {
            if verdict == OpVerdict::SlowDown {
                grow_interval(state, policy);
            }
            if probing {
                state.phase = Phase::Active;
                state.expires_at = now.saturating_add(ms_floor(policy.max_expires_in));
            }
        }
        OpVerdict::Ended | OpVerdict::Expired => {
            state.phase = if verdict == OpVerdict::Ended {
                Phase::Ended
            } else {
                Phase::Expired
            };
            if probing {
                state.expires_at = now.saturating_add(ms_floor(policy.remember));
            }
        }
        OpVerdict::Unclear => {}
    }
}

#[cfg(test)]
mod tests;
