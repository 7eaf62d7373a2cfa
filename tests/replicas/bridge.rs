//! The PAR bridge on two replicas sharing one `redis-server`: the request started on one,
//! the user's browser back on the other, the client polling either; a state is taken once
//! and the tokens are handed out once across replicas; Redis holds nothing in clear.

use super::redis_store::RedisServer;
use crate::bridge::{
    authorization_url, bridge_config, bridge_op, browse, path_and_query, poll_basic, start,
};
use crate::support::*;

fn replica(op: &TestOp, redis: &RedisServer) -> (Gateway, tempfile::TempDir) {
    let text = format!(
        "{}[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 500\nfailure_mode = \"closed\"\n",
        bridge_config(""),
        redis.url()
    );
    Gateway::with_config(&op.url(), &text)
}

#[test]
fn started_on_one_replica_returned_to_the_other_polled_on_either() {
    let op = bridge_op();
    let redis = RedisServer::start();
    let (a, _da) = replica(&op, &redis);
    let (b, _db) = replica(&op, &redis);
    let id = auth_req_id(&start(
        &a.addr(),
        POST_CLIENT,
        &[("binding_message", "AB-12")],
    ));
    assert_eq!(
        poll_basic(&b.addr(), POST_CLIENT, &id).error(),
        "authorization_pending",
        "B knows A's request"
    );
    assert_eq!(
        poll_basic(&a.addr(), POST_CLIENT, &id).error(),
        "slow_down",
        "the poll rules are shared"
    );
    // B hands out the URL A made.
    let url = authorization_url(&b.addr(), POST_CLIENT, &id);
    let stopped = browse(&url, &["--stop-before-callback"]);
    let callback = path_and_query(stopped["callback"].as_str().unwrap());

    // Nothing in Redis is readable: no verifier, nonce, secret, URL or binding message.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let mut dump = Vec::new();
    for k in &keys {
        let kind: String = redis::cmd("TYPE").arg(k).query(&mut con).unwrap();
        if kind == "hash" {
            let fields: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(k).query(&mut con).unwrap();
            fields.into_iter().for_each(|f| dump.extend(f));
        } else if kind == "string" {
            let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut con).unwrap();
            dump.extend(v);
        }
        let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut con).unwrap();
        assert!(ttl > 0, "{k} expires");
    }
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    for secret in [POST_CLIENT.1, "AB-12", "request_uri", state, "alice"] {
        assert!(
            !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in Redis"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains(state)),
        "no state in key names"
    );

    // The browser's return lands on B; a replay on A changes nothing.
    let back = get(&b.addr(), &callback);
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(back.text().contains("AB-12"));
    assert_eq!(
        get(&a.addr(), &callback).status,
        400,
        "the state was taken on B"
    );
    assert_eq!(op.token_count(), 1);

    let tokens = poll_basic(&a.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_eq!(
        poll_basic(&b.addr(), POST_CLIENT, &id).error(),
        "invalid_grant"
    );
    assert_eq!(
        poll_basic(&a.addr(), POST_CLIENT, &id).error(),
        "invalid_grant"
    );
}

#[test]
fn concurrent_returns_and_redemptions_on_two_replicas_succeed_once() {
    let op = bridge_op();
    let redis = RedisServer::start();
    let (a, _da) = replica(&op, &redis);
    let (b, _db) = replica(&op, &redis);
    let id = auth_req_id(&start(&a.addr(), POST_CLIENT, &[]));
    let url = authorization_url(&a.addr(), POST_CLIENT, &id);
    let callback = path_and_query(
        browse(&url, &["--stop-before-callback"])["callback"]
            .as_str()
            .unwrap(),
    );
    let returns: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let addr = if i % 2 == 0 { a.addr() } else { b.addr() };
                let cb = callback.clone();
                s.spawn(move || get(&addr, &cb).status)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        returns.iter().filter(|s| **s == 200).count(),
        1,
        "{returns:?}"
    );
    assert_eq!(op.token_count(), 1);
    let polls: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let addr = if i % 2 == 0 { a.addr() } else { b.addr() };
                let id = id.clone();
                s.spawn(move || poll_basic(&addr, POST_CLIENT, &id).status)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(polls.iter().filter(|s| **s == 200).count(), 1, "{polls:?}");
}
