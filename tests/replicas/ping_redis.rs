//! The ping store in Redis (`PingRedis`, and `Pings` over it) against a real
//! `redis-server`: leases, takeover, the one ping, the one redemption, TTLs, nothing in clear.
//! Time is moved with `advance_clock_for_tests`, as in `redis_store.rs`.

use std::time::{Duration, Instant};

use ciba_gateway::ciba::ids::{AuthReqId, ClientId, Secret};
use ciba_gateway::ciba::ping::Credential;
use ciba_gateway::state::ping_redis::{Claim, Outcome, PingRedis, Recorded, Taken};
use ciba_gateway::state::ping_store::{PollResult, Redeemed};
use ciba_gateway::state::pings::Pings;
use ciba_gateway::state::redis_store::{FailureMode, RedisConfig};
use ciba_gateway::state::seal::{Sealed, Sealer};

use super::redis_store::RedisServer;

const S: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(3);
const PREFIX: &str = "tp:";

fn cfg(server: &RedisServer, failure_mode: FailureMode) -> RedisConfig {
    RedisConfig {
        url: server.url(),
        key_prefix: PREFIX.into(),
        timeout: Duration::from_millis(300),
        failure_mode,
    }
}

async fn replica(server: &RedisServer, owner: &str) -> PingRedis {
    PingRedis::connect(&cfg(server, FailureMode::Open), LEASE, owner.into())
        .await
        .expect("connect")
}

fn sealed(b: &[u8]) -> Sealed {
    Sealed::from_bytes(b)
}

fn tag() -> ciba_gateway::state::seal::CredentialTag {
    ciba_gateway::state::seal::CredentialTag::from_bytes(&[9; 32]).unwrap()
}

async fn started(r: &PingRedis, id: &str) -> AuthReqId {
    let id = AuthReqId::new(id);
    let fresh = r
        .start(
            &id,
            &ClientId::new("c"),
            &tag(),
            &sealed(b"cred"),
            &sealed(b"tok"),
            2 * S,
            60 * S,
        )
        .await
        .unwrap();
    assert!(fresh);
    id
}

/// Moves both replicas' view of Redis time forward together.
fn advance(rs: &[&PingRedis], by: Duration) {
    for r in rs {
        r.advance_clock_for_tests(by);
    }
}

fn poll_now(claims: &[(AuthReqId, Claim)], id: &AuthReqId) -> bool {
    claims
        .iter()
        .any(|(i, c)| i == id && matches!(c, Claim::PollNow { .. }))
}

#[tokio::test]
async fn one_replica_holds_a_request_and_another_takes_it_over_when_its_lease_runs_out() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server, "a").await, replica(&server, "b").await);
    let id = started(&a, "x").await;
    assert!(b.due(&[], 10).await.unwrap().is_empty(), "A holds it");
    advance(&[&a, &b], 2 * S);
    assert!(
        b.due(&[], 10).await.unwrap().is_empty(),
        "due, but A's lease runs until one lease after"
    );
    let claims = a.due(std::slice::from_ref(&id), 10).await.unwrap();
    match &claims[..] {
        [(i, Claim::PollNow { client, credential })] => {
            assert_eq!((i, client.as_str()), (&id, "c"));
            assert_eq!(credential.as_bytes(), b"cred");
        }
        other => panic!("{other:?}"),
    }
    // A renews while its poll is in flight: B finds nothing for longer than one lease.
    advance(&[&a, &b], 2 * S);
    assert!(a.renew(&id).await.unwrap());
    advance(&[&a, &b], 2 * S);
    assert!(b.due(&[], 10).await.unwrap().is_empty(), "renewed");
    assert_eq!(
        a.polled(&id, &Outcome::Pending).await.unwrap(),
        Recorded::Again(2 * S)
    );
    // A dies here. One lease after its next poll fell due, B takes it over.
    advance(&[&a, &b], 2 * S + LEASE - Duration::from_millis(100));
    assert!(b.due(&[], 10).await.unwrap().is_empty());
    advance(&[&a, &b], Duration::from_millis(200));
    let claims = b.due(&[], 10).await.unwrap();
    assert!(poll_now(&claims, &id), "{claims:?}");
    // A was only slow: it learns the request is no longer its own, and its report is ignored.
    let claims = a.due(std::slice::from_ref(&id), 10).await.unwrap();
    assert_eq!(claims, vec![(id.clone(), Claim::Lost)]);
    assert!(!a.renew(&id).await.unwrap());
    assert_eq!(
        a.polled(&id, &Outcome::Pending).await.unwrap(),
        Recorded::Nothing
    );
    assert_eq!(
        b.polled(&id, &Outcome::SlowDown).await.unwrap(),
        Recorded::Again(7 * S),
        "slow_down adds 5 s"
    );
}

