//! Strict `application/x-www-form-urlencoded` parsing and re-encoding.
//!
//! Stricter than `form_urlencoded` on purpose: that crate keeps an invalid `%` sequence as
//! literal text and turns invalid UTF-8 into U+FFFD, which would let a gateway forward
//! something other than what it checked. Here both are errors, and so is a repeated
//! parameter (RFC 6749 3.2: "Request and response parameters MUST NOT be included more
//! than once").

use crate::ciba::error::OAuthError;
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
    // Every decoded name and value, back to back, then the names of pairs added later:
    // one allocation instead of two per pair.
    text: String,
    // One bit per name present, chosen by `name_bit`: most lookups are for parameters the
    // form does not have, and this answers them without a scan.
    names: u64,
    // The body as received. A pair whose segment was already in canonical-safe form and
    // has not changed since is forwarded as those bytes: only changed pairs are encoded.
    raw: Vec<u8>,
}

#[derive(Clone)]
struct Pair {
    // Byte range of the name in `Form::text`.
    name: (usize, usize),
    value: Value,
    // Byte range of the pair's segment in `raw`, while it may be copied as is.
    raw: Option<(usize, usize)>,
}

/// A value: a byte range of `Form::text`, or one set later and owned apart, so that
/// setting a value never moves the text.
#[derive(Clone)]
enum Value {
    At(usize, usize),
    Own(String),
}

/// The bit of `Form::names` that stands for `name`.
fn name_bit(name: &[u8]) -> u64 {
    let (first, last) = (name.first().copied(), name.last().copied());
    let mix = name.len() * 7 + usize::from(first.unwrap_or(0)) * 3 + usize::from(last.unwrap_or(0));
    1 << (mix % 64)
}

