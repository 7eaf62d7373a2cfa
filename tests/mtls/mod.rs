//! Client certificates (RFC 8705) through the real binary, in front of node-oidc-provider
//! with its mTLS feature (`--mtls`): the test acts as the TLS terminator on 127.0.0.1 (in
//! `rate_limit.trusted_proxies`) and passes the certificate in `x-client-cert`; an
//! untrusted peer connects from 127.0.0.2. Whole flows end in certificate-bound tokens;
//! every way to present no certificate, the wrong one, or a second method is refused at the
//! edge on the endpoints and their mTLS aliases, and the OP never sees it.

use crate::support::pki::{self, Ca};
use crate::support::*;
use base64::Engine;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TLS_CLIENT: &str = "tls-client";
const SELF_CLIENT: &str = "self-client";
const PROXY_HEADER: &str = "x-client-cert";
const INTERVAL: Duration = Duration::from_millis(1_100);

/// The CIBA paths and their mTLS aliases, as the test OP publishes them.
const PATHS: [(&str, &str); 2] = [
    ("/backchannel", "/token"),
    ("/mtls/backchannel", "/mtls/token"),
];

struct Setup {
    op: TestOp,
    gw: Gateway,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    ca: Ca,
    /// The tls_client_auth client's certificate (DER), signed by `ca`.
    tls_cert: Vec<u8>,
    /// The self_signed_tls_client_auth client's certificate (DER).
    self_cert: Vec<u8>,
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// As nginx's `$ssl_client_escaped_cert` writes it.
fn escaped(der: &[u8]) -> String {
    pem(der)
        .replace(' ', "%20")
        .replace('\n', "%0A")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// `x5t#S256` (RFC 8705 3.1): base64url of the DER's SHA-256.
fn thumbprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The self-signed client's JWK (P-256, with its certificate as `x5c`).
fn jwk_with_x5c(tls: &crate::support::receiver::Tls) -> serde_json::Value {
    let key = rcgen::KeyPair::try_from(tls.key.as_slice()).unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
    let b64u = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": b64u(&raw[1..33]), "y": b64u(&raw[33..]),
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&tls.chain[0])],
    })
}

fn setup() -> Setup {
    setup_with("", "", "")
}

/// [`setup`], with lines added to the gateway's `[upstream]` and `[client_certificates]`,
/// and `tail` at the end of its configuration.
fn setup_with(upstream: &str, certificates: &str, tail: &str) -> Setup {
    let ca = Ca::new("client CA");
    let tls = ca.leaf(&["tls-client.example"]);
    let selfsigned = pki::self_signed(&["self-client.example"]);
    let dir = tempfile::tempdir().unwrap();
    let mtls = serde_json::json!({
        "header": "x-ssl-client-cert",
        "ca_pem": ca.pem(),
        "clients": [
            {"client_id": TLS_CLIENT, "token_endpoint_auth_method": "tls_client_auth",
             "tls_client_auth_subject_dn": "CN=tls-client.example"},
            {"client_id": SELF_CLIENT, "token_endpoint_auth_method": "self_signed_tls_client_auth",
             "certificate_pem": pem(&selfsigned.chain[0])},
        ],
    });
    let mtls_file = write_config(dir.path(), "mtls.json", &mtls.to_string());
    let ca_file = write_config(dir.path(), "ca.pem", &ca.pem());
    let op = TestOp::start(&["--interval", "1", "--mtls", mtls_file.to_str().unwrap()]);
    let jwks = serde_json::json!({"keys": [jwk_with_x5c(&selfsigned)]}).to_string();
    let config = format!(
        r#"[upstream]
{upstream}
[polling]
min_interval_seconds = 1
[rate_limit]
trusted_proxies = ["127.0.0.1/32"]
[rate_limit.backchannel]
per_client = {{ per_second = 1000, burst = 1000 }}
per_address = {{ per_second = 1000, burst = 1000 }}
[rate_limit.token]
per_client = {{ per_second = 1000, burst = 1000 }}
per_address = {{ per_second = 1000, burst = 1000 }}
[client_certificates]
proxy_header = "{PROXY_HEADER}"
ca_file = "{}"
{certificates}
[clients."{TLS_CLIENT}"]
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "CN=tls-client.example"
[clients."{SELF_CLIENT}"]
token_endpoint_auth_method = "self_signed_tls_client_auth"
jwks = '{jwks}'
{tail}
"#,
        ca_file.display()
    );
    let (gw, gw_dir) = Gateway::with_config(&op.url(), &config);
    Setup {
        op,
        gw,
        _dirs: (dir, gw_dir),
        ca,
        tls_cert: tls.chain[0].to_vec(),
        self_cert: selfsigned.chain[0].to_vec(),
    }
}

