//! Ping delivery by two gateway replicas sharing one `redis-server`, in front of
//! node-oidc-provider: one replica polls a request at a time, the other takes it over when
//! the first dies, the client is pinged once and redeems once on the survivor.

use super::redis_store::RedisServer;
use crate::support::*;
use std::time::{Duration, Instant};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "notify-me.0123456789";

/// A replica on `redis`: 1 s intervals, 2 s leases, pinging `client-post` at `receiver`.
fn replica(op: &TestOp, redis: &RedisServer, receiver: &Receiver) -> (Gateway, tempfile::TempDir) {
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n\
         [state]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 300\nfailure_mode = \"closed\"\n\
         [ping]\nkey = \"{KEY}\"\nlease_seconds = 2\n\
         [ping.clients.\"client-post\"]\nnotification_endpoint = \"{}\"\nallow_insecure = true\n",
        redis.url(),
        receiver.url()
    );
    Gateway::with_config(&op.url(), &text)
}

/// When each of the OP's token requests arrived (ms).
fn token_times(op: &TestOp) -> Vec<u64> {
    get(&op.addr(), "/admin/token-log")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect()
}

/// No two of the OP's token requests closer than the 1 s interval: one poller at a time.
fn assert_one_poller(op: &TestOp) {
    let times = token_times(op);
    for pair in times.windows(2) {
        // Redis counts whole milliseconds; allow for that rounding only.
        assert!(
            pair[1] - pair[0] >= 990,
            "two polls within the interval: {times:?}"
        );
    }
}

#[test]
fn a_dead_replicas_ping_request_is_taken_over_and_pinged_once() {
    let op = TestOp::start(&["--interval", "1"]);
    let redis = RedisServer::start();
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (a, dir_a) = replica(&op, &redis, &receiver);
    let (b, _dir_b) = replica(&op, &redis, &receiver);
    let ack = post_form(
        &a.addr(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("client_notification_token", TOKEN),
        ],
        &[],
    );
    let id = auth_req_id(&ack);
    // The client's early poll on B is answered at the edge from the shared record.
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "authorization_pending"),
        "an early poll on the other replica",
        || poll(&b.addr(), POST_CLIENT, &id),
    );

    // A polls (both replicas are up: the OP sees one poll per interval, not two).
    let deadline = Instant::now() + Duration::from_secs(10);
    while op.token_count() < 3 {
        assert!(Instant::now() < deadline, "the gateway does not poll");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_one_poller(&op);

    // A dies (SIGKILL) mid-flow; the user approves; B takes over once A's lease runs out.
    drop(a);
    drop(dir_a);
    let killed_at = Instant::now();
    let before = op.token_count();
    op.approve(&id);
    let got = receiver.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "one ping: {got:?}");
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "auth_req_id": id }));
    assert!(op.token_count() > before, "B polled");
    assert!(
        killed_at.elapsed() < Duration::from_secs(8),
        "taken over within a lease and an interval or two"
    );
    assert_one_poller(&op);

    let tokens = poll(&b.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
    let polls = op.token_count();
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "a second redemption",
        || poll(&b.addr(), POST_CLIENT, &id),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.requests().len(), 1, "still one ping");
    assert_eq!(op.token_count(), polls, "no poll after the answer");
    let log = b.log();
    for secret in [TOKEN, POST_CLIENT.1, &id] {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
}

#[test]
fn a_redemption_lands_on_either_replica_once() {
    let op = TestOp::start(&["--interval", "1"]);
    let redis = RedisServer::start();
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (a, _da) = replica(&op, &redis, &receiver);
    let (b, _db) = replica(&op, &redis, &receiver);
    let ack = post_form(
        &b.addr(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("client_notification_token", TOKEN),
        ],
        &[],
    );
    let id = auth_req_id(&ack);
    op.deny(&id);
    assert_eq!(receiver.wait_for(1, Duration::from_secs(8)).len(), 1);
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (401, "invalid_client"),
        "a wrong secret on the other replica",
        || poll(&a.addr(), (POST_CLIENT.0, "post-secret-wrong"), &id),
    );
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "another client",
        || poll(&a.addr(), OTHER_CLIENT, &id),
    );
    let denied = poll(&a.addr(), POST_CLIENT, &id);
    assert_oauth_error(&denied, 400, "access_denied", "the held answer, on A");
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "a second redemption, on B",
        || poll(&b.addr(), POST_CLIENT, &id),
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(receiver.requests().len(), 1);
}
