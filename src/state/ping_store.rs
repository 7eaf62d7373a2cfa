//! What the gateway holds for the ping requests it polls on clients' behalf: the client's
//! credential and notification token until they are no longer needed, the OP's terminal
//! answer until it is redeemed once, all encrypted (`seal`), and when each is next polled.
//!
//! In this process only (a dashmap, like the poll store); every method is synchronous and
//! returns owned values, so no shard lock is held across an `.await`. Time is an argument.
//!
//! A record lives until its request expires, whatever happens: the credential goes when
//! the OP gives its terminal answer, the notification token when the ping has been sent
//! (or given up), the answer when it is redeemed; what is left (the client and the keyed
//! hash of its credential) refuses a second redemption until expiry.

use crate::ciba::ids::{AuthReqId, ClientId, Secret};
use crate::ciba::ping::{self, Credential};
use crate::state::seal::{CredentialTag, Kind, Sealed, Sealer};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much CIBA 11 adds to the interval when the OP says `slow_down`.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Where a ping request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Polled by the gateway until the OP gives a terminal answer.
    Waiting,
    /// The OP's terminal answer is held for one redemption.
    Answered,
    /// Redeemed: later redemptions are refused.
    Redeemed,
}

#[derive(Debug)]
struct Record {
    client: ClientId,
    tag: CredentialTag,
    credential: Option<Sealed>,
    token: Option<Sealed>,
    answer: Option<Sealed>,
    phase: Phase,
    interval: Duration,
    next_poll: Instant,
    expires_at: Instant,
    in_flight: bool,
}

/// What came of one of the gateway's polls.
#[derive(Debug)]
pub enum PollResult {
    /// Not over yet (pending, an OP fault): poll again after the interval, 5 s longer
    /// after the OP's `slow_down`.
    Again {
        /// The OP said `slow_down`.
        slow_down: bool,
    },
    /// The OP's terminal answer, in the spec's form: status and JSON body.
    Answer {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
}

/// No room for another ping request waiting for the OP (`ping.queue_capacity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// A place in the queue, taken before the backchannel request goes to the OP and given
/// back when dropped unless a record takes it over.
#[derive(Debug)]
pub struct Slot {
    waiting: Arc<AtomicUsize>,
    held: bool,
}

impl Slot {
    /// A place counted in `waiting` (already incremented), given back when dropped.
    pub(crate) fn counted(waiting: Arc<AtomicUsize>) -> Slot {
        Slot {
            waiting,
            held: true,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One poll the gateway owes the OP now.
#[derive(Debug)]
pub struct DuePoll {
    /// The request.
    pub id: AuthReqId,
    /// Its client.
    pub client: ClientId,
    /// The credential to replay.
    pub credential: Secret<Credential>,
}

/// A ping to send, after the OP's terminal answer.
#[derive(Debug)]
pub struct PingDue {
    /// The client to notify.
    pub client: ClientId,
    /// Its `client_notification_token`.
    pub token: Secret<String>,
    /// When the request expires: the last moment a ping is useful.
    pub expires_at: Instant,
}

/// What a token request for an `auth_req_id` gets from the ping store.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// Not a ping request this store holds: the normal poll rules apply.
    NotPing,
    /// Another client started it.
    WrongClient,
    /// Its client, with another credential than at initiation.
    WrongCredential,
    /// The OP has not answered yet.
    Waiting,
    /// The OP's answer, given out now and never again: status and JSON body.
    Answer(u16, Secret<Vec<u8>>),
    /// Already redeemed.
    Used,
}

/// The ping requests of this process.
#[derive(Debug)]
pub struct PingStore {
    records: DashMap<AuthReqId, Record>,
    sealer: Sealer,
    capacity: usize,
    /// Slots taken plus records waiting for the OP's answer.
    waiting: Arc<AtomicUsize>,
}

impl PingStore {
    /// An empty store sealing with `sealer`, with room for `capacity` waiting requests.
    pub fn new(sealer: Sealer, capacity: usize) -> Self {
        PingStore {
            records: DashMap::new(),
            sealer,
            capacity,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a place in the queue, or says it is full.
    pub fn reserve(&self) -> Result<Slot, QueueFull> {
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot {
                waiting: self.waiting.clone(),
                held: true,
            }),
            Err(_) => Err(QueueFull),
        }
    }

    /// Starts polling for an acknowledged request: first poll one interval from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        mut slot: Slot,
        id: AuthReqId,
        client: ClientId,
        credential: &Credential,
        token: &Secret<String>,
        interval: Duration,
        expires_at: Instant,
        now: Instant,
    ) {
        let record = Record {
            tag: self.sealer.tag(&credential.hash_input(&client)),
            credential: Some(self.sealer.seal(
                Kind::Credential,
                &id,
                credential.to_bytes().expose(),
            )),
            token: Some(
                self.sealer
                    .seal(Kind::NotificationToken, &id, token.expose().as_bytes()),
            ),
            client,
            answer: None,
            phase: Phase::Waiting,
            interval,
            next_poll: now + interval,
            expires_at,
            in_flight: false,
        };
        // An id the OP handed out twice keeps its first record (and its slot).
        if let dashmap::mapref::entry::Entry::Vacant(v) = self.records.entry(id) {
            v.insert(record);
            slot.held = false;
        }
    }

    /// The polls due at `now`, each marked in flight until [`PingStore::polled`]; records
    /// past expiry are dropped. Also returns when the next poll falls due, if any does.
    pub fn due(&self, now: Instant) -> (Vec<DuePoll>, Option<Instant>) {
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        self.records.retain(|id, r| {
            if now >= r.expires_at {
                if r.phase == Phase::Waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                }
                return false;
            }
            if r.phase != Phase::Waiting || r.in_flight {
                return true;
            }
            if r.next_poll > now {
                next = Some(next.map_or(r.next_poll, |n| n.min(r.next_poll)));
                return true;
            }
            let credential = r
                .credential
                .as_ref()
                .and_then(|c| self.sealer.open(Kind::Credential, id, c))
                .and_then(|b| Credential::from_bytes(b.expose()));
            if let Some(credential) = credential {
                r.in_flight = true;
                out.push(DuePoll {
                    id: id.clone(),
                    client: r.client.clone(),
                    credential: Secret::new(credential),
                });
            }
            true
        });
        (out, next)
    }

