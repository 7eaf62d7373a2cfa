//! The id that ties a request's access-log line to what the OP logged for it: a client's
//! own `X-Request-Id` when it is short and plain, else one made here.
//!
//! Made ids are `<process id in hex>-<counter in hex>`, unique per gateway process. The id
//! is held as a header value, so a client's id is forwarded without a copy.

use http::HeaderValue;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest client-supplied id that is kept.
pub const MAX_LEN: usize = 64;

/// A request's id: printable ASCII only, at most [`MAX_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Both constructors admit ASCII only, so this never falls back.
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value for the OP; cloning shares the bytes.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static("-"))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// Makes ids for one process.
#[derive(Debug)]
pub struct RequestIds {
    /// `<pid in hex>-`, formatted once: the process id cannot change.
    prefix: Vec<u8>,
    next: AtomicU64,
}

impl RequestIds {
    /// A generator for this process.
    pub fn new() -> Self {
        Self::with_pid(std::process::id())
    }

    /// A generator as if the process id were `pid` (for tests).
    pub fn with_pid(pid: u32) -> Self {
        let mut prefix = Vec::with_capacity(9);
        push_hex(&mut prefix, u64::from(pid));
        prefix.push(b'-');
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// The client's id when it is acceptable, else a fresh one.
    pub fn for_request(&self, client: Option<&HeaderValue>) -> RequestId {
        match client {
            Some(v) if is_plain(v.as_bytes()) => RequestId(v.clone()),
            _ => self.fresh(),
        }
    }

    /// A new id.
    pub fn fresh(&self) -> RequestId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Sized exactly: `Bytes` takes a full vector over without allocating again.
        let mut buf = Vec::with_capacity(self.prefix.len() + hex_digits(n));
        buf.extend_from_slice(&self.prefix);
        push_hex(&mut buf, n);
        // Hex digits and '-' only: always a valid header value; the buffer becomes it.
        RequestId(
            HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
                .unwrap_or_else(|_| HeaderValue::from_static("-")),
        )
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Letters, digits, `-`, `_` and `.`, 1 to [`MAX_LEN`] bytes: safe in any log format.
fn is_plain(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// How many hex digits `n` takes without leading zeros (1 for 0).
fn hex_digits(n: u64) -> usize {
    (64 - (n | 1).leading_zeros()).div_ceil(4) as usize
}

/// Lower-case hex without leading zeros.
fn push_hex(out: &mut Vec<u8>, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..hex_digits(n)).rev() {
        out.push(DIGITS[((n >> (i * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(n: u64) -> String {
        let mut v = Vec::new();
        push_hex(&mut v, n);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn hex_matches_the_formatter() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX,
            1 << 63,
        ] {
            assert_eq!(hex(n), format!("{n:x}"), "{n}");
            assert_eq!(hex_digits(n), format!("{n:x}").len(), "{n}");
        }
    }

    #[test]
    fn fresh_ids_count_up_under_the_process_prefix() {
        let ids = RequestIds::with_pid(0x1f2e);
        assert_eq!(ids.fresh().as_str(), "1f2e-1");
        assert_eq!(ids.fresh().as_str(), "1f2e-2");
        assert_eq!(ids.for_request(None).as_str(), "1f2e-3");
    }

    #[test]
    fn a_plain_client_id_is_kept() {
        let ids = RequestIds::with_pid(7);
        for id in ["abc", "A-b_c.9", &"x".repeat(MAX_LEN)] {
            let v = HeaderValue::from_str(id).unwrap();
            assert_eq!(ids.for_request(Some(&v)).as_str(), id);
        }
    }

    #[test]
    fn hostile_client_ids_are_replaced() {
        let ids = RequestIds::with_pid(7);
        let hostile: &[&[u8]] = &[
            b"",
            b" ",
            b"a b",
            b"a\tb",
            b"id\"quoted\"",
            b"a=b",
            b"{\"json\":1}",
            b"a,b",
            b"line\\nbreak",
            b"%0d%0a",
            b"\xc3\xa9t\xc3\xa9",
            b"a/b",
            b"<script>",
        ];
        for (i, raw) in hostile.iter().enumerate() {
            let v = HeaderValue::from_bytes(raw).unwrap();
            let got = ids.for_request(Some(&v));
            assert_eq!(got.as_str(), format!("7-{:x}", i + 1), "{raw:?}");
        }
        let long = HeaderValue::from_str(&"x".repeat(MAX_LEN + 1)).unwrap();
        assert!(ids.for_request(Some(&long)).as_str().starts_with("7-"));
    }

    #[test]
    fn the_header_value_is_the_id() {
        let id = RequestIds::with_pid(3).fresh();
        assert_eq!(id.header_value(), "3-1");
        assert_eq!(id.to_string(), "3-1");
        assert_eq!(RequestId::default().as_str(), "-");
    }
}
