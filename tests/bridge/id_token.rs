//! The ID token's checks through the binary, with faults node-oidc-provider cannot be made
//! to produce: a stub OP (discovery, PAR, token, JWKS) whose token answer carries an ID token
//! signed by another key, or naming another nonce, audience or issuer, or expired. Each is
//! refused at the callback: the client's poll gets `access_denied`, never the tokens.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::sync::{Arc, Mutex};

const ISSUER: &str = "https://stub-op.example";

fn key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn es256(key: &EcdsaKeyPair, claims: &Value) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        b64(&serde_json::json!({"alg": "ES256", "kid": "k1"})),
        b64(claims)
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn jwks(key: &EcdsaKeyPair) -> String {
    let p = key.public_key().as_ref();
    serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])}]})
    .to_string()
}

/// Which ID token the stub's token endpoint returns.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Good,
    OtherKey,
    OtherNonce,
    OtherAudience,
    OtherIssuer,
    Expired,
    Unsigned,
}

#[test]
fn only_an_id_token_that_passes_every_check_releases_the_tokens() {
    let good = Arc::new(key());
    let other = Arc::new(key());
    let case = Arc::new(Mutex::new(Case::Good));
    let par: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let (g, o, c, p) = (good.clone(), other.clone(), case.clone(), par.clone());
    let stub = ScriptedOp::start(move |req| {
        let json = "application/json";
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/.well-known/openid-configuration") => (
                200,
                json,
                serde_json::json!({
                    "issuer": ISSUER,
                    "authorization_endpoint": format!("{ISSUER}/authorize"),
                    "pushed_authorization_request_endpoint": format!("{ISSUER}/par"),
                    "token_endpoint": format!("{ISSUER}/token"),
                    "jwks_uri": format!("{ISSUER}/jwks"),
                })
                .to_string(),
            ),
            ("GET", "/jwks") => (200, json, jwks(&g)),
            ("POST", "/par") => {
                *p.lock().unwrap() = Some((
                    req.param("state").unwrap_or_default(),
                    req.param("nonce").unwrap_or_default(),
                ));
                (
                    201,
                    json,
                    r#"{"request_uri":"urn:x:1","expires_in":600}"#.into(),
                )
            }
            ("POST", "/token") => {
                let nonce = p.lock().unwrap().clone().unwrap_or_default().1;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let mut claims = serde_json::json!({"iss": ISSUER, "aud": POST_CLIENT.0,
                    "sub": "alice", "nonce": nonce, "iat": now, "exp": now + 600});
                let which = *c.lock().unwrap();
                match which {
                    Case::OtherNonce => claims["nonce"] = "another".into(),
                    Case::OtherAudience => claims["aud"] = "client-other".into(),
                    Case::OtherIssuer => claims["iss"] = "https://evil.example".into(),
                    Case::Expired => claims["exp"] = (now - 3600).into(),
                    _ => {}
                }
                let id_token = match which {
                    Case::OtherKey => es256(&o, &claims),
                    Case::Unsigned => format!(
                        "{}.{}.",
                        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                        URL_SAFE_NO_PAD.encode(claims.to_string())
                    ),
                    _ => es256(&g, &claims),
                };
                let body = serde_json::json!({"access_token": "at", "token_type": "Bearer",
                    "id_token": id_token});
                (200, json, body.to_string())
            }
            _ => (404, json, "{}".into()),
        }
    });
    let (gw, _d) = Gateway::with_config(&stub.url(), &bridge_config(""));
    let cases = [
        Case::OtherKey,
        Case::OtherNonce,
        Case::OtherAudience,
        Case::OtherIssuer,
        Case::Expired,
        Case::Unsigned,
        Case::Good,
    ];
    for which in cases {
        *case.lock().unwrap() = which;
        let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
        let (state, _) = par.lock().unwrap().clone().unwrap();
        let page = get(
            &gw.addr(),
            &format!("/ciba-bridge/callback?code=c1&state={state}"),
        );
        let polled = poll_basic(&gw.addr(), POST_CLIENT, &id);
        if which == Case::Good {
            assert_eq!(page.status, 200, "{which:?}: {}", page.text());
            assert_eq!(polled.status, 200, "{which:?}: {}", polled.text());
        } else {
            assert_eq!(page.status, 502, "{which:?}: {}", page.text());
            assert!(!page.text().contains("signed in"), "{which:?}");
            assert_eq!(polled.error(), "access_denied", "{which:?}");
        }
    }
    assert_eq!(
        stub.count("/token"),
        cases.len(),
        "one code exchange per callback"
    );
}
