//! The edge guard through the real binary: header and body deadlines, the header cap,
//! connection caps. Deadlines are set to 1 s here so that nothing waits long.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Short deadlines, rate limits off (these tests send many requests from one address).
const FAST: &str = "[server]\nclient_header_timeout_seconds = 1\nclient_body_timeout_seconds = 1\nkeepalive_timeout_seconds = 5\n[rate_limit]\nenabled = false\n";

/// A gateway with [`FAST`], each `[server]` line of `extra_server` replacing its namesake.
fn gateway(op: &TestOp, extra_server: &str) -> (Gateway, tempfile::TempDir) {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra_server.lines().map(key).collect();
    let kept: String = FAST
        .lines()
        .filter(|l| !l.contains('=') || l.starts_with("enabled") || !overridden.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = kept.replacen("[server]\n", &format!("[server]\n{extra_server}"), 1);
    Gateway::with_config(&op.url(), &text)
}

/// Everything the gateway sent until it closed (or 10 s passed), parsed when it is an answer.
fn answer_until_close(s: &mut TcpStream) -> Option<Resp> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    if got.is_empty() {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = r.parse(&got).expect("an HTTP answer") else {
        panic!("a partial answer: {:?}", String::from_utf8_lossy(&got));
    };
    Some(Resp {
        status: r.code.unwrap(),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: got[n..].to_vec(),
    })
}

/// Writes `bytes` one at a time, `every` apart, until they are all sent, a write fails or
/// `stop` is set. Returns the thread.
fn trickle(
    s: &TcpStream,
    bytes: Vec<u8>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    thread::spawn(move || {
        for b in bytes {
            if stop.load(Ordering::Relaxed) || w.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(every);
        }
    })
}

/// Sends `head` at once, then trickles `slow` a byte every 300 ms; the answer and how long
/// after the connection was opened the gateway closed it.
fn slow_request(addr: &str, head: &[u8], slow: &[u8]) -> (Option<Resp>, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(&s, slow.to_vec(), Duration::from_millis(300), stop.clone());
    let answer = answer_until_close(&mut s);
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    (answer, took)
}

fn assert_oauth(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.error(), error);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("connection"), Some("close"));
}

fn total(op: &TestOp) -> u64 {
    op.stats()["total"].as_u64().unwrap()
}

/// A header that keeps coming, a byte at a time, for ten seconds.
fn endless_header() -> Vec<u8> {
    b"X-Slow: "
        .iter()
        .chain([b'a'; 40].iter())
        .copied()
        .collect()
}

#[test]
fn a_trickled_header_is_cut_at_the_header_deadline() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let before = total(&op);
    for version in ["1.1", "1.0"] {
        for path in ["/token", "/backchannel", "/jwks"] {
            let head = format!("POST {path} HTTP/{version}\r\nHost: gw\r\n");
            let (answer, took) = slow_request(&gw.addr(), head.as_bytes(), &endless_header());
            let r = answer.expect("an answer, not a bare close");
            assert_oauth(&r, 408, "invalid_request");
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(3),
                "{path} HTTP/{version}: cut after {took:?}"
            );
        }
    }
    // Even the request line alone, trickled from the first byte; and empty lines before
    // it, which httparse skips, do not restart anything.
    let blank_lines = "\r\n".repeat(20);
    for slow in ["GET /jwks HTTP/1.1\r\nHost: gw\r\n", blank_lines.as_str()] {
        let (answer, took) = slow_request(&gw.addr(), b"", slow.as_bytes());
        assert_oauth(&answer.unwrap(), 408, "invalid_request");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    assert_eq!(total(&op), before, "the OP saw a trickled request");
    gw.metrics_containing(&["ciba_gateway_connections_refused_total{reason=\"header_timeout\"} 8"]);
}

