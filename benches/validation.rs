//! Criterion benches for the backchannel pipeline's pure work: strict form parsing,
//! validation and `login_hint_token` normalization of a typical Signaturgruppen request.
//!
//! Run with `cargo bench --bench validation`; results are recorded in BENCHMARKS.md.

use base64::Engine;

// The gateway's own allocator (see src/main.rs), so the figures are the shipped binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ciba_gateway::ciba::pipeline::{check_request, Endpoint, Inbound, Rules};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

/// A typical Signaturgruppen broker request body with this token.
fn body(token: &str) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("client_id", "62b8cc03-aa73-4d6a-922c-7c8fb0a4a1d9")
        .append_pair("client_secret", "mIpxk84FI1wpc7cP7nodFLfgQQ1ScZHYO44FZ9wPOqrB0ha9S5RUNYPXMkrCWwRjGqEH0hflnIJea8IKmW19aQ==")
        .append_pair("scope", "openid mitid")
        .append_pair("grant_type", "urn:openid:params:grant-type:ciba")
        .append_pair("login_hint_token", token)
        .append_pair("binding_message", "Log in to Example Bank");
    s.finish().into_bytes()
}

fn bench(c: &mut Criterion) {
    let token = r#"{"flow_type":"broker_oidc","idp_values":"mitid","idp_params":"{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\",\"referenceTextBody\":\"Testing MitID Flex app\",\"ip\":\"1.1.1.1\"}"}"#;
    let raw = body(token);
    let b64 = body(&base64::engine::general_purpose::STANDARD.encode(token));
    let rules = Rules::default();
    let mut g = c.benchmark_group("backchannel");
    for (name, bytes) in [
        ("signaturgruppen_raw_json", &raw),
        ("signaturgruppen_base64", &b64),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = Inbound {
                    endpoint: Endpoint::Backchannel,
                    content_type: Some("application/x-www-form-urlencoded"),
                    authorization: None,
                    body: black_box(bytes),
                };
                let accepted = check_request(req, &rules, 1_800_000_000).expect("valid");
                black_box(accepted.form.encode())
            })
        });
    }
    // The strict form parser alone, on the same bodies: the first step of every request.
    for (name, bytes) in [("form_parse_raw_json", &raw), ("form_parse_base64", &b64)] {
        g.bench_function(name, |b| {
            b.iter(|| ciba_gateway::ciba::form::Form::parse(black_box(bytes)).expect("valid"))
        });
    }
    // The token normalizer alone.
    let lht = ciba_gateway::ciba::login_hint_token::LhtPolicy::default();
    let b64_token = base64::engine::general_purpose::STANDARD.encode(token);
    for (name, t) in [
        ("normalize_raw_json", token),
        ("normalize_base64", &b64_token[..]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                ciba_gateway::ciba::login_hint_token::normalize(black_box(t), &[], &lht, 0)
                    .expect("valid")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
