//! `login_hint_token` validation and normalization (CIBA 7.1).
//!
//! CIBA leaves the token's format to the OP. Real clients send a raw JSON object, Base64 or
//! Base64url of one, or a JWT; and because Signaturgruppen's own documentation shows a token
//! whose nested `idp_params` JSON is *not* escaped, clients copy that broken form too. This
//! module recognises each form, checks the content against the configured schema
//! ([`LhtRules`]), optionally repairs the unescaped form, folds top-level parameters into the
//! token, and emits it in the configured encoding. Every change is reported in
//! [`LhtReport`]; nothing is repaired silently.
//!
//! Decisions, documented here because they are policy:
//! - A JWT is never re-encoded (that would break its signature): it is forwarded exactly as
//!   sent, whatever `output` says. Folding into a JWT only drops a top-level parameter whose
//!   value the payload already holds; any other fold into a JWT is refused.
//! - Without configured keys, a signed JWT is accepted unverified (the OP verifies it), unless
//!   `require_signed = true`, which needs keys and refuses every unsigned or non-JWT form.
//! - `alg: none` is refused unless `allow_unsigned_jwt = true` (and then never "verified").
//! - `output = "unchanged"` forwards the client's exact bytes; since that cannot carry a
//!   repair or a fold, [`LhtRules::compile`] refuses it together with
//!   `repair_unescaped_json = true` or a non-empty `fold_params`.
//! - Duplicate keys in the token are refused: the OP's JSON parser might pick the other one.
//! - A JSON token that needed no change and is already compact is forwarded as written (it
//!   already is the compact JSON `output = "json"` asks for); anything else is serialized.
//!
//! The token is personal data: it lives in [`Secret`] and no error description quotes it.
//!
//! The module's parts: `rules` (the configuration and the report), `strict` (the fast
//! checks of well-formed JSON, through serde_json), `tolerant` (the parser that finds and
//! repairs unescaped nested JSON, or says precisely where the token is broken), and this
//! file, which recognises a token's form and checks, repairs, folds and re-emits it.

mod rules;
mod strict;
#[cfg(test)]
pub(crate) mod tests;
mod tolerant;

pub use rules::{
    LhtReport, LhtRules, NestedJson, Normalized, OutputFormat, RepairSite, SignatureCheck,
    TokenFormat,
};

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::Secret;
use crate::ciba::jwt::{self, Jwt, KeySet, Verification};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};
use strict::{check_strict, is_compact, parse_strict, parse_top};
use tolerant::{parse_tolerant, Parsed};

/// The form parameter this module owns.
pub const PARAM: &str = "login_hint_token";

/// Nesting no configuration may exceed; keeps the recursive parser's stack small.
pub const HARD_MAX_DEPTH: usize = 64;

/// Standard Base64, padded or not: the reference the vectorized decoder is held to.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `[login_hint_token]` checked, with its keys parsed: what requests are normalized with.
///
/// Only [`LhtRules::compile`] makes one, so no request can meet rules that failed their
/// check or keys that do not parse.
#[derive(Debug, Clone)]
pub struct LhtPolicy {
    rules: LhtRules,
    keys: KeySet,
}

impl LhtPolicy {
    /// The rules as written.
    pub fn rules(&self) -> &LhtRules {
        &self.rules
    }
}

impl Default for LhtPolicy {
    fn default() -> Self {
        LhtRules::default()
            .compile()
            .expect("the default rules pass their own check")
    }
}

fn bad(msg: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(format!("login_hint_token: {}", msg.into()))
        .with_reason("login_hint_token")
}

/// Normalizes the form's `login_hint_token` in place, folding `fold_params` into it.
///
/// `Ok(None)` when the form has no token (then fold parameters stay where they are).
pub fn normalize_in_form(
    form: &mut Form,
    policy: &LhtPolicy,
    now_unix: u64,
) -> Result<Option<LhtReport>, OAuthError> {
    let Some(token) = form.get(PARAM) else {
        return Ok(None);
    };
    let folds: Vec<(&str, &str)> = policy
        .rules
        .fold_params
        .iter()
        .filter_map(|p| form.get(p).map(|v| (p.as_str(), v)))
        .collect();
    let normalized = normalize(token, &folds, policy, now_unix)?;
    // An unchanged value keeps its received encoding in the forwarded form. (Folded
    // parameters are never this one: the configuration refuses CIBA names there.)
    let changed = token != normalized.token.expose().as_str();
    for p in &policy.rules.fold_params {
        form.remove(p);
    }
    if changed {
        form.set(PARAM, normalized.token.into_inner());
    }
    Ok(Some(normalized.report))
}

