//! Finds where an HTTP/1 request header ends, fed the bytes as they arrive.
//!
//! The edge guard (`edge_guard.rs`) reads each request header itself, so that it can hold it
//! to a deadline and a size cap before pingora sees it; this tells it when to stop reading.
//! The end is the empty line: LF, an optional CR, LF, after the first byte that is neither
//! CR nor LF. Leading empty lines are skipped, as httparse skips them.
//!
//! The scanner must never end earlier than httparse does on the same bytes: an early end
//! would hand pingora a partial header, whose rest pingora would then wait for with only
//! its per-read timeout. httparse completes a header exactly at such an empty line (a CR
//! not followed by LF is an error to it, so it cannot end elsewhere), which is what this
//! finds. Anything it calls complete but httparse refuses is refused by pingora (400).
//! Pure: no I/O, no allocation.

/// Where the scanner is in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before the request line: CR and LF bytes are skipped.
    #[default]
    Leading,
    /// Inside a line.
    Line,
    /// Just after an LF that ended a line.
    Lf,
    /// After LF then CR: one more LF ends the header.
    LfCr,
    /// The end was found.
    Done,
}

/// Incremental scanner for the end of a request header.
#[derive(Debug, Clone, Default)]
pub struct HeaderEnd {
    state: State,
    /// Bytes fed so far, up to the end once it is found.
    seen: usize,
}

impl HeaderEnd {
    /// A scanner at the start of a request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes; returns the header's length (counted from the first byte ever
    /// fed, leading empty lines included) once its end is in what was fed so far.
    ///
    /// After the end was found, further calls return the same length and ignore the bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.state == State::Done {
            return Some(self.seen);
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match (self.state, b) {
                (State::Leading, b'\r' | b'\n') => State::Leading,
                (State::Leading, _) => State::Line,
                (State::Line, b'\n') => State::Lf,
                (State::Line, _) => {
                    // Long lines are the common case: jump to the next LF.
                    match memchr::memchr(b'\n', &bytes[i..]) {
                        Some(at) => {
                            i += at + 1;
                            self.state = State::Lf;
                            continue;
                        }
                        None => {
                            i = bytes.len();
                            continue;
                        }
                    }
                }
                (State::Lf | State::LfCr, b'\n') => {
                    self.seen += i + 1;
                    self.state = State::Done;
                    return Some(self.seen);
                }
                (State::Lf, b'\r') => State::LfCr,
                (State::Lf | State::LfCr, _) => State::Line,
                (State::Done, _) => unreachable!("returned above"),
            };
            i += 1;
        }
        self.seen += bytes.len();
        None
    }

    /// Bytes fed so far (up to the end, once found).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Whether any byte at all has been fed.
    pub fn started(&self) -> bool {
        self.seen > 0
    }
}

/// The header's length in `bytes`, when the whole header is there.
pub fn header_len(bytes: &[u8]) -> Option<usize> {
    HeaderEnd::new().feed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What httparse says about the same bytes: `Some(len)` when complete, `None` when
    /// partial, `Some(0)` for an error (which then needs no agreement on the length).
    fn httparse_len(bytes: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::Request::new(&mut headers).parse(bytes) {
            Ok(httparse::Status::Complete(n)) => Some(n),
            Ok(httparse::Status::Partial) => None,
            Err(_) => Some(0),
        }
    }

    /// Feeds `bytes` in pieces of `step` bytes; the total length when complete.
    fn in_steps(bytes: &[u8], step: usize) -> Option<usize> {
        let mut s = HeaderEnd::new();
        let mut found = None;
        for chunk in bytes.chunks(step.max(1)) {
            found = s.feed(chunk);
            if found.is_some() {
                break;
            }
        }
        found
    }

    #[test]
    fn hostile_and_ordinary_headers() {
        let huge_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000));
        let many_lines = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(10_000));
        let table: &[(&[u8], Option<usize>)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Some(27)),
            (b"GET / HTTP/1.1\nHost: a\n\n", Some(24)),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Some(26)),
            (b"GET / HTTP/1.1\nHost: a\r\n\n", Some(25)),
            (b"GET / HTTP/1.0\r\n\r\n", Some(18)),
            // Leading empty lines are skipped and counted.
            (b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", Some(22)),
            (b"\n\n\nGET / HTTP/1.1\n\n", Some(19)),
            (b"\r\n\r\n\r\n", None),
            (b"", None),
            // Bytes after the end are not part of the header.
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", Some(38)),
            (b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", Some(18)),
            // Not ends: a lone CR, CR CR LF, an unfinished line.
            (b"GET / HTTP/1.1\r\nHost: a\r\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", None),
            (b"GET / HTTP/1.1\r\nHost: a", None),
            (b"GET / HTTP/1.1\r\n\r\r\n", None),
            // NUL and other bytes are just bytes here (pingora refuses them).
            (b"GET /\0 HTTP/1.1\r\n\0: \0\r\n\r\n", Some(25)),
            (b"\0\n\n", Some(3)),
            (b"\xff\xfe\r\n\r\n", Some(6)),
            (huge_line.as_bytes(), Some(huge_line.len())),
            (many_lines.as_bytes(), Some(many_lines.len())),
        ];
        for (bytes, want) in table {
            for step in [1, 2, 3, 7, 64, usize::MAX] {
                assert_eq!(
                    in_steps(bytes, step.min(bytes.len().max(1))),
                    *want,
                    "{:?} in steps of {step}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
                );
            }
        }
    }

    #[test]
    fn never_ends_before_httparse() {
        // Wherever httparse completes, the scanner has found the same end.
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\nC: d\n\r\nbody",
            b"POST /token HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        ];
        for bytes in cases {
            for cut in 0..=bytes.len() {
                let part = &bytes[..cut];
                match httparse_len(part) {
                    Some(0) => {}
                    Some(n) => assert_eq!(header_len(part), Some(n), "{part:?}"),
                    None => assert_eq!(header_len(part), None, "{part:?}"),
                }
            }
        }
    }

    /// The fuzz target's reference: skip leading CR/LF, then the first LF [CR] LF.
    fn reference(data: &[u8]) -> Option<usize> {
        let start = data.iter().position(|b| *b != b'\r' && *b != b'\n')?;
        (start..data.len()).find_map(|i| match (data[i], data.get(i + 1), data.get(i + 2)) {
            (b'\n', Some(b'\n'), _) => Some(i + 2),
            (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        })
    }

    #[test]
    fn agrees_with_a_reference_scan_on_random_line_noise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"a:\r\n \0";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let step = rng.gen_range(1..6);
            assert_eq!(
                in_steps(&data, step),
                reference(&data),
                "{data:?} by {step}"
            );
            if let Some(n) = httparse_len(&data).filter(|n| *n > 0) {
                assert_eq!(header_len(&data), Some(n), "{data:?}");
            }
        }
    }

    #[test]
    fn after_the_end_the_length_stays() {
        let mut s = HeaderEnd::new();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\n"), None);
        assert!(s.started());
        assert_eq!(s.seen(), 16);
        assert_eq!(s.feed(b"\r\nrest"), Some(18));
        assert_eq!(s.feed(b"\r\n\r\n"), Some(18));
        assert_eq!(s.seen(), 18);
    }
}
