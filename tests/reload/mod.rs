//! Reloading the configuration on SIGHUP, through the binary in front of
//! node-oidc-provider: a rule changed under load (no failed request, no dropped
//! connection, poll state kept), an invalid file refused with `--check`'s message, a
//! restart-only key named, and the edge limits of new connections.

mod log_level;
mod ping;

use crate::support::*;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Rate limits far above the bounded loads below, so only the rules under test refuse.
const ROOMY: &str = "[rate_limit.backchannel]\nper_client = { per_second = 1000, burst = 1000 }\nper_address = { per_second = 1000, burst = 1000 }\n[rate_limit.token]\nper_client = { per_second = 1000, burst = 1000 }\nper_address = { per_second = 1000, burst = 1000 }\n";

fn config(max_chars: usize, extra: &str) -> String {
    format!("[validation]\nbinding_message_max_chars = {max_chars}\n{ROOMY}{extra}")
}

fn sighup(gw: &Gateway) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Rewrites the file, sends SIGHUP and waits for the reload to be counted as `result`.
fn reload(gw: &Gateway, file: &Path, text: &str, result: &str, nth: u32) -> String {
    std::fs::write(file, text).unwrap();
    sighup(gw);
    gw.metrics_containing(&[&format!(
        "ciba_gateway_config_reloads_total{{result=\"{result}\"}} {nth}"
    )])
}

fn start(op: &TestOp, text: &str) -> (Gateway, tempfile::TempDir, std::path::PathBuf) {
    let (gw, dir) = Gateway::with_config(&op.url(), text);
    let file = dir.path().join("gw.toml");
    (gw, dir, file)
}

/// A backchannel request with a `binding_message`.
fn initiate_with(gw: &str, message: &str) -> Resp {
    post_form(
        gw,
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", message),
        ],
        &[],
    )
}

/// One request on a kept-alive connection; the answer must not close it.
fn send(s: &mut TcpStream, path: &str, form: &[(&str, &str)]) -> Resp {
    let body = encode_form(form);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    read_response(s)
}