/// Validates and normalizes one token; `folds` are `(name, value)` form parameters to move
/// into it. Never panics, whatever the input; work is linear in the input's length.
pub fn normalize(
    token: &str,
    folds: &[(&str, &str)],
    policy: &LhtPolicy,
    now_unix: u64,
) -> Result<Normalized, OAuthError> {
    let (rules, keys) = (&policy.rules, &policy.keys);
    if token.len() > rules.max_bytes {
        return Err(bad(format!(
            "longer than {} bytes (login_hint_token.max_bytes)",
            rules.max_bytes
        )));
    }
    if !rules.enabled {
        return Ok(Normalized {
            token: Secret::new(token.to_string()),
            report: LhtReport {
                format: TokenFormat::Opaque,
                signature: SignatureCheck::NotJwt,
                repairs: Vec::new(),
                folded: Vec::new(),
                output: OutputFormat::Unchanged,
            },
        });
    }
    let trimmed = token.trim_matches(|c: char| c.is_ascii_whitespace());
    // `{` never starts a JWT or Base64, so raw JSON skips those checks.
    if trimmed.starts_with('{') && !rules.require_signed {
        return from_json(token, trimmed, TokenFormat::Json, folds, rules);
    }
    let dots = memchr::memchr_iter(b'.', trimmed.as_bytes()).count();
    if dots == 4 {
        return Err(bad(
            "is an encrypted JWT (JWE), which the gateway cannot read; send a signed JWT",
        ));
    }
    if dots == 2 && jwt::looks_like_jwt(trimmed) {
        return from_jwt(token, trimmed, folds, rules, keys, now_unix);
    }
    if rules.require_signed {
        return Err(bad(
            "must be a JWT signed with a configured key (login_hint_token.require_signed)",
        ));
    }
    if trimmed.starts_with('{') {
        return from_json(token, trimmed, TokenFormat::Json, folds, rules);
    }
    if trimmed.starts_with('[') || trimmed.starts_with('"') {
        return Err(bad("must be a JSON object, not another JSON value"));
    }
    let (format, decoded) = decode_base64(trimmed)?;
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| bad("decodes from Base64 to bytes that are not UTF-8"))?;
    let inner = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if !inner.starts_with('{') {
        return Err(bad(
            "not a JSON object, Base64 of one, or a JWT; check how the client encodes it",
        ));
    }
    from_json(token, inner, format, folds, rules)
}

/// Decodes standard Base64, padded or not, refusing trailing bits that are not zero: the
/// same answers as the `base64` crate with `STANDARD_LENIENT` (a differential test and a
/// fuzz target hold the two together), three times as fast on a typical token.
pub fn decode_standard_base64(s: &str) -> Option<Vec<u8>> {
    let bare = s.trim_end_matches('=');
    // Padding is optional, and so is part of it, but never more than the length calls for.
    if s.len() - bare.len() > (4 - bare.len() % 4) % 4 {
        return None;
    }
    base64_simd::STANDARD_NO_PAD.decode_to_vec(bare).ok()
}

fn decode_base64(s: &str) -> Result<(TokenFormat, Vec<u8>), OAuthError> {
    // Most tokens are standard Base64, and the decoder's own alphabet check settles them:
    // text it accepts has no `-`, `_` or space.
    if let Some(bytes) = decode_standard_base64(s) {
        return Ok((TokenFormat::Base64, bytes));
    }
    // Vectorized scans: which alphabet the text uses, and any space.
    let bytes = s.as_bytes();
    let space = memchr::memchr(b' ', bytes).is_some();
    let url = memchr::memchr2(b'-', b'_', bytes).is_some();
    let standard = memchr::memchr2(b'+', b'/', bytes).is_some();
    if space {
        // An unencoded `+` in a form body arrives as a space: say so when that is the cause.
        let plus = s.replace(' ', "+");
        let was_base64 = STANDARD_LENIENT
            .decode(plus)
            .is_ok_and(|b| b.trim_ascii_start().starts_with(b"{"));
        return Err(if was_base64 {
            bad("contains spaces where Base64 has `+`; percent-encode `+` as %2B in the form body")
        } else {
            bad("not a JSON object, Base64 of one, or a JWT")
        });
    }
    let not_json = || bad("not a JSON object, Base64 of one, or a JWT");
    if url && standard {
        return Err(not_json());
    }
    let (format, engine) = if url {
        (TokenFormat::Base64url, &jwt::B64URL)
    } else {
        (TokenFormat::Base64, &STANDARD_LENIENT)
    };
    let bytes = engine.decode(s).map_err(|_| not_json())?;
    Ok((format, bytes))
}

