//! Every rule over HTTP/2 as over HTTP/1: the hostile tables (routing spellings, hostile
//! backchannel requests) and HTTP/2's own attacks (framing fields HTTP/2 forbids,
//! `content-length` against DATA, an oversized header block, streams over the limit,
//! bodies over the cap or sent slowly, idle and silent connections). The OP never sees
//! any of it.

use super::raw_h2::{Outcome, RawH2};
use super::*;
use serde_json::Value;

const CONFIG: &str = "[server]\nmax_body_bytes = 1024\nclient_body_timeout_seconds = 1\n\
    client_header_timeout_seconds = 2\nkeepalive_timeout_seconds = 2\nmax_header_bytes = 4096\n\
    [rate_limit]\nenabled = false\n[polling]\nmin_interval_seconds = 1\n";

fn setup(tls_extra: &str) -> (Pki, TestOp, Gateway, tempfile::TempDir) {
    let pki = Pki::new();
    let (op, gw, dir) = tls_setup(&pki, tls_extra, CONFIG);
    (pki, op, gw, dir)
}

fn valid_backchannel() -> String {
    encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("scope", "openid"),
        ("login_hint", "alice"),
    ])
}

#[test]
fn the_hostile_tables_over_http2_never_reach_the_op() {
    let (pki, op, gw, _d) = setup("");
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../data/hostile_backchannel.json")).unwrap();
    let op = &op;
    with_h2(&gw.addr(), &pki.ca.der(), None, |mut h2| async move {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let mut req = H2Req::form("/backchannel", &[]);
            req.body = case["body"].as_str().unwrap().as_bytes().to_vec();
            if req.body.len() > 1024 {
                continue; // over this gateway's body cap: a 413 of its own, below
            }
            let r = h2_send(&mut h2, &req).await.unwrap();
            assert_eq!(
                r.status,
                case["status"].as_u64().unwrap() as u16,
                "{name}: {}",
                r.text()
            );
            assert_eq!(r.error(), case["error"].as_str().unwrap(), "{name}");
            assert_eq!(op.backchannel_count(), 0, "{name} reached the OP");
        }

        // Every spelling of the endpoints: through the pipeline, never past it.
        let id = auth_req_id(
            &h2_send(
                &mut h2,
                &H2Req::form(
                    "/backchannel",
                    &[
                        ("client_id", POST_CLIENT.0),
                        ("client_secret", POST_CLIENT.1),
                        ("scope", "openid"),
                        ("login_hint", "alice"),
                    ],
                ),
            )
            .await
            .unwrap(),
        );
        let poll = [
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", id.as_str()),
        ];
        let first = h2_send(&mut h2, &H2Req::form("/token", &poll))
            .await
            .unwrap();
        assert_eq!(first.error(), "authorization_pending");
        let (bc, tk) = (op.backchannel_count(), op.token_count());
        let mut sent = 0;
        for path in crate::framing::routing::spellings("/backchannel") {
            let req = H2Req::form(
                &path,
                &[
                    ("client_id", POST_CLIENT.0),
                    ("client_secret", POST_CLIENT.1),
                    ("login_hint", "alice"),
                ],
            );
            let Ok(r) = h2_send(&mut h2, &req).await else {
                continue; // not a :path http's URI type can carry: no HTTP/2 client sends it
            };
            sent += 1;
            assert_eq!(r.status, 400, "{path}: {}", r.text());
            assert!(r.text().contains("scope"), "{path}: {}", r.text());
            assert_eq!(op.backchannel_count(), bc, "{path} reached the OP");
        }
        for path in crate::framing::routing::spellings("/token") {
            let Ok(r) = h2_send(&mut h2, &H2Req::form(&path, &poll)).await else {
                continue;
            };
            sent += 1;
            assert_eq!(r.error(), "slow_down", "{path}: {}", r.text());
            assert_eq!(op.token_count(), tk, "{path} reached the OP");
        }
        assert!(sent >= 40, "only {sent} spellings sent");
    });
}

/// Sends a valid backchannel request with `fields` added on a new connection; returns how
/// the stream ended.
fn raw_backchannel(gw: &Gateway, pki: &Pki, fields: &[(&str, &str)], body: &[u8]) -> Outcome {
    let mut c = RawH2::open(&gw.addr(), &pki.ca.der());
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(fields);
    c.headers(1, "POST", "/backchannel", &all, false);
    c.data(1, body, true);
    c.outcome(1)
}

