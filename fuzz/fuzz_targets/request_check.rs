//! `pipeline::check_request`, the whole check of a client's request on a CIBA endpoint (form,
//! claimed client from the form, Basic header or assertion, backchannel validation,
//! `login_hint_token` normalization), must never panic. A refusal must be a well-formed
//! client error, and an accepted request must forward a form that parses again and claims
//! the same client.
#![no_main]

use ciba_gateway::ciba::client_auth::claimed_client;
use ciba_gateway::ciba::form::Form;
use ciba_gateway::ciba::pipeline::{check_request, Endpoint, Inbound, Rules};
use libfuzzer_sys::fuzz_target;

// Input: a flags byte (bit 0: token endpoint; bit 1: an `Authorization` header follows, its
// length in the next byte; bit 2: no form content type), then the header, then the body. A
// plain layout, so that `corpus/request_check/` can hold readable seeds.
fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let endpoint = if flags & 1 == 1 {
        Endpoint::Token
    } else {
        Endpoint::Backchannel
    };
    let (authorization, body) = match rest.split_first() {
        Some((&n, tail)) if flags & 2 == 2 && tail.len() >= usize::from(n) => {
            let (h, b) = tail.split_at(usize::from(n));
            (Some(String::from_utf8_lossy(h).into_owned()), b)
        }
        _ => (None, rest),
    };
    let content_type = if flags & 4 == 4 {
        "text/plain"
    } else {
        "application/x-www-form-urlencoded"
    };
    let req = Inbound {
        endpoint,
        content_type: Some(content_type),
        authorization: authorization.as_deref(),
        body,
    };
    match check_request(req, &Rules::default(), 1_800_000_000) {
        Err(e) => {
            assert!(
                (400..500).contains(&e.status),
                "status {} for {e}",
                e.status
            );
            let v: serde_json::Value =
                serde_json::from_slice(&e.to_json()).expect("an error body is JSON");
            assert_eq!(v["error"], e.code.as_str());
        }
        Ok(accepted) => {
            let encoded = accepted.form.encode();
            let again = match Form::parse(&encoded) {
                Ok(f) => f,
                Err(e) => panic!("the forwarded form does not parse again: {e}"),
            };
            let client = claimed_client(&again, authorization.as_deref())
                .expect("the forwarded form claims a client consistently");
            assert_eq!(
                client, accepted.client,
                "the forwarded form claims another client"
            );
        }
    }
});
