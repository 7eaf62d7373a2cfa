//! A TLS OP: node-oidc-provider over HTTPS with a private CA, requiring a client
//! certificate. The gateway trusts `upstream.ca_file` and presents
//! `upstream.client_cert_file` on its own exchanges (discovery, CIBA) and on proxied
//! requests; the OP sees that certificate.

use super::*;

/// The TLS OP and what its admin calls need.
struct TlsOp {
    op: TestOp,
    admin: Arc<rustls::ClientConfig>,
}

impl TlsOp {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.op.port)
    }

    fn admin_get(&self, path: &str) -> Resp {
        let addr = self.op.addr();
        https(
            &addr,
            self.admin.clone(),
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap()
    }

    fn approve(&self, id: &str) {
        let r = https_form(
            &self.op.addr(),
            self.admin.clone(),
            "/admin/approve",
            &[("auth_req_id", id)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn start(pki: &Pki) -> TlsOp {
    let (cert, key, _) = pki.server("op");
    let ca = pki.ca_file();
    let op = TestOp::start(&[
        "--interval",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ]);
    let admin_cert = pki.ca.leaf(&["test-admin"]);
    TlsOp {
        op,
        admin: client_config(&pki.ca.der(), &[], Some(&admin_cert)),
    }
}

#[test]
fn the_gateway_trusts_the_ca_file_and_presents_its_client_certificate() {
    let pki = Pki::new();
    let op = start(&pki);
    let client = pki.ca.leaf(&["gateway-client"]);
    let (cc, ck) = pki.write("gateway-client", &client);
    let text = format!(
        "[upstream]\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n[polling]\nmin_interval_seconds = 1\n",
        pki.ca_file().display(),
        cc.display(),
        ck.display()
    );
    let (gw, _dir) = Gateway::with_config(&op.url(), &text);
    let addr = gw.addr();
    // Discovery (the gateway's own exchange) worked: it is ready. A whole flow:
    let id = auth_req_id(&initiate(&addr, POST_CLIENT, "alice"));
    assert_eq!(
        poll(&addr, POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    op.approve(&id);
    std::thread::sleep(Duration::from_millis(1_100));
    let tokens = poll(&addr, POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    // A proxied path.
    assert_eq!(get(&addr, "/jwks").status, 200);
    let stats = op.admin_get("/admin/stats").json();
    assert_eq!(stats["backchannel"], 1);
    assert_eq!(stats["by_path"]["/jwks"], 1);
    let cns: Vec<String> = stats["tls_client_cns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(cns.iter().any(|c| c == "gateway-client"), "{cns:?}");
    assert!(
        cns.iter()
            .all(|c| c == "gateway-client" || c == "test-admin"),
        "every connection from the gateway presented its certificate: {cns:?}"
    );
}

#[test]
fn without_the_ca_file_or_the_client_certificate_the_op_is_not_reached() {
    let pki = Pki::new();
    let op = start(&pki);
    let client = pki.ca.leaf(&["gateway-client"]);
    let (cc, ck) = pki.write("gateway-client", &client);
    let cases = [
        // The system roots do not know the private CA.
        format!(
            "[upstream]\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            cc.display(),
            ck.display()
        ),
        // The OP requires a certificate the gateway does not have.
        format!("[upstream]\nca_file = \"{}\"\n", pki.ca_file().display()),
    ];
    for text in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "gw.toml", &text);
        let gw = Gateway::spawn(&op.url(), &["--config", cfg.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(1_500));
        let ready = get(&gw.metrics_addr(), "/readyz").status;
        assert_eq!(
            ready, 503,
            "{text}: the OP's discovery document cannot be read"
        );
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_eq!(r.status, 503, "{text}: {}", r.text());
    }
    let stats = op.admin_get("/admin/stats").json();
    assert_eq!(stats["total"], 0, "{stats}");
}