fn from_json(
    original: &str,
    text: &str,
    format: TokenFormat,
    folds: &[(&str, &str)],
    rules: &LhtRules,
) -> Result<Normalized, OAuthError> {
    if folds.is_empty() {
        if let Some(done) = from_json_as_is(original, text, format, rules)? {
            return Ok(done);
        }
    }
    from_json_tree(original, text, format, folds, rules)
}

/// The common case without building a tree: a well-formed token that needs no change and
/// is already compact. `Ok(None)` hands the token to [`from_json_tree`], which gives the
/// same answer for every token this accepts or refuses (a test holds the two together).
fn from_json_as_is(
    original: &str,
    text: &str,
    format: TokenFormat,
    rules: &LhtRules,
) -> Result<Option<Normalized>, OAuthError> {
    let Some(top) = parse_top(text, rules.max_depth) else {
        return Ok(None);
    };
    let get = |key: &str| {
        top.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    };
    for field in &rules.nested_json_fields {
        match get(field) {
            None => {}
            Some(Some(s)) if rules.nested_json == NestedJson::String && nested_ok(s, rules) => {}
            Some(_) => return Ok(None),
        }
    }
    check_schema(get, rules)?;
    let token = match rules.output {
        OutputFormat::Unchanged => original.to_string(),
        _ if !is_compact(text) => return Ok(None),
        OutputFormat::Json => text.to_string(),
        OutputFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(text),
        OutputFormat::Base64url => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text),
    };
    Ok(Some(Normalized {
        token: Secret::new(token),
        report: LhtReport {
            format,
            signature: SignatureCheck::NotJwt,
            repairs: Vec::new(),
            folded: Vec::new(),
            output: rules.output,
        },
    }))
}

/// Parses, repairs, folds and re-serializes a JSON token through a [`Value`] tree.
fn from_json_tree(
    original: &str,
    text: &str,
    format: TokenFormat,
    folds: &[(&str, &str)],
    rules: &LhtRules,
) -> Result<Normalized, OAuthError> {
    let parsed = match parse_strict(text, rules.max_depth) {
        Some(value) => Parsed {
            value,
            repairs: Vec::new(),
        },
        None => parse_tolerant(text, rules.max_depth).map_err(|f| f.into_error())?,
    };
    if let Some(site) = parsed.repairs.first() {
        if !rules.repair_unescaped_json {
            return Err(bad(format!(
                "field `{}` holds unescaped JSON at byte {}{}; escape it as a JSON string \
                 or enable login_hint_token.repair_unescaped_json",
                site.field,
                site.offset,
                if format == TokenFormat::Json {
                    ""
                } else {
                    " of the decoded token"
                }
            )));
        }
    }
    let Value::Object(mut map) = parsed.value else {
        return Err(bad("must be a JSON object"));
    };
    let nested_changed = normalize_nested(&mut map, rules, false)?;
    check_schema(|k| map.get(k).map(Value::as_str), rules)?;
    let mut folded = Vec::new();
    for (name, value) in folds {
        match map.get(*name) {
            Some(existing) => {
                if !same_words(existing, value) {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter `{name}` differs from the same key in login_hint_token; \
                         send it in one place only"
                    ))
                    .with_reason("login_hint_token"));
                }
            }
            None => {
                map.insert((*name).to_string(), Value::String((*value).to_string()));
            }
        }
        folded.push((*name).to_string());
    }
    if !folded.is_empty() {
        // A folded value must pass the same schema as one the client put in the token.
        check_schema(|k| map.get(k).map(Value::as_str), rules)?;
    }
    // Unchanged, well-formed JSON without insignificant whitespace already is compact JSON:
    // it is forwarded as written (key order and escapes are the client's) instead of being
    // serialized again.
    let unchanged = parsed.repairs.is_empty() && folded.is_empty() && !nested_changed;
    let compact = || {
        if unchanged && is_compact(text) {
            text.to_string()
        } else {
            serde_json::to_string(&map).expect("a JSON object always serializes")
        }
    };
    let token = match rules.output {
        OutputFormat::Json => compact(),
        OutputFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(compact()),
        OutputFormat::Base64url => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(compact())
        }
        // validate() refuses repairs and folds with this output; should an unvalidated
        // configuration get here anyway, refusing beats forwarding what was not checked.
        OutputFormat::Unchanged if !parsed.repairs.is_empty() || !folded.is_empty() => {
            return Err(bad(
                "needs a repair or a fold that output = \"unchanged\" cannot carry",
            ))
        }
        OutputFormat::Unchanged => original.to_string(),
    };
    Ok(Normalized {
        token: Secret::new(token),
        report: LhtReport {
            format,
            signature: SignatureCheck::NotJwt,
            repairs: parsed.repairs,
            folded,
            output: rules.output,
        },
    })
}

