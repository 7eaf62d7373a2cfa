//! How requests are read and routed: chunked bodies, kept-alive connections, and every
//! spelling of an endpoint's path (`routing.rs`).

mod own_paths;
pub(crate) mod routing;

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    use std::io::{Read, Write};
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(&op.url(), "[server]\nkeepalive_timeout_seconds = 1\n");
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    // Kept alive between requests: one served locally, one passed through.
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        write!(s, "GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).status, 200, "{path}");
    }
    // Then idle: the gateway closes it (pingora alone would hold it open forever).
    let idle = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let n = s
        .read(&mut buf)
        .expect("closed by the gateway, not timed out here");
    assert_eq!(n, 0, "unexpected bytes on an idle connection");
    assert!(
        idle.elapsed() < Duration::from_secs(5),
        "{:?}",
        idle.elapsed()
    );

    // A client that asks to close is not kept alive at all.
    let mut c = std::net::TcpStream::connect(gw.addr()).unwrap();
    write!(
        c,
        "GET /jwks HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn chunked_requests_are_read_whole() {
    let (op, gw) = flow_setup();
    let body = encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("scope", "openid"),
        ("login_hint", "carol"),
    ]);
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /backchannel HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let r = raw(&gw.addr(), req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = op.last_backchannel();
    assert_eq!(seen["params"]["login_hint"], "carol");
    assert_eq!(seen["content_length"], body.len().to_string());
}

#[test]
fn a_connection_stays_usable_after_a_local_error() {
    let (op, gw) = flow_setup();
    let mut conn = std::net::TcpStream::connect(gw.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let send = |conn: &mut std::net::TcpStream, body: &str| {
        use std::io::Write;
        let req = format!(
            "POST /backchannel HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).unwrap();
        read_response(conn)
    };
    let refused = send(&mut conn, "scope=openid&scope=openid");
    assert_eq!(refused.status, 400);
    let ok = send(
        &mut conn,
        &encode_form(&[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
        ]),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(op.backchannel_count(), 1);
}

/// Requests pipelined behind another in one write (HTTP/1.1 pipelining) are not served:
/// the first is answered, then the connection closes, and none of the rest reaches the OP,
/// whatever its spelling.
#[test]
fn pipelined_requests_behind_a_poll_never_reach_the_op() {
    use std::io::{Read, Write};
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(&op.url(), "[rate_limit]\nenabled = false\n");
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    let body = poll_body(POST_CLIENT, &id);
    let one = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let all = [
        one("/token"),
        one("/token"),
        one("/TOKEN/"),
        one("/%74oken"),
    ]
    .concat();
    s.write_all(all.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).error(), "authorization_pending");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(op.token_count(), 1, "only the first poll reached the OP");
}
