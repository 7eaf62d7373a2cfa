//! `RedisStore` against a real `redis-server` started per test on a free loopback port.
//!
//! Time is moved with `advance_clock_for_tests` (a skew added to the Redis server's clock)
//! rather than by sleeping, so the transitions are exact and the file runs in seconds.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ciba_gateway::ciba::ids::{AuthReqId, ClientId};
use ciba_gateway::ciba::polling::{AckError, OpVerdict, PollDecision, PollPolicy};
use ciba_gateway::state::poll_store::{FullScope, Polled, StoreLimits};
use ciba_gateway::state::redis_store::{
    FailureMode, RedisConfig, RedisStore, StoreErrorKind, MAX_KEY_PART,
};

const S: Duration = Duration::from_secs(1);
const PREFIX: &str = "t:";

/// A `redis-server` owned by one test, killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        // Bind-and-release is racy in principle, but every test asks the OS for its own port.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut s = RedisServer { port, child: None };
        s.spawn();
        s
    }

    /// (Re)starts the server on its port.
    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it: apt-get install redis-server")
            });
        self.child = Some(child);
        self.wait_for_ping();
    }

    fn wait_for_ping(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Five seconds of grace after expiry, twenty of memory for learned answers.
const GRACE: Duration = Duration::from_secs(5);

fn policy() -> PollPolicy {
    PollPolicy {
        min_interval: S,
        tolerance: Duration::ZERO,
        expired_grace: GRACE,
        remember: 20 * S,
        ..PollPolicy::default()
    }
}

fn cfg(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        url: server.url(),
        key_prefix: PREFIX.into(),
        timeout: Duration::from_millis(200),
        failure_mode: FailureMode::Open,
    }
}

async fn store(server: &RedisServer) -> RedisStore {
    store_with(server, StoreLimits::default()).await
}

async fn store_with(server: &RedisServer, limits: StoreLimits) -> RedisStore {
    RedisStore::connect(cfg(server), policy(), limits)
        .await
        .expect("connect")
}

fn id(s: &str) -> AuthReqId {
    AuthReqId::new(s)
}

fn client(s: &str) -> ClientId {
    ClientId::new(s)
}

fn keys(server: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query(&mut server.raw())
        .unwrap()
}

/// The remaining TTL of a key (without the prefix), in ms; negative for none.
fn ttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(format!("{PREFIX}{key}"))
        .query(&mut server.raw())
        .unwrap()
}

fn entry(server: &RedisServer, id: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{PREFIX}r:{id}"))
        .query(&mut server.raw())
        .unwrap();
    h.sort();
    h
}

fn slow_down(secs: u32) -> Option<PollDecision> {
    Some(PollDecision::SlowDown {
        interval: secs * S,
        retry_after: Duration::ZERO,
    })
}

/// A poll that learns nothing, its `retry_after` zeroed so decisions compare by kind.
async fn poll(st: &RedisStore, a: &AuthReqId, c: &ClientId) -> Option<PollDecision> {
    match st.poll(a, c, false).await.unwrap() {
        Polled::Decided(PollDecision::SlowDown { interval, .. }) => Some(PollDecision::SlowDown {
            interval,
            retry_after: Duration::ZERO,
        }),
        Polled::Decided(d) => Some(d),
        Polled::Unknown => None,
        Polled::Full(f) => panic!("full: {f:?}"),
    }
}

/// The OP gave `a` a terminal answer; whether the store knew it (for its owner `c1`).
async fn finish(st: &RedisStore, a: &AuthReqId) -> bool {
    st.report(a, &client("c1"), OpVerdict::Ended).await.unwrap()
}

