//! The OP's discovery document: learning the CIBA endpoint paths from it and rewriting it for
//! clients must never panic, and a rewritten document is a JSON object whose CIBA endpoints
//! point at the gateway.
#![no_main]

use ciba_gateway::ciba::discovery::{endpoints_from, rewrite};
use libfuzzer_sys::fuzz_target;

// Input: a flags byte (bit 0: both paths configured), then the document, so that
// `corpus/discovery/` can hold readable seeds.
fuzz_target!(|data: &[u8]| {
    let Some((&flags, document)) = data.split_first() else {
        return;
    };
    let paths = (flags & 1 == 1).then_some(("/bc", "/token"));
    let Ok(endpoints) = endpoints_from(document, paths.map(|p| p.0), paths.map(|p| p.1)) else {
        return;
    };
    let base = "https://gw.example";
    let public = |p: &str| p.to_string();
    let Ok(out) = rewrite(document, base, &endpoints, &public) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(&out).expect("a rewritten document is JSON");
    for key in ["backchannel_authentication_endpoint", "token_endpoint"] {
        let url = v[key].as_str().expect("the endpoint is a string");
        assert!(url.starts_with(base), "{key} = {url}");
    }
});