#[tokio::test]
async fn the_answer_is_held_once_and_its_ping_claimed_once_and_redeemed_once() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server, "a").await, replica(&server, "b").await);
    let id = started(&a, "x").await;
    assert!(!a
        .start(
            &id,
            &ClientId::new("d"),
            &tag(),
            &sealed(b"other"),
            &sealed(b"other"),
            S,
            S
        )
        .await
        .unwrap());
    assert_eq!(b.take(&id).await.unwrap(), Taken::Waiting);
    let holder = b.holder(&id).await.unwrap().unwrap();
    assert_eq!((holder.client.as_str(), holder.tag), ("c", tag()));
    // Both replicas hold an answer (A's lease ran out mid-poll): the first one wins.
    let (oa, ob) = (
        Outcome::Answer(sealed(b"answer-a")),
        Outcome::Answer(sealed(b"answer-b")),
    );
    let (ra, rb) = tokio::join!(a.polled(&id, &oa), b.polled(&id, &ob));
    let recorded = [ra.unwrap(), rb.unwrap()];
    let pings: Vec<_> = recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Answered {
                token,
                client,
                expires_in,
            } => {
                assert_eq!(client.as_str(), "c");
                assert!(*expires_in > 50 * S);
                Some(token.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(pings, vec![Some(sealed(b"tok"))], "{recorded:?}");
    assert!(a.due(std::slice::from_ref(&id), 10).await.unwrap()[0].1 == Claim::Lost);
    let takes = futures_take(&a, &b, &id).await;
    let answers: Vec<_> = takes
        .iter()
        .filter(|t| matches!(t, Taken::Answer(_)))
        .collect();
    assert_eq!(answers.len(), 1, "{takes:?}");
    assert!(takes.iter().filter(|t| **t == Taken::Used).count() == 7);
    assert_eq!(a.take(&AuthReqId::new("nope")).await.unwrap(), Taken::Gone);
}

/// Eight simultaneous redemptions, alternating replicas.
async fn futures_take(a: &PingRedis, b: &PingRedis, id: &AuthReqId) -> Vec<Taken> {
    let mut set = tokio::task::JoinSet::new();
    for n in 0..8 {
        let r = if n % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        set.spawn(async move { r.take(&id).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(t) = set.join_next().await {
        out.push(t.unwrap());
    }
    out
}

fn all_keys(server: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query(&mut server.raw())
        .unwrap()
}

#[tokio::test]
async fn redis_holds_sealed_values_only_every_key_expires_and_the_facade_redeems_once() {
    let server = RedisServer::start();
    let key = Secret::new([7; 32]);
    let a = Pings::redis(
        cfg(&server, FailureMode::Closed),
        Sealer::new(&key),
        10,
        LEASE,
    );
    let b = Pings::redis(
        cfg(&server, FailureMode::Closed),
        Sealer::new(&key),
        10,
        LEASE,
    );
    let credential = Credential::Post {
        client_id: "c".into(),
        secret: "the-client-secret".into(),
    };
    let id = AuthReqId::new("id-1");
    let client = ClientId::new("c");
    let slot = a.reserve().await.unwrap().unwrap();
    let now = Instant::now();
    a.start(
        slot,
        id.clone(),
        client.clone(),
        &credential,
        &Secret::new("the-notification-token".into()),
        S,
        30 * S,
        now,
    )
    .await;
    assert_eq!(a.len(), 1);
    let mut con = server.raw();
    for k in all_keys(&server) {
        let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut con).unwrap();
        assert!(ttl > 0 && ttl <= 30_000, "{k} has no TTL: {ttl}");
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut con).unwrap();
        for secret in ["the-client-secret", "the-notification-token"] {
            assert!(
                !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{k} holds {secret} in clear"
            );
        }
    }
    // B (no lease) finds nothing to poll; A polls when due, with the credential opened.
    assert!(b.due(now + 2 * S, 16).await.0.is_empty());
    assert!(a.due(now, 16).await.0.is_empty());
    // The schedule is Redis's: the poll falls due one real interval after the start.
    tokio::time::sleep(S).await;
    let (due, _) = a.due(Instant::now(), 16).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].credential.expose(), &credential);
    assert_eq!(
        b.redeem(&id, &client, Some(&credential), now)
            .await
            .unwrap(),
        Redeemed::Waiting
    );
    let ping = a
        .polled(
            &id,
            PollResult::Answer {
                status: 200,
                body: br#"{"access_token":"t"}"#.to_vec(),
            },
            now + S,
        )
        .await
        .expect("a ping to send");
    assert_eq!(ping.token.expose(), "the-notification-token");
    assert!(a.is_empty());
    let wrong = Credential::Post {
        client_id: "c".into(),
        secret: "wrong".into(),
    };
    assert_eq!(
        b.redeem(&id, &client, Some(&wrong), now).await.unwrap(),
        Redeemed::WrongCredential
    );
    assert_eq!(
        b.redeem(&id, &ClientId::new("d"), Some(&credential), now)
            .await
            .unwrap(),
        Redeemed::WrongClient
    );
    match b
        .redeem(&id, &client, Some(&credential), now)
        .await
        .unwrap()
    {
        Redeemed::Answer(200, body) => assert_eq!(body.expose(), br#"{"access_token":"t"}"#),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.redeem(&id, &client, Some(&credential), now)
            .await
            .unwrap(),
        Redeemed::Used
    );
    assert_eq!(
        a.redeem(&AuthReqId::new("other"), &client, Some(&credential), now)
            .await
            .unwrap(),
        Redeemed::NotPing
    );
}

#[tokio::test]
async fn the_queue_bound_counts_every_replica_and_redis_down_follows_the_failure_mode() {
    let mut server = RedisServer::start();
    let key = Secret::new([7; 32]);
    let make = |mode| Pings::redis(cfg(&server, mode), Sealer::new(&key), 2, LEASE);
    let (a, b, open) = (
        make(FailureMode::Closed),
        make(FailureMode::Closed),
        make(FailureMode::Open),
    );
    let credential = Credential::Basic("s".into());
    for (n, r) in [&a, &b].into_iter().enumerate() {
        let slot = r.reserve().await.unwrap().unwrap();
        r.start(
            slot,
            AuthReqId::new(&format!("q{n}")),
            ClientId::new("c"),
            &credential,
            &Secret::new("t".into()),
            S,
            30 * S,
            Instant::now(),
        )
        .await;
    }
    assert!(
        a.reserve().await.unwrap().is_err(),
        "two waiting on A and B"
    );
    assert!(open.reserve().await.unwrap().is_err());
    server.stop();
    let id = AuthReqId::new("q0");
    let client = ClientId::new("c");
    assert!(a.reserve().await.is_err(), "closed: refused");
    assert!(a
        .redeem(&id, &client, Some(&credential), Instant::now())
        .await
        .is_err());
    assert!(open.reserve().await.unwrap().is_ok(), "open: let through");
    assert_eq!(
        open.redeem(&id, &client, Some(&credential), Instant::now())
            .await
            .unwrap(),
        Redeemed::NotPing,
        "open: left to the poll rules"
    );
}