#[tokio::test]
async fn every_transition_matches_the_in_memory_rules() {
    let server = RedisServer::start();
    let st = store(&server).await;
    let (a, c) = (id("req-1"), client("c1"));

    // Unknown ids are answered without creating anything.
    assert_eq!(poll(&st, &a, &c).await, None);
    assert!(!st.is_tracked(&a).await.unwrap());
    assert!(keys(&server).is_empty());

    assert_eq!(
        st.record_ack(a.clone(), c.clone(), None, 0).await.unwrap(),
        Err(AckError::NoExpiry)
    );
    // The OP's 1 s is at the policy minimum; 30 s of lifetime.
    let ack = st
        .record_ack(a.clone(), c.clone(), Some(1), 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ack.interval, ack.expires_in), (S, 30 * S));
    assert!(st.is_tracked(&a).await.unwrap());
    assert_eq!(st.len().await.unwrap(), 1);

    // First poll is forwarded even immediately; the next one too soon slows down.
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Forward));
    assert_eq!(poll(&st, &a, &c).await, slow_down(6));
    // The old interval no longer suffices, the new one does.
    st.advance_clock_for_tests(5 * S);
    assert_eq!(poll(&st, &a, &c).await, slow_down(11));
    st.advance_clock_for_tests(11 * S);
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Forward));

    // Another client is refused and changes nothing.
    let before = entry(&server, "req-1");
    for _ in 0..5 {
        assert_eq!(
            poll(&st, &a, &client("c2")).await,
            Some(PollDecision::WrongClient)
        );
    }
    assert_eq!(entry(&server, "req-1"), before);

    // A terminal answer leaves a tombstone until the entry goes.
    assert!(finish(&st, &a).await);
    st.advance_clock_for_tests(11 * S);
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Ended));
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Ended));
    assert_eq!(st.len().await.unwrap(), 1);
    st.advance_clock_for_tests(3 * S); // 30 s after the ack
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Ended));
    st.advance_clock_for_tests(GRACE);
    assert_eq!(st.len().await.unwrap(), 0);
    assert_eq!(
        poll(&st, &a, &client("c2")).await,
        Some(PollDecision::WrongClient),
        "a thief learns nothing"
    );

    // An expired id is answered expired_token, again and again, through the grace period.
    let e = id("req-3");
    st.record_ack(e.clone(), c.clone(), None, 10)
        .await
        .unwrap()
        .unwrap();
    st.advance_clock_for_tests(10 * S);
    for _ in 0..3 {
        assert_eq!(poll(&st, &e, &c).await, Some(PollDecision::Expired));
    }
    assert!(ttl(&server, "r:req-3") > 0, "kept, with a TTL");

    // Cancel forgets at once.
    let b = id("req-2");
    st.record_ack(b.clone(), c.clone(), Some(7), 60)
        .await
        .unwrap()
        .unwrap();
    assert!(st.cancel(&b).await.unwrap());
    assert!(!st.cancel(&b).await.unwrap());
    assert_eq!(poll(&st, &b, &c).await, None);
    assert!(!keys(&server).contains(&format!("{PREFIX}r:req-2")));
}

