//! `header_end::HeaderEnd` decides how much of a client's bytes the edge guard reads as a
//! request header before pingora parses it. It must never panic, must find the same end
//! however the bytes are split across reads, must agree with a plain reference scan, and
//! must never end before httparse completes the header (an early end would let pingora
//! wait for the rest with only its per-read timeout).
#![no_main]

use ciba_gateway::edge::header_end::{header_len, HeaderEnd};
use libfuzzer_sys::fuzz_target;

/// Skip leading CR/LF, then the first LF [CR] LF.
fn reference(data: &[u8]) -> Option<usize> {
    let start = data.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    let mut i = start;
    while i < data.len() {
        if data[i] == b'\n' {
            match data.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if data.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fuzz_target!(|input: (u8, &[u8])| {
    let (step, data) = input;
    let whole = header_len(data);
    assert_eq!(whole, reference(data), "differs from the reference scan");

    let mut s = HeaderEnd::new();
    let mut split = None;
    for chunk in data.chunks(usize::from(step).max(1)) {
        split = s.feed(chunk);
        if split.is_some() {
            break;
        }
    }
    assert_eq!(split, whole, "depends on how the bytes were split");

    let mut headers = [httparse::EMPTY_HEADER; 64];
    if let Ok(httparse::Status::Complete(n)) = httparse::Request::new(&mut headers).parse(data) {
        assert_eq!(whole, Some(n), "httparse completed where the scanner did not");
    }
});