#[test]
fn framing_http2_forbids_or_contradicts_never_reaches_the_op() {
    let (pki, op, gw, _d) = setup("");
    let body = valid_backchannel();
    let len = body.len().to_string();
    let two = format!("{len}, {len}");
    let filler = "a".repeat(8_000);
    // What, the extra fields, the body.
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let rows: Vec<Row> = vec![
        (
            "Connection",
            vec![("connection", "keep-alive")],
            body.clone().into(),
        ),
        (
            "Transfer-Encoding",
            vec![("transfer-encoding", "chunked")],
            body.clone().into(),
        ),
        ("TE gzip", vec![("te", "gzip")], body.clone().into()),
        (
            "Upgrade",
            vec![("upgrade", "websocket")],
            body.clone().into(),
        ),
        ("Keep-Alive", vec![("keep-alive", "5")], body.clone().into()),
        (
            "Proxy-Connection",
            vec![("proxy-connection", "keep-alive")],
            body.clone().into(),
        ),
        (
            "two content-lengths",
            vec![("content-length", &len), ("content-length", &len)],
            body.clone().into(),
        ),
        (
            "content-length list",
            vec![("content-length", &two)],
            body.clone().into(),
        ),
        (
            "content-length above the DATA",
            vec![("content-length", "500")],
            body.clone().into(),
        ),
        (
            "content-length below the DATA",
            vec![("content-length", "5")],
            body.clone().into(),
        ),
        (
            "host other than :authority",
            vec![("host", "other.example")],
            body.clone().into(),
        ),
        (
            "two hosts",
            vec![("host", "127.0.0.1"), ("host", "127.0.0.1")],
            body.clone().into(),
        ),
        (
            "oversized header block",
            vec![("x-filler", &filler)],
            body.clone().into(),
        ),
    ];
    // The same request without the row's fields does reach the OP.
    assert_eq!(
        raw_backchannel(&gw, &pki, &[], body.as_bytes()),
        Outcome::Status(200)
    );
    assert_eq!(op.backchannel_count(), 1);
    for (what, fields, body) in rows {
        let outcome = raw_backchannel(&gw, &pki, &fields, &body);
        assert!(
            !matches!(outcome, Outcome::Status(s) if s < 400),
            "{what}: {outcome:?}"
        );
        assert_eq!(op.backchannel_count(), 1, "{what} reached the OP");
    }
    // CONNECT: answered by the gateway (h2's CONNECT carries no :path; a raw one is a
    // malformed request and is reset).
    let mut c = RawH2::open(&gw.addr(), &pki.ca.der());
    c.headers(1, "CONNECT", "/", &[], true);
    assert!(!matches!(c.outcome(1), Outcome::Status(s) if s < 400));
}