/// Sends `request` from the loopback address `from`.
fn raw_from(from: [u8; 4], to: &str, request: &[u8]) -> Resp {
    use std::io::Write;
    let to: SocketAddr = to.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut s)
}

/// A form POST from `from` with extra header lines.
fn post_from(
    from: [u8; 4],
    gw: &str,
    path: &str,
    pairs: &[(&str, &str)],
    headers: &[(&str, String)],
) -> Resp {
    let body = encode_form(pairs);
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {gw}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    raw_from(from, gw, req.as_bytes())
}

const TRUSTED: [u8; 4] = [127, 0, 0, 1];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 2];

fn initiate_with(s: &Setup, path: &str, client: &str, cert: &[u8]) -> Resp {
    post_from(
        TRUSTED,
        &s.gw.addr(),
        path,
        &[
            ("client_id", client),
            ("scope", "openid"),
            ("login_hint", "alice"),
        ],
        &[(PROXY_HEADER, escaped(cert))],
    )
}

fn poll_with(s: &Setup, path: &str, client: &str, cert: &[u8], id: &str) -> Resp {
    post_from(
        TRUSTED,
        &s.gw.addr(),
        path,
        &[
            ("client_id", client),
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", id),
        ],
        &[(PROXY_HEADER, escaped(cert))],
    )
}

