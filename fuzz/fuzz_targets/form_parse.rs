//! `Form::parse` must never panic, and a parsed form must survive encode -> parse unchanged.
#![no_main]

use ciba_gateway::form::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        let encoded = form.encode();
        let again = match Form::parse(encoded.as_bytes()) {
            Ok(f) => f,
            Err(e) => panic!("a re-encoded form no longer parses: {e}"),
        };
        assert_eq!(form, again, "encode/parse round trip changed the form");
        assert_eq!(again.encode(), encoded, "encoding is not stable");
    }
});
