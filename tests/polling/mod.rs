//! Poll enforcement per `auth_req_id`: the enforced interval, `slow_down`, terminal answers
//! at the edge, expiry, ids the gateway never saw (`state.rs`), the tracking limits, the
//! vendor cancel call, and a real client library's polling (`openid_client.rs`).

mod openid_client;
mod state;

use crate::support::*;
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn the_ack_carries_the_enforced_interval() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_expires_in_seconds = 120\n");
    let ack = initiate(&gw.addr(), POST_CLIENT, "alice").json();
    assert_eq!(
        ack["interval"], 5,
        "node-oidc-provider sends none; the gateway adds 5"
    );
    assert_eq!(ack["expires_in"], 120, "the OP's 600 is clamped");
}

#[test]
fn too_fast_polls_get_slow_down_and_never_reach_the_op() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    for expect in ["10 s", "15 s", "20 s"] {
        let r = assert_refused_at_edge(&op, OpCount::Token, (400, "slow_down"), expect, || {
            poll(&gw.addr(), POST_CLIENT, &id)
        });
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(expect),
            "{}",
            r.text()
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    assert_eq!(op.token_count(), 1, "only the first poll reached the OP");
    gw.metrics_containing(&[
        r#"ciba_gateway_local_answers_total{endpoint="token",error="slow_down"} 3"#,
        "ciba_gateway_tracked_auth_req_ids 1",
    ]);
}

#[test]
fn a_well_behaved_client_gets_its_tokens_once() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    op.approve(&id);
    let tokens = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
    let after = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(after.error(), "invalid_grant");
    assert_eq!(
        op.token_count(),
        1,
        "the used-up id never reached the OP again"
    );
}

#[test]
fn a_denied_request_ends_its_state() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    op.deny(&id);
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "access_denied");
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "invalid_grant");
    assert_eq!(op.token_count(), 1);
}

#[test]
fn an_expired_request_is_answered_locally() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_expires_in_seconds = 1\n");
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    // Expiry is a deadline the gateway enforces: wait until it has surely passed.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "expired_token"),
        "expired",
        || poll(&gw.addr(), POST_CLIENT, &id),
    );
    assert_eq!(op.token_count(), 0);
}

#[test]
fn another_client_gets_invalid_grant_and_the_owner_is_unaffected() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    for _ in 0..3 {
        assert_refused_at_edge(&op, OpCount::Token, (400, "invalid_grant"), "other", || {
            poll(&gw.addr(), OTHER_CLIENT, &id)
        });
    }
    // CIBA 10.1: a poll must authenticate its client; one that names none is refused.
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (401, "invalid_client"),
        "anonymous",
        || {
            post_form(
                &gw.addr(),
                "/token",
                &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
                &[],
            )
        },
    );
    assert_eq!(op.token_count(), 0);
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    assert_eq!(op.token_count(), 1);
}

#[test]
fn unknown_ids_are_forwarded_by_default() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let r = poll(&gw.addr(), POST_CLIENT, "never-issued");
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(
        op.token_count(),
        1,
        "forwarded: a restarted gateway keeps flows working"
    );
}

#[test]
fn unknown_ids_can_be_rejected_locally() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nunknown_auth_req_id = \"reject\"\n");
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "unknown",
        || poll(&gw.addr(), POST_CLIENT, "never-issued"),
    );
    assert_eq!(op.token_count(), 0);
}

#[test]
fn simultaneous_polls_reach_the_op_once() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (b, addr, id) = (barrier.clone(), gw.addr(), id.clone());
            std::thread::spawn(move || {
                b.wait();
                poll(&addr, POST_CLIENT, &id).error()
            })
        })
        .collect();
    let errors: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        errors
            .iter()
            .filter(|e| *e == "authorization_pending")
            .count(),
        1,
        "{errors:?}"
    );
    assert_eq!(
        errors.iter().filter(|e| *e == "slow_down").count(),
        n - 1,
        "{errors:?}"
    );
    assert_eq!(op.token_count(), 1);
}

#[test]
fn a_client_over_its_tracking_limit_gets_429() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_tracked_per_client = 2\n");
    auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "a"));
    auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "b"));
    let full = (429, "temporarily_unavailable");
    let r = assert_refused_at_edge(&op, OpCount::Backchannel, full, "third", || {
        initiate(&gw.addr(), POST_CLIENT, "c")
    });
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(op.backchannel_count(), 2);
    auth_req_id(&initiate(&gw.addr(), OTHER_CLIENT, "d"));
}

#[test]
fn the_vendor_cancel_call_ends_the_state() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(
        &op.url(),
        "[polling]\nunknown_auth_req_id = \"reject\"\ncancel_method = \"DELETE\"\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n",
    );
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    let refused = raw(
        &gw.addr(),
        b"DELETE /op/api/v1/ciba/not-an-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 404, "the OP refused an unknown id");
    let cancel = raw(
        &gw.addr(),
        format!("DELETE /op/api/v1/ciba/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(cancel.status, 204);
    // State dropped: the id is now unknown, and rejected.
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "cancelled",
        || poll(&gw.addr(), POST_CLIENT, &id),
    );
    assert_eq!(op.token_count(), 0);
}