/// What the OP bound an access token to.
fn binding(op: &TestOp, token: &str) -> serde_json::Value {
    let r = post_form(&op.addr(), "/admin/access-token", &[("token", token)], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn whole_flows_end_in_tokens_bound_to_the_certificate() {
    let s = setup();
    for (client, cert) in [(TLS_CLIENT, &s.tls_cert), (SELF_CLIENT, &s.self_cert)] {
        for (backchannel, token) in PATHS {
            let what = format!("{client} on {backchannel} and {token}");
            let ack = initiate_with(&s, backchannel, client, cert);
            let id = auth_req_id(&ack);
            let pending = poll_with(&s, token, client, cert, &id);
            assert_oauth_error(&pending, 400, "authorization_pending", &what);
            s.op.approve(&id);
            std::thread::sleep(INTERVAL);
            let tokens = poll_with(&s, token, client, cert, &id);
            assert_eq!(tokens.status, 200, "{what}: {}", tokens.text());
            let at = tokens.json()["access_token"].as_str().unwrap().to_string();
            assert_eq!(tokens.json()["token_type"], "Bearer", "{what}");
            let bound = binding(&s.op, &at);
            assert_eq!(bound["client_id"], client, "{what}");
            assert_eq!(bound["x5t#S256"], thumbprint(cert), "{what}: cnf x5t#S256");
        }
    }
    // The aliases reached the OP under their own path.
    let by_path = &s.op.stats()["by_path"];
    assert_eq!(by_path["alias:/mtls/backchannel"], 2);
    assert_eq!(by_path["alias:/mtls/token"], 4);
}

#[test]
fn discovery_points_the_aliases_at_the_gateway() {
    let s = setup();
    let d = get(&s.gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(
        d["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{}/mtls/token", s.gw.url())
    );
    assert_eq!(
        d["mtls_endpoint_aliases"]["backchannel_authentication_endpoint"],
        format!("{}/mtls/backchannel", s.gw.url())
    );
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
}

#[test]
fn without_the_right_certificate_or_with_two_methods_the_op_never_sees_it() {
    let s = setup();
    let other_ca = Ca::new("other CA");
    let gw = s.gw.addr();
    // A tracked request of each client, so a poll that slipped through would reach the OP.
    let tls_id = auth_req_id(&initiate_with(&s, "/backchannel", TLS_CLIENT, &s.tls_cert));
    let self_id = auth_req_id(&initiate_with(
        &s,
        "/backchannel",
        SELF_CLIENT,
        &s.self_cert,
    ));
    let name = ["tls-client.example"];
    let expired = s.ca.expired_leaf(&name).chain[0].to_vec();
    let foreign = other_ca.leaf(&name).chain[0].to_vec();
    let self_signed_same_name = pki::self_signed(&name).chain[0].to_vec();
    let wrong_name = s.ca.leaf(&["someone-else.example"]).chain[0].to_vec();
    let assertion = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ0bHMtY2xpZW50Iiwic3ViIjoidGxzLWNsaWVudCJ9.";
    let basic = |c: &str| basic((c, "secret"));
    let good = |c: &str| {
        if c == TLS_CLIENT {
            escaped(&s.tls_cert)
        } else {
            escaped(&s.self_cert)
        }
    };

    type Case<'a> = (
        &'a str,
        [u8; 4],
        Vec<(&'a str, String)>,
        Vec<(&'a str, &'a str)>,
    );
    for (client, id) in [
        (TLS_CLIENT, tls_id.as_str()),
        (SELF_CLIENT, self_id.as_str()),
    ] {
        let cases: Vec<Case> = vec![
            ("no certificate", TRUSTED, vec![], vec![]),
            (
                "an empty header",
                TRUSTED,
                vec![(PROXY_HEADER, String::new())],
                vec![],
            ),
            (
                "another CA's certificate",
                TRUSTED,
                vec![(PROXY_HEADER, escaped(&foreign))],
                vec![],
            ),
            (
                "an expired certificate",
                TRUSTED,
                vec![(PROXY_HEADER, escaped(&expired))],
                vec![],
            ),
            (
                "a self-signed one with the name",
                TRUSTED,
                vec![(PROXY_HEADER, escaped(&self_signed_same_name))],
                vec![],
            ),
            (
                "the CA's certificate for another name",
                TRUSTED,
                vec![(PROXY_HEADER, escaped(&wrong_name))],
                vec![],
            ),
            (
                "the other client's certificate",
                TRUSTED,
                vec![(
                    PROXY_HEADER,
                    if client == TLS_CLIENT {
                        escaped(&s.self_cert)
                    } else {
                        escaped(&s.tls_cert)
                    },
                )],
                vec![],
            ),
            (
                "the right certificate from an untrusted peer",
                UNTRUSTED,
                vec![(PROXY_HEADER, good(client))],
                vec![],
            ),
            (
                "the header in capitals from an untrusted peer",
                UNTRUSTED,
                vec![("X-CLIENT-CERT", good(client))],
                vec![],
            ),
            (
                "the header twice from an untrusted peer",
                UNTRUSTED,
                vec![
                    (PROXY_HEADER, good(client)),
                    ("X-Client-Cert", good(client)),
                ],
                vec![],
            ),
            (
                "the forwarding header sent by the client",
                TRUSTED,
                vec![("x-ssl-client-cert", good(client))],
                vec![],
            ),
            (
                "the forwarding header, other spellings",
                UNTRUSTED,
                vec![
                    ("X-SSL-Client-Cert", good(client)),
                    ("x_ssl_client_cert", good(client)),
                ],
                vec![],
            ),
            (
                "the certificate and client_secret",
                TRUSTED,
                vec![(PROXY_HEADER, good(client))],
                vec![("client_secret", "secret")],
            ),
            (
                "the certificate and Basic",
                TRUSTED,
                vec![
                    (PROXY_HEADER, good(client)),
                    ("Authorization", basic(client)),
                ],
                vec![],
            ),
            (
                "the certificate and a client_assertion",
                TRUSTED,
                vec![(PROXY_HEADER, good(client))],
                vec![
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion),
                ],
            ),
        ];
        for (backchannel, token) in PATHS {
            for (what, from, headers, extra) in &cases {
                for (path, mut form) in [
                    (
                        backchannel,
                        vec![
                            ("client_id", client),
                            ("scope", "openid"),
                            ("login_hint", "alice"),
                        ],
                    ),
                    (
                        token,
                        vec![
                            ("client_id", client),
                            ("grant_type", CIBA_GRANT),
                            ("auth_req_id", id),
                        ],
                    ),
                ] {
                    form.extend(extra.iter().copied());
                    let label = format!("{client} {path}: {what}");
                    let r = assert_refused_at_edge(
                        &s.op,
                        OpCount::Total,
                        (401, "invalid_client"),
                        &label,
                        || post_from(*from, &gw, path, &form, headers),
                    );
                    assert!(r.json()["error_description"].is_string(), "{label}");
                }
            }
            // Named only by Basic (no client_id in the form): RFC 8705 2 wants client_id.
            let label = format!("{client} {token}: Basic without client_id");
            assert_refused_at_edge(
                &s.op,
                OpCount::Total,
                (401, "invalid_client"),
                &label,
                || {
                    post_from(
                        TRUSTED,
                        &gw,
                        token,
                        &[("grant_type", CIBA_GRANT), ("auth_req_id", id)],
                        &[
                            (PROXY_HEADER, good(client)),
                            ("Authorization", basic(client)),
                        ],
                    )
                },
            );
        }
    }
}

#[test]
fn a_broken_header_from_the_trusted_proxy_is_refused_on_every_path() {
    let s = setup();
    let gw = s.gw.addr();
    let good = escaped(&s.tls_cert);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&s.tls_cert);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "two copies",
            vec![(PROXY_HEADER, good.clone()), (PROXY_HEADER, good.clone())],
        ),
        (
            "two copies, other case",
            vec![
                (PROXY_HEADER, good.clone()),
                ("X-Client-Cert", good.clone()),
            ],
        ),
        ("a bad escape", vec![(PROXY_HEADER, format!("{good}%G0"))]),
        (
            "two certificates",
            vec![(PROXY_HEADER, format!("{good}{good}"))],
        ),
        ("the other format", vec![(PROXY_HEADER, format!(":{b64}:"))]),
        ("not a certificate", vec![(PROXY_HEADER, escaped(b"hello"))]),
    ];
    for (what, headers) in &cases {
        for (path, form) in [
            (
                "/backchannel",
                vec![
                    ("client_id", TLS_CLIENT),
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                ],
            ),
            (
                "/mtls/token",
                vec![
                    ("client_id", TLS_CLIENT),
                    ("grant_type", CIBA_GRANT),
                    ("auth_req_id", "x"),
                ],
            ),
            ("/jwks", vec![]),
        ] {
            let label = format!("{path}: {what}");
            assert_refused_at_edge(
                &s.op,
                OpCount::Total,
                (400, "invalid_request"),
                &label,
                || post_from(TRUSTED, &gw, path, &form, headers),
            );
        }
    }
}

