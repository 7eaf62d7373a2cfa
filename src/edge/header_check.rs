//! Which complete request headers the guard refuses before pingora parses them.
//!
//! pingora 0.9.1 answers a header it cannot parse, or whose framing or authority it
//! refuses, with a bare 400 of its own (no JSON), and answers `CONNECT` with a bare 405.
//! The guard has the whole header first, so it decides here and answers those itself, as
//! JSON: the same parser pingora uses (httparse, default settings, at most
//! [`MAX_HEADERS`] fields), pingora's own checks on the fields, and the gateway's stricter
//! framing rule (RFC 9112 6.1, 6.3: what nginx accepts):
//!
//! - `Transfer-Encoding`: one field, exactly `chunked`, never with `Content-Length`, never
//!   on HTTP/1.0;
//! - `Content-Length`: one field, digits only.
//!
//! Anything one proxy may frame differently from the next is a smuggling vector, so it is
//! refused rather than repaired. A request-target that is not plain origin-form (absolute-
//! or asterisk-form, or unusual bytes), and a request line httparse refuses but pingora may
//! repair (it percent-encodes some bytes and parses again), are left to pingora's own
//! parser ([`Verdict::AskPingora`]): rare, and exactly what pingora decides.
//!
//! Pure: bytes in, a verdict out.

use crate::ciba::error::OAuthError;
use std::mem::MaybeUninit;

/// The most header fields pingora parses (`pingora-core` `MAX_HEADERS`); more is its 400.
pub const MAX_HEADERS: usize = 256;

