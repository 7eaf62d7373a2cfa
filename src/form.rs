//! Strict `application/x-www-form-urlencoded` parsing and re-encoding.
//!
//! Stricter than `form_urlencoded` on purpose: that crate keeps an invalid `%` sequence as
//! literal text and turns invalid UTF-8 into U+FFFD, which would let a gateway forward
//! something other than what it checked. Here both are errors, and so is a repeated
//! parameter (RFC 6749 3.2: "Request and response parameters MUST NOT be included more
//! than once").

use crate::error::OAuthError;
use std::fmt;

/// Parameters whose values are secrets or personal data; `Form`'s `Debug` hides them.
pub const SENSITIVE: &[&str] = &[
    "client_secret",
    "client_assertion",
    "login_hint",
    "login_hint_token",
    "id_token_hint",
    "user_code",
    "client_notification_token",
    "request",
    "binding_message",
    "auth_req_id",
    "refresh_token",
    "code",
    "password",
];

/// Whether a parameter's value must never be logged.
pub fn is_sensitive(name: &str) -> bool {
    SENSITIVE.contains(&name)
}

/// A parsed form: ordered name/value pairs, each name at most once.
#[derive(Clone, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
    // The segments as received, kept while no pair changes and every segment was already
    // in canonical-safe form: re-encoding then costs a copy instead of a percent-encode.
    raw: Option<Vec<u8>>,
}

impl PartialEq for Form {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for Form {}

impl Form {
    /// Parses a form body strictly; the error names the offending parameter, never its value.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut raw_ok = true;
        for (index, segment) in body.split(|b| *b == b'&').enumerate() {
            // "a=1&&b=2" and a trailing "&" are common client quirks, harmless to skip.
            if segment.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = match segment.iter().position(|b| *b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &b""[..]),
            };
            let name = decode(raw_name).map_err(|why| {
                OAuthError::invalid_request(format!(
                    "form parameter #{} has a malformed name: {why}",
                    index + 1
                ))
                .with_reason("malformed_encoding")
            })?;
            if name.is_empty() {
                return Err(OAuthError::invalid_request(format!(
                    "form parameter #{} has an empty name",
                    index + 1
                ))
                .with_reason("malformed_encoding"));
            }
            let value = decode(raw_value).map_err(|why| {
                OAuthError::invalid_request(format!(
                    "parameter `{}` is malformed: {why}",
                    printable_name(&name)
                ))
                .with_reason("malformed_encoding")
            })?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` appears more than once",
                    printable_name(&name)
                ))
                .with_reason("duplicate_parameter"));
            }
            raw_ok &= is_canonical_safe(segment);
            pairs.push((name, value));
        }
        let raw = raw_ok.then(|| {
            let mut out = Vec::with_capacity(body.len());
            for segment in body.split(|b| *b == b'&').filter(|s| !s.is_empty()) {
                if !out.is_empty() {
                    out.push(b'&');
                }
                out.extend_from_slice(segment);
            }
            out
        });
        Ok(Form { pairs, raw })
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` was sent at all, even empty.
    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Sets `name`, replacing its value in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.raw = None;
        let value = value.into();
        match self.pairs.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((name.to_string(), value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(n, _)| n == name)?;
        self.raw = None;
        Some(self.pairs.remove(at).1)
    }

