//! A request on an endpoint's exact path is served by the guard on pingora's session
//! (`edge/own_requests.rs`); another spelling of the same path goes through pingora's proxy
//! loop to the same hooks. Every request shape must get the same answer both ways, with the
//! same keep-alive, and the OP must see the same requests.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

/// What a client sees of one request: the answer, whether the connection then carries a
/// passed-through request, and how many polls the OP saw meanwhile.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    error: String,
    connection_close: bool,
    reused: bool,
    op_polls: u64,
}

/// Writes each piece of a request 100 ms apart, reads the answer, then tries `GET /jwks`
/// on the same connection.
fn send(gw: &Gateway, op: &TestOp, pieces: &[Vec<u8>]) -> Seen {
    let before = op.token_count();
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(100));
        }
        s.write_all(piece).unwrap();
    }
    let r = read_response(&mut s);
    let reused = s
        .write_all(b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n")
        .is_ok()
        && {
            let mut got = [0u8; 12];
            s.read_exact(&mut got).is_ok() && &got == b"HTTP/1.1 200"
        };
    Seen {
        status: r.status,
        error: serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default(),
        connection_close: r.header("connection") == Some("close"),
        reused,
        op_polls: op.token_count() - before,
    }
}

/// A request to `path` in one shape, as the pieces a client writes.
type Shape = fn(path: &str, body: &str) -> Vec<Vec<u8>>;

fn form_head(path: &str, version: &str, extra: &str, len: usize) -> String {
    format!(
        "POST {path} {version}\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}Content-Length: {len}\r\n\r\n"
    )
}

#[test]
fn every_request_shape_gets_the_same_answer_on_the_exact_path_and_another_spelling() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(
        &op.url(),
        "[server]\nmax_body_bytes = 4096\n[rate_limit]\nenabled = false\n",
    );
    let shapes: &[(&str, Shape, u16, &str)] = &[
        (
            "one write",
            |p, b| {
                vec![[form_head(p, "HTTP/1.1", "", b.len()), b.into()]
                    .concat()
                    .into_bytes()]
            },
            400,
            "authorization_pending",
        ),
        (
            "body in a later write",
            |p, b| {
                vec![
                    form_head(p, "HTTP/1.1", "", b.len()).into_bytes(),
                    b.as_bytes().to_vec(),
                ]
            },
            400,
            "authorization_pending",
        ),
        (
            "header split",
            |p, b| {
                let all = [form_head(p, "HTTP/1.1", "", b.len()), b.into()]
                    .concat()
                    .into_bytes();
                vec![all[..9].to_vec(), all[9..].to_vec()]
            },
            400,
            "authorization_pending",
        ),
        (
            "chunked",
            |p, b| {
                let head = format!("POST {p} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n");
                let (x, y) = b.split_at(7);
                vec![
                    format!("{head}{:x}\r\n{x}\r\n", x.len()).into_bytes(),
                    format!("{:x}\r\n{y}\r\n0\r\n\r\n", y.len()).into_bytes(),
                ]
            },
            400,
            "authorization_pending",
        ),
        (
            "HTTP/1.0",
            |p, b| {
                vec![[form_head(p, "HTTP/1.0", "", b.len()), b.into()]
                    .concat()
                    .into_bytes()]
            },
            400,
            "authorization_pending",
        ),
        (
            "HTTP/1.0 keep-alive",
            |p, b| {
                vec![[
                    form_head(p, "HTTP/1.0", "Connection: keep-alive\r\n", b.len()),
                    b.into(),
                ]
                .concat()
                .into_bytes()]
            },
            400,
            "authorization_pending",
        ),
        (
            "Connection: close",
            |p, b| {
                vec![[
                    form_head(p, "HTTP/1.1", "Connection: close\r\n", b.len()),
                    b.into(),
                ]
                .concat()
                .into_bytes()]
            },
            400,
            "authorization_pending",
        ),
        (
            "Expect: 100-continue",
            |p, b| {
                let head = form_head(p, "HTTP/1.1", "Expect: 100-continue\r\n", b.len());
                vec![head.into_bytes(), b.as_bytes().to_vec()]
            },
            400,
            "authorization_pending",
        ),
        (
            "with a query",
            |p, b| {
                vec![[
                    form_head(&format!("{p}?x=1"), "HTTP/1.1", "", b.len()),
                    b.into(),
                ]
                .concat()
                .into_bytes()]
            },
            400,
            "authorization_pending",
        ),
        (
            "GET",
            |p, _| vec![format!("GET {p} HTTP/1.1\r\nHost: gw\r\n\r\n").into_bytes()],
            405,
            "invalid_request",
        ),
        (
            "not a form",
            |p, b| {
                vec![format!("POST {p} HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{b}", b.len()).into_bytes()]
            },
            400,
            "invalid_request",
        ),
        (
            "a declared body over the cap",
            |p, _| {
                vec![
                    form_head(p, "HTTP/1.1", "", 5000).into_bytes(),
                    vec![b'a'; 5000],
                ]
            },
            413,
            "invalid_request",
        ),
        (
            "a chunked body over the cap",
            |p, _| {
                let head = format!("POST {p} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n");
                vec![
                    head.into_bytes(),
                    format!("1388\r\n{}\r\n0\r\n\r\n", "a".repeat(5000)).into_bytes(),
                ]
            },
            413,
            "invalid_request",
        ),
    ];
    for (name, shape, status, error) in shapes {
        let mut seen = Vec::new();
        for path in ["/token", "/Token"] {
            let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
            let s = send(&gw, &op, &shape(path, &poll_body(POST_CLIENT, &id)));
            assert_eq!(
                (s.status, s.error.as_str()),
                (*status, *error),
                "{name} on {path}: {s:?}"
            );
            if *status == 400 && *error == "authorization_pending" {
                assert_eq!(
                    s.op_polls, 1,
                    "{name} on {path}: the poll reached the OP once"
                );
                // Polled again at once: slow_down from the gateway, the OP does not see it.
                let again = send(&gw, &op, &shape(path, &poll_body(POST_CLIENT, &id)));
                assert_eq!(
                    (again.error.as_str(), again.op_polls),
                    ("slow_down", 0),
                    "{name} on {path}"
                );
            } else {
                assert_eq!(s.op_polls, 0, "{name} on {path}: refused at the edge");
            }
            seen.push(s);
        }
        assert_eq!(
            seen[0], seen[1],
            "{name}: /token and /Token answered differently"
        );
    }
}

