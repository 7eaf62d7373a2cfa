//! The tolerant JSON parser: strict JSON, except that it reads the unescaped nested JSON
//! Signaturgruppen's documentation shows (`"idp_params":"{"uuid":...}"`) as a string and
//! records where; for anything it cannot read it says where the text broke. It runs only
//! when the strict checks refuse a token.

use super::{bad, printable, RepairSite, HARD_MAX_DEPTH};
use crate::ciba::error::OAuthError;
use serde_json::{Map, Value};

/// The result of [`parse_tolerant`].
pub(super) struct Parsed {
    /// The value read.
    pub(super) value: Value,
    /// Where unescaped nested JSON was read as a string, in text order.
    pub(super) repairs: Vec<RepairSite>,
}

/// Why [`parse_tolerant`] gave up.
#[derive(Debug)]
pub(super) enum Fail {
    Syntax(usize),
    TooDeep(usize),
    DuplicateKey(String),
    Budget,
}

impl Fail {
    /// The client's error for this failure.
    pub(super) fn into_error(self) -> OAuthError {
        match self {
            Fail::Syntax(at) => bad(format!(
                "not valid JSON (error at byte {at}); check quoting and escaping"
            )),
            Fail::TooDeep(max) => bad(format!(
                "nested deeper than {max} levels (login_hint_token.max_depth)"
            )),
            Fail::DuplicateKey(key) => bad(format!("key `{key}` appears more than once")),
            Fail::Budget => bad("too complex to parse"),
        }
    }
}

/// What may follow a value: decides whether a string ended where its first `"` says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Object,
    Array,
    End,
}

/// Parses JSON strictly, except that a string value which starts with an unescaped `{` or
/// `[` opening a balanced JSON value, immediately followed by the string's closing quote,
/// is read as a string holding that value's text (and recorded as a repair site).
///
/// Recursive descent, bounded by `max_depth` (itself at most [`HARD_MAX_DEPTH`]), and by a
/// step budget linear in the input, so hostile input can neither overflow the stack nor
/// make it do quadratic work. Scalars are handed to serde_json, so whatever it accepts is
/// valid JSON.
pub(super) fn parse_tolerant(text: &str, max_depth: usize) -> Result<Parsed, Fail> {
    let mut p = Tolerant {
        text,
        s: text.as_bytes(),
        pos: 0,
        steps: 0,
        budget: text.len().saturating_mul(4).saturating_add(64),
        max_depth: max_depth.min(HARD_MAX_DEPTH),
        repairs: Vec::new(),
        path: Vec::new(),
    };
    p.ws();
    let value = p.value(0, Follow::End)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(Fail::Syntax(p.pos));
    }
    Ok(Parsed {
        value,
        repairs: p.repairs,
    })
}

/// The parser's state: the text, the position, the step budget and the path to the value
/// being read (for repair sites).
struct Tolerant<'a> {
    text: &'a str,
    s: &'a [u8],
    pos: usize,
    steps: usize,
    budget: usize,
    max_depth: usize,
    repairs: Vec<RepairSite>,
    path: Vec<String>,
}

impl Tolerant<'_> {
    fn tick(&mut self, n: usize) -> Result<(), Fail> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.budget {
            Err(Fail::Budget)
        } else {
            Ok(())
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), Fail> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Fail::Syntax(self.pos))
        }
    }

    fn value(&mut self, depth: usize, follow: Follow) -> Result<Value, Fail> {
        self.tick(1)?;
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string_value(depth, follow),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Fail::Syntax(self.pos)),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, Fail> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(Fail::Syntax(self.pos))
        }
    }

    fn number(&mut self) -> Result<Value, Fail> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        self.tick(self.pos - start)?;
        match serde_json::from_str::<Value>(&self.text[start..self.pos]) {
            Ok(v @ Value::Number(_)) => Ok(v),
            _ => Err(Fail::Syntax(start)),
        }
    }

    /// Scans a string starting at the `"` at `start`; returns the index of its closing quote.
    fn scan_string(&mut self, start: usize) -> Result<usize, Fail> {
        let mut i = start + 1;
        loop {
            match self.s.get(i) {
                None => return Err(Fail::Syntax(start)),
                Some(b'"') => break,
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
            }
        }
        self.tick(i - start)?;
        Ok(i)
    }

    /// A strict string, decoded by serde_json (escapes, control characters, surrogates).
    fn string(&mut self) -> Result<String, Fail> {
        let start = self.pos;
        let end = self.scan_string(start)?;
        let s = serde_json::from_str::<String>(&self.text[start..=end])
            .map_err(|_| Fail::Syntax(start))?;
        self.pos = end + 1;
        Ok(s)
    }

    fn follows_ok(&self, at: usize, follow: Follow) -> bool {
        let mut i = at;
        while matches!(self.s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        match follow {
            Follow::Object => matches!(self.s.get(i), Some(b',' | b'}')),
            Follow::Array => matches!(self.s.get(i), Some(b',' | b']')),
            Follow::End => i == self.s.len(),
        }
    }

    fn string_value(&mut self, depth: usize, follow: Follow) -> Result<Value, Fail> {
        let start = self.pos;
        let end = self.scan_string(start)?;
        let opens_nested = matches!(self.s.get(start + 1), Some(b'{' | b'['));
        if !opens_nested || self.follows_ok(end + 1, follow) {
            return self.string().map(Value::String);
        }
        // The string "ended" inside what looks like nested JSON: read that JSON instead, and
        // require the string's real closing quote right after it.
        let inner_start = start + 1;
        self.pos = inner_start;
        let repairs_before = self.repairs.len();
        let site = RepairSite {
            field: self.path_string(),
            offset: inner_start,
        };
        let inner = self.value(depth, Follow::End)?;
        let inner_end = self.pos;
        self.expect(b'"')?;
        if !self.follows_ok(self.pos, follow) {
            return Err(Fail::Syntax(self.pos));
        }
        // Keep the client's own text unless it needed repairs of its own.
        let text = if self.repairs.len() == repairs_before {
            self.text[inner_start..inner_end].to_string()
        } else {
            inner.to_string()
        };
        self.repairs.insert(repairs_before, site);
        Ok(Value::String(text))
    }

    fn object(&mut self, depth: usize) -> Result<Value, Fail> {
        if depth > self.max_depth {
            return Err(Fail::TooDeep(self.max_depth));
        }
        self.expect(b'{')?;
        let mut map = Map::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Fail::Syntax(self.pos));
            }
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.path.push(printable(&key));
            let v = self.value(depth, Follow::Object)?;
            self.path.pop();
            if map.contains_key(&key) {
                return Err(Fail::DuplicateKey(printable(&key)));
            }
            map.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(Fail::Syntax(self.pos)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Fail> {
        if depth > self.max_depth {
            return Err(Fail::TooDeep(self.max_depth));
        }
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            self.path.push(format!("[{}]", items.len()));
            let v = self.value(depth, Follow::Array)?;
            self.path.pop();
            items.push(v);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(Fail::Syntax(self.pos)),
            }
        }
    }

    fn path_string(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            if !out.is_empty() && !seg.starts_with('[') {
                out.push('.');
            }
            out.push_str(seg);
        }
        if out.is_empty() {
            out.push_str("(top level)");
        }
        out
    }
}
