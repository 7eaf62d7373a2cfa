//! `header_check::check` judges every complete request header the edge guard hands on. It
//! must never panic, and whatever it passes must parse with httparse as pingora parses it
//! (at most 256 fields), with one framing: a header it passes reaches pingora unchanged; the
//! target the guard claims a request by (`request_target`) is the one httparse reads.
#![no_main]

use ciba_gateway::edge::header_check::{check, request_target, Verdict, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if check(data) != Verdict::Pass {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => {
            let count = |name: &str| {
                req.headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                    .count()
            };
            assert!(count("transfer-encoding") + count("content-length") <= 1);
            assert!(count("host") <= 1);
            assert!(req.path.is_some_and(|p| p.starts_with('/')));
            assert_eq!(req.path.map(str::as_bytes), Some(request_target(data)));
        }
        // Passed only when httparse wants more: pingora reads on.
        Ok(httparse::Status::Partial) => {}
        Err(e) => panic!("passed a header httparse refuses: {e:?}"),
    }
});