impl PartialEq for Form {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for Form {}

impl Form {
    /// Parses a form body strictly; the error names the offending parameter, never its value.
    ///
    /// One pass over the body, byte by byte through [`CLASS`]: it splits the pairs, decodes
    /// them, and notes which pairs may be forwarded as received.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs: Vec<Pair> = Vec::with_capacity(8);
        let mut names = 0;
        // Decoding never lengthens: write into a sized buffer, then cut it to what was written.
        let mut text = vec![0u8; body.len()];
        let (mut i, mut w) = (0, 0);
        let mut index = 0;
        while i <= body.len() {
            let (at, name_at) = (i, w);
            index += 1;
            let mut value_at = None;
            // The high bits of every decoded byte of the name, then of the value: only text
            // with one set needs a UTF-8 check.
            let (mut high, mut name_high) = (0u8, 0u8);
            // Set by a byte the encoder would escape: such a pair is re-encoded when forwarded.
            let mut odd = false;
            let mut malformed = None;
            loop {
                // Runs of bytes kept as they are, the bulk of a body. Runs between escapes in
                // encoded JSON are a few bytes long: one byte at a time for the first four,
                // then eight at a time (output never runs ahead of input, so eight bytes
                // always fit; those past the run are overwritten next), then the tail.
                let run_start = i;
                let plain = |i: usize| body.get(i).filter(|&&b| CLASS[b as usize] == Class::Plain);
                while let Some(&b) = plain(i).filter(|_| i - run_start < 4) {
                    text[w] = b;
                    i += 1;
                    w += 1;
                }
                if i - run_start == 4 {
                    while let Some(chunk) = body.get(i..i + 8) {
                        text[w..w + 8].copy_from_slice(chunk);
                        let run = plain_prefix(u64::from_le_bytes(chunk.try_into().expect("8")));
                        // Advancing by a constant on the common path keeps the next load
                        // from waiting on this chunk's test: the branch is predicted.
                        if run < 8 {
                            i += run;
                            w += run;
                            break;
                        }
                        i += 8;
                        w += 8;
                    }
                    while let Some(&b) = plain(i) {
                        text[w] = b;
                        i += 1;
                        w += 1;
                    }
                }
                let Some(&b) = body.get(i) else { break };
                let decoded = match CLASS[b as usize] {
                    Class::Plain => b,
                    Class::Other => {
                        odd = true;
                        b
                    }
                    Class::Plus => b' ',
                    Class::Percent => {
                        let hex = |k: usize| body.get(k).map_or(0x80, |&h| HEX_VALUE[h as usize]);
                        let (hi, lo) = (hex(i + 1), hex(i + 2));
                        if (hi | lo) & 0x80 != 0 {
                            malformed = Some("invalid percent-encoding");
                            break;
                        }
                        i += 2;
                        hi << 4 | lo
                    }
                    Class::Equals if value_at.is_none() => {
                        value_at = Some(w);
                        name_high = std::mem::take(&mut high);
                        i += 1;
                        continue;
                    }
                    // A second `=` belongs to the value, and the encoder would escape it.
                    Class::Equals => {
                        odd = true;
                        b
                    }
                    Class::Ampersand => break,
                };
                text[w] = decoded;
                high |= decoded;
                i += 1;
                w += 1;
            }
            let end = i;
            i += 1;
            // "a=1&&b=2" and a trailing "&" are common client quirks, harmless to skip.
            if end == at && malformed.is_none() {
                continue;
            }
            let has_value = value_at.is_some();
            let value_at = value_at.unwrap_or_else(|| {
                name_high = std::mem::take(&mut high);
                w
            });
            let name_bytes = &text[name_at..value_at];
            let name_error = |why: &str| {
                OAuthError::invalid_request(format!(
                    "form parameter #{index} has a malformed name: {why}"
                ))
                .with_reason("malformed_encoding")
            };
            // A decoding error in the value is reported after the checks on the name, so
            // that the message can name the parameter.
            match malformed {
                Some(why) if !has_value => return Err(name_error(why)),
                _ => {}
            }
            if name_high >= 0x80 && std::str::from_utf8(name_bytes).is_err() {
                return Err(name_error("not valid UTF-8"));
            }
            // Checked just above; only error messages need the name as text.
            let name = || printable_name(&String::from_utf8_lossy(name_bytes));
            if name_bytes.is_empty() {
                return Err(OAuthError::invalid_request(format!(
                    "form parameter #{index} has an empty name"
                ))
                .with_reason("malformed_encoding"));
            }
            let bit = name_bit(name_bytes);
            let dup = names & bit != 0
                && pairs
                    .iter()
                    .any(|p| text[p.name.0..p.name.1] == *name_bytes);
            names |= bit;
            if dup {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` appears more than once",
                    name()
                ))
                .with_reason("duplicate_parameter"));
            }
            let value_error = |why: &str| {
                OAuthError::invalid_request(format!("parameter `{}` is malformed: {why}", name()))
                    .with_reason("malformed_encoding")
            };
            if let Some(why) = malformed {
                return Err(value_error(why));
            }
            if high >= 0x80 && std::str::from_utf8(&text[value_at..w]).is_err() {
                return Err(value_error("not valid UTF-8"));
            }
            pairs.push(Pair {
                name: (name_at, value_at),
                value: Value::At(value_at, w),
                raw: (has_value && !odd).then_some((at, end)),
            });
        }
        text.truncate(w);
        Ok(Form {
            pairs,
            names,
            // Each part was checked on its own, so the whole is UTF-8 too.
            text: String::from_utf8(text).expect("decoded parts are UTF-8"),
            raw: body.to_vec(),
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        let name = name.as_bytes();
        if self.names & name_bit(name) == 0 {
            return None;
        }
        let text = self.text.as_bytes();
        self.pairs
            .iter()
            .position(|p| &text[p.name.0..p.name.1] == name)
    }

    fn resolve(&self, (from, to): (usize, usize)) -> &str {
        &self.text[from..to]
    }

    fn value<'a>(&'a self, pair: &'a Pair) -> &'a str {
        match &pair.value {
            Value::At(from, to) => self.resolve((*from, *to)),
            Value::Own(s) => s,
        }
    }

    /// Appends `s` to the text, returning its range there.
    fn push_text(&mut self, s: &str) -> (usize, usize) {
        let at = self.text.len();
        self.text.push_str(s);
        (at, self.text.len())
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        let value = self.value(&self.pairs[self.position(name)?]);
        (!value.is_empty()).then_some(value)
    }

    /// Whether `name` was sent at all, even empty.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name`, replacing its value in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = Value::Own(value.into());
        match self.position(name) {
            Some(at) => {
                let pair = &mut self.pairs[at];
                pair.value = value;
                pair.raw = None;
            }
            None => {
                let name_at = self.push_text(name);
                self.names |= name_bit(name.as_bytes());
                self.pairs.push(Pair {
                    name: name_at,
                    value,
                    raw: None,
                })
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        // Its bit in `names` stays: a stale bit only costs a scan.
        let at = self.position(name)?;
        let pair = self.pairs.remove(at);
        Some(match pair.value {
            Value::At(from, to) => self.resolve((from, to)).to_string(),
            Value::Own(s) => s,
        })
    }

    /// The parameters in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|p| (self.resolve(p.name), self.value(p)))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Re-encodes the form in its original order, as the ASCII bytes of a body.
    pub fn encode(&self) -> Vec<u8> {
        // Room for every pair: copied ones as they are, encoded ones at their longest with
        // the encoder's spill.
        let room: usize = self
            .pairs
            .iter()
            .map(|p| match p.raw {
                Some((from, to)) => to - from + 1,
                None => 3 * (p.name.1 - p.name.0 + self.value(p).len()) + 10,
            })
            .sum();
        let mut out = Vec::with_capacity(room);
        for pair in &self.pairs {
            if !out.is_empty() {
                out.push(b'&');
            }
            match pair.raw {
                Some((from, to)) => out.extend_from_slice(&self.raw[from..to]),
                None => {
                    encode_into(&mut out, self.resolve(pair.name).as_bytes());
                    out.push(b'=');
                    encode_into(&mut out, self.value(pair).as_bytes());
                }
            }
        }
        out
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

/// Every byte as the encoder writes it: up to three bytes, little end first, and in the
/// top byte how many.
static ENCODED: [u32; 256] = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = if UNRESERVED[b] {
            b as u32 | 1 << 24
        } else if b == b' ' as usize {
            b'+' as u32 | 1 << 24
        } else {
            b'%' as u32 | (HEX[b >> 4] as u32) << 8 | (HEX[b & 15] as u32) << 16 | 3 << 24
        };
        b += 1;
    }
    t
};

/// Appends `bytes` percent-encoded as `application/x-www-form-urlencoded` does (the same
/// output as `form_urlencoded`: space as `+`, upper-case hex).
fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // Each byte stores four bytes from one table word and advances by the length in its
    // top byte: no branch per byte. Encoding at most triples the length; eight more bytes
    // take the spill of the last stores.
    let start = out.len();
    out.resize(start + 3 * bytes.len() + 8, 0);
    let dst = &mut out[start..];
    let mut w = 0;
    // Eight input bytes fill at most 24 bytes and spill at most four more: one bounds test
    // per eight bytes, on a window of known length.
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let window: &mut [u8; 28] = (&mut dst[w..w + 28]).try_into().expect("28");
        let mut k = 0;
        for &b in chunk {
            let code = ENCODED[b as usize];
            // `k` is at most 21 here; the bound only tells the compiler so.
            let at = k.min(24);
            window[at..at + 4].copy_from_slice(&code.to_le_bytes());
            k += (code >> 24) as usize;
        }
        w += k;
    }
    for &b in chunks.remainder() {
        let code = ENCODED[b as usize];
        dst[w..w + 4].copy_from_slice(&code.to_le_bytes());
        w += (code >> 24) as usize;
    }
    out.truncate(start + w);
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

/// What the parser does with a byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Left alone by the encoder: kept as is.
    Plain,
    /// Kept as is, but the encoder would escape it: the pair is re-encoded when forwarded.
    Other,
    /// A space.
    Plus,
    /// Starts a `%XX` escape.
    Percent,
    /// Ends the name (the first one in a pair).
    Equals,
    /// Ends the pair.
    Ampersand,
}

/// Every byte's [`Class`]; `Plain` is exactly `UNRESERVED` (a test holds them together).
static CLASS: [Class; 256] = {
    let mut t = [Class::Other; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'+' => Class::Plus,
            b'%' => Class::Percent,
            b'=' => Class::Equals,
            b'&' => Class::Ampersand,
            _ if c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_') => {
                Class::Plain
            }
            _ => Class::Other,
        };
        b += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// How many of the eight bytes of `x` (first byte lowest) are `Class::Plain` before the
/// first that is not, tested all at once.
fn plain_prefix(x: u64) -> usize {
    // On bytes below 0x80 these comparisons never carry or borrow into the next byte.
    let low = x & !HIGH;
    let at_least = |n: u8| (low | HIGH).wrapping_sub(ONES * u64::from(n)) & HIGH;
    let at_most = |v: u64, n: u8| (ONES * (0x80 + u64::from(n))).wrapping_sub(v) & HIGH;
    let equal = |n: u8| !((low ^ (ONES * u64::from(n))) | HIGH).wrapping_sub(ONES) & HIGH;
    let folded = low | (ONES * 0x20);
    let alpha =
        ((folded | HIGH).wrapping_sub(ONES * u64::from(b'a')) & HIGH) & at_most(folded, b'z');
    let digit = at_least(b'0') & at_most(low, b'9');
    // Letters and digits alone, as in Base64 and most identifiers, settle it at half the
    // cost of the whole test.
    let alnum = alpha | digit;
    if (!alnum | x) & HIGH == 0 {
        return 8;
    }
    let dash_or_dot = at_least(b'-') & at_most(low, b'.');
    let plain = alnum | dash_or_dot | equal(b'_') | equal(b'*');
    // A byte with its high bit set is never plain.
    let not_plain = (!plain | x) & HIGH;
    not_plain.trailing_zeros() as usize / 8
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
    use crate::ciba::error::ErrorCode;

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
        let again = parse(&f.encode()).unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn untouched_forms_keep_their_encoding_and_changed_ones_are_canonical() {
        let f = parse(b"a=x%2By&&b=c+d&").unwrap();
        assert_eq!(f.encode(), b"a=x%2By&b=c+d");
        let mut g = f.clone();
        g.set("b", "c d");
        assert_eq!(g.encode(), b"a=x%2By&b=c+d");
        let odd = parse(b"a=x y&b=%41").unwrap();
        assert_eq!(
            odd.encode(),
            b"a=x+y&b=%41",
            "only the unsafe pair is re-encoded"
        );
        let mixed = parse(b"a=%41:b+c&b=%41%3Ab+c").unwrap();
        assert_eq!(
            mixed.encode(),
            b"a=A%3Ab+c&b=%41%3Ab+c",
            "escapes beside a raw `:`"
        );
        let f2 = parse(b"a=1&b=2").unwrap();
        let mut h = f2.clone();
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.encode(), b"b=2");
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
        assert_eq!(f.encode(), expected.as_bytes());
        assert!(f.encode().is_ascii());
        assert_eq!(parse(&f.encode()).unwrap().get("a"), Some(&all[..]));
    }

