//! Unit tests of the FAPI rules: the conformance suite's request-object and
//! client-assertion cases as a table, with the test keys in `tests/data/fapi`.

use super::*;
use crate::ciba::client_auth::{AuthMethod, JWT_BEARER};
use crate::ciba::error::ErrorCode;
use crate::ciba::form::Form;
use crate::ciba::jwt::KeySet;
use crate::ciba::pipeline::Endpoint;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

const A_RSA: &str = include_str!("../../../tests/data/fapi/client-a-rsa.pem");
const A_EC: &str = include_str!("../../../tests/data/fapi/client-a-ec.pem");
const B_EC: &str = include_str!("../../../tests/data/fapi/client-b-ec.pem");
const A_JWKS: &str = include_str!("../../../tests/data/fapi/client-a.jwks.json");

const NOW: u64 = 1_800_000_000;

fn keys() -> KeySet {
    KeySet::from_jwk_set(&serde_json::from_str(A_JWKS).unwrap()).unwrap()
}

fn op() -> OpNames {
    OpNames {
        issuer: "https://op.example".into(),
        token_endpoint: "https://op.example/token".into(),
        backchannel_endpoint: "https://op.example/backchannel".into(),
    }
}

fn sign(alg: jsonwebtoken::Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn good_object() -> Value {
    json!({
        "iss": "a", "aud": "https://op.example", "exp": NOW + 300, "iat": NOW, "nbf": NOW,
        "jti": "j1", "scope": "openid", "login_hint": "alice", "binding_message": "1234",
    })
}

fn form_with(request: &str) -> Form {
    let body = format!("client_id=a&request={request}");
    Form::parse(body.as_bytes()).unwrap()
}

fn check_object(form: &Form) -> Result<Replay, Refused> {
    let who = request_object::ForClient {
        client_id: "a",
        request_context: false,
    };
    request_object::check(
        form,
        who,
        &keys(),
        &FapiPolicy {
            clock_skew: 10,
            ..Default::default()
        },
        &op(),
        NOW,
    )
}

#[test]
fn signed_request_objects_pass_with_ps256_and_es256() {
    for (alg, kid, pem) in [
        (jsonwebtoken::Algorithm::PS256, "a-rsa", A_RSA),
        (jsonwebtoken::Algorithm::ES256, "a-ec", A_EC),
    ] {
        let r = check_object(&form_with(&sign(alg, kid, pem, &good_object()))).unwrap();
        assert_eq!(
            r,
            Replay {
                jti: "j1".into(),
                exp: NOW + 300
            }
        );
    }
    // `aud` as an array holding the issuer.
    let mut c = good_object();
    c["aud"] = json!(["x", "https://op.example"]);
    assert!(check_object(&form_with(&sign(
        jsonwebtoken::Algorithm::ES256,
        "a-ec",
        A_EC,
        &c
    )))
    .is_ok());
}

#[test]
fn the_request_object_table() {
    let es = |c: &Value| sign(jsonwebtoken::Algorithm::ES256, "a-ec", A_EC, c);
    let with = |k: &str, v: Value| {
        let mut c = good_object();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good_object();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let rs256 = {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("a-rsa".into());
        jsonwebtoken::encode(
            &h,
            &good_object(),
            &EncodingKey::from_rsa_pem(A_RSA.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let tampered = {
        let t = es(&good_object());
        let parts: Vec<&str> = t.split('.').collect();
        let other = es(&with("login_hint", json!("mallory")));
        format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        )
    };
    let crit = {
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("a-ec".into());
        let mut header = serde_json::to_value(&h).unwrap();
        header["crit"] = json!(["exp"]);
        header["exp"] = json!(1);
        let b64 = |v: &Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        let input = format!("{}.{}", b64(&header), b64(&good_object()));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_ec_pem(A_EC.as_bytes()).unwrap(),
            jsonwebtoken::Algorithm::ES256,
        )
        .unwrap();
        format!("{input}.{sig}")
    };
    let none = crate::ciba::jwt::tests::unsigned(r#"{"alg":"none"}"#, &good_object().to_string());
    let cases: Vec<(&str, String, &str)> = vec![
        ("aud missing", es(&without("aud")), "`aud` is missing"),
        (
            "aud wrong",
            es(&with("aud", json!("https://other"))),
            "`aud` does not name",
        ),
        ("aud a number", es(&with("aud", json!(5))), "`aud` must be"),
        ("iss missing", es(&without("iss")), "`iss` is missing"),
        (
            "iss wrong",
            es(&with("iss", json!("b"))),
            "`iss` does not name",
        ),
        ("exp missing", es(&without("exp")), "`exp` is missing"),
        ("iat missing", es(&without("iat")), "`iat` is missing"),
        ("nbf missing", es(&without("nbf")), "`nbf` is missing"),
        ("jti missing", es(&without("jti")), "`jti` is missing"),
        ("jti empty", es(&with("jti", json!(""))), "`jti` must be"),
        (
            "exp passed",
            es(&with("exp", json!(NOW - 60))),
            "`exp` has passed",
        ),
        (
            "exp a string",
            es(&with("exp", json!("soon"))),
            "`exp` must be a number",
        ),
        (
            "exp 70 min ahead",
            es(&with("exp", json!(NOW + 70 * 60))),
            "at most 60 minutes",
        ),
        (
            "exp before nbf",
            es(&{
                let mut c = with("nbf", json!(NOW));
                c["exp"] = json!(NOW);
                c
            }),
            "after `nbf`",
        ),
        (
            "nbf 70 min old",
            es(&with("nbf", json!(NOW - 70 * 60))),
            "60 minutes in the past",
        ),
        (
            "nbf 10 min ahead",
            es(&{
                let mut c = with("nbf", json!(NOW + 600));
                c["exp"] = json!(NOW + 900);
                c
            }),
            "`nbf` is in the future",
        ),
        (
            "iat ahead",
            es(&with("iat", json!(NOW + 600))),
            "`iat` is in the future",
        ),
        (
            "binding_message missing",
            es(&without("binding_message")),
            "`binding_message` is required",
        ),
        (
            "client_id claim differs",
            es(&with("client_id", json!("b"))),
            "`client_id` does not name",
        ),
        ("alg none", none, "`alg` none"),
        ("crit header", crit, "`crit`"),
        (
            "alg NONE",
            crate::ciba::jwt::tests::unsigned(r#"{"alg":"NONE"}"#, &good_object().to_string()),
            "`alg` none",
        ),
        (
            "alg es256",
            {
                let t = es(&good_object());
                let b64 = |s: &str| {
                    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s)
                };
                let rest = t.split_once('.').unwrap().1;
                format!("{}.{rest}", b64(r#"{"alg":"es256","kid":"a-ec"}"#))
            },
            "`alg` is not allowed",
        ),
        ("RS256", rs256, "`alg` is not allowed"),
        ("bad signature", tampered, "does not verify"),
        (
            "another client's key",
            sign(jsonwebtoken::Algorithm::ES256, "a-ec", B_EC, &good_object()),
            "does not verify",
        ),
        (
            "unknown kid",
            sign(jsonwebtoken::Algorithm::ES256, "b-ec", B_EC, &good_object()),
            "no key of the client",
        ),
        ("not a JWT", "abc".into(), "is not a JWT"),
    ];
    for (name, request, expect) in cases {
        let e = check_object(&form_with(&request)).expect_err(name);
        assert_eq!(e.error.code, ErrorCode::InvalidRequest, "{name}");
        assert!(
            e.error.description.contains(expect),
            "{name}: {}",
            e.error.description
        );
        assert!(
            !e.error.description.contains("alice"),
            "{name} echoes a value"
        );
        assert_eq!(e.unknown_key, name == "unknown kid", "{name}");
    }
}

#[test]
fn the_form_around_the_object() {
    let req = sign(jsonwebtoken::Algorithm::ES256, "a-ec", A_EC, &good_object());
    let form = |extra: &str| Form::parse(format!("{extra}request={req}").as_bytes()).unwrap();
    let cases = [
        ("client_id=b&", "`client_id` differs"),
        ("scope=openid&", "parameter `scope` must not appear outside"),
        ("foo=1&", "a parameter other than"),
        ("client_assertion_type=x&", "not supported"),
    ];
    for (extra, expect) in cases {
        let e = check_object(&form(extra)).unwrap_err();
        assert!(
            e.error.description.contains(expect),
            "{extra}: {}",
            e.error.description
        );
    }
    let e =
        check_object(&Form::parse(b"client_id=a&scope=openid&login_hint=x").unwrap()).unwrap_err();
    assert!(
        e.error.description.contains("signed request object"),
        "{}",
        e.error.description
    );
    // A client with a unique authorization context needs no binding message.
    let mut c = good_object();
    c.as_object_mut().unwrap().remove("binding_message");
    let f = form_with(&sign(jsonwebtoken::Algorithm::ES256, "a-ec", A_EC, &c));
    let who = request_object::ForClient {
        client_id: "a",
        request_context: true,
    };
    assert!(request_object::check(&f, who, &keys(), &FapiPolicy::default(), &op(), NOW).is_ok());
}

fn good_assertion() -> Value {
    json!({"iss": "a", "sub": "a", "aud": "https://op.example/token", "exp": NOW + 60, "jti": "x1", "iat": NOW})
}

fn assertion_form(a: &str) -> Form {
    Form::parse(
        format!(
            "client_id=a&client_assertion_type={}&client_assertion={a}",
            form_urlencoded::byte_serialize(JWT_BEARER.as_bytes()).collect::<String>()
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn the_client_assertion_table() {
    let es = |c: &Value| sign(jsonwebtoken::Algorithm::ES256, "a-ec", A_EC, c);
    let with = |k: &str, v: Value| {
        let mut c = good_assertion();
        c[k] = v;
        c
    };
    let policy = FapiPolicy::default();
    let check = |a: &str, ep: Endpoint| {
        assertion::check(&assertion_form(a), "a", ep, &keys(), &policy, &op(), NOW)
    };
    assert!(check(&es(&good_assertion()), Endpoint::Token).is_ok());
    assert!(check(
        &es(&with("aud", json!("https://op.example"))),
        Endpoint::Backchannel
    )
    .is_ok());
    assert!(check(
        &es(&with("aud", json!("https://op.example/backchannel"))),
        Endpoint::Backchannel
    )
    .is_ok());
    let ps = sign(
        jsonwebtoken::Algorithm::PS256,
        "a-rsa",
        A_RSA,
        &good_assertion(),
    );
    assert!(check(&ps, Endpoint::Token).is_ok());
    let rs = {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("a-rsa".into());
        jsonwebtoken::encode(
            &h,
            &good_assertion(),
            &EncodingKey::from_rsa_pem(A_RSA.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String, Endpoint, &str)> = vec![
        ("RS256", rs, Endpoint::Token, "`alg` is not allowed"),
        (
            "aud the backchannel at the token endpoint",
            es(&with("aud", json!("https://op.example/backchannel"))),
            Endpoint::Token,
            "`aud` does not name",
        ),
        (
            "aud the gateway",
            es(&with("aud", json!("https://gateway.example/token"))),
            Endpoint::Token,
            "`aud` does not name",
        ),
        (
            "sub differs",
            es(&with("sub", json!("b"))),
            Endpoint::Token,
            "`sub` does not name",
        ),
        (
            "iss differs",
            es(&with("iss", json!("b"))),
            Endpoint::Token,
            "`iss` does not name",
        ),
        (
            "exp missing",
            es(&{
                let mut c = good_assertion();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            Endpoint::Token,
            "`exp` is missing",
        ),
        (
            "exp far",
            es(&with("exp", json!(NOW + 7200))),
            Endpoint::Token,
            "60 minutes ahead",
        ),
        (
            "exp passed",
            es(&with("exp", json!(NOW - 100))),
            Endpoint::Token,
            "`exp` has passed",
        ),
        (
            "jti missing",
            es(&{
                let mut c = good_assertion();
                c.as_object_mut().unwrap().remove("jti");
                c
            }),
            Endpoint::Token,
            "`jti` is missing",
        ),
        (
            "another client's key",
            sign(
                jsonwebtoken::Algorithm::ES256,
                "a-ec",
                B_EC,
                &good_assertion(),
            ),
            Endpoint::Token,
            "does not verify",
        ),
    ];
    for (name, a, ep, expect) in cases {
        let e = check(&a, ep).expect_err(name);
        assert_eq!(e.error.code, ErrorCode::InvalidClient, "{name}");
        assert_eq!(e.error.status, 401, "{name}");
        assert!(
            e.error.description.contains(expect),
            "{name}: {}",
            e.error.description
        );
    }
}

#[test]
fn only_private_key_jwt_or_tls() {
    let a = assertion_form("x.y.z");
    let secret = Form::parse(b"client_id=a&client_secret=s").unwrap();
    let bare = Form::parse(b"client_id=a").unwrap();
    use assertion::{method, Method};
    assert_eq!(method(&a, false, None).unwrap(), Method::PrivateKeyJwt);
    assert_eq!(
        method(&a, false, Some(AuthMethod::PrivateKeyJwt)).unwrap(),
        Method::PrivateKeyJwt
    );
    assert_eq!(
        method(&bare, false, Some(AuthMethod::TlsClientAuth)).unwrap(),
        Method::Tls
    );
    assert_eq!(
        method(&bare, false, Some(AuthMethod::SelfSignedTlsClientAuth)).unwrap(),
        Method::Tls
    );
    for (form, basic, m) in [
        (&secret, false, None),
        (&bare, true, None),
        (&bare, false, None),
        (&bare, false, Some(AuthMethod::PrivateKeyJwt)),
        (&a, false, Some(AuthMethod::TlsClientAuth)),
    ] {
        let e = method(form, basic, m).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }
}

#[test]
fn algorithm_settings() {
    let p =
        |v: &[&str]| AllowedAlgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "k");
    assert_eq!(p(&["PS256", "ES256"]).unwrap(), AllowedAlgs::default());
    for bad in [&["none"][..], &["RS256"], &["HS256"], &[], &["ps256"]] {
        assert_eq!(p(bad).unwrap_err().key, "k", "{bad:?}");
    }
    let a = AllowedAlgs::default();
    assert!(a.allows("PS256") && a.allows("ES256"));
    assert!(!a.allows("RS256") && !a.allows("none") && !a.allows("es256"));
    assert_eq!(a.names(), ["PS256", "ES256"]);
}
