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

    // Polls on new connections (a handshake each) until told to stop, at most 2,000.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (stop, sent, failures, addr, cfg, id) = (
            stop.clone(),
            sent.clone(),
            failures.clone(),
            addr.clone(),
            cfg.clone(),
            id.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 2_000 {
                let body = encode_form(&[
                    ("client_id", POST_CLIENT.0),
                    ("client_secret", POST_CLIENT.1),
                    ("grant_type", CIBA_GRANT),
                    ("auth_req_id", &id),
                ]);
                let req = format!(
                    "POST /token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                sent.fetch_add(1, Ordering::Relaxed);
                match https(&addr, cfg.clone(), req.as_bytes()) {
                    // Pending or slow_down: answered; a 5xx or a transport error is not.
                    Ok(r) if r.status == 400 || r.status == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.text())),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                // A steady stream, not a flood: the machine is shared with other tests.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let second = pki.ca.leaf(&["127.0.0.1", "localhost"]);
    let chain: String = second.chain.iter().map(|d| pem("CERTIFICATE", d)).collect();
    replace(&key, pem("PRIVATE KEY", &second.key).as_bytes());
    replace(&cert, chain.as_bytes());
    wait_served(&gw, &cfg, &second.chain[0]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        sent.load(Ordering::Relaxed) >= 10,
        "too few requests to mean anything"
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
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
    assert!(gw.log().contains("server.tls.cert_file"), "{}", gw.log());
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
    assert!(gw.log().contains("server.tls.key_file: does not match"));
    assert!(
        !gw.log().contains("PRIVATE KEY"),
        "no key material in the log"
    );
}
