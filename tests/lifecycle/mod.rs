//! Start-up, readiness and shutdown: discovery and name resolution before the gateway is
//! ready, a busy listen address, SIGTERM with and without requests in flight, and `--check`
//! (`check.rs`).

mod check;

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn without_discovery_the_gateway_is_not_ready_and_refuses() {
    let dead = refused_url();
    let gw = Gateway::spawn(&dead, &[]);
    assert_eq!(get(&gw.metrics_addr(), "/healthz").status, 200);
    assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(gw.addr()).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_oauth_error(&r, 503, "temporarily_unavailable", "r");
    while !gw.log().contains("discovery from") {
        assert!(
            Instant::now() < deadline,
            "no discovery warning:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_upstream_host_that_does_not_resolve_is_not_fatal() {
    // .invalid never resolves (RFC 6761). Nothing may reach an OP, so none is started:
    // the gateway must stay up, say not ready, refuse with JSON, and say why.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "gw.toml",
        &stub_config("discovery_retry_seconds = 1\n"),
    );
    let cfg = cfg.to_str().unwrap();
    let mut gw = Gateway::spawn(
        &format!("http://no-such-host.invalid:{}", free_port()),
        &["--config", cfg],
    );
    assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(gw.addr()).is_err() {
        assert!(
            Instant::now() < deadline,
            "no proxy listener:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = poll(&gw.addr(), POST_CLIENT, "some-id");
    assert_oauth_error(&r, 503, "temporarily_unavailable", "r");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("host name"));
    let pass = get(&gw.addr(), "/jwks");
    assert_oauth_error(&pass, 503, "temporarily_unavailable", "pass");
    // At least two failed lookups: the first, then a retry on the 1 s schedule.
    while gw.log().matches("upstream.url: cannot resolve").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no retried lookup:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.metrics_containing(&["ciba_gateway_ready 0"]);
    let m = get(&gw.metrics_addr(), "/metrics").text();
    let failures: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ciba_gateway_upstream_resolve_failures_total "))
        .expect("the resolve failure counter is exported")
        .parse()
        .unwrap();
    assert!(failures >= 2, "{m}");
    assert!(
        gw.wait_exit(Duration::from_millis(1)).is_none(),
        "the gateway exited"
    );
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[test]
fn a_host_name_upstream_is_resolved() {
    // The OP listens where the system resolves `localhost` first, so the gateway's
    // lookup (the system resolver too) finds it whatever this machine's hosts file says.
    use std::net::ToSocketAddrs;
    let first = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
    let op = TestOp::start(&["--host", &first.ip().to_string()]);
    let gw = Gateway::start(&format!("http://localhost:{}", op.port), &[]);
    assert!(
        gw.log().contains("upstream.url: host resolved"),
        "{}",
        gw.log()
    );
    let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(op.backchannel_count(), 1);
    assert_eq!(op.last_hop()["host"], format!("localhost:{}", op.port));
    gw.metrics_containing(&[
        "ciba_gateway_ready 1",
        "ciba_gateway_upstream_resolve_failures_total 0",
    ]);
}

#[test]
fn a_busy_listen_address_ends_the_process_naming_the_key() {
    // pingora alone would retry for 30 s and then leave a process whose /healthz
    // passes while nothing serves the proxy port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (key, listen, metrics) in [
        ("server.listen", busy_addr.as_str(), free.as_str()),
        ("server.metrics_listen", free.as_str(), busy_addr.as_str()),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["--upstream", "http://127.0.0.1:1"])
            .args(["--listen", listen, "--metrics-listen", metrics])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let Some(status) = wait_for_exit(&mut child, Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("the gateway kept running with {key} busy");
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{key}: cannot listen on {busy_addr}")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    drop(busy);
}

#[test]
fn discovery_is_retried_until_the_op_answers() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "gw.toml",
        "[upstream]\ndiscovery_retry_seconds = 1\n",
    );
    let mut gw = Gateway::spawn(
        &format!("http://127.0.0.1:{port}"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
    let op = TestOp::start(&["--port", &port.to_string()]);
    gw.wait_ready();
    assert_eq!(initiate(&gw.addr(), POST_CLIENT, "alice").status, 200);
    drop(op);
}

fn sigterm(gw: &Gateway) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sigterm_with_nothing_in_flight_exits_without_waiting_out_the_grace_period() {
    let op = TestOp::start(&[]);
    let (mut gw, _dir) = Gateway::with_config(&op.url(), "[server]\nshutdown_grace_seconds = 30\n");
    // A kept-alive idle connection is not a request in flight.
    let mut idle = std::net::TcpStream::connect(gw.addr()).unwrap();
    std::io::Write::write_all(&mut idle, b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle).status, 200);
    let started = Instant::now();
    sigterm(&gw);
    let status = gw
        .wait_exit(Duration::from_secs(20))
        .expect("the gateway exits well within its 30 s grace period");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits() {
    use std::sync::atomic::Ordering;
    let stub = Stub::start(StubMode::Gated(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\nConnection: close\r\n\r\n{\"error\":\"authorization_pending\"}",
    ));
    let (mut gw, _dir) = Gateway::with_config(
        &stub.url(),
        "[server]\nshutdown_grace_seconds = 30\n[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\n",
    );
    let addr = gw.addr();
    // A kept-alive connection that has been answered once (locally: the OP is held).
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut idle,
        b"POST /token HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut idle).status, 400);
    let poller = std::thread::spawn(move || poll(&addr, POST_CLIENT, "some-id"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while stub.received.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the poll never reached the OP");
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&gw);
    while !gw.log().contains("Broadcast graceful shutdown complete") {
        assert!(Instant::now() < deadline, "no shutdown:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The idle connection is closed at once rather than kept for a next request.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = [0u8; 64];
    assert_eq!(
        std::io::Read::read(&mut idle, &mut rest).expect("closed, not timed out"),
        0
    );
    // Shutting down, but the poll is still being answered: the process stays.
    assert!(
        gw.wait_exit(Duration::from_millis(500)).is_none(),
        "{}",
        gw.log()
    );
    stub.release.store(true, Ordering::SeqCst);
    let answer = poller.join().unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.error(), "authorization_pending");
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("the gateway exits once the last request is answered");
    assert!(status.success(), "exit status {status:?}");
}
