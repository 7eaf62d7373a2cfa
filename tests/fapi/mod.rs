//! The FAPI-CIBA profile through the real binary in front of node-oidc-provider (`--fapi`:
//! clients `fapi-a` and `fapi-b`, private_key_jwt, request objects on): the conformance
//! suite's request-object and client-assertion cases refused at the edge (the OP never sees
//! them), signed requests that pass and complete a flow, `jti` replay in memory and across
//! two replicas on one Redis, and keys from a `jwks_uri`.

mod jwks_uri;

use crate::support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const A_RSA: &str = include_str!("../data/fapi/client-a-rsa.pem");
pub const A_EC: &str = include_str!("../data/fapi/client-a-ec.pem");
pub const B_EC: &str = include_str!("../data/fapi/client-b-ec.pem");
pub const A_JWKS: &str = include_str!("../data/fapi/client-a.jwks.json");
pub const B_JWKS: &str = include_str!("../data/fapi/client-b.jwks.json");
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh `jti`.
pub fn jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "jti-{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Signs `claims` with `alg` and `kid` using a PEM private key.
pub fn sign(alg: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

/// `fapi-a`'s ES256 signature.
pub fn es_a(claims: &Value) -> String {
    sign(Algorithm::ES256, "a-ec", A_EC, claims)
}

/// A valid request object for `client` naming `issuer`.
pub fn object(client: &str, issuer: &str) -> Value {
    let t = now();
    json!({
        "iss": client, "aud": issuer, "exp": t + 300, "iat": t, "nbf": t, "jti": jti(),
        "scope": "openid", "login_hint": "alice", "binding_message": "W4SP",
    })
}

/// A valid client assertion for `client` with `aud`.
pub fn assertion_claims(client: &str, aud: &str) -> Value {
    json!({"iss": client, "sub": client, "aud": aud, "exp": now() + 60, "iat": now(), "jti": jti()})
}

/// `fapi-a`'s ES256 assertion for the OP at `issuer`.
pub fn assertion_a(issuer: &str) -> String {
    es_a(&assertion_claims("fapi-a", issuer))
}

/// The configuration covering `fapi-a` and `fapi-b` with inline keys.
pub fn fapi_config(extra: &str) -> String {
    let one = |s: &str| s.replace('\n', "");
    format!(
        "[polling]\nmin_interval_seconds = 1\n[rate_limit]\nenabled = false\n\
         [clients.\"fapi-a\"]\nfapi = true\ntoken_endpoint_auth_method = \"private_key_jwt\"\njwks = '{}'\n\
         [clients.\"fapi-b\"]\nfapi = true\njwks = '{}'\n{extra}",
        one(A_JWKS),
        one(B_JWKS)
    )
}

/// A backchannel request: `request` and an assertion, plus extra pairs.
pub fn backchannel(
    gw: &Gateway,
    request: Option<&str>,
    assertion: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut pairs: Vec<(&str, &str)> = vec![("client_id", "fapi-a")];
    if let Some(r) = request {
        pairs.push(("request", r));
    }
    if let Some(a) = assertion {
        pairs.push(("client_assertion_type", JWT_BEARER));
        pairs.push(("client_assertion", a));
    }
    pairs.extend_from_slice(extra);
    post_form(&gw.addr(), "/backchannel", &pairs, &[])
}

/// A CIBA poll by `fapi-a` with a fresh assertion.
pub fn poll_a(gw: &Gateway, issuer: &str, id: &str) -> Resp {
    let a = assertion_a(issuer);
    post_form(
        &gw.addr(),
        "/token",
        &[
            ("client_id", "fapi-a"),
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &a),
        ],
        &[],
    )
}

/// A table row: its name, the JWT under test (or none), extra form pairs.
type Row = (&'static str, Option<String>, Vec<(&'static str, String)>);

fn setup() -> (TestOp, Gateway, tempfile::TempDir) {
    let op = TestOp::start(&["--fapi"]);
    let (gw, dir) = Gateway::with_config(&op.url(), &fapi_config(""));
    (op, gw, dir)
}

