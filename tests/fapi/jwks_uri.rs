//! Keys from a `jwks_uri`, served by a loopback key server (allowed by
//! `jwks_uri_allow_insecure`): fetched once, refreshed once on an unknown `kid`, not once
//! per request under a flood of unknown kids; a private address refused without the
//! option; an oversized document or one with too many keys refused.

use super::*;
use std::sync::{Arc, Mutex};

fn key_server(doc: Arc<Mutex<String>>) -> ScriptedOp {
    ScriptedOp::start(move |_req| (200, "application/json", doc.lock().unwrap().clone()))
}

fn only(kid: &str) -> String {
    let set: Value = serde_json::from_str(A_JWKS).unwrap();
    let keys: Vec<Value> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == kid)
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

fn config(uri: &str, extra: &str) -> String {
    format!(
        "[polling]\nmin_interval_seconds = 1\n[rate_limit]\nenabled = false\n\
         [clients.\"fapi-a\"]\nfapi = true\njwks_uri = \"{uri}\"\njwks_uri_allow_insecure = true\n{extra}"
    )
}

#[test]
fn an_unknown_kid_refreshes_once_and_a_flood_does_not_fetch_per_request() {
    let op = TestOp::start(&["--fapi"]);
    let doc = Arc::new(Mutex::new(only("a-rsa")));
    let keys = key_server(doc.clone());
    let uri = format!("{}/jwks", keys.url());
    let (gw, _d) = Gateway::with_config(
        &op.url(),
        &config(&uri, "[fapi]\njwks_refresh_min_seconds = 2\n"),
    );
    let iss = op.url();
    let ps = |c: &Value| sign(Algorithm::PS256, "a-rsa", A_RSA, c);
    let ps_assertion = || ps(&assertion_claims("fapi-a", &iss));
    let first = backchannel(
        &gw,
        Some(&ps(&object("fapi-a", &iss))),
        Some(&ps_assertion()),
        &[],
    );
    assert_eq!(first.status, 200, "{}\n{}", first.text(), gw.log());
    assert_eq!(keys.count("/jwks"), 1, "fetched on first use");
    auth_req_id(&backchannel(
        &gw,
        Some(&ps(&object("fapi-a", &iss))),
        Some(&ps_assertion()),
        &[],
    ));
    assert_eq!(keys.count("/jwks"), 1, "cached");
    // The client rotates in its EC key: once the refresh interval has passed since the
    // last fetch, the unknown kid triggers one refresh.
    *doc.lock().unwrap() = A_JWKS.to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    auth_req_id(&backchannel(
        &gw,
        Some(&es_a(&object("fapi-a", &iss))),
        Some(&ps_assertion()),
        &[],
    ));
    assert_eq!(keys.count("/jwks"), 2, "one refresh for the new kid");
    // A flood of unknown kids: refused, and no fetch per request (at most one more if the
    // flood outlasts the refresh interval).
    let flood = std::time::Instant::now();
    for i in 0..20 {
        assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (400, "invalid_request"),
            &format!("unknown kid {i}"),
            || {
                let obj = sign(
                    Algorithm::ES256,
                    &format!("nope-{i}"),
                    B_EC,
                    &object("fapi-a", &iss),
                );
                backchannel(&gw, Some(&obj), Some(&ps_assertion()), &[])
            },
        );
    }
    let extra = usize::from(flood.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        keys.count("/jwks") <= 2 + extra,
        "the flood fetched per request: {}",
        keys.count("/jwks")
    );
}

#[test]
fn oversized_documents_and_too_many_keys_are_refused() {
    let op = TestOp::start(&["--fapi"]);
    let iss = op.url();
    let big = {
        let mut set: Value = serde_json::from_str(A_JWKS).unwrap();
        set["padding"] = json!("x".repeat(70_000));
        set.to_string()
    };
    let many = {
        let set: Value = serde_json::from_str(A_JWKS).unwrap();
        let k = set["keys"][1].clone();
        json!({ "keys": vec![k; 25] }).to_string()
    };
    for (name, doc) in [("oversized", big), ("too many keys", many)] {
        let keys = key_server(Arc::new(Mutex::new(doc)));
        let uri = format!("{}/jwks", keys.url());
        let (gw, _d) = Gateway::with_config(&op.url(), &config(&uri, ""));
        assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (401, "invalid_client"),
            name,
            || {
                backchannel(
                    &gw,
                    Some(&es_a(&object("fapi-a", &iss))),
                    Some(&assertion_a(&iss)),
                    &[],
                )
            },
        );
        assert_eq!(keys.count("/jwks"), 1, "{name}");
    }
}

#[test]
fn a_private_address_is_refused_without_the_option() {
    let dir = tempfile::tempdir().unwrap();
    for uri in [
        "http://127.0.0.1:9/jwks",
        "https://10.0.0.1/jwks",
        "https://localhost/jwks",
        "https://169.254.169.254/jwks",
    ] {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:9\"\n[clients.\"fapi-a\"]\nfapi = true\njwks_uri = \"{uri}\"\n");
        let p = write_config(dir.path(), "gw.toml", &text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["--check", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{uri}");
        assert!(err.contains("clients.fapi-a.jwks_uri"), "{uri}: {err}");
    }
}