#[test]
fn a_rule_changed_under_load_applies_to_new_requests_and_drops_nothing() {
    const CONNECTIONS: usize = 4;
    const ROUNDS: usize = 40; // each a backchannel request and a poll: 320 requests
    let op = TestOp::start(&[]);
    let (gw, _dir, file) = start(&op, &config(20, ""));
    let ten = "0123456789";
    assert_eq!(
        initiate_with(&gw.addr(), ten).status,
        200,
        "10 <= 20 before"
    );
    // Tracked and polled before the reload (the first poll goes to the OP): the next poll
    // within its 5 s is too early, on whichever side of the reload it comes.
    let tracked = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, &tracked).error(),
        "authorization_pending"
    );

    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, done) = (gw.addr(), done.clone());
            std::thread::spawn(move || {
                // One connection for the whole run: a dropped one fails `read_response`.
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut id = String::new();
                for round in 0..ROUNDS {
                    let ack = send(
                        &mut s,
                        "/backchannel",
                        &[
                            ("client_id", POST_CLIENT.0),
                            ("client_secret", POST_CLIENT.1),
                            ("scope", "openid"),
                            ("login_hint", "alice"),
                            // Five characters: allowed by the old rule and the new.
                            ("binding_message", "hello"),
                        ],
                    );
                    assert_eq!(ack.status, 200, "round {round}: {}", ack.text());
                    assert_ne!(ack.header("connection"), Some("close"));
                    if round == 0 {
                        id = auth_req_id(&ack);
                    }
                    let polled = send(
                        &mut s,
                        "/token",
                        &[
                            ("client_id", POST_CLIENT.0),
                            ("client_secret", POST_CLIENT.1),
                            ("grant_type", CIBA_GRANT),
                            ("auth_req_id", &id),
                        ],
                    );
                    assert_eq!(polled.status, 400, "round {round}: {}", polled.text());
                    assert!(
                        ["slow_down", "authorization_pending"].contains(&polled.error().as_str()),
                        "round {round}: {}",
                        polled.text()
                    );
                    assert_ne!(polled.header("connection"), Some("close"));
                    done.fetch_add(2, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // The reload lands in the middle of the stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < CONNECTIONS * ROUNDS / 2 {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    reload(&gw, &file, &config(5, ""), "ok", 1);
    let mid = done.load(Ordering::SeqCst);
    for w in workers {
        w.join()
            .expect("no request failed and no connection dropped");
    }
    assert_eq!(done.load(Ordering::SeqCst), CONNECTIONS * ROUNDS * 2);
    assert!(
        mid < CONNECTIONS * ROUNDS * 2,
        "the reload came after the load: {mid}"
    );

    // New requests follow the new rule, at the edge.
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_binding_message"),
        "10 > 5 after the reload",
        || initiate_with(&gw.addr(), ten),
    );
    // The id tracked before the reload keeps its state: polled early, slow_down at the edge.
    let token_before = op.token_count();
    let early = poll(&gw.addr(), POST_CLIENT, &tracked);
    assert_oauth_error(&early, 400, "slow_down", "early poll after the reload");
    assert!(early.text().contains("10 s"), "{}", early.text());
    assert_eq!(
        op.token_count(),
        token_before,
        "the early poll reached the OP"
    );
    wait_log(&gw, "configuration reloaded");
    gw.metrics_containing(&[
        "ciba_gateway_config_reloads_total{result=\"invalid\"} 0",
        "ciba_gateway_config_loaded_timestamp_seconds ",
        "ciba_gateway_config_hash ",
    ]);
}

/// What `--check` prints for `file` after "configuration error: ".
fn check_error(file: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["--check", "--upstream", "http://127.0.0.1:1", "--config"])
        .arg(file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    err.split_once("configuration error: ")
        .map(|(_, e)| e.trim_end().to_string())
        .unwrap_or_else(|| panic!("{err}"))
}

#[test]
fn an_invalid_file_is_refused_with_check_s_message_and_a_later_valid_one_loads() {
    let op = TestOp::start(&[]);
    let (gw, _dir, file) = start(&op, &config(20, ""));
    let hash_before = metric(&gw, "ciba_gateway_config_hash");
    let ten = "0123456789";
    // The new rule is fine, a polling key is not: nothing of the file applies.
    let invalid = config(5, "[polling]\nmin_interval_seconds = \"fast\"\n");
    reload(&gw, &file, &invalid, "invalid", 1);
    let expected = check_error(&file);
    assert!(
        expected.starts_with("polling.min_interval_seconds: "),
        "{expected}"
    );
    wait_log(&gw, &format!("configuration error: {expected}"));
    gw.metrics_containing(&["ciba_gateway_config_reloads_total{result=\"ok\"} 0"]);
    assert_eq!(metric(&gw, "ciba_gateway_config_hash"), hash_before);
    // The old rule (20) still holds.
    let r = initiate_with(&gw.addr(), ten);
    assert_eq!(r.status, 200, "{}", r.text());

    reload(&gw, &file, &config(5, ""), "ok", 1);
    assert_ne!(metric(&gw, "ciba_gateway_config_hash"), hash_before);
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_binding_message"),
        "10 > 5 after the valid reload",
        || initiate_with(&gw.addr(), ten),
    );
}

#[test]
fn a_restart_only_key_is_named_and_the_rest_applies() {
    let op = TestOp::start(&[]);
    let start_text = config(
        20,
        "[server]\nthreads = 1\n[upstream]\nconnect_timeout_ms = 1000\n",
    );
    let (mut gw, _dir, file) = start(&op, &start_text);
    let new_text = config(
        5,
        "[server]\nthreads = 2\n[upstream]\nconnect_timeout_ms = 900\n",
    );
    reload(&gw, &file, &new_text, "ok", 1);
    let log = wait_log(&gw, "configuration reloaded");
    for key in ["server.threads", "upstream.connect_timeout_ms"] {
        assert!(
            log.contains(&format!("{key} changed; it needs a restart")),
            "{key} not named:\n{log}"
        );
    }
    // The keys the command line sets (--listen, --upstream) are not the file's to change.
    assert!(!log.contains("server.listen changed"), "{log}");
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_binding_message"),
        "the live rule applied",
        || initiate_with(&gw.addr(), "0123456789"),
    );
    // Still serving on the listener it started with.
    assert_eq!(initiate_with(&gw.addr(), "hello").status, 200);
    // SIGTERM after reloads still shuts down gracefully, at once when idle.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("SIGTERM still ends the gateway");
    assert!(status.success(), "{status:?}");
}

