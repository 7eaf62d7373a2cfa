//! When the OP fails: refused, hanging, resetting, answering HTML, dropping a pooled
//! connection. The client always gets an OAuth JSON error in time, and a CIBA request
//! reaches the OP at most once (`never_twice.rs`).

mod never_twice;

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn refused_upstream_is_a_json_503() {
    let dead = refused_url();
    let (gw, _dir) = stub_gateway(&dead, "");
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_oauth_error(&r, 503, "temporarily_unavailable", "r");
    assert!(r.header("retry-after").is_some());
    let other = get(&gw.addr(), "/jwks");
    assert_oauth_error(&other, 503, "temporarily_unavailable", "other");
}

#[test]
fn a_hanging_upstream_times_out_with_a_json_504() {
    let stub = Stub::start(StubMode::Hang);
    let (gw, _dir) = stub_gateway(&stub.url(), "");
    for path in ["/token", "/jwks"] {
        let start = Instant::now();
        let r = if path == "/token" {
            poll(&gw.addr(), POST_CLIENT, "some-id")
        } else {
            get(&gw.addr(), path)
        };
        let took = start.elapsed();
        assert_oauth_error(&r, 504, "temporarily_unavailable", "r");
        assert!(took < Duration::from_secs(5), "{path} took {took:?}");
    }
}

#[test]
fn an_op_that_trickles_its_answer_is_cut_at_the_whole_exchange_deadline() {
    // A byte every 300 ms never lets one read wait the 800 ms read timeout; the exchange as a
    // whole has 2 x 500 ms to connect and 800 ms to answer.
    let stub = Stub::start(StubMode::Trickle(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"error\":\"authorization_pending\"}",
        Duration::from_millis(300),
    ));
    let (gw, _dir) = stub_gateway(&stub.url(), "");
    let start = Instant::now();
    let r = poll(&gw.addr(), POST_CLIENT, "some-id");
    let took = start.elapsed();
    assert_oauth_error(&r, 504, "temporarily_unavailable", "trickled answer");
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_pooled_connection_the_op_dropped_after_reading_is_not_retried() {
    use std::sync::atomic::Ordering;
    let stub = DroppingStub::start(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"error\":\"authorization_pending\"}",
    );
    let (gw, _dir) = stub_gateway(&stub.url(), "");
    let first = poll(&gw.addr(), POST_CLIENT, "some-id");
    assert_oauth_error(&first, 400, "authorization_pending", "first");
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    // The second poll goes out on the pooled connection; the stub reads it whole and
    // drops the connection. The OP may have acted on it, so it is not sent again.
    let second = poll(&gw.addr(), POST_CLIENT, "other-id");
    assert_oauth_error(&second, 502, "server_error", "second");
    assert_eq!(stub.requests.load(Ordering::SeqCst), 2);
    assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
}

/// Interim answers before the OP's final one (`100 Continue` unasked, `103 Early Hints`) are
/// read past; a `101` or an endless run of them is a bad answer, never a crash.
#[test]
fn interim_answers_from_the_op_are_read_past() {
    const PENDING: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\nConnection: close\r\n\r\n{\"error\":\"authorization_pending\"}";
    const EARLY: &str = "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n";
    const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";
    let leak = |s: String| -> &'static [u8] { Box::leak(s.into_bytes().into_boxed_slice()) };
    let cases: [(&str, &'static [u8], u16, &str); 4] = [
        (
            "103 then the answer",
            leak(format!("{EARLY}{PENDING}")),
            400,
            "authorization_pending",
        ),
        (
            "100 and 103 then the answer",
            leak(format!("{CONTINUE}{EARLY}{PENDING}")),
            400,
            "authorization_pending",
        ),
        (
            "101",
            leak(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
                    .into(),
            ),
            502,
            "server_error",
        ),
        (
            "nine interim answers",
            leak(format!("{}{PENDING}", EARLY.repeat(9))),
            502,
            "server_error",
        ),
    ];
    for (what, answer, status, code) in cases {
        let stub = Stub::start(StubMode::Answer(answer));
        let (gw, _dir) = stub_gateway(&stub.url(), "");
        let r = poll(&gw.addr(), POST_CLIENT, "some-id");
        assert_oauth_error(&r, status, code, what);
        // The gateway is still serving.
        assert_oauth_error(
            &poll(&gw.addr(), POST_CLIENT, "other-id"),
            status,
            code,
            what,
        );
    }
}

#[test]
fn an_html_500_becomes_a_json_502() {
    let stub = Stub::start(StubMode::Answer(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n<html>secret stack</html>\r\n",
    ));
    let (gw, _dir) = stub_gateway(&stub.url(), "");
    let r = poll(&gw.addr(), POST_CLIENT, "some-id");
    assert_oauth_error(&r, 502, "server_error", "r");
    assert!(!r.text().contains("secret stack"));
}

#[test]
fn a_reset_upstream_is_a_json_502() {
    let stub = Stub::start(StubMode::Reset);
    let (gw, _dir) = stub_gateway(&stub.url(), "");
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_oauth_error(&r, 502, "server_error", "r");
}