fn from_jwt(
    original: &str,
    text: &str,
    folds: &[(&str, &str)],
    rules: &LhtRules,
    keys: &KeySet,
    now_unix: u64,
) -> Result<Normalized, OAuthError> {
    let jwt = Jwt::decode(text).map_err(|e| {
        OAuthError::invalid_request(format!("login_hint_token {e}")).with_reason("login_hint_token")
    })?;
    let signature = if jwt.is_unsigned() {
        if !rules.allow_unsigned_jwt {
            return Err(bad("unsigned JWT (`alg` none) refused; sign it or set \
                 login_hint_token.allow_unsigned_jwt = true"));
        }
        SignatureCheck::Unsigned
    } else if keys.is_empty() {
        SignatureCheck::Unverified
    } else {
        match keys.verify(&jwt) {
            Verification::Verified => SignatureCheck::Verified,
            Verification::UnsupportedAlg => {
                return Err(bad("JWT `alg` is not one the gateway can verify"))
            }
            Verification::NoMatchingKey => return Err(bad(
                "no configured key matches the JWT's `alg` and `kid`; check login_hint_token.keys",
            )),
            Verification::BadSignature => return Err(bad("JWT signature does not verify")),
        }
    };
    if rules.require_signed && signature != SignatureCheck::Verified {
        return Err(bad("must be a JWT signed with a configured key"));
    }
    check_time(&jwt.payload, rules.leeway_seconds, now_unix)?;
    let mut payload = jwt.payload.clone();
    if depth_of_map(&payload) > rules.max_depth {
        return Err(bad(format!(
            "nested deeper than {} levels (login_hint_token.max_depth)",
            rules.max_depth
        )));
    }
    normalize_nested(&mut payload, rules, true)?;
    check_schema(|k| payload.get(k).map(Value::as_str), rules)?;
    let mut folded = Vec::new();
    for (name, value) in folds {
        match payload.get(*name) {
            Some(existing) if same_words(existing, value) => folded.push((*name).to_string()),
            Some(_) => {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` differs from the same key in login_hint_token; \
                     send it in one place only"
                ))
                .with_reason("login_hint_token"))
            }
            None => {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` cannot be folded into a signed login_hint_token; \
                     put it inside the token"
                ))
                .with_reason("login_hint_token"))
            }
        }
    }
    Ok(Normalized {
        token: Secret::new(original.to_string()),
        report: LhtReport {
            format: TokenFormat::Jwt,
            signature,
            repairs: Vec::new(),
            folded,
            output: OutputFormat::Unchanged,
        },
    })
}

fn check_time(payload: &Map<String, Value>, leeway: u64, now: u64) -> Result<(), OAuthError> {
    let number = |name: &str| -> Result<Option<f64>, OAuthError> {
        match payload.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| bad(format!("JWT claim `{name}` must be a number of seconds"))),
        }
    };
    let now = now as f64;
    let leeway = leeway as f64;
    if let Some(exp) = number("exp")? {
        if exp + leeway <= now {
            return Err(OAuthError::new(
                ErrorCode::ExpiredLoginHintToken,
                "login_hint_token: the JWT has expired (`exp` is in the past)",
            )
            .with_reason("login_hint_token"));
        }
    }
    if let Some(nbf) = number("nbf")? {
        if nbf - leeway > now {
            return Err(bad("the JWT is not valid yet (`nbf` is in the future)"));
        }
    }
    Ok(())
}