#[test]
fn new_connections_get_the_new_edge_limits_and_open_ones_keep_theirs() {
    let op = TestOp::start(&[]);
    let (gw, _dir, file) = start(&op, &config(20, "[server]\nmax_header_bytes = 16384\n"));
    let filler = "a".repeat(6000);
    let big = format!("GET /jwks HTTP/1.1\r\nHost: gw\r\nX-Filler: {filler}\r\n\r\n");
    // Opened before the reload, used after it.
    let mut open = TcpStream::connect(gw.addr()).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    open.write_all(big.as_bytes()).unwrap();
    assert_eq!(read_response(&mut open).status, 200);

    reload(
        &gw,
        &file,
        &config(20, "[server]\nmax_header_bytes = 4096\n"),
        "ok",
        1,
    );
    let r = raw(&gw.addr(), big.as_bytes());
    assert_oauth_error(
        &r,
        431,
        "invalid_request",
        "a new connection's header over the new cap",
    );
    open.write_all(big.as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut open).status,
        200,
        "the connection opened before the reload keeps its cap"
    );
}

/// Waits (up to 5 s) for the log to contain `needle`: the log is read from a pipe, so it
/// may trail the metric that counted the reload.
fn wait_log(gw: &Gateway, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log lacks `{needle}`:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A metric's value as printed.
fn metric(gw: &Gateway, name: &str) -> String {
    let m = get(&gw.metrics_addr(), "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}:\n{m}"))
        .to_string()
}

#[test]
fn a_rate_limit_lifted_by_a_reload_lets_the_client_through() {
    let op = TestOp::start(&[]);
    let tight =
        "[rate_limit.clients.\"client-other\"]\nbackchannel = { per_second = 1, burst = 1 }\n";
    let (gw, _dir, file) = start(&op, &config(20, tight));
    assert_eq!(initiate(&gw.addr(), OTHER_CLIENT, "alice").status, 200);
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (429, "temporarily_unavailable"),
        "over its own rate",
        || initiate(&gw.addr(), OTHER_CLIENT, "alice"),
    );
    reload(&gw, &file, &config(20, ""), "ok", 1);
    let r = initiate(&gw.addr(), OTHER_CLIENT, "alice");
    assert_eq!(r.status, 200, "the default rate applies now: {}", r.text());
}

#[test]
fn a_request_in_flight_finishes_under_the_configuration_it_started_with() {
    let op = TestOp::start(&[]);
    let (gw, _dir, file) = start(&op, &config(20, ""));
    let body = encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("scope", "openid"),
        ("login_hint", "alice"),
        // 10 characters: allowed by the old rule (20), not by the new one (5).
        ("binding_message", "0123456789"),
    ]);
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The header now, the body after the reload.
    write!(
        s,
        "POST /backchannel HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    gw.metrics_containing(&["ciba_gateway_requests_in_flight 1"]);
    reload(&gw, &file, &config(5, ""), "ok", 1);
    s.write_all(body.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "judged under the old rule: {}", r.text());
    // The next request on the same connection is judged under the new one.
    let next = send(
        &mut s,
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", "0123456789"),
        ],
    );
    assert_oauth_error(&next, 400, "invalid_binding_message", "the next request");
}