#[test]
fn a_later_request_on_a_kept_alive_connection_gets_its_own_deadline() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // Idle longer than the header deadline (the keep-alive timeout governs idling), then
    // a request sent at once: served.
    thread::sleep(Duration::from_millis(1_500));
    s.write_all(b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // A third request trickled: cut one header deadline after its first byte.
    let before = total(&op);
    thread::sleep(Duration::from_millis(1_500));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut bytes = b"GET /jwks HTTP/1.1\r\n".to_vec();
    bytes.extend(endless_header());
    let writer = trickle(&s, bytes, Duration::from_millis(300), stop.clone());
    let r = answer_until_close(&mut s).expect("an answer");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_oauth(&r, 408, "invalid_request");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(total(&op), before);
}

/// One kept-alive connection carries requests of every shape through the guard's one header
/// buffer: small, a header six times the buffer's first size (its buffer freed after),
/// small again, a poll with its body in the same write, a header split across writes; then
/// one past the cap is refused on it.
#[test]
fn a_kept_alive_connection_serves_every_request_shape_through_one_buffer() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    let jwks = |op: &TestOp| op.stats()["by_path"]["/jwks"].as_u64().unwrap_or(0);
    let (jwks_before, token_before) = (jwks(&op), op.token_count());
    let small = b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec();
    let large = format!(
        "GET /jwks HTTP/1.1\r\nHost: gw\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(6 * 1024)
    )
    .into_bytes();
    let body = poll_body(POST_CLIENT, &id);
    let poll = format!(
        "POST /token HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (i, request) in [&small, &large, &small, &poll, &large, &small]
        .into_iter()
        .enumerate()
    {
        s.write_all(request).unwrap();
        let r = read_response(&mut s);
        if std::ptr::eq(request, &poll) {
            assert_eq!(r.status, 400, "request {i}: {}", r.text());
            assert_eq!(r.error(), "authorization_pending", "request {i}");
        } else {
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
        }
    }
    s.write_all(b"GET /jw").unwrap();
    thread::sleep(Duration::from_millis(100));
    s.write_all(b"ks HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // Past the cap (32 KiB) on the same connection, after all that: 431, closed, unseen.
    let before = total(&op);
    let mut over = b"GET /jwks HTTP/1.1\r\nHost: gw\r\n".to_vec();
    for i in 0..40 {
        over.extend_from_slice(format!("X-Big-{i}: {}\r\n", "b".repeat(1000)).as_bytes());
    }
    over.extend_from_slice(b"\r\n");
    let _ = s.write_all(&over);
    assert_oauth(
        &answer_until_close(&mut s).expect("an answer"),
        431,
        "invalid_request",
    );
    assert_eq!(total(&op), before);
    assert_eq!(jwks(&op), jwks_before + 6);
    assert_eq!(op.token_count(), token_before + 1);
}

#[test]
fn a_connection_that_never_sends_is_closed_at_the_header_deadline() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    assert!(answer_until_close(&mut s).is_none());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_trickled_body_on_the_ciba_endpoints_gets_408_at_the_body_deadline() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let body = poll_body(POST_CLIENT, "some-id");
    for path in ["/token", "/backchannel"] {
        let before = (op.token_count(), op.backchannel_count(), total(&op));
        for version in ["1.1", "1.0"] {
            let head = format!(
                "POST {path} HTTP/{version}\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let start = Instant::now();
            let (answer, _) = slow_request(&gw.addr(), head.as_bytes(), body.as_bytes());
            let took = start.elapsed();
            let r = answer.expect("an answer");
            assert_oauth(&r, 408, "invalid_request");
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(3),
                "{path}: {took:?}"
            );
        }
        // A chunked body trickled the same way.
        let head = format!("POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        let (answer, took) = slow_request(&gw.addr(), head.as_bytes(), chunked.as_bytes());
        assert_oauth(&answer.unwrap(), 408, "invalid_request");
        assert!(took < Duration::from_secs(3), "{took:?}");
        // A body that stops altogether is cut the same way.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nclient_id=",
            body.len()
        );
        let (answer, took) = slow_request(&gw.addr(), head.as_bytes(), b"");
        assert_oauth(&answer.unwrap(), 408, "invalid_request");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(
            (op.token_count(), op.backchannel_count(), total(&op)),
            before,
            "the OP saw a slow body on {path}"
        );
    }
    gw.metrics_containing(&["ciba_gateway_connections_refused_total{reason=\"body_timeout\"} 8"]);
}

