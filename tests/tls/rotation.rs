//! Certificate rotation without a restart: the files replaced while polls keep arriving
//! over new TLS connections; no request fails, the new certificate is served afterwards,
//! and an invalid new file is refused with the old certificate kept.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Replaces a file atomically (write beside it, rename over it), as deployment tools do.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits until new handshakes get `leaf`.
fn wait_served(gw: &Gateway, cfg: &Arc<rustls::ClientConfig>, leaf: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served_leaf(&connect(&gw.addr(), cfg.clone()).unwrap()) != leaf {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is not served; loaded {}, refused {}:\n{}",
            metric(gw, "ciba_gateway_tls_reloads_total{outcome=\"loaded\"}"),
            metric(gw, "ciba_gateway_tls_reloads_total{outcome=\"refused\"}"),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls of one `auth_req_id` on new TLS connections (a handshake each), in a thread,
/// until stopped, at most 2,000.
struct PollStream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl PollStream {
    fn start(addr: &str, cfg: &Arc<rustls::ClientConfig>, id: &str) -> PollStream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            let (addr, cfg, id) = (addr.to_string(), cfg.clone(), id.to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 2_000 {
                    let body = poll_body(POST_CLIENT, &id);
                    let req = format!(
                        "POST /token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    sent.fetch_add(1, Ordering::Relaxed);
                    match https(&addr, cfg.clone(), req.as_bytes()) {
                        // Pending or slow_down: answered; a 5xx or a transport error is not.
                        Ok(r) if r.status == 400 || r.status == 200 => {}
                        Ok(r) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", r.status, r.text()))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    // A steady stream, not a flood: the machine is shared with other tests.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        PollStream {
            stop,
            sent,
            failures,
            thread,
        }
    }

    /// Stops the stream and asserts that every request was answered.
    fn finish_without_failures(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let sent = self.sent.load(Ordering::Relaxed);
        let failures = self.failures.lock().unwrap();
        assert!(sent >= 10, "too few requests to mean anything");
        assert!(
            failures.is_empty(),
            "{} of {sent} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
}

#[test]
fn the_certificate_rotates_under_load_and_an_invalid_one_is_refused() {
    let pki = Pki::new();
    let op = TestOp::start(&["--interval", "1"]);
    let (cert, key, first) = pki.server("live");
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n[rate_limit]\nenabled = false\n{}",
        tls_section(&cert, &key, "watch_interval_seconds = 1\n")
    );
    let (gw, _dir) = Gateway::with_config(&op.url(), &text);
    let addr = gw.addr();
    let cfg = client_config(&pki.ca.der(), &[b"http/1.1"], None);
    assert_eq!(
        served_leaf(&connect(&addr, cfg.clone()).unwrap()),
        first.chain[0].to_vec()
    );
    let id = auth_req_id(&https_form(
        &addr,
        cfg.clone(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
        ],
    ));

    let load = PollStream::start(&addr, &cfg, &id);
    std::thread::sleep(Duration::from_millis(500));
    let second = pki.ca.leaf(&["127.0.0.1", "localhost"]);
    let chain: String = second.chain.iter().map(|d| pem("CERTIFICATE", d)).collect();
    replace(&key, pem("PRIVATE KEY", &second.key).as_bytes());
    replace(&cert, chain.as_bytes());
    wait_served(&gw, &cfg, &second.chain[0]);
    std::thread::sleep(Duration::from_millis(500));
    load.finish_without_failures();
    let loaded = metric(&gw, "ciba_gateway_tls_reloads_total{outcome=\"loaded\"}");
    assert!(loaded >= 1);

    // An invalid new certificate file: refused (logged as --check says it), counted, the
    // pair in force stays.
    let refused_before = metric(&gw, "ciba_gateway_tls_reloads_total{outcome=\"refused\"}");
    replace(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&gw, "ciba_gateway_tls_reloads_total{outcome=\"refused\"}") == refused_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the invalid file was not looked at"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        served_leaf(&connect(&addr, cfg.clone()).unwrap()),
        second.chain[0].to_vec()
    );
    gw.log_containing("server.tls.cert_file");
    // A mismatched key: refused too.
    let third = pki.ca.leaf(&["127.0.0.1"]);
    replace(&cert, pem("CERTIFICATE", &third.chain[0]).as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&gw, "ciba_gateway_tls_reloads_total{outcome=\"refused\"}") < refused_before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mismatched pair was not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        served_leaf(&connect(&addr, cfg).unwrap()),
        second.chain[0].to_vec()
    );
    gw.log_containing("server.tls.key_file: does not match");
    assert!(
        !gw.log().contains("PRIVATE KEY"),
        "no key material in the log"
    );
}

/// A backchannel request with a `binding_message` of `chars` characters, over TLS.
fn initiate_with_message(addr: &str, cfg: &Arc<rustls::ClientConfig>, chars: usize) -> Resp {
    let message = "m".repeat(chars);
    https_form(
        addr,
        cfg.clone(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", &message),
        ],
    )
}

#[test]
fn a_sighup_rotates_the_certificate_with_the_rules_and_a_bad_pair_refuses_the_whole_reload() {
    let pki = Pki::new();
    let op = TestOp::start(&["--interval", "1"]);
    let (cert, key, first) = pki.server("hup");
    let text = |cert: &Path, key: &Path, max_chars: usize| {
        format!(
            "[polling]\nmin_interval_seconds = 1\n[rate_limit]\nenabled = false\n[validation]\nbinding_message_max_chars = {max_chars}\n{}",
            tls_section(cert, key, "")
        )
    };
    let (gw, dir) = Gateway::with_config(&op.url(), &text(&cert, &key, 20));
    let file = dir.path().join("gw.toml");
    let addr = gw.addr();
    let cfg = client_config(&pki.ca.der(), &[b"http/1.1"], None);
    assert_eq!(
        served_leaf(&connect(&addr, cfg.clone()).unwrap()),
        first.chain[0].to_vec()
    );
    let id = auth_req_id(&initiate_with_message(&addr, &cfg, 10));
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };

    // New files named by the new configuration, with a stricter rule, under a stream of
    // polls: nothing fails, the new pair and the new rule hold afterwards.
    let load = PollStream::start(&addr, &cfg, &id);
    std::thread::sleep(Duration::from_millis(300));
    let second = pki.ca.leaf(&["127.0.0.1", "localhost"]);
    let (cert2, key2) = (dir.path().join("second.pem"), dir.path().join("second.key"));
    let chain: String = second.chain.iter().map(|d| pem("CERTIFICATE", d)).collect();
    std::fs::write(&cert2, chain).unwrap();
    std::fs::write(&key2, pem("PRIVATE KEY", &second.key)).unwrap();
    std::fs::write(&file, text(&cert2, &key2, 5)).unwrap();
    hup();
    gw.metrics_containing(&["ciba_gateway_config_reloads_total{result=\"ok\"} 1"]);
    std::thread::sleep(Duration::from_millis(300));
    load.finish_without_failures();
    assert_eq!(
        served_leaf(&connect(&addr, cfg.clone()).unwrap()),
        second.chain[0].to_vec()
    );
    let before = op.backchannel_count();
    let r = initiate_with_message(&addr, &cfg, 10);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_binding_message");
    assert_eq!(op.backchannel_count(), before, "refused at the edge");

    // A new file whose certificate is broken, with a looser rule: the whole reload is
    // refused, the pair and the rule in force stay.
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&file, text(&broken, &key2, 50)).unwrap();
    hup();
    gw.metrics_containing(&["ciba_gateway_config_reloads_total{result=\"invalid\"} 1"]);
    gw.log_containing("server.tls.cert_file");
    assert_eq!(
        served_leaf(&connect(&addr, cfg.clone()).unwrap()),
        second.chain[0].to_vec()
    );
    let r = initiate_with_message(&addr, &cfg, 10);
    assert_eq!(r.status, 400, "the stricter rule stays: {}", r.text());
    assert_eq!(op.backchannel_count(), before);
    assert!(
        !gw.log().contains("PRIVATE KEY"),
        "no key material in the log"
    );
}