/// Parses the fields that hold nested JSON and re-encodes them per `nested_json`.
///
/// For a JWT (`read_only`), only checks them: its payload is never re-emitted.
fn normalize_nested(
    map: &mut Map<String, Value>,
    rules: &LhtRules,
    read_only: bool,
) -> Result<bool, OAuthError> {
    let mut changed = false;
    for field in &rules.nested_json_fields {
        let Some(value) = map.get_mut(field) else {
            continue;
        };
        let budget = nested_budget(rules);
        if let Value::String(s) = &*value {
            // The common case, a well-formed string that stays a string, needs no tree.
            let stays = read_only || rules.nested_json == NestedJson::String;
            if stays && nested_ok(s, rules) {
                continue;
            }
        }
        let mut repaired = false;
        let inner = match &*value {
            Value::Object(_) | Value::Array(_) => value.clone(),
            Value::String(s) => match parse_strict(s, budget) {
                Some(value) => value,
                None => {
                    let parsed = parse_tolerant(s, budget).map_err(|_| {
                        bad(format!(
                            "field `{}` must hold JSON text, an object or an array",
                            printable(field)
                        ))
                    })?;
                    if !parsed.repairs.is_empty() && !rules.repair_unescaped_json {
                        return Err(bad(format!(
                            "field `{}` holds a string with unescaped nested JSON; escape it or \
                             enable login_hint_token.repair_unescaped_json",
                            printable(field)
                        )));
                    }
                    repaired = !parsed.repairs.is_empty();
                    parsed.value
                }
            },
            _ => {
                return Err(bad(format!(
                    "field `{}` must hold a JSON object or a string of one",
                    printable(field)
                )))
            }
        };
        if !matches!(inner, Value::Object(_) | Value::Array(_)) {
            return Err(bad(format!(
                "field `{}` must hold a JSON object or a string of one",
                printable(field)
            )));
        }
        if 1 + depth_of(&inner) > rules.max_depth {
            return Err(bad(format!(
                "nested deeper than {} levels (login_hint_token.max_depth)",
                rules.max_depth
            )));
        }
        if read_only {
            continue;
        }
        match (rules.nested_json, &*value) {
            // A well-formed string is forwarded as the client wrote it.
            (NestedJson::String, Value::String(_)) if !repaired => {}
            (NestedJson::String, _) => {
                *value = Value::String(inner.to_string());
                changed = true;
            }
            (NestedJson::Object, _) => {
                *value = inner;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// The depth budget of JSON text held in a nested field (the token itself is one level).
fn nested_budget(rules: &LhtRules) -> usize {
    rules.max_depth.saturating_sub(1).max(1)
}

/// Whether a nested field's string is well-formed JSON text of an object or array that fits
/// within `max_depth` below the token, checked without building it.
fn nested_ok(s: &str, rules: &LhtRules) -> bool {
    check_strict(s, nested_budget(rules)).is_some_and(|d| d >= 1 && d < rules.max_depth)
}

/// Checks the token's top level against the schema; `get` gives a key's value: `None` when
/// absent, `Some(None)` when it is not a string.
fn check_schema<'a>(
    get: impl Fn(&str) -> Option<Option<&'a str>>,
    rules: &LhtRules,
) -> Result<(), OAuthError> {
    for key in &rules.required_keys {
        if get(key).is_none() {
            return Err(bad(format!("required key `{key}` is missing")));
        }
    }
    for (key, allowed) in &rules.allowed_values {
        if let Some(v) = get(key) {
            if !v.is_some_and(|s| allowed.iter().any(|a| a == s)) {
                return Err(bad(format!(
                    "key `{key}` has a value that is not allowed (allowed: {})",
                    allowed.join(", ")
                )));
            }
        }
    }
    if !rules.allowed_idps.is_empty() {
        let allowed = |s: &str| rules.allowed_idps.iter().any(|a| a == s);
        if let Some(v) = get("idp") {
            if !v.is_some_and(allowed) {
                return Err(bad(
                    "key `idp` names an identity provider that is not allowed",
                ));
            }
        }
        if let Some(v) = get("idp_values") {
            if !v.is_some_and(|s| s.split_whitespace().all(allowed)) {
                return Err(bad(
                    "key `idp_values` names an identity provider that is not allowed",
                ));
            }
        }
    }
    Ok(())
}

/// Whether a token value equals a form value, comparing space-separated words.
fn same_words(existing: &Value, form_value: &str) -> bool {
    existing
        .as_str()
        .is_some_and(|s| s.split_whitespace().eq(form_value.split_whitespace()))
}

/// Nesting depth of a value: scalars 0, `{}` 1. Iterative, so any input is safe.
fn depth_of(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d + 1);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => max = max.max(d),
        }
    }
    max
}

fn depth_of_map(m: &Map<String, Value>) -> usize {
    1 + m.values().map(depth_of).max().unwrap_or(0)
}

/// A JSON key clipped and made safe to show in an error description.
fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() || c == '`' { '?' } else { c })
        .collect()
}