    #[test]
    fn the_parser_classes_agree_with_the_encoder() {
        for b in 0..=255u8 {
            let plain = matches!(CLASS[b as usize], Class::Plain);
            assert_eq!(plain, UNRESERVED[b as usize], "{b}");
        }
    }

    #[test]
    fn decoding_agrees_with_form_urlencoded_across_chunk_boundaries() {
        let pieces: [&[u8]; 11] = [
            b"a",
            b"+",
            b"%41",
            b"%e2%9C%93",
            b"%2B",
            b"~",
            b"%25",
            b"xyz01234",
            b"%7B%22",
            b"QUJDREVGR0hJSktMTU5PUA",
            b"-_.*",
        ];
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut value = Vec::new();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            for _ in 0..(seed >> 16) % 12 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                value.extend_from_slice(pieces[(seed >> 16) as usize % pieces.len()]);
            }
            let body = [b"k=".as_slice(), &value].concat();
            let expected: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            let form = parse(&body).unwrap();
            let got: Vec<(String, String)> = form
                .pairs()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(&body));
            // A truncated escape is refused wherever it falls.
            for cut in [b"%".as_slice(), b"%4"] {
                let broken = [body.as_slice(), cut].concat();
                assert!(
                    parse(&broken).is_err(),
                    "{}",
                    String::from_utf8_lossy(&broken)
                );
            }
        }
    }

    #[test]
    fn the_eight_byte_test_agrees_with_the_table() {
        let plain = |b: u8| matches!(CLASS[b as usize], Class::Plain);
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        };
        for b in 0..=255u8 {
            for at in 0..8 {
                // One byte under test among plain ones, among letters and digits (the
                // quick case), and among random ones.
                let mut bytes = *b"aZ09-._*";
                bytes[at] = b;
                let mut alnum = *b"aZ09zA9m";
                alnum[at] = b;
                let mut noisy = [0u8; 8];
                noisy.iter_mut().for_each(|n| *n = next());
                noisy[at] = b;
                for case in [bytes, alnum, noisy] {
                    let expected = case.iter().take_while(|&&c| plain(c)).count();
                    assert_eq!(plain_prefix(u64::from_le_bytes(case)), expected, "{case:?}");
                }
            }
        }
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut f = parse(b"a=1&b=2").unwrap();
        f.set("a", "3");
        f.set("c", "4");
        assert_eq!(f.remove("b").as_deref(), Some("2"));
        assert_eq!(f.encode(), b"a=3&c=4");
    }

    #[test]
    fn lookups_find_exactly_the_names_present() {
        // Many names share a bit of the quick filter: lookups must still compare names.
        let names: Vec<String> = (0..200).map(|k| format!("p{k}")).collect();
        let present: Vec<&String> = names.iter().step_by(3).collect();
        let body: Vec<String> = present.iter().map(|n| format!("{n}=v{n}")).collect();
        let mut f = parse(body.join("&").as_bytes()).unwrap();
        for n in &names {
            let expected = present.contains(&n).then(|| format!("v{n}"));
            assert_eq!(f.get(n).map(str::to_string), expected, "{n}");
        }
        assert_eq!(f.remove("p3").as_deref(), Some("vp3"));
        assert_eq!(f.get("p3"), None);
        assert!(!f.contains("p3"));
        f.set("p4", "new");
        f.set("p3", "back");
        assert_eq!(
            (f.get("p4"), f.get("p3"), f.get("p0")),
            (Some("new"), Some("back"), Some("vp0"))
        );
        assert_eq!(f.get(""), None);
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
