//! The TLS handshake at the listener: versions and suites (FAPI), ALPN, its deadline and
//! the connection slot it holds, client certificates at the handshake, and the key
//! formats `--check` reads.

use super::*;
use std::process::Command;

/// An RSA server certificate for 127.0.0.1 signed by nobody (openssl), its key written in
/// the given format: `pkcs8`, `pkcs1` or, for an EC key, `sec1`.
fn openssl_pair(dir: &Path, kind: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let c = dir.join(format!("{kind}.pem"));
    let k = dir.join(format!("{kind}-key.pem"));
    let newkey = if kind == "sec1" {
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"].as_slice()
    } else {
        ["-newkey", "rsa:2048"].as_slice()
    };
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(newkey)
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .expect("openssl is needed for the RSA certificates")
        .status
        .success();
    assert!(ok);
    let convert: &[&str] = match kind {
        "pkcs1" => &["rsa", "-traditional"],
        "sec1" => &["ec"],
        _ => &[],
    };
    if let Some((tool, flags)) = convert.split_first() {
        let ok = Command::new("openssl")
            .arg(tool)
            .arg("-in")
            .arg(&k)
            .arg("-out")
            .arg(&k)
            .args(flags)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "openssl {tool}");
    }
    let der = rustls::pki_types::pem::PemObject::from_pem_file(&c)
        .map(|c: CertificateDer<'static>| c.to_vec())
        .unwrap();
    (c, k, der)
}

