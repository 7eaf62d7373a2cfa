//! A CIBA request reaches the OP at most once: when the OP read it and the connection broke,
//! the client gets a JSON 502 and decides itself whether to retry (a second backchannel
//! request would ask the user's device twice).

use crate::support::*;
use std::sync::atomic::Ordering;

const PENDING: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"error\":\"authorization_pending\"}";

#[test]
fn a_backchannel_request_the_op_read_on_a_fresh_connection_is_sent_once() {
    let stub = DroppingStub::closing_at(1, PENDING);
    let (gw, _d) = stub_gateway(&stub.url(), "");
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_oauth_error(&r, 502, "server_error", "fresh backchannel");
    assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_token_poll_the_op_read_on_a_fresh_connection_is_sent_once() {
    let stub = DroppingStub::closing_at(1, PENDING);
    let (gw, _d) = stub_gateway(&stub.url(), "");
    let r = poll(&gw.addr(), POST_CLIENT, "fresh-id");
    assert_oauth_error(&r, 502, "server_error", "fresh poll");
    assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_backchannel_request_the_op_read_on_a_pooled_connection_is_sent_once() {
    let stub = DroppingStub::closing_at(2, PENDING);
    let (gw, _d) = stub_gateway(&stub.url(), "");
    // A first exchange leaves its connection in the pool.
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, "first-id").error(),
        "authorization_pending"
    );
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_oauth_error(&r, 502, "server_error", "pooled backchannel");
    assert_eq!(
        stub.requests.load(Ordering::SeqCst),
        2,
        "the user's device would be asked twice"
    );
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    // The gateway itself carries on: a next request gets a new connection.
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, "later-id").error(),
        "authorization_pending"
    );
    assert_eq!(stub.connections.load(Ordering::SeqCst), 2);
}