#[test]
fn signed_requests_pass_and_a_flow_completes() {
    let (op, gw, _d) = setup();
    let iss = op.url();
    let cases: [(Algorithm, &str, &str, Value, &str); 4] = [
        (
            Algorithm::PS256,
            "a-rsa",
            A_RSA,
            json!(120),
            "openid profile",
        ),
        (
            Algorithm::ES256,
            "a-ec",
            A_EC,
            json!("120"),
            "profile openid",
        ),
        (
            Algorithm::PS256,
            "a-rsa",
            A_RSA,
            json!("90"),
            "email openid",
        ),
        (Algorithm::ES256, "a-ec", A_EC, json!(60), "openid"),
    ];
    for (i, (alg, kid, pem, expiry, scope)) in cases.into_iter().enumerate() {
        let mut c = object("fapi-a", &iss);
        c["requested_expiry"] = expiry;
        c["scope"] = json!(scope);
        c["binding_message"] = json!("A1");
        let before = op.backchannel_count();
        let ack = backchannel(
            &gw,
            Some(&sign(alg, kid, pem, &c)),
            Some(&assertion_a(&iss)),
            &[],
        );
        let id = auth_req_id(&ack);
        assert_eq!(op.backchannel_count(), before + 1, "case {i}");
        if i == 0 {
            op.approve(&id);
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let t = poll_a(&gw, &iss, &id);
            assert_eq!(t.status, 200, "{}", t.text());
            assert!(t.json()["access_token"].is_string());
        }
    }
    // The OP saw the request object as signed, untouched.
    let last = op.last_backchannel();
    assert!(last["params"]["request"].is_string());
    assert!(last["params"].get("scope").is_none());
}

#[test]
fn the_request_object_table_is_refused_at_the_edge() {
    let (op, gw, _d) = setup();
    let iss = op.url();
    let t = now();
    let with = |k: &str, v: Value| {
        let mut c = object("fapi-a", &iss);
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = object("fapi-a", &iss);
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let good = es_a(&object("fapi-a", &iss));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&object("fapi-a", &iss).to_string()),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(&object("fapi-a", &iss).to_string())
    );
    let rs256 = sign(Algorithm::RS256, "a-rsa", A_RSA, &object("fapi-a", &iss));
    let rows: Vec<Row> = vec![
        ("aud missing", Some(es_a(&without("aud"))), vec![]),
        (
            "aud wrong",
            Some(es_a(&with("aud", json!("https://other.example")))),
            vec![],
        ),
        (
            "aud the gateway",
            Some(es_a(&with("aud", json!(gw.url())))),
            vec![],
        ),
        ("iss missing", Some(es_a(&without("iss"))), vec![]),
        (
            "iss another client",
            Some(es_a(&with("iss", json!("fapi-b")))),
            vec![],
        ),
        ("exp missing", Some(es_a(&without("exp"))), vec![]),
        ("iat missing", Some(es_a(&without("iat"))), vec![]),
        ("nbf missing", Some(es_a(&without("nbf"))), vec![]),
        ("jti missing", Some(es_a(&without("jti"))), vec![]),
        (
            "exp expired",
            Some(es_a(&with("exp", json!(t - 120)))),
            vec![],
        ),
        (
            "exp 70 minutes ahead",
            Some(es_a(&with("exp", json!(t + 70 * 60)))),
            vec![],
        ),
        (
            "nbf 70 minutes in the past",
            Some(es_a(&with("nbf", json!(t - 70 * 60)))),
            vec![],
        ),
        (
            "nbf 10 minutes in the future",
            Some(es_a(&{
                let mut c = with("nbf", json!(t + 600));
                c["exp"] = json!(t + 900);
                c
            })),
            vec![],
        ),
        ("alg none", Some(unsigned), vec![]),
        ("RS256", Some(rs256), vec![]),
        ("invalid signature", Some(forged), vec![]),
        (
            "signed by another client's key",
            Some(sign(
                Algorithm::ES256,
                "a-ec",
                B_EC,
                &object("fapi-a", &iss),
            )),
            vec![],
        ),
        (
            "another client's kid",
            Some(sign(
                Algorithm::ES256,
                "b-ec",
                B_EC,
                &object("fapi-a", &iss),
            )),
            vec![],
        ),
        (
            "unsigned request when signing is required",
            None,
            vec![("scope", "openid".into()), ("login_hint", "alice".into())],
        ),
        (
            "client_id differs from iss",
            Some(es_a(&with("client_id", json!("fapi-b")))),
            vec![],
        ),
        (
            "binding_message missing",
            Some(es_a(&without("binding_message"))),
            vec![],
        ),
        (
            "a parameter outside the object",
            Some(good.clone()),
            vec![("binding_message", "X".into())],
        ),
        (
            "an unknown parameter outside the object",
            Some(good.clone()),
            vec![("foo", "1".into())],
        ),
        ("a JWE", Some("a.b.c.d.e".into()), vec![]),
    ];
    for (name, request, extra) in rows {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (400, "invalid_request"),
            name,
            || backchannel(&gw, request.as_deref(), Some(&assertion_a(&iss)), &extra),
        );
        let d = r.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !d.contains("alice") && !d.contains("fapi-b") && !d.contains("other.example"),
            "{name} echoes a value: {d}"
        );
    }
    // The form's client_id differing from the object's iss (the object names fapi-b).
    let r = assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "client_id and iss differ",
        || {
            let obj = sign(Algorithm::ES256, "b-ec", B_EC, &object("fapi-b", &iss));
            backchannel(&gw, Some(&obj), Some(&assertion_a(&iss)), &[])
        },
    );
    assert!(r.text().contains("iss"), "{}", r.text());
    // The good one still passes, once: its jti replayed is refused.
    let ack = backchannel(&gw, Some(&good), Some(&assertion_a(&iss)), &[]);
    auth_req_id(&ack);
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "jti replayed",
        || backchannel(&gw, Some(&good), Some(&assertion_a(&iss)), &[]),
    );
}