/// A client that sends `Expect: 100-continue` and waits for `100 Continue` before its body
/// gets it on either spelling, then its answer; the OP is never asked for one (an OP that
/// answers it with an interim `100` first once broke the gateway's read of its answer).
#[test]
fn a_client_that_waits_for_100_continue_gets_it_then_its_answer() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(&op.url(), "[rate_limit]\nenabled = false\n");
    let spellings = [
        ("/token", "Expect: 100-continue\r\n"),
        ("/Token", "Expect: 100-continue\r\n"),
        ("/token", "expect: 100-Continue\r\n"),
        ("/token", "X-A: 1\r\nEXPECT:100-CONTINUE\r\n"),
    ];
    for (path, expect) in spellings {
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        let body = poll_body(POST_CLIENT, &id);
        let before = op.token_count();
        let mut s = TcpStream::connect(gw.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = form_head(path, "HTTP/1.1", expect, body.len());
        s.write_all(head.as_bytes()).unwrap();
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut got = vec![0u8; interim.len()];
        s.read_exact(&mut got)
            .expect("100 Continue before the body is sent");
        assert_eq!(
            got,
            interim,
            "{path} {expect:?}: {}",
            String::from_utf8_lossy(&got)
        );
        s.write_all(body.as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!(
            (r.status, r.error().as_str()),
            (400, "authorization_pending"),
            "{path}"
        );
        assert_eq!(op.token_count(), before + 1, "{path}");
        assert_eq!(op.last_hop()["expect"], serde_json::Value::Null, "{path}");
    }
    // An HTTP/1.0 request's expectation is ignored (RFC 9110 10.1.1): no interim answer.
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    let body = poll_body(POST_CLIENT, &id);
    let head = form_head("/token", "HTTP/1.0", "Expect: 100-continue\r\n", body.len());
    let r = raw(&gw.addr(), format!("{head}{body}").as_bytes());
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "authorization_pending")
    );
}
