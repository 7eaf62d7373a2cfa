//! The OP's answers on the CIBA endpoints, read as the gateway reads them: `check_response`,
//! the profile's translation, then the acknowledgement's parsing and rewriting or the token
//! answer's classification. Nothing may panic, a translated error is never a success, and a
//! rewritten acknowledgement carries the values the gateway enforces.
#![no_main]

use ciba_gateway::ciba::pipeline::{check_response, Endpoint, Outbound, OpAnswer};
use ciba_gateway::ciba::polling::{admit_ack, PollPolicy};
use ciba_gateway::ciba::profile::Profile;
use ciba_gateway::ciba::translate::{classify_token_answer, parse_ack, rewrite_ack};
use libfuzzer_sys::fuzz_target;

// Input: a flags byte (bit 0: token endpoint; bit 1: not a JSON content type), two bytes of
// status (big-endian, folded into 100..600), then the body. A plain layout, so that
// `corpus/op_answer/` can hold readable seeds.
fuzz_target!(|data: &[u8]| {
    let [flags, hi, lo, body @ ..] = data else {
        return;
    };
    let endpoint = if flags & 1 == 1 {
        Endpoint::Token
    } else {
        Endpoint::Backchannel
    };
    let content_type = if flags & 2 == 2 {
        "text/html"
    } else {
        "application/json"
    };
    let status = 100 + u16::from_be_bytes([*hi, *lo]) % 500;
    let value = match check_response(OpAnswer {
        endpoint,
        status,
        content_type: Some(content_type),
        body,
    }) {
        Outbound::Json(v) => v,
        Outbound::Replace(e) => {
            assert_eq!(e.status, 502);
            return;
        }
    };
    let translated = Profile::default().translate(endpoint, status, value);
    if translated.body.get("error").is_some_and(|e| e.is_string()) {
        assert!(
            translated.status >= 400,
            "an error answer became status {}",
            translated.status
        );
    }
    let mut value = translated.body;
    match endpoint {
        Endpoint::Backchannel if translated.status == 200 => {
            if let Ok(op) = parse_ack(&value) {
                let policy = PollPolicy::default();
                let ack = admit_ack(&policy, op.interval, op.expires_in)
                    .expect("a parsed acknowledgement has a positive expires_in");
                rewrite_ack(&mut value, &ack);
                let interval = value["interval"].as_u64().expect("interval is set");
                let expires_in = value["expires_in"].as_u64().expect("expires_in is set");
                assert!(interval >= policy.min_interval.as_secs());
                assert!(expires_in >= 1 && expires_in <= policy.max_expires_in.as_secs());
            }
        }
        Endpoint::Token => {
            classify_token_answer(translated.status, &value);
        }
        Endpoint::Backchannel => {}
    }
    serde_json::to_vec(&value).expect("a JSON value serializes");
});