fn check(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "gw.toml", text);
    Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["--check", "--upstream", "http://127.0.0.1:9", "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

#[test]
fn check_reads_rsa_and_ecdsa_keys_in_every_pem_format_and_names_the_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["pkcs8", "pkcs1", "sec1"] {
        let (c, k, _) = openssl_pair(dir.path(), kind);
        let head = std::fs::read_to_string(&k).unwrap();
        let want = match kind {
            "pkcs1" => "BEGIN RSA PRIVATE KEY",
            "sec1" => "BEGIN EC PRIVATE KEY",
            _ => "BEGIN PRIVATE KEY",
        };
        assert!(
            head.contains(want),
            "{kind}: {}",
            head.lines().next().unwrap()
        );
        let out = check(&tls_section(&c, &k, ""));
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The wrong key, and the key file given as the certificate.
    let (c, _, _) = openssl_pair(dir.path(), "pkcs8");
    let (_, other, _) = openssl_pair(dir.path(), "pkcs1");
    let out = check(&tls_section(&c, &other, ""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("server.tls.key_file: does not match"), "{err}");
    assert!(!err.contains("PRIVATE KEY-----"), "{err}");
    let out = check(&tls_section(&other, &other, ""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls.cert_file"));
}

/// A TLS 1.1 ClientHello (no supported_versions extension, a TLS 1.1 suite), by hand:
/// no client at hand speaks TLS 1.1 any more.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[7u8; 32]);
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // AES-CBC-SHA suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

/// A client limited to `suites` and `versions`.
fn limited(
    ca: &[u8],
    suites: &[rustls::CipherSuite],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| suites.contains(&s.suite()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn get_over(addr: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Resp> {
    https(
        addr,
        cfg,
        format!("GET /jwks HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn fapi_suites_only_tls11_and_other_suites_are_refused() {
    use rustls::CipherSuite as C;
    let dir = tempfile::tempdir().unwrap();
    let (c, k, der) = openssl_pair(dir.path(), "pkcs8");
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), &tls_section(&c, &k, "fapi_ciphers = true\n"));
    let addr = gw.addr();
    let v12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let v13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    for suite in [
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ] {
        let r = get_over(&addr, limited(&der, &[suite], v12)).unwrap();
        assert_eq!(r.status, 200, "{suite:?}");
    }
    for suite in [
        C::TLS13_AES_128_GCM_SHA256,
        C::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        assert_eq!(
            get_over(&addr, limited(&der, &[suite], v13))
                .unwrap()
                .status,
            200
        );
    }
    let failed = "ciba_gateway_connections_refused_total{reason=\"tls_handshake_failed\"}";
    let failed_before = metric(&gw, failed);
    let total_before = op.count(OpCount::Total);
    // Not in FAPI's list: refused in the handshake.
    let chacha12 = limited(&der, &[C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256], v12);
    assert!(get_over(&addr, chacha12).is_err());

    // TLS 1.1: an alert, never a ServerHello.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&tls11_client_hello()).unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    assert_eq!(first[0], 0x15, "a TLS alert record");
    // The refusal is counted a moment after the alert is written.
    gw.metrics_containing(&[&format!("\n{failed} {}\n", failed_before + 2)]);
    assert_eq!(op.count(OpCount::Total), total_before);

    // TLS 1.3 only: TLS 1.2 refused with any suite.
    let (gw13, _d) =
        Gateway::with_config(&op.url(), &tls_section(&c, &k, "min_version = \"1.3\"\n"));
    let any12 = limited(&der, &[C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256], v12);
    assert!(get_over(&gw13.addr(), any12).is_err());
    assert_eq!(
        get_over(&gw13.addr(), client_config(&der, &[], None))
            .unwrap()
            .status,
        200
    );
}

#[test]
fn alpn_negotiates_h2_or_http1_and_http2_can_be_switched_off() {
    let pki = Pki::new();
    let (op, gw, _d) = tls_setup(&pki, "", "");
    let (cert, key, _) = pki.server("other");
    let (h1_only, _d2) =
        Gateway::with_config(&op.url(), &tls_section(&cert, &key, "http2 = false\n"));
    let ca = pki.ca.der();
    let alpn = |addr: &str, offer: &[&[u8]]| {
        let s = connect(addr, client_config(&ca, offer, None)).unwrap();
        s.conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    };
    assert_eq!(
        alpn(&gw.addr(), &[b"h2", b"http/1.1"]).as_deref(),
        Some("h2")
    );
    assert_eq!(
        alpn(&gw.addr(), &[b"http/1.1"]).as_deref(),
        Some("http/1.1")
    );
    assert_eq!(alpn(&gw.addr(), &[]), None);
    assert_eq!(
        alpn(&h1_only.addr(), &[b"h2", b"http/1.1"]).as_deref(),
        Some("http/1.1")
    );
    // No ALPN at all: HTTP/1.1.
    let r = get_over(&gw.addr(), client_config(&ca, &[], None)).unwrap();
    assert_eq!(r.status, 200);
    // Only h2 offered where HTTP/2 is off: no common protocol, no handshake.
    assert!(connect(&h1_only.addr(), client_config(&ca, &[b"h2"], None)).is_err());
}

#[test]
fn a_slow_handshake_is_cut_at_its_deadline_and_frees_its_connection_slot() {
    let pki = Pki::new();
    let (_op, gw, _d) = tls_setup(
        &pki,
        "handshake_timeout_seconds = 2\n",
        "[server]\nmax_connections = 1\nmax_connections_per_address = 1\n",
    );
    let addr = gw.addr();
    let ca = pki.ca.der();
    // The place is taken in the connection's task, which a loaded machine may start late
    // (seconds late while the whole suite runs on two cores): the gauge, not a sleep, says
    // when the slow connection holds it (or has let it go).
    let holding = |n: u32| {
        let line = format!("\nciba_gateway_client_connections {n}\n");
        gw.metrics_containing_within(&[&line], Duration::from_secs(20));
    };
    for partial in [&b""[..], &tls11_client_hello()[..20]] {
        holding(0);
        // Holds the only slot: nothing, or the start of a ClientHello.
        let mut slow = TcpStream::connect(&addr).unwrap();
        let connected = std::time::Instant::now();
        slow.write_all(partial).unwrap();
        holding(1);
        let taken = std::time::Instant::now();
        // The slot is taken: another connection is closed without a handshake.
        assert!(get_over(&addr, client_config(&ca, &[], None)).is_err());
        // The slow one is cut at the deadline: 2 s from when the gateway took it, which is
        // after the connect and before the gauge said so (the bounds leave this thread room
        // to have noted either time late)...
        slow.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = [0u8; 64];
        let n = slow.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        let (since_connect, since_taken) = (connected.elapsed(), taken.elapsed());
        assert!(
            since_connect >= Duration::from_millis(1500)
                && since_taken < Duration::from_millis(3500),
            "{since_connect:?} after the connect, {since_taken:?} after the place was taken"
        );
        // ...and its slot is free again.
        holding(0);
        assert_eq!(
            get_over(&addr, client_config(&ca, &[], None))
                .unwrap()
                .status,
            200
        );
    }
    gw.metrics_containing(&[
        "ciba_gateway_connections_refused_total{reason=\"tls_handshake_timeout\"} 2",
    ]);
    // The two refused while the slot was held (and any the harness's own readiness probe
    // met).
    assert!(
        metric(
            &gw,
            "ciba_gateway_connections_refused_total{reason=\"max_connections\"}"
        ) >= 2
    );
}

#[test]
fn client_certificates_at_the_handshake() {
    let pki = Pki::new();
    let (op, required, _d) = tls_setup(&pki, "client_auth = \"required\"\n", "");
    let (cert, key, _) = pki.server("other");
    let (optional, _d2) = Gateway::with_config(
        &op.url(),
        &tls_section(&cert, &key, "client_auth = \"optional\"\n"),
    );
    let ca = pki.ca.der();
    let other_ca = crate::support::pki::Ca::new("another CA");
    let presented = [
        ("good", pki.ca.leaf(&["client.example"])),
        ("expired", pki.ca.expired_leaf(&["client.example"])),
        ("another CA", other_ca.leaf(&["client.example"])),
        (
            "self-signed",
            crate::support::pki::self_signed(&["client.example"]),
        ),
    ];
    let before = op.count(OpCount::Total);
    // Required, none presented: no handshake, nothing reaches the OP.
    assert!(get_over(&required.addr(), client_config(&ca, &[], None)).is_err());
    assert_eq!(op.count(OpCount::Total), before);
    // Any certificate whose key the client holds passes the handshake: whether it is
    // trusted is the per-request identity rule's decision.
    for (what, cert) in &presented {
        for gw in [&required, &optional] {
            let r = get_over(&gw.addr(), client_config(&ca, &[], Some(cert)));
            assert_eq!(r.map(|r| r.status).unwrap_or(0), 200, "{what}");
        }
    }
    // Optional, none presented: served.
    assert_eq!(
        get_over(&optional.addr(), client_config(&ca, &[], None))
            .unwrap()
            .status,
        200
    );
    // Required, over HTTP/2 as well.
    let r = with_h2(
        &required.addr(),
        &ca,
        Some(&presented[0].1),
        |mut h2| async move { h2_send(&mut h2, &H2Req::get("/jwks")).await },
    );
    assert_eq!(r.unwrap().status, 200);
}