    /// Records what came of a poll at `now`. A terminal answer is held (the credential
    /// dropped) and the ping to send is returned; otherwise the next poll is scheduled.
    pub fn polled(&self, id: &AuthReqId, outcome: PollResult, now: Instant) -> Option<PingDue> {
        let mut r = self.records.get_mut(id)?;
        r.in_flight = false;
        if r.phase != Phase::Waiting {
            return None;
        }
        match outcome {
            PollResult::Again { slow_down } => {
                if slow_down {
                    r.interval += SLOW_DOWN_STEP;
                }
                r.next_poll = now + r.interval;
                None
            }
            PollResult::Answer { status, body } => {
                let held = ping::answer_bytes(status, &body);
                r.answer = Some(self.sealer.seal(Kind::Answer, id, held.expose()));
                r.credential = None;
                r.phase = Phase::Answered;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                let token = r
                    .token
                    .as_ref()
                    .and_then(|t| self.sealer.open(Kind::NotificationToken, id, t))
                    .and_then(|b| String::from_utf8(b.into_inner()).ok())?;
                Some(PingDue {
                    client: r.client.clone(),
                    token: Secret::new(token),
                    expires_at: r.expires_at,
                })
            }
        }
    }

    /// The ping was sent or given up: the notification token is no longer needed.
    pub fn notified(&self, id: &AuthReqId) {
        if let Some(mut r) = self.records.get_mut(id) {
            r.token = None;
        }
    }

    /// A token request for `id` by `client` presenting `credential` (`None`: nothing
    /// replayable) at `now`. The held answer is given out once, only to the client that
    /// started the request with the same credential.
    pub fn redeem(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        credential: Option<&Credential>,
        now: Instant,
    ) -> Redeemed {
        let Some(mut r) = self.records.get_mut(id) else {
            return Redeemed::NotPing;
        };
        if now >= r.expires_at {
            // Expired and not yet swept: the poll rules answer it.
            return Redeemed::NotPing;
        }
        if r.client != *client {
            return Redeemed::WrongClient;
        }
        let proven = credential.is_some_and(|c| self.sealer.matches(&c.hash_input(client), &r.tag));
        if !proven {
            return Redeemed::WrongCredential;
        }
        match r.phase {
            Phase::Waiting => Redeemed::Waiting,
            Phase::Redeemed => Redeemed::Used,
            Phase::Answered => {
                r.phase = Phase::Redeemed;
                let held = r
                    .answer
                    .take()
                    .and_then(|a| self.sealer.open(Kind::Answer, id, &a));
                match held
                    .as_ref()
                    .and_then(|h| ping::answer_from_bytes(h.expose()))
                {
                    Some((status, body)) => Redeemed::Answer(status, Secret::new(body.to_vec())),
                    None => Redeemed::Used,
                }
            }
        }
    }