#[test]
fn the_client_assertion_table_is_refused_at_both_endpoints() {
    let (op, gw, _d) = setup();
    let iss = op.url();
    let obj = || es_a(&object("fapi-a", &iss));
    let rs256 = || {
        sign(
            Algorithm::RS256,
            "a-rsa",
            A_RSA,
            &assertion_claims("fapi-a", &iss),
        )
    };
    let wrong_aud = || es_a(&assertion_claims("fapi-a", "https://other.example/token"));
    let gateway_aud = || es_a(&assertion_claims("fapi-a", &format!("{}/token", gw.url())));
    let replayed = assertion_a(&iss);
    // First use of `replayed` passes.
    auth_req_id(&backchannel(&gw, Some(&obj()), Some(&replayed), &[]));
    let rows: Vec<Row> = vec![
        ("assertion missing", None, vec![]),
        ("RS256", Some(rs256()), vec![]),
        ("wrong aud", Some(wrong_aud()), vec![]),
        ("the gateway's URL as aud", Some(gateway_aud()), vec![]),
        ("replayed", Some(replayed.clone()), vec![]),
        (
            "signed by another client's key",
            Some(sign(
                Algorithm::ES256,
                "a-ec",
                B_EC,
                &assertion_claims("fapi-a", &iss),
            )),
            vec![],
        ),
        (
            "exp 2 hours ahead",
            Some(es_a(&{
                let mut c = assertion_claims("fapi-a", &iss);
                c["exp"] = json!(now() + 7200);
                c
            })),
            vec![],
        ),
        (
            "client_secret instead",
            None,
            vec![("client_secret", "s".into())],
        ),
    ];
    for (name, a, extra) in &rows {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (401, "invalid_client"),
            &format!("backchannel: {name}"),
            || backchannel(&gw, Some(&obj()), a.as_deref(), &extra),
        );
        let mut pairs: Vec<(&str, &str)> = vec![
            ("client_id", "fapi-a"),
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", "some-id"),
        ];
        if let Some(a) = a {
            pairs.push(("client_assertion_type", JWT_BEARER));
            pairs.push(("client_assertion", a));
        }
        pairs.extend_from_slice(&extra);
        assert_refused_at_edge(
            &op,
            OpCount::Token,
            (401, "invalid_client"),
            &format!("token: {name}"),
            || post_form(&gw.addr(), "/token", &pairs, &[]),
        );
    }
    // HTTP Basic is a client secret too.
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (401, "invalid_client"),
        "token: basic",
        || {
            post_form(
                &gw.addr(),
                "/token",
                &[("grant_type", CIBA_GRANT), ("auth_req_id", "x")],
                &[("Authorization", &basic(("fapi-a", "s")))],
            )
        },
    );
    // A client the profile does not cover is the OP's to judge.
    let r = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn discovery_advertises_the_profile_when_it_covers_everyone() {
    let op = TestOp::start(&["--fapi"]);
    let (gw, _d) = Gateway::with_config(
        &op.url(),
        &fapi_config("[fapi]\nenabled = true\nrequest_signing_alg_values = [\"ES256\"]\n"),
    );
    let doc = get(&gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(
        doc["backchannel_authentication_request_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["PS256", "ES256"])
    );
    let modes = doc["backchannel_token_delivery_modes_supported"]
        .as_array()
        .unwrap();
    assert!(!modes.iter().any(|m| m == "push"), "{modes:?}");
    assert!(doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m != "client_secret_basic"));
    // Every client is covered: a secret client is refused at the edge.
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (401, "invalid_client"),
        "secret client under fapi.enabled",
        || initiate(&gw.addr(), POST_CLIENT, "alice"),
    );
    // An ES256 object still passes, a PS256 one no longer.
    let iss = op.url();
    auth_req_id(&backchannel(
        &gw,
        Some(&es_a(&object("fapi-a", &iss))),
        Some(&assertion_a(&iss)),
        &[],
    ));
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "PS256 not configured",
        || {
            backchannel(
                &gw,
                Some(&sign(
                    Algorithm::PS256,
                    "a-rsa",
                    A_RSA,
                    &object("fapi-a", &iss),
                )),
                Some(&assertion_a(&iss)),
                &[],
            )
        },
    );
}

