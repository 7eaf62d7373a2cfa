//! `Form::parse` must never panic, must decode what it accepts exactly as the lenient
//! `form_urlencoded` does, and a parsed form must survive encode -> parse unchanged.
#![no_main]

use ciba_gateway::ciba::form::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        let lenient: Vec<_> = form_urlencoded::parse(data).collect();
        assert!(
            form.pairs()
                .eq(lenient.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))),
            "decoded differently from form_urlencoded"
        );
        let encoded = form.encode();
        assert!(encoded.is_ascii(), "an encoded form is not ASCII");
        let again = match Form::parse(&encoded) {
            Ok(f) => f,
            Err(e) => panic!("a re-encoded form no longer parses: {e}"),
        };
        assert_eq!(form, again, "encode/parse round trip changed the form");
        assert_eq!(again.encode(), encoded, "encoding is not stable");
    }
});