#[test]
fn the_op_sees_only_the_certificate_the_gateway_vouches_for() {
    let s = setup();
    let gw = s.gw.addr();
    let forged = escaped(&pki::self_signed(&["forged.example"]).chain[0]);
    let get_with = |version: &str, from, headers: &[(&str, String)]| {
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let req = format!("GET /jwks {version}\r\nHost: {gw}\r\nConnection: close\r\n{extra}\r\n");
        raw_from(from, &gw, req.as_bytes())
    };
    let get_from = |from, headers: &[(&str, String)]| get_with("HTTP/1.1", from, headers);
    // HTTP/1.0 from an untrusted peer: the same.
    let r = get_with(
        "HTTP/1.0",
        UNTRUSTED,
        &[("X-Ssl-Client-Cert", forged.clone())],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.op.last_hop()["cert_headers"], serde_json::json!([]));
    // Forged copies of both headers, in every spelling, from an untrusted peer: the OP gets none.
    let r = get_from(
        UNTRUSTED,
        &[
            ("x-ssl-client-cert", forged.clone()),
            ("X-SSL-CLIENT-CERT", forged.clone()),
            ("x_ssl_client_cert", forged.clone()),
            ("X-Client-Cert", forged.clone()),
            ("x_client_cert", forged.clone()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let hop = s.op.last_hop();
    assert_eq!(hop["cert_headers"], serde_json::json!([]), "{hop}");
    // From the trusted proxy, passed through: the OP gets the one certificate, as PEM.
    let r = get_from(
        TRUSTED,
        &[
            (PROXY_HEADER, escaped(&s.tls_cert)),
            ("x-ssl-client-cert", forged.clone()),
            ("x_ssl_client_cert", forged),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let hop = s.op.last_hop();
    assert_eq!(
        hop["cert_headers"],
        serde_json::json!(["x-ssl-client-cert"]),
        "{hop}"
    );
    let sent = hop["client_cert"].as_str().unwrap();
    let decoded = form_urlencoded::parse(format!("x={sent}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    assert_eq!(decoded, pem(&s.tls_cert));
}

#[test]
fn polling_through_the_alias_is_held_to_the_same_interval() {
    let s = setup();
    let id = auth_req_id(&initiate_with(
        &s,
        "/backchannel",
        SELF_CLIENT,
        &s.self_cert,
    ));
    let first = poll_with(&s, "/mtls/token", SELF_CLIENT, &s.self_cert, &id);
    assert_oauth_error(&first, 400, "authorization_pending", "first poll");
    for path in [
        "/mtls/token",
        "/token",
        "/MTLS//token/",
        "/mtls/./TOKEN",
        "/mtls/%74oken",
        "/x/../mtls/token;a=b",
    ] {
        let label = format!("{path}: too soon");
        assert_refused_at_edge(&s.op, OpCount::Total, (400, "slow_down"), &label, || {
            poll_with(&s, path, SELF_CLIENT, &s.self_cert, &id)
        });
    }
    // Another client's certificate on the alias cannot poll the id either.
    let label = "another client on the alias";
    assert_refused_at_edge(
        &s.op,
        OpCount::Total,
        (401, "invalid_client"),
        label,
        || poll_with(&s, "/MTLS/TOKEN", TLS_CLIENT, &s.self_cert, &id),
    );
}

#[test]
fn rfc_9440_both_ways_and_configured_alias_paths() {
    let s = setup_with(
        "backchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\nmtls_backchannel_path = \"/mtls/backchannel\"\nmtls_token_path = \"/mtls/token\"",
        "proxy_header_format = \"rfc9440\"\nforward_format = \"rfc9440\"",
        "",
    );
    let gw = s.gw.addr();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&s.tls_cert);
    let rfc9440 = format!(":{b64}:");
    let req = format!(
        "GET /jwks HTTP/1.1\r\nHost: {gw}\r\nConnection: close\r\n{PROXY_HEADER}: {rfc9440}\r\n\r\n"
    );
    let r = raw_from(TRUSTED, &gw, req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.op.last_hop()["client_cert"], rfc9440.as_str());
    // The PEM format is not read when RFC 9440 is configured.
    assert_refused_at_edge(
        &s.op,
        OpCount::Total,
        (400, "invalid_request"),
        "PEM for RFC 9440",
        || {
            post_from(
                TRUSTED,
                &gw,
                "/jwks",
                &[],
                &[(PROXY_HEADER, escaped(&s.tls_cert))],
            )
        },
    );
    // Without discovery, the configured aliases are the endpoints, in every spelling.
    for path in [
        "/mtls/token",
        "/MTLS/Token/",
        "/mtls//%74oken",
        "/mtls/backchannel",
        "/Mtls/BACKCHANNEL",
    ] {
        let what = format!("{path}: no certificate");
        assert_refused_at_edge(
            &s.op,
            OpCount::Total,
            (401, "invalid_client"),
            &what,
            || {
                post_from(
                    TRUSTED,
                    &gw,
                    path,
                    &[
                        ("client_id", SELF_CLIENT),
                        ("grant_type", CIBA_GRANT),
                        ("auth_req_id", "x"),
                        ("scope", "openid"),
                        ("login_hint", "alice"),
                    ],
                    &[],
                )
            },
        );
    }
    let d = get(&gw, "/.well-known/openid-configuration").json();
    assert_eq!(
        d["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{}/mtls/token", s.gw.url())
    );
}

#[test]
fn the_client_rate_key_is_the_certificate() {
    let s = setup_with(
        "",
        "",
        &format!("[rate_limit.clients.\"{TLS_CLIENT}\"]\ntoken = {{ per_second = 1, burst = 2 }}"),
    );
    let gw = s.gw.addr();
    // A second valid certificate of the same client (a rotation): same name, same CA.
    let rotated = s.ca.leaf(&["tls-client.example"]).chain[0].to_vec();
    let poll = |cert: &[u8], n: usize| {
        let id = format!("unknown-{n}");
        post_from(
            TRUSTED,
            &gw,
            "/token",
            &[
                ("client_id", TLS_CLIENT),
                ("grant_type", CIBA_GRANT),
                ("auth_req_id", &id),
            ],
            &[(PROXY_HEADER, escaped(cert))],
        )
    };
    for n in 0..2 {
        assert_ne!(poll(&s.tls_cert, n).status, 429);
    }
    assert_refused_at_edge(
        &s.op,
        OpCount::Total,
        (429, "temporarily_unavailable"),
        "third",
        || poll(&s.tls_cert, 2),
    );
    let other = poll(&rotated, 3);
    assert_ne!(
        other.status,
        429,
        "another certificate has its own bucket: {}",
        other.text()
    );
}