#[test]
fn a_stalled_body_on_a_passed_through_path_is_cut_per_read() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let head = b"POST /jwks HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc";
    let (_answer, took) = slow_request(&gw.addr(), head, b"");
    assert!(took < Duration::from_secs(4), "held for {took:?}");
}

/// A request with an `X-Pad` header that makes its header exactly `len` bytes.
fn padded_backchannel(len: usize, body: &str) -> Vec<u8> {
    let start = "POST /backchannel HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    let tail = format!("Content-Length: {}\r\n\r\n", body.len());
    let fixed = start.len() + "X-Pad: \r\n".len() + tail.len();
    let pad = "p".repeat(len - fixed);
    let mut out = format!("{start}X-Pad: {pad}\r\n{tail}").into_bytes();
    assert_eq!(out.len(), len);
    out.extend_from_slice(body.as_bytes());
    out
}

#[test]
fn an_oversized_header_gets_431_and_never_reaches_the_op() {
    let op = TestOp::start(&[]);
    // The default cap (32 KiB): 40 KiB of headers, at once.
    let (gw, _dir) = gateway(&op, "");
    let before = total(&op);
    let mut req = b"GET /jwks HTTP/1.1\r\nHost: gw\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("X-Big-{i}: {}\r\n", "b".repeat(1000)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    let _ = s.write_all(&req);
    assert_oauth(
        &answer_until_close(&mut s).expect("an answer"),
        431,
        "invalid_request",
    );
    // One line that never ends, at once.
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    let _ = s.write_all(format!("GET /{} HTTP/1.1\r\n", "a".repeat(40_000)).as_bytes());
    assert_oauth(
        &answer_until_close(&mut s).expect("an answer"),
        431,
        "invalid_request",
    );
    assert_eq!(total(&op), before);
    drop(gw);

    // A small cap and a longer deadline: a header growing slowly past it, and one exactly at it.
    let (gw, _dir) = gateway(
        &op,
        "max_header_bytes = 4096\nclient_header_timeout_seconds = 10\n",
    );
    let before = total(&op);
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.write_all(b"POST /token HTTP/1.1\r\nHost: gw\r\n")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = s.try_clone().unwrap();
    let stop2 = stop.clone();
    let writer = thread::spawn(move || {
        for i in 0..100 {
            let line = format!("X-Grow-{i}: {}\r\n", "g".repeat(200));
            if stop2.load(Ordering::Relaxed) || w.write_all(line.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(30));
        }
    });
    let r = answer_until_close(&mut s).expect("an answer");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_oauth(&r, 431, "invalid_request");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(total(&op), before);

    let body = encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("scope", "openid"),
        ("login_hint", "alice"),
    ]);
    let at_cap = raw(&gw.addr(), &padded_backchannel(4096, &body));
    assert_eq!(at_cap.status, 200, "{}", at_cap.text());
    assert!(at_cap.json()["auth_req_id"].is_string());
    let over = raw(&gw.addr(), &padded_backchannel(4097, &body));
    assert_oauth(&over, 431, "invalid_request");
    assert_eq!(
        total(&op),
        before + 1,
        "only the request within the cap reached the OP"
    );
    gw.metrics_containing(&[
        "ciba_gateway_connections_refused_total{reason=\"header_too_large\"} 2",
    ]);
}

/// Opens a connection and serves one request on it, leaving it open (kept alive).
fn held_connection(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    s
}