#[test]
fn streams_header_lists_bodies_and_idle_connections_are_bounded() {
    let (pki, op, gw, _d) = setup("max_concurrent_streams = 4\n");
    let ca = pki.ca.der();
    // The gateway's own discovery request.
    let base = op.count(OpCount::Total);
    let mut c = RawH2::open(&gw.addr(), &ca);
    // SETTINGS_MAX_CONCURRENT_STREAMS and SETTINGS_MAX_HEADER_LIST_SIZE announced.
    assert_eq!(c.settings.get(&3), Some(&4), "{:?}", c.settings);
    assert_eq!(c.settings.get(&6), Some(&4096), "{:?}", c.settings);
    // A fifth stream open at once is refused (REFUSED_STREAM).
    for s in [1, 3, 5, 7, 9] {
        c.headers(
            s,
            "POST",
            "/backchannel",
            &[("content-length", "10")],
            false,
        );
    }
    assert_eq!(c.outcome(9), Outcome::Reset(7));

    // Bodies over the cap: 413, on an endpoint and on a passed-through path.
    let op_ref = &op;
    with_h2(&gw.addr(), &ca, None, |mut h2| async move {
        let mut big = H2Req::form("/backchannel", &[]);
        big.body = vec![b'a'; 2048];
        assert_eq!(h2_send(&mut h2, &big).await.unwrap().status, 413);
        let mut huge = H2Req::form("/elsewhere", &[]);
        huge.body = vec![b'a'; 70_000];
        assert_eq!(h2_send(&mut h2, &huge).await.unwrap().status, 413);
        assert_eq!(op_ref.count(OpCount::Total), base, "{}", op_ref.stats());
    });

    // DATA sent slowly: the whole body's deadline (1 s), on an endpoint and elsewhere.
    for path in ["/backchannel", "/elsewhere"] {
        let mut c = RawH2::open(&gw.addr(), &ca);
        c.headers(1, "POST", path, &[("content-length", "50")], false);
        c.data(1, b"client_id=", false);
        let started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(600));
        c.data(1, b"client-post", false);
        assert_eq!(c.outcome(1), Outcome::Status(408), "{path}");
        assert!(
            started.elapsed() < Duration::from_millis(1_900),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(op.count(OpCount::Total), base, "nothing reached the OP");

    // A connection that never sends a request is closed at the header deadline (2 s); one
    // idle after its request at the keep-alive timeout (2 s).
    let mut silent = RawH2::open(&gw.addr(), &ca);
    assert!(silent.closed_within(Duration::from_millis(3_000)));
    let mut idle = RawH2::open(&gw.addr(), &ca);
    idle.headers(1, "GET", "/jwks", &[], true);
    assert_eq!(idle.outcome(1), Outcome::Status(200));
    assert!(idle.closed_within(Duration::from_millis(3_000)));
}

#[test]
fn an_http2_connection_holds_its_place_until_its_streams_end() {
    const ACK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 51\r\n\r\n{\"auth_req_id\":\"held-1\",\"expires_in\":60,\"interval\":5}";
    let stub = Stub::start(StubMode::Gated(ACK));
    let pki = Pki::new();
    let (cert, key, _) = pki.server("server");
    let text = format!(
        "[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\nread_timeout_ms = 20000\n\
         [server]\nmax_connections_per_address = 1\n[rate_limit]\nenabled = false\n{}",
        tls_section(&cert, &key, "")
    );
    let (gw, _d) = Gateway::with_config(&stub.url(), &text);
    let ca = pki.ca.der();
    let open = "ciba_gateway_client_connections";
    // The harness's readiness probe held the address's one place for a moment.
    while metric(&gw, open) != 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = RawH2::open(&gw.addr(), &ca);
    c.headers(
        1,
        "POST",
        "/backchannel",
        &[("content-type", "application/x-www-form-urlencoded")],
        false,
    );
    c.data(1, valid_backchannel().as_bytes(), true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stub.received.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the stub"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client goes away while the gateway waits on the OP for its request.
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        metric(&gw, open),
        1,
        "the connection's place is held by its stream"
    );
    assert!(
        connect(&gw.addr(), client_config(&ca, &[b"h2"], None))
            .and_then(|mut s| s.read(&mut [0u8; 1]))
            .map_or(true, |n| n == 0),
        "no second connection from the address meanwhile"
    );
    stub.release
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&gw, open) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never given back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `invalid_client` challenge (RFC 6749 5.2) over HTTP/2 as over HTTP/1: the gateway's
/// own refusal of a Basic header naming another client carries it, and the OP never sees
/// the request.
#[test]
fn invalid_client_over_http2_carries_the_challenge() {
    let (pki, op, gw, _d) = setup("");
    let op = &op;
    with_h2(&gw.addr(), &pki.ca.der(), None, |mut h2| async move {
        for auth in [basic(BASIC_CLIENT), basic(BASIC_CLIENT).to_lowercase()] {
            let mut req = H2Req::form(
                "/backchannel",
                &[
                    ("client_id", POST_CLIENT.0),
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                ],
            );
            req.headers.push(("authorization".into(), auth.clone()));
            let r = h2_send(&mut h2, &req).await.unwrap();
            assert_eq!(r.status, 401, "{}", r.text());
            assert_eq!(r.error(), "invalid_client");
            let challenge = r.header("www-authenticate").expect("a challenge");
            let realm = format!("Basic realm=\"{}\", error=\"invalid_client\"", op.url());
            assert!(challenge.starts_with(&realm), "{challenge}");
        }
        assert_eq!(
            op.backchannel_count(),
            0,
            "a refused request reached the OP"
        );
    });
}