#[test]
fn a_jti_is_used_once_across_two_replicas_on_one_redis() {
    let op = TestOp::start(&["--fapi"]);
    let mut redis = crate::replicas::redis_store::RedisServer::start();
    let state = format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 300\nfailure_mode = \"closed\"\n",
        redis.url()
    );
    let (a, _da) = Gateway::with_config(&op.url(), &fapi_config(&state));
    let (b, _db) = Gateway::with_config(&op.url(), &fapi_config(&state));
    let iss = op.url();
    let request = es_a(&object("fapi-a", &iss));
    auth_req_id(&backchannel(
        &a,
        Some(&request),
        Some(&assertion_a(&iss)),
        &[],
    ));
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "request object replayed on the other replica",
        || backchannel(&b, Some(&request), Some(&assertion_a(&iss)), &[]),
    );
    let assertion = assertion_a(&iss);
    auth_req_id(&backchannel(
        &b,
        Some(&es_a(&object("fapi-a", &iss))),
        Some(&assertion),
        &[],
    ));
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (401, "invalid_client"),
        "assertion replayed on the other replica",
        || {
            backchannel(
                &a,
                Some(&es_a(&object("fapi-a", &iss))),
                Some(&assertion),
                &[],
            )
        },
    );
    // Every key Redis holds for them expires: two objects and three assertions (the
    // refused replay of a request object came with a fresh assertion, which was claimed).
    let mut con = redis.raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*j:*").query(&mut con).unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for k in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut con).unwrap();
        assert!(ttl > 0 && ttl <= 400, "{k}: {ttl}");
    }
    // Redis gone, failure mode closed: no JWT is let through unremembered.
    drop(con);
    redis.stop();
    let r = assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (503, "temporarily_unavailable"),
        "redis down",
        || {
            backchannel(
                &a,
                Some(&es_a(&object("fapi-a", &iss))),
                Some(&assertion_a(&iss)),
                &[],
            )
        },
    );
    assert!(r.header("retry-after").is_some());
}

