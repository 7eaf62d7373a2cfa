//! `login_hint_token::normalize` must never panic, with a permissive and a strict
//! configuration; with the permissive one, whatever it emits must be accepted again.
#![no_main]

use ciba_gateway::ciba::login_hint_token::{
    normalize, LhtPolicy, LhtRules, NestedJson, OutputFormat, TokenFormat,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const NOW: u64 = 1_700_000_000;

fn permissive() -> &'static LhtPolicy {
    static RULES: OnceLock<LhtPolicy> = OnceLock::new();
    RULES.get_or_init(|| {
        LhtRules {
            max_bytes: 65536,
            max_depth: 64,
            repair_unescaped_json: true,
            allow_unsigned_jwt: true,
            nested_json: NestedJson::Object,
            fold_params: vec!["prompt".into(), "idp_values".into()],
            ..Default::default()
        }
        .compile()
        .expect("valid rules")
    })
}

fn strict() -> &'static LhtPolicy {
    static RULES: OnceLock<LhtPolicy> = OnceLock::new();
    RULES.get_or_init(|| {
        LhtRules {
            max_depth: 4,
            required_keys: vec!["idp".into()],
            allowed_values: [("flow_type".to_string(), vec!["broker_oidc".to_string()])].into(),
            allowed_idps: vec!["mitid".into(), "nemlogin".into()],
            output: OutputFormat::Base64,
            ..Default::default()
        }
        .compile()
        .expect("valid rules")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let folds = [("prompt", "login")];
    if let Ok(n) = normalize(token, &folds, permissive(), NOW) {
        if n.report.format != TokenFormat::Jwt {
            if let Err(e) = normalize(n.token.expose(), &[], permissive(), NOW) {
                panic!("normalized output refused on a second pass: {e}");
            }
        }
    }
    let _ = normalize(token, &[], strict(), NOW);
});