/// A `GET /jwks` on a new connection, retried for up to 2 s while it is refused (a closed
/// connection's place is freed when the gateway notices the close).
fn get_jwks_soon(addr: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = get(addr, "/jwks");
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_per_address_and_overall_connection_caps_refuse_with_503() {
    let op = TestOp::start(&[]);
    for (settings, reason) in [
        (
            "max_connections_per_address = 3\n",
            "max_connections_per_address",
        ),
        (
            "max_connections = 3\nmax_connections_per_address = 3\n",
            "max_connections",
        ),
    ] {
        // Held connections idle between requests: keep them open however slow the machine.
        let settings = format!("{settings}keepalive_timeout_seconds = 60\n");
        let settings = settings.as_str();
        let (gw, _dir) = gateway(&op, settings);
        let mut held: Vec<TcpStream> = (0..3).map(|_| held_connection(&gw.addr())).collect();
        gw.metrics_containing(&["ciba_gateway_client_connections 3"]);
        let before = total(&op);
        let refused = get(&gw.addr(), "/jwks");
        assert_eq!(refused.status, 503, "{reason}: {}", refused.text());
        assert_eq!(refused.error(), "temporarily_unavailable");
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("connection"), Some("close"));
        assert_eq!(total(&op), before, "a refused connection reached the OP");
        // The connections already open still work.
        held[0]
            .write_all(b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut held[0]).status, 200);
        gw.metrics_containing(&[&format!(
            "ciba_gateway_connections_refused_total{{reason=\"{reason}\"}} 1"
        )]);
        // Closing one frees its place.
        drop(held.remove(0));
        assert_eq!(get_jwks_soon(&gw.addr()).status, 200, "{reason}");
        drop(held);
        gw.metrics_containing(&["ciba_gateway_client_connections 0"]);
    }
}

#[test]
fn a_trusted_proxy_is_exempt_from_the_per_address_cap_but_not_the_overall_one() {
    let op = TestOp::start(&[]);
    let text = format!(
        "{}max_connections = 4\nmax_connections_per_address = 1\n",
        FAST.replace("[rate_limit]\nenabled = false\n", "")
    ) + "[rate_limit]\nenabled = false\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let (gw, _dir) = Gateway::with_config(&op.url(), &text);
    let held: Vec<TcpStream> = (0..4).map(|_| held_connection(&gw.addr())).collect();
    let refused = get(&gw.addr(), "/jwks");
    assert_eq!(refused.status, 503);
    gw.metrics_containing(&[
        "ciba_gateway_connections_refused_total{reason=\"max_connections\"} 1",
    ]);
    drop(held);
}

#[test]
fn a_normal_client_flows_while_slow_connections_are_open() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "client_header_timeout_seconds = 5\n");
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<(TcpStream, thread::JoinHandle<()>)> = (0..30)
        .map(|_| {
            let s = TcpStream::connect(gw.addr()).unwrap();
            let mut bytes = b"POST /token HTTP/1.1\r\nHost: gw\r\n".to_vec();
            bytes.extend(endless_header());
            let t = trickle(&s, bytes, Duration::from_millis(300), stop.clone());
            (s, t)
        })
        .collect();
    let start = Instant::now();
    let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
    let id = auth_req_id(&ack);
    let pending = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(
        pending.error(),
        "authorization_pending",
        "{}",
        pending.text()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for (s, t) in slow {
        drop(s);
        t.join().unwrap();
    }
}

