//! Replicas sharing poll state in Redis: through the real binary here, and the Redis store
//! itself against a real `redis-server` (`redis_store.rs`).

mod bridge;
mod ping;
mod ping_redis;
pub(crate) mod redis_store;

use crate::support::*;
use redis_store::RedisServer;

fn replica(op: &TestOp, redis: &RedisServer, failure_mode: &str) -> (Gateway, tempfile::TempDir) {
    let text = format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 300\nfailure_mode = \"{failure_mode}\"\n",
        redis.url()
    );
    Gateway::with_config(&op.url(), &text)
}

#[test]
fn a_client_alternating_between_replicas_still_gets_slow_down() {
    let op = TestOp::start(&[]);
    let redis = RedisServer::start();
    let (a, _da) = replica(&op, &redis, "closed");
    let (b, _db) = replica(&op, &redis, "closed");
    let id = auth_req_id(&initiate(&a.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        poll(&b.addr(), POST_CLIENT, &id).error(),
        "authorization_pending",
        "B knows A's ack"
    );
    assert_eq!(poll(&a.addr(), POST_CLIENT, &id).error(), "slow_down");
    assert_eq!(poll(&b.addr(), POST_CLIENT, &id).error(), "slow_down");
    assert_eq!(poll(&b.addr(), OTHER_CLIENT, &id).error(), "invalid_grant");
    assert_eq!(op.token_count(), 1, "only one poll reached the OP");
    a.metrics_containing(&["ciba_gateway_store_duration_seconds_count{op=\"poll\"}"]);
}

#[test]
fn a_restarted_replica_keeps_enforcing() {
    let op = TestOp::start(&[]);
    let redis = RedisServer::start();
    let (first, d1) = replica(&op, &redis, "closed");
    let id = auth_req_id(&initiate(&first.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        poll(&first.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    drop(first);
    drop(d1);
    let (second, _d2) = replica(&op, &redis, "closed");
    assert_eq!(poll(&second.addr(), POST_CLIENT, &id).error(), "slow_down");
    assert_eq!(op.token_count(), 1);
}

#[test]
fn redis_down_follows_the_failure_mode_and_recovers() {
    let op = TestOp::start(&[]);
    let mut redis = RedisServer::start();
    let (closed, _dc) = replica(&op, &redis, "closed");
    let (open, _do) = replica(&op, &redis, "open");
    let id = auth_req_id(&initiate(&closed.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        poll(&closed.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    redis.stop();
    let refused = poll(&closed.addr(), POST_CLIENT, &id);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error(), "temporarily_unavailable");
    assert!(refused.header("retry-after").is_some());
    let before = op.token_count();
    let forwarded = poll(&open.addr(), POST_CLIENT, &id);
    assert_eq!(
        forwarded.error(),
        "authorization_pending",
        "open: forwarded to the OP"
    );
    assert_eq!(op.token_count(), before + 1);
    open.metrics_containing(&["ciba_gateway_store_errors_total{op=\"poll\"}"]);
    // Redis comes back (empty: it kept nothing on disk); the gateways reconnect by themselves.
    redis.spawn();
    // Reconnection is automatic but not instant: retry, bounded, until Redis answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let ack = loop {
        let r = initiate(&closed.addr(), POST_CLIENT, "bob");
        if r.status != 503 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let id2 = auth_req_id(&ack);
    assert_eq!(
        poll(&closed.addr(), POST_CLIENT, &id2).error(),
        "authorization_pending"
    );
    assert_eq!(poll(&open.addr(), POST_CLIENT, &id2).error(), "slow_down");
}