    /// Requests held, in any phase.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Requests waiting for the OP's answer, slots included.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn store(capacity: usize) -> PingStore {
        PingStore::new(Sealer::new(&Secret::new([7; 32])), capacity)
    }

    fn post(secret: &str) -> Credential {
        Credential::Post {
            client_id: "c".into(),
            secret: secret.into(),
        }
    }

    fn started(s: &PingStore, id: &str, now: Instant) -> AuthReqId {
        let id = AuthReqId::new(id);
        s.start(
            s.reserve().unwrap(),
            id.clone(),
            ClientId::new("c"),
            &post("s"),
            &Secret::new("tok".into()),
            SEC,
            now + 10 * SEC,
            now,
        );
        id
    }

    #[test]
    fn the_queue_is_bounded_and_slots_come_back() {
        let s = store(2);
        let a = s.reserve().unwrap();
        let _b = s.reserve().unwrap();
        assert_eq!(s.reserve().unwrap_err(), QueueFull);
        drop(a);
        let now = Instant::now();
        started(&s, "x", now);
        assert_eq!(s.waiting(), 2);
        assert!(s.reserve().is_err());
        let (due, _) = s.due(now + SEC);
        assert_eq!(due.len(), 1);
        s.polled(
            &due[0].id,
            PollResult::Answer {
                status: 200,
                body: b"{}".to_vec(),
            },
            now + SEC,
        );
        assert_eq!(s.waiting(), 1, "an answered request leaves the queue");
    }

    #[test]
    fn polls_fall_due_at_the_interval_one_at_a_time() {
        let s = store(10);
        let now = Instant::now();
        let id = started(&s, "x", now);
        let (due, next) = s.due(now);
        assert!(due.is_empty());
        assert_eq!(next, Some(now + SEC));
        let (due, _) = s.due(now + SEC);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].credential.expose(), &post("s"));
        assert!(s.due(now + 3 * SEC).0.is_empty(), "in flight");
        let t = now + 1500 * Duration::from_millis(1);
        assert!(s
            .polled(&id, PollResult::Again { slow_down: false }, t)
            .is_none());
        assert!(s.due(t + SEC / 2).0.is_empty());
        assert_eq!(s.due(t + SEC).0.len(), 1);
        s.polled(&id, PollResult::Again { slow_down: true }, t + SEC);
        assert!(s.due(t + 6 * SEC).0.is_empty());
        assert_eq!(s.due(t + 7 * SEC).0.len(), 1);
    }

    #[test]
    fn the_answer_goes_once_to_its_client_with_its_credential() {
        let s = store(10);
        let now = Instant::now();
        let id = started(&s, "x", now);
        let c = ClientId::new("c");
        assert_eq!(s.redeem(&id, &c, Some(&post("s")), now), Redeemed::Waiting);
        s.due(now + SEC);
        let ping = s
            .polled(
                &id,
                PollResult::Answer {
                    status: 200,
                    body: br#"{"access_token":"t"}"#.to_vec(),
                },
                now + SEC,
            )
            .unwrap();
        assert_eq!(ping.token.expose(), "tok");
        assert_eq!(
            s.redeem(&id, &ClientId::new("d"), Some(&post("s")), now),
            Redeemed::WrongClient
        );
        assert_eq!(
            s.redeem(&id, &c, Some(&post("t")), now),
            Redeemed::WrongCredential
        );
        assert_eq!(
            s.redeem(&id, &c, Some(&Credential::Basic("s".into())), now),
            Redeemed::WrongCredential
        );
        assert_eq!(s.redeem(&id, &c, None, now), Redeemed::WrongCredential);
        match s.redeem(&id, &c, Some(&post("s")), now) {
            Redeemed::Answer(200, body) => assert_eq!(body.expose(), br#"{"access_token":"t"}"#),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.redeem(&id, &c, Some(&post("s")), now), Redeemed::Used);
        assert_eq!(
            s.redeem(&AuthReqId::new("y"), &c, Some(&post("s")), now),
            Redeemed::NotPing
        );
    }

    #[test]
    fn everything_goes_at_expiry() {
        let s = store(10);
        let now = Instant::now();
        let id = started(&s, "x", now);
        let (due, next) = s.due(now + 10 * SEC);
        assert!(due.is_empty() && next.is_none());
        assert!(s.is_empty());
        assert_eq!(s.waiting(), 0);
        assert_eq!(
            s.redeem(&id, &ClientId::new("c"), Some(&post("s")), now),
            Redeemed::NotPing
        );
    }
}
