//! A client that authenticates with the certificate it presents in its own TLS handshake
//! with the gateway (`tls_client_auth`, RFC 8705), in front of node-oidc-provider's mTLS
//! feature: whole flows over HTTP/1.1 and HTTP/2 end in tokens bound to that certificate;
//! no certificate, one from another CA, a forged forwarding header or a second method is
//! `invalid_client` at the edge and the OP never sees it.

use super::*;
use base64::Engine;

const CLIENT: &str = "tls-client";
const INTERVAL: Duration = Duration::from_millis(1_100);

struct Setup {
    pki: Pki,
    op: TestOp,
    gw: Gateway,
    _dir: tempfile::TempDir,
    /// The client's certificate and key, issued by the client CA.
    client: Tls,
    /// Another CA's leaf with the same name.
    foreign: Tls,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let client_ca = Ca::new("client CA");
    let client = client_ca.leaf(&["tls-client.example"]);
    let foreign = Ca::new("another CA").leaf(&["tls-client.example"]);
    let mtls = serde_json::json!({
        "header": "x-ssl-client-cert",
        "ca_pem": client_ca.pem(),
        "clients": [
            {"client_id": CLIENT, "token_endpoint_auth_method": "tls_client_auth",
             "tls_client_auth_subject_dn": "CN=tls-client.example"},
        ],
    });
    let mtls_file = pki.dir.path().join("mtls.json");
    std::fs::write(&mtls_file, mtls.to_string()).unwrap();
    let client_ca_file = pki.dir.path().join("client-ca.pem");
    std::fs::write(&client_ca_file, client_ca.pem()).unwrap();
    let op = TestOp::start(&["--interval", "1", "--mtls", mtls_file.to_str().unwrap()]);
    let (cert, key, _) = pki.server("gateway");
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n{}[client_certificates]\nca_file = \"{}\"\n[clients.\"{CLIENT}\"]\ntoken_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"CN=tls-client.example\"\n",
        tls_section(&cert, &key, "client_auth = \"optional\"\n"),
        client_ca_file.display()
    );
    let (gw, dir) = Gateway::with_config(&op.url(), &text);
    Setup {
        pki,
        op,
        gw,
        _dir: dir,
        client,
        foreign,
    }
}

fn thumbprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// What the OP bound an access token to.
fn binding(op: &TestOp, token: &str) -> serde_json::Value {
    let r = post_form(&op.addr(), "/admin/access-token", &[("token", token)], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn initiate_pairs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", CLIENT),
        ("scope", "openid"),
        ("login_hint", "alice"),
    ]
}

fn poll_pairs(id: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("client_id", CLIENT),
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", id),
    ]
}

#[test]
fn a_certificate_from_the_handshake_authenticates_the_client_and_binds_its_tokens() {
    let s = setup();
    let addr = s.gw.addr();
    let cfg = client_config(&s.pki.ca.der(), &[b"http/1.1"], Some(&s.client));
    let ack = https_form(&addr, cfg.clone(), "/backchannel", &initiate_pairs());
    let id = auth_req_id(&ack);
    let pending = https_form(&addr, cfg.clone(), "/token", &poll_pairs(&id));
    assert_oauth_error(&pending, 400, "authorization_pending", "first poll");
    s.op.approve(&id);
    std::thread::sleep(INTERVAL);
    let tokens = https_form(&addr, cfg, "/token", &poll_pairs(&id));
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    let at = tokens.json()["access_token"].as_str().unwrap().to_string();
    let bound = binding(&s.op, &at);
    assert_eq!(bound["client_id"], CLIENT);
    assert_eq!(
        bound["x5t#S256"],
        thumbprint(&s.client.chain[0]),
        "cnf x5t#S256 is the handshake certificate's"
    );

    // The same over HTTP/2, every request a stream of one connection.
    let op = &s.op;
    let token = with_h2(
        &addr,
        &s.pki.ca.der(),
        Some(&s.client),
        |mut h2| async move {
            let ack = h2_send(&mut h2, &H2Req::form("/backchannel", &initiate_pairs()))
                .await
                .unwrap();
            let id = auth_req_id(&ack);
            op.approve(&id);
            tokio::time::sleep(INTERVAL).await;
            let tokens = h2_send(&mut h2, &H2Req::form("/token", &poll_pairs(&id)))
                .await
                .unwrap();
            assert_eq!(tokens.status, 200, "{}", tokens.text());
            tokens.json()["access_token"].as_str().unwrap().to_string()
        },
    );
    assert_eq!(
        binding(&s.op, &token)["x5t#S256"],
        thumbprint(&s.client.chain[0])
    );
}

#[test]
fn without_the_right_handshake_certificate_the_op_never_sees_the_request() {
    let s = setup();
    let addr = s.gw.addr();
    let ca = s.pki.ca.der();
    let good = client_config(&ca, &[b"http/1.1"], Some(&s.client));
    // A tracked request, so that a poll that slipped through would reach the OP.
    let id = auth_req_id(&https_form(
        &addr,
        good.clone(),
        "/backchannel",
        &initiate_pairs(),
    ));
    let forged = format!(
        "POST {{path}} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-SSL-Client-Cert: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {{len}}\r\n\r\n{{body}}",
        pem("CERTIFICATE", &s.client.chain[0])
            .replace('\n', "%0A")
            .replace(' ', "%20")
    );
    let none = client_config(&ca, &[b"http/1.1"], None);
    let foreign = client_config(&ca, &[b"http/1.1"], Some(&s.foreign));
    let initiate = encode_form(&initiate_pairs());
    let poll = encode_form(&poll_pairs(&id));
    let with_secret_initiate = format!("{initiate}&client_secret=s3cret-s3cret");
    let with_secret_poll = format!("{poll}&client_secret=s3cret-s3cret");
    type Row<'a> = (&'a str, Arc<rustls::ClientConfig>, &'a str, String, &'a str);
    let rows: Vec<Row> = vec![
        (
            "no certificate",
            none.clone(),
            "/backchannel",
            initiate.clone(),
            "",
        ),
        ("no certificate", none.clone(), "/token", poll.clone(), ""),
        (
            "another CA's certificate",
            foreign.clone(),
            "/backchannel",
            initiate.clone(),
            "",
        ),
        (
            "another CA's certificate",
            foreign,
            "/token",
            poll.clone(),
            "",
        ),
        (
            "a forged forwarding header",
            none.clone(),
            "/backchannel",
            initiate.clone(),
            "forged",
        ),
        ("a forged forwarding header", none, "/token", poll, "forged"),
        (
            "a second method",
            good.clone(),
            "/backchannel",
            with_secret_initiate,
            "",
        ),
        ("a second method", good, "/token", with_secret_poll, ""),
    ];
    let before = (s.op.backchannel_count(), s.op.token_count());
    for (what, cfg, path, body, header) in rows {
        let request = if header == "forged" {
            forged
                .replace("{path}", path)
                .replace("{len}", &body.len().to_string())
                .replace("{body}", &body)
        } else {
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let r = https(&addr, cfg, request.as_bytes()).unwrap();
        assert_oauth_error(&r, 401, "invalid_client", &format!("{what} on {path}"));
        assert_eq!(
            (s.op.backchannel_count(), s.op.token_count()),
            before,
            "{what} on {path} reached the OP"
        );
    }
}