    /// The parameters in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Re-encodes the form in its original order.
    pub fn encode(&self) -> String {
        if let Some(raw) = &self.raw {
            // Checked in parse: ASCII only.
            return String::from_utf8(raw.clone()).expect("canonical-safe segments are ASCII");
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &self.pairs {
            out.append_pair(n, v);
        }
        out.finish()
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (n, v) in &self.pairs {
            if is_sensitive(n) {
                map.entry(n, &"[redacted]");
            } else {
                map.entry(n, v);
            }
        }
        map.finish()
    }
}

/// Whether a segment needs no re-encoding: only characters the encoder leaves alone,
/// `+`, well-formed `%XX` escapes (checked by `decode`), and a single `=`.
fn is_canonical_safe(segment: &[u8]) -> bool {
    let mut eqs = 0;
    segment.iter().all(|b| {
        if *b == b'=' {
            eqs += 1;
            return eqs == 1;
        }
        b.is_ascii_alphanumeric() || b"*-._+%".contains(b)
    })
}

/// Clips a client-chosen name for use in an error description.
fn printable_name(name: &str) -> String {
    let clipped: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    clipped
}

/// Decodes one form component: `+` is a space, `%XX` must be two hex digits, and the
/// result must be UTF-8.
fn decode(raw: &[u8]) -> Result<String, &'static str> {
    if !raw.iter().any(|b| *b == b'%' || *b == b'+') {
        return String::from_utf8(raw.to_vec()).map_err(|_| "not valid UTF-8");
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|b| hex(*b));
                let lo = raw.get(i + 2).and_then(|b| hex(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("invalid percent-encoding"),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn parse(s: &[u8]) -> Result<Form, OAuthError> {
        Form::parse(s)
    }

    #[test]
    fn parses_pairs_in_order_and_decodes() {
        let f = parse(b"scope=openid+profile&login_hint=a%40b.c&x=").unwrap();
        assert_eq!(f.get("scope"), Some("openid profile"));
        assert_eq!(f.get("login_hint"), Some("a@b.c"));
        assert_eq!(f.get("x"), None, "empty value counts as absent");
        assert!(f.contains("x"));
        let names: Vec<_> = f.pairs().map(|(n, _)| n).collect();
        assert_eq!(names, ["scope", "login_hint", "x"]);
    }

    #[test]
    fn hostile_inputs_are_invalid_request() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"scope=openid&scope=openid",
                "`scope` appears more than once",
            ),
            (b"scope=openid&scope=", "`scope` appears more than once"),
            (b"a=%zz", "`a` is malformed: invalid percent-encoding"),
            (b"a=%4", "`a` is malformed: invalid percent-encoding"),
            (b"a=%", "`a` is malformed: invalid percent-encoding"),
            (b"a=%ff", "`a` is malformed: not valid UTF-8"),
            (b"a=\xff", "`a` is malformed: not valid UTF-8"),
            (b"=x", "empty name"),
            (b"%zz=x", "malformed name"),
            (b"%C3%A6=1&%c3%a6=2", "appears more than once"),
        ];
        for (input, expect) in cases {
            let err = parse(input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert!(
                err.description.contains(expect),
                "{:?}: {}",
                String::from_utf8_lossy(input),
                err.description
            );
        }
    }

    #[test]
    fn errors_never_echo_values() {
        let err = parse(b"login_hint=secret%zz").unwrap_err();
        assert!(!err.description.contains("secret"));
    }

    #[test]
    fn empty_segments_are_skipped() {
        let f = parse(b"&a=1&&b=2&").unwrap();
        assert_eq!(f.len(), 2);
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn encode_round_trips() {
        let f = parse(b"a=x+y%26z&b=%E2%9C%93&c").unwrap();
        let again = parse(f.encode().as_bytes()).unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn untouched_forms_keep_their_encoding_and_changed_ones_are_canonical() {
        let f = parse(b"a=x%2By&&b=c+d&").unwrap();
        assert_eq!(f.encode(), "a=x%2By&b=c+d");
        let mut g = f.clone();
        g.set("b", "c d");
        assert_eq!(g.encode(), "a=x%2By&b=c+d");
        let odd = parse(b"a=x y&b=%41").unwrap();
        assert_eq!(odd.encode(), "a=x+y&b=A", "unsafe raw text is re-encoded");
        let f2 = parse(b"a=1&b=2").unwrap();
        let mut h = f2.clone();
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.encode(), "b=2");
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut f = parse(b"a=1&b=2").unwrap();
        f.set("a", "3");
        f.set("c", "4");
        assert_eq!(f.remove("b").as_deref(), Some("2"));
        assert_eq!(f.encode(), "a=3&c=4");
    }

    #[test]
    fn debug_redacts_sensitive_values() {
        let f = parse(b"client_id=c&client_secret=s3cr3t&login_hint=alice").unwrap();
        let shown = format!("{f:?}");
        assert!(shown.contains("\"c\""));
        assert!(!shown.contains("s3cr3t"));
        assert!(!shown.contains("alice"));
    }
}