/// Headers pingora would answer with its own bare 400 (or 405), or that one proxy could
/// frame differently from the next: a JSON error from the guard, the connection closed,
/// and the OP never sees them, on a passed-through path and on the CIBA endpoints alike.
#[test]
fn malformed_and_ambiguous_headers_get_json_and_never_reach_the_op() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = gateway(&op, "");
    let poll = poll_body(POST_CLIENT, "some-id");
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let chunked = format!("{:x}\r\n{poll}\r\n0\r\n\r\n", poll.len());
    let cl = poll.len();
    // (label, request head up to its last header line, body, status)
    let rows: Vec<(&str, String, String, u16)> = vec![
        ("request line with a fourth word", "GET /jwks HTTP/1.1 x\r\nHost: gw\r\n".into(), String::new(), 400),
        ("request line without a version", "GET /jwks\r\nHost: gw\r\n".into(), String::new(), 400),
        ("unknown HTTP version", "GET /jwks HTTP/1.2\r\nHost: gw\r\n".into(), String::new(), 400),
        ("space in a header name", "GET /jwks HTTP/1.1\r\nHost: gw\r\nX Y: 1\r\n".into(), String::new(), 400),
        ("bad header name byte", "GET /jwks HTTP/1.1\r\nHost: gw\r\nX(Y): 1\r\n".into(), String::new(), 400),
        ("space before the colon", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Transfer-Encoding : chunked\r\nContent-Length: {cl}\r\n"), poll.clone(), 400),
        ("obs-fold", "GET /jwks HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n 2\r\n".into(), String::new(), 400),
        ("obs-fold hiding Transfer-Encoding", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}X-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: {cl}\r\n"), poll.clone(), 400),
        ("NUL in a header value", "GET /jwks HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n".into(), String::new(), 400),
        ("absolute-form, another Host", "GET http://evil.example/jwks HTTP/1.1\r\nHost: gw\r\n".into(), String::new(), 400),
        ("absolute-form CIBA, another Host", format!("POST http://evil.example/token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: {cl}\r\n"), poll.clone(), 400),
        ("absolute-form with userinfo", "GET http://u:p@gw/jwks HTTP/1.1\r\nHost: gw\r\n".into(), String::new(), 400),
        ("Host with userinfo", "GET /jwks HTTP/1.1\r\nHost: u@gw\r\n".into(), String::new(), 400),
        ("two Host headers", "GET /jwks HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\n".into(), String::new(), 400),
        ("TE chunked, identity", "POST /jwks HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n".into(), chunked.clone(), 400),
        ("TE identity, chunked", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Transfer-Encoding: identity, chunked\r\n"), chunked.clone(), 400),
        ("TE xchunked", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Transfer-Encoding: xchunked\r\n"), chunked.clone(), 400),
        ("TE vertical tab chunked", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Transfer-Encoding: \x0bchunked\r\n"), chunked.clone(), 400),
        ("two TE headers", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), chunked.clone(), 400),
        ("TE on HTTP/1.0", format!("POST /token HTTP/1.0\r\nHost: gw\r\n{form}Transfer-Encoding: chunked\r\n"), chunked.clone(), 400),
        ("CL and TE", format!("POST /jwks HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n", chunked.len()), chunked.clone(), 400),
        ("two different CL", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: {cl}\r\nContent-Length: 1\r\n"), poll.clone(), 400),
        ("two equal CL", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: {cl}\r\nContent-Length: {cl}\r\n"), poll.clone(), 400),
        ("CL list", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: {cl}, {cl}\r\n"), poll.clone(), 400),
        ("negative CL", format!("POST /jwks HTTP/1.1\r\nHost: gw\r\nContent-Length: -{cl}\r\n"), poll.clone(), 400),
        ("signed CL", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: +{cl}\r\n"), poll.clone(), 400),
        ("non-digit CL", format!("POST /token HTTP/1.1\r\nHost: gw\r\n{form}Content-Length: 0x{cl:x}\r\n"), poll.clone(), 400),
        ("CONNECT", "CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n".into(), String::new(), 405),
    ];
    let before = (op.token_count(), op.backchannel_count(), total(&op));
    for (label, head, body, status) in &rows {
        let mut s = TcpStream::connect(gw.addr()).unwrap();
        s.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
        let r = answer_until_close(&mut s).unwrap_or_else(|| panic!("{label}: no answer"));
        assert_eq!(r.status, *status, "{label}: {}", r.text());
        assert_oauth(&r, *status, "invalid_request");
    }
    // The HTTP/2 prior-knowledge preface on the HTTP/1 listener.
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    assert_oauth(
        &answer_until_close(&mut s).expect("an answer"),
        400,
        "invalid_request",
    );
    assert_eq!(
        (op.token_count(), op.backchannel_count(), total(&op)),
        before,
        "a refused header reached the OP"
    );
    gw.metrics_containing(&[&format!(
        "ciba_gateway_connections_refused_total{{reason=\"malformed_header\"}} {}",
        rows.len() + 1
    )]);
    // Optional whitespace around `chunked` is the same framing for everyone: passed through
    // (the OP answers a POST to /jwks with its own 404).
    let r = raw(
        &gw.addr(),
        format!("POST /jwks HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nTransfer-Encoding:   chunked \r\n\r\n{chunked}").as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(total(&op), before.2 + 1, "the OP read it");
}