#[test]
fn concurrent_replays_and_other_spellings_of_the_path() {
    let (op, gw, _d) = setup();
    let iss = op.url();
    // Eight copies of one request object at once: one reaches the OP.
    let request = es_a(&object("fapi-a", &iss));
    let before = op.backchannel_count();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| backchannel(&gw, Some(&request), Some(&assertion_a(&iss)), &[]).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(op.backchannel_count(), before + 1);
    // The endpoint under other spellings gets the same rules.
    let rs256 = sign(Algorithm::RS256, "a-rsa", A_RSA, &object("fapi-a", &iss));
    for path in [
        "/BACKCHANNEL",
        "/backchannel/",
        "//backchannel",
        "/%62ackchannel",
        "/x/../backchannel",
    ] {
        assert_refused_at_edge(&op, OpCount::Total, (400, "invalid_request"), path, || {
            let a = assertion_a(&iss);
            post_form(
                &gw.addr(),
                path,
                &[
                    ("client_id", "fapi-a"),
                    ("request", &rs256),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &a),
                ],
                &[],
            )
        });
    }
}

#[test]
fn a_tls_client_sends_no_assertion_and_its_request_object_is_still_checked() {
    let op = TestOp::start(&["--fapi"]);
    let one = |s: &str| s.replace('\n', "");
    // The client's certificate comes from a TLS terminator on 127.0.0.1, so the certificate
    // rule passes and the FAPI step is what decides.
    let ca = crate::support::pki::Ca::new("fapi client CA");
    let leaf = ca.leaf(&["fapi-b"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_config(dir.path(), "ca.pem", &ca.pem());
    let cert_header = crate::tls::pem("CERTIFICATE", &leaf.chain[0])
        .replace('\n', "%0A")
        .replace(' ', "%20")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let text = format!(
        "[rate_limit]\nenabled = false\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [client_certificates]\nproxy_header = \"x-client-cert\"\nca_file = \"{}\"\n\
         [clients.\"fapi-b\"]\nfapi = true\n\
         token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"CN=fapi-b\"\njwks = '{}'\n",
        ca_file.display(),
        one(B_JWKS)
    );
    let (gw, _d) = Gateway::with_config(&op.url(), &text);
    let iss = op.url();
    let send = |request: &str, assertion: Option<&str>| {
        let mut pairs = vec![("client_id", "fapi-b"), ("request", request)];
        if let Some(a) = assertion {
            pairs.push(("client_assertion_type", JWT_BEARER));
            pairs.push(("client_assertion", a));
        }
        post_form(
            &gw.addr(),
            "/backchannel",
            &pairs,
            &[("x-client-cert", cert_header.as_str())],
        )
    };
    let good = sign(Algorithm::ES256, "b-ec", B_EC, &object("fapi-b", &iss));
    // An assertion from a client registered for mutual TLS is one method too many.
    let a = sign(
        Algorithm::ES256,
        "b-ec",
        B_EC,
        &assertion_claims("fapi-b", &iss),
    );
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (401, "invalid_client"),
        "assertion from a TLS client",
        || send(&good, Some(&a)),
    );
    // Its request object is checked as any other.
    let rs = sign(
        Algorithm::RS256,
        "b-rsa",
        include_str!("../data/fapi/client-b-rsa.pem"),
        &object("fapi-b", &iss),
    );
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "RS256 from a TLS client",
        || send(&rs, None),
    );
    // Named only by the object's `iss` (no `client_id`, no assertion outside): a request
    // that does not authenticate its client ends at the edge (CIBA 7.1).
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (401, "invalid_client"),
        "RS256 naming the client only by iss",
        || {
            post_form(
                &gw.addr(),
                "/backchannel",
                &[("request", &rs)],
                &[("x-client-cert", cert_header.as_str())],
            )
        },
    );
    // Without an assertion, a good object passes the gateway; the OP (which registered the
    // client for private_key_jwt and sees no certificate here) has the last word.
    let before = op.backchannel_count();
    let r = send(&good, None);
    assert_eq!(op.backchannel_count(), before + 1, "{}", r.text());
}
