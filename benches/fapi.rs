//! Criterion bench of the FAPI-CIBA check of a signed backchannel request: the form's
//! shape, the request object decoded, its signature verified with the client's key (PS256
//! or ES256) and its claims checked (`ciba::fapi::request_object::check`), and the same for
//! a `private_key_jwt` assertion. The keys are the test-only keys of `tests/data/fapi`.
//!
//! Run with `cargo bench --bench fapi`; results are recorded in BENCHMARKS.md.

// The gateway's own allocator (see src/main.rs), so the figures are the shipped binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ciba_gateway::ciba::fapi::{assertion, request_object, FapiPolicy, OpNames};
use ciba_gateway::ciba::form::Form;
use ciba_gateway::ciba::jwt::KeySet;
use ciba_gateway::ciba::pipeline::Endpoint;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const A_RSA: &str = include_str!("../tests/data/fapi/client-a-rsa.pem");
const A_EC: &str = include_str!("../tests/data/fapi/client-a-ec.pem");
const A_JWKS: &str = include_str!("../tests/data/fapi/client-a.jwks.json");
const NOW: u64 = 1_800_000_000;

fn sign(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(A_EC.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(A_RSA.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn bench(c: &mut Criterion) {
    let keys = KeySet::from_jwk_set(&serde_json::from_str(A_JWKS).unwrap()).unwrap();
    let policy = FapiPolicy::default();
    let op = OpNames {
        issuer: "https://op.example".into(),
        token_endpoint: "https://op.example/token".into(),
        backchannel_endpoint: "https://op.example/backchannel".into(),
    };
    let object = json!({
        "iss": "a", "aud": "https://op.example", "exp": NOW + 300, "iat": NOW, "nbf": NOW,
        "jti": "0f8a9d1e-5d1c-4a57-9d3e-2b1f0c8e7a61", "scope": "openid profile",
        "login_hint": "alice@example.com", "binding_message": "W4SP-7Q", "requested_expiry": 120,
    });
    let claims = json!({"iss": "a", "sub": "a", "aud": "https://op.example/token",
        "exp": NOW + 60, "iat": NOW, "jti": "7c1e2f4a-93b8-4d0e-8f6a-1b2c3d4e5f60"});
    let mut g = c.benchmark_group("fapi");
    for (name, alg, kid) in [
        ("ps256", Algorithm::PS256, "a-rsa"),
        ("es256", Algorithm::ES256, "a-ec"),
    ] {
        let form =
            Form::parse(format!("client_id=a&request={}", sign(alg, kid, &object)).as_bytes())
                .unwrap();
        let who = request_object::ForClient {
            client_id: "a",
            request_context: false,
        };
        g.bench_function(format!("request_object_{name}"), |b| {
            b.iter(|| {
                request_object::check(black_box(&form), who, &keys, &policy, &op, NOW)
                    .expect("valid")
            })
        });
        let form = Form::parse(
            format!(
                "client_id=a&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
                sign(alg, kid, &claims)
            )
            .as_bytes(),
        )
        .unwrap();
        g.bench_function(format!("assertion_{name}"), |b| {
            b.iter(|| {
                assertion::check(
                    black_box(&form),
                    "a",
                    Endpoint::Token,
                    &keys,
                    &policy,
                    &op,
                    NOW,
                )
                .expect("valid")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