#[tokio::test]
async fn a_new_ack_replaces_the_old_entry_and_its_counts() {
    let server = RedisServer::start();
    let limits = StoreLimits {
        max_tracked: 10,
        max_per_client: 1,
    };
    let st = store_with(&server, limits).await;
    let (a, c1, c2) = (id("req-1"), client("c1"), client("c2"));
    st.record_ack(a.clone(), c1.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poll(&st, &a, &c1).await, Some(PollDecision::Forward));
    st.record_ack(a.clone(), c2.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();
    // Fresh state for the new owner; the old owner's slot is free again.
    assert_eq!(poll(&st, &a, &c2).await, Some(PollDecision::Forward));
    assert_eq!(poll(&st, &a, &c1).await, Some(PollDecision::WrongClient));
    assert_eq!(st.admit(&c1).await.unwrap(), Ok(()));
    assert_eq!(st.len().await.unwrap(), 1);
}

#[tokio::test]
async fn two_replicas_share_one_state() {
    let server = RedisServer::start();
    let (ra, rb) = (store(&server).await, store(&server).await);
    let (a, c) = (id("req-1"), client("c1"));
    ra.record_ack(a.clone(), c.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poll(&ra, &a, &c).await, Some(PollDecision::Forward));
    // No interval from the OP: the spec's 5 s, plus 5 s.
    assert_eq!(poll(&rb, &a, &c).await, slow_down(10));
    assert!(finish(&rb, &a).await);
    assert_eq!(poll(&ra, &a, &c).await, Some(PollDecision::Ended));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_across_replicas_forward_exactly_once() {
    let server = RedisServer::start();
    let (ra, rb) = (store(&server).await, store(&server).await);
    let c = client("c1");
    for round in 0..5 {
        let a = id(&format!("req-{round}"));
        ra.record_ack(a.clone(), c.clone(), None, 60)
            .await
            .unwrap()
            .unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let st = if n % 2 == 0 { ra.clone() } else { rb.clone() };
                let (a, c, barrier) = (a.clone(), c.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    poll(&st, &a, &c).await
                })
            })
            .collect();
        let mut forwarded = 0;
        for t in tasks {
            match t.await.unwrap() {
                Some(PollDecision::Forward) => forwarded += 1,
                Some(PollDecision::SlowDown { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(forwarded, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_restarted_replica_enforces_what_an_old_one_wrote() {
    let server = RedisServer::start();
    let (a, c) = (id("req-1"), client("c1"));
    {
        let old = store(&server).await;
        old.record_ack(a.clone(), c.clone(), None, 60)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(poll(&old, &a, &c).await, Some(PollDecision::Forward));
    }
    let new = store(&server).await;
    assert!(new.is_tracked(&a).await.unwrap());
    assert_eq!(poll(&new, &a, &c).await, slow_down(10));
}

#[tokio::test]
async fn admit_enforces_per_client_and_total_limits_until_expiry() {
    let server = RedisServer::start();
    let limits = StoreLimits {
        max_tracked: 3,
        max_per_client: 2,
    };
    let st = store_with(&server, limits).await;
    let (c1, c2, c3) = (client("c1"), client("c2"), client("c3"));
    for n in 0..2 {
        assert_eq!(st.admit(&c1).await.unwrap(), Ok(()));
        st.record_ack(id(&format!("a{n}")), c1.clone(), None, 10)
            .await
            .unwrap()
            .unwrap();
    }
    let full = st.admit(&c1).await.unwrap().unwrap_err();
    assert_eq!(full.scope, FullScope::Client);
    assert_eq!(full.retry_after, S);
    assert_eq!(st.admit(&c2).await.unwrap(), Ok(()));
    st.record_ack(id("b0"), c2.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        st.admit(&c3).await.unwrap().unwrap_err().scope,
        FullScope::Total
    );
    // Tombstones still count, and so do expired ids while their expiry is answered; the
    // end of the grace period frees the slots.
    assert!(finish(&st, &id("a0")).await);
    assert!(st.admit(&c1).await.unwrap().is_err());
    st.advance_clock_for_tests(10 * S);
    assert!(st.admit(&c1).await.unwrap().is_err());
    st.advance_clock_for_tests(GRACE);
    assert_eq!(st.admit(&c1).await.unwrap(), Ok(()));
    assert_eq!(st.admit(&c3).await.unwrap(), Ok(()));
    assert_eq!(st.len().await.unwrap(), 1);
}

#[tokio::test]
async fn rate_check_allows_the_burst_then_the_rate() {
    let server = RedisServer::start();
    let (ra, rb) = (store(&server).await, store(&server).await);
    // 10/s, burst 3, shared by both replicas.
    for st in [&ra, &rb, &ra] {
        assert_eq!(st.rate_check("k1", 10, 3).await.unwrap(), Ok(()));
    }
    let wait = rb.rate_check("k1", 10, 3).await.unwrap().unwrap_err();
    assert!(
        wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
    // A refused request does not use up anything; other keys are independent.
    assert!(ra.rate_check("k1", 10, 3).await.unwrap().is_err());
    assert_eq!(ra.rate_check("k2", 10, 3).await.unwrap(), Ok(()));
    ra.advance_clock_for_tests(Duration::from_millis(100));
    assert_eq!(ra.rate_check("k1", 10, 3).await.unwrap(), Ok(()));
    assert!(ra.rate_check("k1", 10, 3).await.unwrap().is_err());
    // A full second refills the whole burst, not more.
    ra.advance_clock_for_tests(S);
    for _ in 0..3 {
        assert_eq!(ra.rate_check("k1", 10, 3).await.unwrap(), Ok(()));
    }
    assert!(ra.rate_check("k1", 10, 3).await.unwrap().is_err());
}

#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::start();
    let st = store(&server).await;
    let c = client("c1");
    for n in 0..5 {
        let a = id(&format!("req-{n}"));
        st.admit(&c).await.unwrap().unwrap();
        st.record_ack(a.clone(), c.clone(), None, 60)
            .await
            .unwrap()
            .unwrap();
        poll(&st, &a, &c).await;
        poll(&st, &a, &c).await;
    }
    finish(&st, &id("req-0")).await;
    st.cancel(&id("req-1")).await.unwrap();
    st.rate_check("rl-key", 5, 2).await.unwrap().unwrap();
    let all = keys(&server);
    // 4 entries (one a tombstone), the client set, the global set, one bucket.
    assert_eq!(all.len(), 7, "{all:?}");
    let mut con = server.raw();
    for k in all {
        let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut con).unwrap();
        assert!(pttl > 0, "{k} has no TTL ({pttl})");
        assert!(pttl <= 90_000, "{k} lives too long ({pttl} ms)");
    }
}

#[tokio::test]
async fn over_long_ids_are_never_stored() {
    let server = RedisServer::start();
    let st = store(&server).await;
    let long = "x".repeat(MAX_KEY_PART + 1);
    let c = client("c1");
    let err = st
        .record_ack(id(&long), c.clone(), None, 60)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::KeyTooLong);
    assert_eq!(poll(&st, &id(&long), &c).await, None);
    assert!(st.rate_check(&long, 1, 1).await.is_err());
    assert!(keys(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_the_same_store_reconnects() {
    let mut server = RedisServer::start();
    let st = store(&server).await;
    let (a, c) = (id("req-1"), client("c1"));
    st.record_ack(a.clone(), c.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();

    server.stop();
    for _ in 0..5 {
        let t0 = Instant::now();
        let err = st.poll(&a, &c, false).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Unavailable | StoreErrorKind::Timeout
            ),
            "{err}"
        );
        // The 200 ms budget plus scheduling slack.
        assert!(t0.elapsed() < Duration::from_millis(500), "{err}");
        assert!(!err.to_string().contains("req-1"));
    }
    assert!(st.len().await.is_err());
    assert!(st.rate_check("k", 1, 1).await.is_err());

    server.spawn();
    // No persistence: the state is gone, but the store works again without a new connect.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match st.poll(&a, &c, false).await {
            Ok(d) => {
                assert_eq!(d, Polled::Unknown);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no reconnect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    st.record_ack(a.clone(), c.clone(), None, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poll(&st, &a, &c).await, Some(PollDecision::Forward));
}

#[tokio::test]
async fn connect_to_nothing_fails_within_the_limit() {
    let server = RedisServer::start();
    let mut cfg = cfg(&server);
    drop(server);
    cfg.timeout = Duration::from_millis(100);
    let t0 = Instant::now();
    let err = match RedisStore::connect(cfg, policy(), StoreLimits::default()).await {
        Ok(_) => panic!("connected to a stopped server"),
        Err(e) => e,
    };
    assert!(t0.elapsed() < Duration::from_millis(1500), "{err}");
}

/// Latency of one poll decision through Redis on loopback, sequential, one connection.
///
/// `cargo test --release --test gateway -- --ignored --nocapture poll_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn poll_latency() {
    let server = RedisServer::start();
    let st = store(&server).await;
    let c = client("bench-client");
    let ids: Vec<_> = (0..100).map(|n| id(&format!("bench-{n:04}"))).collect();
    for a in &ids {
        st.record_ack(a.clone(), c.clone(), None, 600)
            .await
            .unwrap()
            .unwrap();
    }
    for a in &ids {
        poll(&st, a, &c).await; // warm up: scripts loaded, first polls out of the way
    }
    let n = 10_000;
    let mut lat = Vec::with_capacity(n);
    for k in 0..n {
        let t0 = Instant::now();
        let d = st.poll(&ids[k % ids.len()], &c, true).await.unwrap();
        lat.push(t0.elapsed());
        assert!(matches!(d, Polled::Decided(_)));
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "poll via redis, {n} sequential decisions: p50 {:?} p99 {:?} max {:?}",
        pct(50),
        pct(99),
        lat[lat.len() - 1]
    );

    // Throughput: 32 tasks polling at once over the store's one multiplexed connection.
    let tasks = 32;
    let per_task = 1_000;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (st, c, ids) = (st.clone(), c.clone(), ids.clone());
            tokio::spawn(async move {
                for k in 0..per_task {
                    st.poll(&ids[(t * 7 + k) % ids.len()], &c, true)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = t0.elapsed();
    println!(
        "poll via redis, {tasks} concurrent tasks x {per_task}: {:.0} decisions/s",
        (tasks * per_task) as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn unknown_ids_are_probed_once_and_learned_across_replicas() {
    let server = RedisServer::start();
    let limits = StoreLimits {
        max_tracked: 100,
        max_per_client: 5,
    };
    let (ra, rb) = (
        store_with(&server, limits).await,
        store_with(&server, limits).await,
    );
    let (a, c1, c2) = (id("lost-1"), client("c1"), client("c2"));
    let learn = |st: &RedisStore, c: &ClientId| {
        let (st, a, c) = (st.clone(), a.clone(), c.clone());
        async move { st.poll(&a, &c, true).await.unwrap() }
    };
    assert_eq!(learn(&ra, &c1).await, Polled::Decided(PollDecision::Probe));
    // The other replica sees the probe: too soon.
    assert!(matches!(
        learn(&rb, &c1).await,
        Polled::Decided(PollDecision::SlowDown { .. })
    ));
    // Another client's poll of the same id is its own probe, never decided by c1's.
    assert_eq!(learn(&rb, &c2).await, Polled::Decided(PollDecision::Probe));
    assert!(rb.report(&a, &c1, OpVerdict::Pending).await.unwrap());
    // Each store has its own view of time in tests; move both.
    for st in [&ra, &rb] {
        st.advance_clock_for_tests(10 * S);
    }
    assert_eq!(
        learn(&rb, &c1).await,
        Polled::Decided(PollDecision::Forward)
    );
    assert!(ra.report(&a, &c1, OpVerdict::Ended).await.unwrap());
    assert_eq!(learn(&rb, &c1).await, Polled::Decided(PollDecision::Ended));
    assert!(ra.report(&a, &c2, OpVerdict::Expired).await.unwrap());
    assert_eq!(
        learn(&ra, &c2).await,
        Polled::Decided(PollDecision::Expired)
    );
    // The memory of a learned answer is bounded in time (remember plus grace, here plus
    // the 10 s the test moved this store's clock)...
    let pttl = ttl(&server, "u:2:c2:lost-1");
    assert!(pttl > 0 && pttl <= 35_000, "{pttl} ms");
    // ...and spoofed ids in count: the client's share fills up, then 429.
    let mut full = 0;
    for n in 0..20 {
        match ra
            .poll(&id(&format!("spoof-{n}")), &c1, true)
            .await
            .unwrap()
        {
            Polled::Decided(PollDecision::Probe) => {}
            Polled::Full(f) => {
                assert_eq!(f.scope, FullScope::Client);
                full += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(full >= 15, "{full} refused");
    assert_eq!(
        ra.poll(&id("nope"), &c1, false).await.unwrap(),
        Polled::Unknown
    );
}
