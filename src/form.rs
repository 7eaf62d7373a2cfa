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
    pairs: Vec<Pair>,
    // Every decoded name and value, back to back: one allocation instead of two per pair.
    text: String,
    // The body as received. A pair whose segment was already in canonical-safe form and
    // has not changed since is forwarded as those bytes: only changed pairs are encoded.
    raw: Vec<u8>,
}

#[derive(Clone)]
struct Pair {
    name: Text,
    value: Text,
    // Byte range of the pair's segment in `raw`, while it may be copied as is.
    raw: Option<(usize, usize)>,
}

/// A name or value: a range of `Form::text`, or set later.
#[derive(Clone)]
enum Text {
    At(usize, usize),
    Own(String),
}

impl Text {
    fn resolve<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            Text::At(from, to) => &text[*from..*to],
            Text::Own(s) => s,
        }
    }
}

impl PartialEq for Form {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for Form {}

impl Form {
    /// Parses a form body strictly; the error names the offending parameter, never its value.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs: Vec<Pair> = Vec::with_capacity(8);
        let mut text = Vec::with_capacity(body.len());
        let mut start = 0;
        let mut index = 0;
        while start <= body.len() {
            let end = memchr::memchr(b'&', &body[start..]).map_or(body.len(), |p| start + p);
            let segment = &body[start..end];
            let at = start;
            start = end + 1;
            index += 1;
            // "a=1&&b=2" and a trailing "&" are common client quirks, harmless to skip.
            if segment.is_empty() {
                continue;
            }
            let eq = memchr::memchr(b'=', segment);
            let (raw_name, raw_value) = match eq {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &b""[..]),
            };
            let name_at = text.len();
            let name_safe = decode(raw_name, &mut text).map_err(|why| {
                OAuthError::invalid_request(format!(
                    "form parameter #{index} has a malformed name: {why}"
                ))
                .with_reason("malformed_encoding")
            })?;
            let value_at = text.len();
            // Checked by decode.
            let name = std::str::from_utf8(&text[name_at..value_at]).unwrap_or_default();
            if name.is_empty() {
                return Err(OAuthError::invalid_request(format!(
                    "form parameter #{index} has an empty name"
                ))
                .with_reason("malformed_encoding"));
            }
            let dup = pairs.iter().any(|p| match p.name {
                Text::At(from, to) => text[from..to] == *name.as_bytes(),
                Text::Own(_) => false,
            });
            if dup {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` appears more than once",
                    printable_name(name)
                ))
                .with_reason("duplicate_parameter"));
            }
            let value_safe = decode(raw_value, &mut text).map_err(|why| {
                let name = String::from_utf8_lossy(&text[name_at..value_at]);
                OAuthError::invalid_request(format!(
                    "parameter `{}` is malformed: {why}",
                    printable_name(&name)
                ))
                .with_reason("malformed_encoding")
            })?;
            let safe = eq.is_some() && name_safe && value_safe;
            pairs.push(Pair {
                name: Text::At(name_at, value_at),
                value: Text::At(value_at, text.len()),
                raw: safe.then_some((at, end)),
            });
        }
        Ok(Form {
            pairs,
            // Each part was checked on its own, so the whole is UTF-8 too.
            text: String::from_utf8(text).expect("decoded parts are UTF-8"),
            raw: body.to_vec(),
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.name.resolve(&self.text) == name)
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        let value = self.pairs[self.position(name)?].value.resolve(&self.text);
        (!value.is_empty()).then_some(value)
    }

    /// Whether `name` was sent at all, even empty.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name`, replacing its value in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = Text::Own(value.into());
        match self.position(name) {
            Some(at) => {
                let pair = &mut self.pairs[at];
                pair.value = value;
                pair.raw = None;
            }
            None => self.pairs.push(Pair {
                name: Text::Own(name.to_string()),
                value,
                raw: None,
            }),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.position(name)?;
        let pair = self.pairs.remove(at);
        Some(match pair.value {
            Text::Own(s) => s,
            at => at.resolve(&self.text).to_string(),
        })
    }

    /// The parameters in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|p| (p.name.resolve(&self.text), p.value.resolve(&self.text)))
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
        let mut out = Vec::with_capacity(self.raw.len() + 64);
        for pair in &self.pairs {
            if !out.is_empty() {
                out.push(b'&');
            }
            match pair.raw {
                Some((from, to)) => out.extend_from_slice(&self.raw[from..to]),
                None => {
                    encode_into(&mut out, pair.name.resolve(&self.text).as_bytes());
                    out.push(b'=');
                    encode_into(&mut out, pair.value.resolve(&self.text).as_bytes());
                }
            }
        }
        // Raw segments were checked to be ASCII, and encode_into emits ASCII.
        String::from_utf8(out).expect("an encoded form is ASCII")
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (n, v) in self.pairs() {
            if is_sensitive(n) {
                map.entry(&n, &"[redacted]");
            } else {
                map.entry(&n, &v);
            }
        }
        map.finish()
    }
}

/// The bytes the encoder leaves alone (as `form_urlencoded` does).
static UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_');
        b += 1;
    }
    t
};