/// The HTTP/2 connection preface's first line (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// What the guard does with a complete request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handed to pingora, which reads it as the gateway did.
    Pass,
    /// Answered by the guard, and the connection closed.
    Refuse(Fault),
    /// The target or request line is for pingora's own parser to judge.
    AskPingora,
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not an HTTP/1 request header (request line, field name or value, line ending).
    Malformed,
    /// An HTTP/2 prior-knowledge preface on the HTTP/1 listener.
    Http2,
    /// A `CONNECT` request: the gateway tunnels nothing.
    Connect,
    /// Framing one proxy may read differently from the next.
    Framing(&'static str),
    /// A target or `Host` with no single authority.
    Authority(&'static str),
}

impl Fault {
    /// The JSON error a client sees.
    pub fn error(self) -> OAuthError {
        match self {
            Fault::Malformed => {
                OAuthError::invalid_request("the request header is not valid HTTP/1.1")
            }
            Fault::Http2 => {
                OAuthError::invalid_request("HTTP/2 without TLS is not served here; use HTTP/1.1")
            }
            Fault::Connect => {
                OAuthError::invalid_request("CONNECT is not served here").with_status(405)
            }
            Fault::Framing(why) | Fault::Authority(why) => OAuthError::invalid_request(why),
        }
    }
}

/// Judges a complete request header (`header` may continue with body bytes).
pub fn check(header: &[u8]) -> Verdict {
    if header.starts_with(H2_PREFACE) {
        return Verdict::Refuse(Fault::Http2);
    }
    // Uninitialised slots: filling 256 of them first would cost more than the parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, header, &mut slots)
    {
        Ok(httparse::Status::Complete(_)) => {}
        // The scanner never ends a header before httparse does; pingora reads on.
        Ok(httparse::Status::Partial) => return Verdict::Pass,
        // pingora percent-encodes some bytes of a request line httparse refused, and
        // parses again: whether that works is its call.
        Err(httparse::Error::Token | httparse::Error::Version) => return Verdict::AskPingora,
        Err(_) => return Verdict::Refuse(Fault::Malformed),
    }
    if let Some(fault) = framing_fault(req.headers, req.version == Some(0)) {
        return Verdict::Refuse(fault);
    }
    if let Some(fault) = host_fault(req.headers) {
        return Verdict::Refuse(fault);
    }
    if req.method == Some("CONNECT") {
        return Verdict::Refuse(Fault::Connect);
    }
    if !plain_origin_form(req.path.unwrap_or("").as_bytes()) {
        return Verdict::AskPingora;
    }
    Verdict::Pass
}

/// The request-target of a header [`check`] passed: the request line's second word.
///
/// Only meaningful after `Verdict::Pass` (a request line httparse read, its target plain
/// origin-form); like httparse, it skips empty lines before the request line.
pub fn request_target(header: &[u8]) -> &[u8] {
    let start = header
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(header.len());
    let line = &header[start..];
    let mut words = line.splitn(3, |&b| b == b' ');
    words.next();
    words.next().unwrap_or_default()
}

/// The gateway's framing rule: one `Transfer-Encoding: chunked` (HTTP/1.1) or one
/// digits-only `Content-Length`, never both.
fn framing_fault(headers: &[httparse::Header<'_>], http10: bool) -> Option<Fault> {
    let mut te: Option<&[u8]> = None;
    let mut cl: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if te.replace(h.value).is_some() {
                return Some(Fault::Framing("Transfer-Encoding is sent more than once"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && cl.replace(h.value).is_some() {
            return Some(Fault::Framing("Content-Length is sent more than once"));
        }
    }
    match (te, cl) {
        (Some(_), Some(_)) => Some(Fault::Framing(
            "the request has both Content-Length and Transfer-Encoding",
        )),
        (Some(_), None) if http10 => Some(Fault::Framing(
            "an HTTP/1.0 request cannot use Transfer-Encoding",
        )),
        (Some(v), None) if !v.trim_ascii().eq_ignore_ascii_case(b"chunked") => Some(
            Fault::Framing("Transfer-Encoding other than chunked is not accepted"),
        ),
        (None, Some(v)) if !is_length(v.trim_ascii()) => {
            Some(Fault::Framing("Content-Length is not a number"))
        }
        _ => None,
    }
}

/// 1 to 19 digits: a length that fits in a `u64`, as pingora reads it.
fn is_length(v: &[u8]) -> bool {
    (1..=19).contains(&v.len()) && v.iter().all(u8::is_ascii_digit)
}

/// pingora's `Host` checks (RFC 9112 3.2, RFC 9110 4.2.4): one field, no userinfo.
fn host_fault(headers: &[httparse::Header<'_>]) -> Option<Fault> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let first = hosts.next()?;
    if hosts.next().is_some() {
        return Some(Fault::Authority("the Host header is sent more than once"));
    }
    first
        .value
        .contains(&b'@')
        .then_some(Fault::Authority("the Host header carries userinfo"))
}

/// An origin-form target of bytes every URI parser reads alike (RFC 3986 unreserved,
/// sub-delims, `:`, `@`, `/`, `?`, `%`); pingora judges anything else.
fn plain_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Verdict {
        check(head.as_bytes())
    }

    #[test]
    fn ordinary_requests_pass() {
        for head in [
            "GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n",
            "\r\nGET / HTTP/1.0\r\n\r\n",
            "POST /token?a=b%20c HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\n\r\nbody",
            "POST /token HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /token HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:   CHUNKED  \r\n\r\n",
            "POST /token HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
            "GET //evil/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET / HTTP/1.1\nHost: gw\n\n",
        ] {
            assert_eq!(verdict(head), Verdict::Pass, "{head:?}");
        }
    }

    #[test]
    fn framing_other_than_one_chunked_or_one_length_is_refused() {
        for te in [
            "chunked, identity",
            "identity, chunked",
            "xchunked",
            "chunked;x=1",
            "gzip",
            "",
        ] {
            let head = format!("POST /t HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(
                matches!(verdict(&head), Verdict::Refuse(Fault::Framing(_))),
                "{te:?}"
            );
        }
        for head in [
            "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST /t HTTP/1.1\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            "POST /t HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST /t HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(
                matches!(verdict(head), Verdict::Refuse(Fault::Framing(_))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        for head in [
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x0bb\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(verdict(head), Verdict::Refuse(Fault::Malformed), "{head:?}");
        }
        assert_eq!(
            verdict("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Verdict::Refuse(Fault::Http2)
        );
        assert_eq!(
            verdict("CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n"),
            Verdict::Refuse(Fault::Connect)
        );
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: u@gw\r\n\r\n",
        ] {
            assert!(
                matches!(verdict(head), Verdict::Refuse(Fault::Authority(_))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn unusual_targets_and_request_lines_are_left_to_pingora() {
        for head in [
            "POST http://evil/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "GET /a\\b HTTP/1.1\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.2\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            ": no name\r\n\r\n",
        ] {
            assert_eq!(verdict(head), Verdict::AskPingora, "{head:?}");
        }
    }

    #[test]
    fn more_fields_than_pingora_parses_are_refused() {
        let mut head = "GET / HTTP/1.1\r\n".to_string();
        for i in 0..MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        assert_eq!(verdict(&format!("{head}\r\n")), Verdict::Pass);
        head.push_str("X-last: v\r\n\r\n");
        assert_eq!(verdict(&head), Verdict::Refuse(Fault::Malformed));
    }
}