/// Appends `bytes` percent-encoded as `application/x-www-form-urlencoded` does (the same
/// output as `form_urlencoded`: space as `+`, upper-case hex).
fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() + bytes.len() / 2);
    for &b in bytes {
        if UNRESERVED[b as usize] {
            out.push(b);
        } else if b == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
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

/// Decodes one form component onto `out`: `+` is a space, `%XX` must be two hex digits,
/// and the result must be UTF-8. Also says whether the raw text may be forwarded as is:
/// only characters the encoder leaves alone, `+`, and `%XX` escapes.
fn decode(raw: &[u8], out: &mut Vec<u8>) -> Result<bool, &'static str> {
    let start = out.len();
    let safe = if memchr::memchr2(b'%', b'+', raw).is_some() {
        unescape(raw, out)?
    } else {
        out.extend_from_slice(raw);
        is_canonical_safe(raw)
    };
    let part = &out[start..];
    if part.is_ascii() || std::str::from_utf8(part).is_ok() {
        Ok(safe)
    } else {
        Err("not valid UTF-8")
    }
}

/// Whether the raw text needs no re-encoding: only bytes the encoder leaves alone, `+` and
/// `%` (escapes are checked by `unescape`). The same set as `UNRESERVED` (a test holds them
/// together), written without a table lookup: about twice as fast on a token-sized value.
fn is_canonical_safe(raw: &[u8]) -> bool {
    let mut bad = 0u8;
    for &b in raw {
        let alpha = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        let other =
            (b == b'-') | (b == b'.') | (b == b'_') | (b == b'*') | (b == b'%') | (b == b'+');
        bad |= u8::from(!(alpha | digit | other));
    }
    bad == 0
}

/// Decodes `%XX` and `+` onto `out`; also says whether every other byte is unreserved.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<bool, &'static str> {
    // Decoding never lengthens: write into a sized slice, then cut it to what was written.
    let start = out.len();
    out.resize(start + raw.len(), 0);
    let dst = &mut out[start..];
    let (mut i, mut w, mut safe) = (0, 0, true);
    while i < raw.len() {
        let b = raw[i];
        if b != b'%' {
            dst[w] = if b == b'+' { b' ' } else { b };
            safe &= UNRESERVED[b as usize] | (b == b'+');
            i += 1;
        } else {
            if i + 2 >= raw.len() {
                return Err("invalid percent-encoding");
            }
            let hi = HEX_VALUE[raw[i + 1] as usize];
            let lo = HEX_VALUE[raw[i + 2] as usize];
            if (hi | lo) & 0x80 != 0 {
                return Err("invalid percent-encoding");
            }
            dst[w] = hi << 4 | lo;
            i += 3;
        }
        w += 1;
    }
    out.truncate(start + w);
    Ok(safe)
}

/// A hex digit's value, or 0x80 (high bit set) for any other byte.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0x80,
        };
        b += 1;
    }
    t
};

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
        assert_eq!(
            odd.encode(),
            "a=x+y&b=%41",
            "only the unsafe pair is re-encoded"
        );
        let mixed = parse(b"a=%41:b+c&b=%41%3Ab+c").unwrap();
        assert_eq!(
            mixed.encode(),
            "a=A%3Ab+c&b=%41%3Ab+c",
            "escapes beside a raw `:`"
        );
        let f2 = parse(b"a=1&b=2").unwrap();
        let mut h = f2.clone();
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.encode(), "b=2");
    }

    #[test]
    fn changed_pairs_encode_exactly_as_form_urlencoded() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("æøå ✓ 𝄞");
        let mut f = parse(b"a=1").unwrap();
        f.set("a", all.clone());
        f.set("k y", "v");
        let expected = form_urlencoded::Serializer::new(String::new())
            .append_pair("a", &all)
            .append_pair("k y", "v")
            .finish();
        assert_eq!(f.encode(), expected);
        assert_eq!(
            parse(f.encode().as_bytes()).unwrap().get("a"),
            Some(&all[..])
        );
    }

    #[test]
    fn the_fast_byte_checks_agree_with_the_table() {
        for b in 0..=255u8 {
            let expected = UNRESERVED[b as usize] || b == b'%' || b == b'+';
            assert_eq!(is_canonical_safe(&[b]), expected, "{b}");
        }
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
