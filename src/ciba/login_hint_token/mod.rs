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

use crate::ciba::config_error::ConfigError;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::Secret;
use crate::ciba::jwt::{self, Jwt, KeyConfig, KeySet, Verification};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The form parameter this module owns.
pub const PARAM: &str = "login_hint_token";

/// Nesting no configuration may exceed; keeps the recursive parser's stack small.
pub const HARD_MAX_DEPTH: usize = 64;

/// Parameters that are never folded into the token: they mean something to the OP itself.
const UNFOLDABLE: &[&str] = &[
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "grant_type",
    "login_hint",
    "login_hint_token",
    "id_token_hint",
    "binding_message",
    "user_code",
    "requested_expiry",
    "client_notification_token",
    "request",
    "acr_values",
    "auth_req_id",
];

const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a normalized JSON token is encoded on the way to the OP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Compact JSON text (keys sorted).
    #[default]
    Json,
    /// Standard Base64 with padding, of the compact JSON.
    Base64,
    /// Base64url without padding, of the compact JSON.
    Base64url,
    /// The client's exact token (validation only).
    Unchanged,
}

impl OutputFormat {
    /// Name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Base64 => "base64",
            OutputFormat::Base64url => "base64url",
            OutputFormat::Unchanged => "unchanged",
        }
    }
}

/// How fields listed in `nested_json_fields` are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NestedJson {
    /// As a JSON string holding JSON text (what Signaturgruppen documents for `idp_params`).
    #[default]
    String,
    /// As a JSON object.
    Object,
}

/// `[login_hint_token]`: how tokens are recognised, checked and re-emitted.
///
/// ```toml
/// [login_hint_token]
/// enabled = true                  # false: forward any token untouched (only max_bytes applies)
/// max_bytes = 4096                # the token as sent
/// max_depth = 8                   # JSON nesting, counting nested JSON held in strings
/// repair_unescaped_json = false   # repair `"idp_params":"{"uuid":...}"` instead of refusing it
/// allow_unsigned_jwt = false      # accept `alg: none` JWTs
/// require_signed = false          # only signed, verified JWTs (needs keys)
/// leeway_seconds = 0              # clock skew forgiven on `exp` / `nbf`
/// required_keys = []              # e.g. ["flow_type"]
/// allowed_idps = []               # checks `idp` and each entry of `idp_values`; empty = any
/// fold_params = []                # e.g. ["idp_values", "prompt"]
/// output = "json"                 # json | base64 | base64url | unchanged
/// nested_json = "string"          # string | object
/// nested_json_fields = ["idp_params"]
/// [login_hint_token.allowed_values]
/// flow_type = ["broker_oidc"]
/// [login_hint_token.keys]         # see jwt::KeyConfig
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LhtRules {
    /// Whether tokens are normalized at all.
    pub enabled: bool,
    /// Longest token accepted, in bytes as sent.
    pub max_bytes: usize,
    /// Deepest JSON nesting accepted (the token object itself is level 1).
    pub max_depth: usize,
    /// Repair nested JSON embedded unescaped in a string value, instead of refusing it.
    pub repair_unescaped_json: bool,
    /// Accept JWTs with `alg: none`.
    pub allow_unsigned_jwt: bool,
    /// Accept only JWTs whose signature verifies with `keys`.
    pub require_signed: bool,
    /// Seconds of clock skew forgiven when checking a JWT's `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Keys that JWT tokens are verified with; empty means JWTs are not verified here.
    pub keys: KeyConfig,
    /// Top-level keys the token must have.
    pub required_keys: Vec<String>,
    /// For a top-level key, the string values it may take.
    pub allowed_values: BTreeMap<String, Vec<String>>,
    /// Identity providers allowed in `idp` and `idp_values`; empty allows any.
    pub allowed_idps: Vec<String>,
    /// Top-level form parameters moved into the token.
    pub fold_params: Vec<String>,
    /// Encoding of the forwarded token.
    pub output: OutputFormat,
    /// Encoding of the fields in `nested_json_fields`.
    pub nested_json: NestedJson,
    /// Top-level fields that hold nested JSON (as an object or a string of JSON text).
    pub nested_json_fields: Vec<String>,
}

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

impl Default for LhtRules {
    fn default() -> Self {
        LhtRules {
            enabled: true,
            max_bytes: 4096,
            max_depth: 8,
            repair_unescaped_json: false,
            allow_unsigned_jwt: false,
            require_signed: false,
            leeway_seconds: 0,
            keys: KeyConfig::default(),
            required_keys: Vec::new(),
            allowed_values: BTreeMap::new(),
            allowed_idps: Vec::new(),
            fold_params: Vec::new(),
            output: OutputFormat::Json,
            nested_json: NestedJson::String,
            nested_json_fields: vec!["idp_params".to_string()],
        }
    }
}

impl LhtRules {
    /// Checks the rules and parses their keys; the error names the key, e.g.
    /// `login_hint_token.max_depth`.
    pub fn compile(self) -> Result<LhtPolicy, ConfigError> {
        let key = |k: &str| format!("login_hint_token.{k}");
        let fail = |k: &str, message: String| Err(ConfigError::new(key(k), message));
        if self.max_bytes == 0 || self.max_bytes > 64 * 1024 {
            return fail(
                "max_bytes",
                "must be between 1 and 65536 (the gateway's body limit)".into(),
            );
        }
        if self.max_depth == 0 || self.max_depth > HARD_MAX_DEPTH {
            return fail(
                "max_depth",
                format!("must be between 1 and {HARD_MAX_DEPTH}"),
            );
        }
        let keys = self.keys.compile(&key("keys"))?;
        if self.require_signed && keys.is_empty() {
            return fail(
                "require_signed",
                "needs at least one key in [login_hint_token.keys] to verify with".into(),
            );
        }
        if self.require_signed && self.allow_unsigned_jwt {
            return fail(
                "allow_unsigned_jwt",
                "contradicts require_signed = true; drop one of them".into(),
            );
        }
        if self.output == OutputFormat::Unchanged && self.repair_unescaped_json {
            return fail(
                "output",
                "\"unchanged\" cannot carry a repaired token; \
                 set repair_unescaped_json = false or choose another output"
                    .into(),
            );
        }
        if self.output == OutputFormat::Unchanged && !self.fold_params.is_empty() {
            return fail(
                "output",
                "\"unchanged\" cannot carry folded parameters; \
                 empty fold_params or choose another output"
                    .into(),
            );
        }
        for name in &self.fold_params {
            if name.is_empty() || UNFOLDABLE.contains(&name.as_str()) {
                return fail(
                    "fold_params",
                    format!("`{name}` is an OAuth/CIBA parameter and cannot be folded"),
                );
            }
        }
        for (k, values) in &self.allowed_values {
            if values.is_empty() {
                return fail(
                    &format!("allowed_values.{k}"),
                    "empty list would refuse every token; remove the key".into(),
                );
            }
        }
        Ok(LhtPolicy { rules: self, keys })
    }
}

/// The encoding a token arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// A raw JSON object.
    Json,
    /// Standard Base64 (padded or not) of a JSON object.
    Base64,
    /// Base64url (padded or not) of a JSON object.
    Base64url,
    /// A compact JWS.
    Jwt,
    /// Not inspected (`enabled = false`).
    Opaque,
}

impl TokenFormat {
    /// Name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Json => "json",
            TokenFormat::Base64 => "base64",
            TokenFormat::Base64url => "base64url",
            TokenFormat::Jwt => "jwt",
            TokenFormat::Opaque => "opaque",
        }
    }
}

/// What was learnt about a JWT token's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The token is not a JWT.
    NotJwt,
    /// `alg: none`, allowed by configuration.
    Unsigned,
    /// Signed, but no keys are configured: the OP verifies.
    Unverified,
    /// Verified with a configured key.
    Verified,
}

/// Where unescaped nested JSON was found (and repaired, if the report says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairSite {
    /// The field's path, e.g. `idp_params` or `a.b[0]`.
    pub field: String,
    /// Byte offset of the nested value's first byte in the (decoded) token.
    pub offset: usize,
}

/// What normalization did, for metrics and logs; holds no token content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LhtReport {
    /// The encoding the token arrived in.
    pub format: TokenFormat,
    /// The signature outcome for JWTs.
    pub signature: SignatureCheck,
    /// Unescaped nested JSON that was repaired.
    pub repairs: Vec<RepairSite>,
    /// Form parameters removed from the form because the token now carries them.
    pub folded: Vec<String>,
    /// How the forwarded token is encoded.
    pub output: OutputFormat,
}

impl LhtReport {
    /// Whether a repair was made.
    pub fn repaired(&self) -> bool {
        !self.repairs.is_empty()
    }
}

/// A normalized token and what was done to it.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The token to forward.
    pub token: Secret<String>,
    /// What happened.
    pub report: LhtReport,
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

/// Whether JSON text has no whitespace outside its strings (the text is known to be valid).
fn is_compact(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Valid JSON never holds a raw tab or line break inside a string: one anywhere is
    // whitespace between tokens.
    if memchr::memchr3(b'\t', b'\n', b'\r', bytes).is_some() {
        return false;
    }
    // Of two neighbouring JSON tokens at least one is structural, so a space between
    // tokens touches a structural byte, another space or an end of the text. A space with
    // other bytes on both sides is inside a string, as the spaces of a typical token are:
    // only a text with a space of the first kind needs the byte-by-byte walk.
    let touches_structure = |at: Option<&u8>| {
        at.is_none_or(|b| matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b' '))
    };
    let ambiguous = memchr::memchr_iter(b' ', bytes).any(|at| {
        touches_structure(at.checked_sub(1).and_then(|k| bytes.get(k)))
            || touches_structure(bytes.get(at + 1))
    });
    !ambiguous || compact_by_walk(bytes)
}

/// [`is_compact`] by following string state byte by byte.
fn compact_by_walk(bytes: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if escaped {
            escaped = false;
        } else if in_string {
            escaped = b == b'\\';
            in_string = b != b'"';
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return false;
        } else {
            in_string = b == b'"';
        }
    }
    true
}

/// Checks well-formed JSON like [`parse_strict`] without building it; returns its depth
/// (scalars 0, `{}` 1).
fn check_strict(text: &str, max_depth: usize) -> Option<usize> {
    whole(
        text,
        Check {
            depth_left: max_depth.min(HARD_MAX_DEPTH),
        },
    )
}

/// Runs `seed` over the whole of `text`: `None` unless it accepts and only whitespace follows.
fn whole<'de, S: serde::de::DeserializeSeed<'de>>(text: &'de str, seed: S) -> Option<S::Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Validates a JSON value and measures its depth; keys are borrowed where the text allows.
#[derive(Clone, Copy)]
struct Check {
    depth_left: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Check {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Check {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<usize, E> {
        match v.is_finite() {
            true => Ok(0),
            false => Err(E::custom("not a finite number")),
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let inner = Check {
            depth_left: enter::<A::Error>(self.depth_left)?,
        };
        let mut depth = 0;
        while let Some(d) = seq.next_element_seed(inner)? {
            depth = depth.max(d);
        }
        Ok(1 + depth)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<usize, A::Error> {
        let inner = Check {
            depth_left: enter::<A::Error>(self.depth_left)?,
        };
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut depth = 0;
        while let Some(key) = access.next_key_seed(Key)? {
            keys.push(key);
            depth = depth.max(access.next_value_seed(inner)?);
        }
        if has_duplicate(&keys, |k| k) {
            return Err(serde::de::Error::custom("duplicate key"));
        }
        Ok(1 + depth)
    }
}

/// Whether two of `items` have the same key.
fn has_duplicate<T>(items: &[T], key: impl Fn(&T) -> &str) -> bool {
    // The few keys of a typical object are compared pairwise, without allocating; sorting
    // keeps hostile inputs with many keys at n log n.
    if items.len() <= 8 {
        return (1..items.len()).any(|i| items[..i].iter().any(|b| key(b) == key(&items[i])));
    }
    let mut keys: Vec<&str> = items.iter().map(key).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// One level deeper, or an error when the depth budget is spent.
fn enter<E: serde::de::Error>(depth_left: usize) -> Result<usize, E> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| E::custom("nested too deep"))
}

/// A token object's top level: each key, with its value when that is a string.
type Top<'de> = Vec<(Cow<'de, str>, Option<Cow<'de, str>>)>;

/// Checks a well-formed JSON object as [`parse_strict`] does, keeping only its top level.
fn parse_top(text: &str, max_depth: usize) -> Option<Top<'_>> {
    whole(
        text,
        TopLevel {
            depth_left: max_depth.min(HARD_MAX_DEPTH),
        },
    )
}

/// The visitor behind [`parse_top`]: an object, whose values are checked by [`Check`].
#[derive(Clone, Copy)]
struct TopLevel {
    depth_left: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel {
    type Value = Top<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Top<'de>, A::Error> {
        let inner = Check {
            depth_left: enter::<A::Error>(self.depth_left)?,
        };
        let mut top: Top<'de> = Vec::with_capacity(8);
        while let Some(key) = access.next_key_seed(Key)? {
            let value = access.next_value_seed(TopValue(inner))?;
            top.push((key, value));
        }
        if has_duplicate(&top, |(k, _)| k) {
            return Err(serde::de::Error::custom("duplicate key"));
        }
        Ok(top)
    }
}

/// A top-level value: kept when a string, otherwise only checked.
#[derive(Clone, Copy)]
struct TopValue(Check);

impl<'de> serde::de::DeserializeSeed<'de> for TopValue {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopValue {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.0.visit_f64(v).map(|_| None)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(|_| None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(access).map(|_| None)
    }
}

/// Parses well-formed JSON the fast way: `serde_json`, refusing duplicate keys and nesting
/// beyond `max_depth` (as [`parse_tolerant`] does). `None` for anything else, which the
/// caller hands to [`parse_tolerant`] for a repair or a precise error.
fn parse_strict(text: &str, max_depth: usize) -> Option<Value> {
    whole(
        text,
        Strict {
            depth_left: max_depth.min(HARD_MAX_DEPTH),
        },
    )
}

/// Builds a [`Value`] like serde_json's own, with the depth limit and duplicate-key check.
#[derive(Clone, Copy)]
struct Strict {
    depth_left: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = Strict {
            depth_left: enter::<A::Error>(self.depth_left)?,
        };
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = Strict {
            depth_left: enter::<A::Error>(self.depth_left)?,
        };
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let v = access.next_value_seed(inner)?;
            if map.insert(key, v).is_some() {
                return Err(serde::de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(map))
    }
}

/// The result of [`parse_tolerant`].
struct Parsed {
    value: Value,
    repairs: Vec<RepairSite>,
}

/// Why [`parse_tolerant`] gave up.
#[derive(Debug)]
enum Fail {
    Syntax(usize),
    TooDeep(usize),
    DuplicateKey(String),
    Budget,
}

impl Fail {
    fn into_error(self) -> OAuthError {
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
fn parse_tolerant(text: &str, max_depth: usize) -> Result<Parsed, Fail> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ciba::jwt::tests::{es256, hs256, unsigned, EC_PUBLIC_PEM, HMAC_SECRET};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use serde_json::json;

    /// Signaturgruppen's documented Base64 example, verbatim.
    pub const SG_BASE64: &str = "eyJpZHAiOiJtaXRpZCIsImlkcF9wYXJhbXMiOiJ7InV1aWQiOiI4YTk4NTZlMC1mMTJkLTQyMTctYjMyMC1jOGEwNzZiZTkzMjAiLCAicmVmZXJlbmNlVGV4dEJvZHkiOiJUZXN0aW5nIE1pdElEIEZsZXggYXBwIPCfmIkiLCAiaXAiOiIxLjEuMS4xIn0ifQ==";
    /// What it decodes to: `idp_params` holds JSON that is not escaped.
    const SG_RAW: &str = "{\"idp\":\"mitid\",\"idp_params\":\"{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\", \"referenceTextBody\":\"Testing MitID Flex app \u{1F609}\", \"ip\":\"1.1.1.1\"}\"}";
    const SG_INNER: &str = "{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\", \"referenceTextBody\":\"Testing MitID Flex app \u{1F609}\", \"ip\":\"1.1.1.1\"}";
    const NOW: u64 = 1_700_000_000;

    fn repairing() -> LhtRules {
        LhtRules {
            repair_unescaped_json: true,
            ..Default::default()
        }
    }

    /// The rules checked as the configuration checks them.
    fn policy(rules: &LhtRules) -> LhtPolicy {
        rules.clone().compile().expect("valid rules")
    }

    fn norm(token: &str, rules: &LhtRules) -> Result<Normalized, OAuthError> {
        normalize(token, &[], &policy(rules), NOW)
    }

    fn json_of(n: &Normalized) -> Value {
        serde_json::from_str(n.token.expose()).unwrap()
    }

    #[test]
    fn the_documented_base64_example_decodes_to_unescaped_json() {
        assert_eq!(STANDARD.decode(SG_BASE64).unwrap(), SG_RAW.as_bytes());
    }

    #[test]
    fn unescaped_json_is_refused_by_default_with_a_precise_message() {
        for (token, suffix) in [(SG_RAW, ""), (SG_BASE64, " of the decoded token")] {
            let e = norm(token, &LhtRules::default()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert_eq!(
                e.description,
                format!(
                    "login_hint_token: field `idp_params` holds unescaped JSON at byte 29{suffix}; \
                     escape it as a JSON string or enable login_hint_token.repair_unescaped_json"
                )
            );
            assert!(!e.description.contains("8a9856e0"));
        }
    }

    #[test]
    fn signaturgruppen_examples_round_trip_through_every_output() {
        let fixed = json!({"idp": "mitid", "idp_params": SG_INNER});
        let escaped = fixed.to_string();
        for (token, format, repaired) in [
            (SG_RAW, TokenFormat::Json, true),
            (SG_BASE64, TokenFormat::Base64, true),
            (escaped.as_str(), TokenFormat::Json, false),
        ] {
            for output in [
                OutputFormat::Json,
                OutputFormat::Base64,
                OutputFormat::Base64url,
            ] {
                for nested in [NestedJson::String, NestedJson::Object] {
                    let rules = LhtRules {
                        output,
                        nested_json: nested,
                        ..repairing()
                    };
                    let n = norm(token, &rules).unwrap();
                    assert_eq!(n.report.format, format);
                    assert_eq!(n.report.repaired(), repaired);
                    assert_eq!(n.report.output, output);
                    let text = match output {
                        OutputFormat::Json => n.token.expose().clone(),
                        OutputFormat::Base64 => {
                            String::from_utf8(STANDARD.decode(n.token.expose()).unwrap()).unwrap()
                        }
                        _ => String::from_utf8(URL_SAFE_NO_PAD.decode(n.token.expose()).unwrap())
                            .unwrap(),
                    };
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let want = match nested {
                        NestedJson::String => fixed.clone(),
                        NestedJson::Object => json!({
                            "idp": "mitid",
                            "idp_params": serde_json::from_str::<Value>(SG_INNER).unwrap()
                        }),
                    };
                    assert_eq!(v, want, "{format:?} {output:?} {nested:?}");
                    // The output is itself accepted, unchanged in meaning, without repair.
                    let again = norm(n.token.expose(), &rules).unwrap();
                    assert!(!again.report.repaired());
                }
            }
        }
        let n = norm(SG_RAW, &repairing()).unwrap();
        assert_eq!(
            n.report.repairs,
            vec![RepairSite {
                field: "idp_params".into(),
                offset: 29
            }]
        );
    }

    #[test]
    fn unchanged_forwards_exact_bytes() {
        let rules = LhtRules {
            output: OutputFormat::Unchanged,
            ..Default::default()
        };
        rules.clone().compile().unwrap();
        let token = r#" {"idp" : "mitid"} "#;
        assert_eq!(norm(token, &rules).unwrap().token.expose(), token);
        assert!(norm(SG_RAW, &rules).is_err());
        assert!(LhtRules {
            output: OutputFormat::Unchanged,
            ..repairing()
        }
        .compile()
        .unwrap_err()
        .to_string()
        .starts_with("login_hint_token.output:"));
    }

    #[test]
    fn base64_variants_are_recognised() {
        let obj = r#"{"idp":"mitid","x":"??>>"}"#;
        let cases = [
            (STANDARD.encode(obj), TokenFormat::Base64),
            (
                STANDARD.encode(obj).trim_end_matches('=').to_string(),
                TokenFormat::Base64,
            ),
            (URL_SAFE_NO_PAD.encode(obj), TokenFormat::Base64url),
            (
                base64::engine::general_purpose::URL_SAFE.encode(obj),
                TokenFormat::Base64url,
            ),
        ];
        for (token, format) in cases {
            let n = norm(&token, &LhtRules::default()).unwrap();
            assert_eq!(n.report.format, format, "{token}");
            assert_eq!(json_of(&n), serde_json::from_str::<Value>(obj).unwrap());
        }
        let spaced = STANDARD.encode(obj).replace('+', " ");
        if spaced.contains(' ') {
            let e = norm(&spaced, &LhtRules::default()).unwrap_err();
            assert!(e.description.contains("%2B"));
        }
    }

    #[test]
    fn malformed_tokens_are_invalid_request() {
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(9),
            "1".to_string() + &"}".repeat(9)
        );
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not a JSON object"),
            ("[1,2]".into(), "must be a JSON object"),
            ("\"s\"".into(), "must be a JSON object"),
            ("{\"a\":1".into(), "not valid JSON"),
            ("{\"a\":1,\"a\":2}".into(), "appears more than once"),
            ("{\"a\":01}".into(), "not valid JSON"),
            ("{\"a\":\"\u{1}\"}".into(), "not valid JSON"),
            (STANDARD.encode("[1]"), "not a JSON object"),
            (STANDARD.encode([0xff, 0xfe]), "not UTF-8"),
            ("a+b-c".into(), "not a JSON object"),
            ("%%%".into(), "not a JSON object"),
            (deep, "nested deeper than 8"),
            (
                "{\"a\":\"".to_string() + &"x".repeat(5000) + "\"}",
                "longer than 4096",
            ),
            ("{\"idp_params\":5}".into(), "`idp_params` must hold"),
            ("{\"idp_params\":\"nope\"}".into(), "`idp_params` must hold"),
            ("{\"idp_params\":\"1\"}".into(), "`idp_params` must hold"),
        ];
        for (token, expect) in cases {
            let e = norm(&token, &LhtRules::default()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{token}");
            assert!(e.description.contains(expect), "{token}: {}", e.description);
        }
    }

    #[test]
    fn hostile_inputs_never_panic_or_blow_the_stack() {
        let rules = LhtRules {
            max_bytes: 65536,
            max_depth: 64,
            ..repairing()
        };
        let inputs = [
            "{\"a\":\"".repeat(5000),
            "{\"a\":\"{".repeat(3000),
            "[".repeat(60000),
            "{\"a\":\"[".repeat(3000) + &"]\"}".repeat(3000),
            "\"{".repeat(20000),
            "{\"a\":\"{\\".repeat(3000),
            "{".to_string() + &"\"a\":\"{\"b\":1}\",".repeat(3000) + "\"z\":1}",
        ];
        for input in inputs {
            let _ = norm(&input, &rules);
            let _ = norm(&STANDARD.encode(&input), &rules);
        }
    }

    #[test]
    fn the_fast_parser_agrees_with_the_tolerant_one() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let cases = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":-1.5e3,"e":"x\u00e6\n"}}"#.to_string(),
            r#" { "a" : "{\"b\":1}" } "#.to_string(),
            r#"{"a":1,"a":2}"#.to_string(),
            r#"{"a":{"b":1,"b":1}}"#.to_string(),
            r#"{"a":"{"b":1}"}"#.to_string(),
            r#"{"a":1}x"#.to_string(),
            r#"{"a":"\ud800"}"#.to_string(),
            r#"{"a":18446744073709551616}"#.to_string(),
            r#"{"a":1e999}"#.to_string(),
            r#"{"a":01}"#.to_string(),
            "{\"a\":\"\u{1}\"}".to_string(),
            deep(3),
            deep(4),
            deep(5),
            String::new(),
        ];
        for text in &cases {
            let checked = check_strict(text, 4);
            assert_eq!(
                checked,
                parse_strict(text, 4).map(|v| depth_of(&v)),
                "{text}"
            );
            let tolerant = parse_tolerant(text, 4);
            match parse_strict(text, 4) {
                Some(v) => {
                    let t = tolerant.unwrap_or_else(|e| panic!("{text}: {e:?}"));
                    assert!(t.repairs.is_empty(), "{text}");
                    assert_eq!(v, t.value, "{text}");
                }
                // Refused by the fast path: either a repair or an error for the tolerant one.
                None => assert!(
                    tolerant.as_ref().map_or(true, |p| !p.repairs.is_empty()),
                    "{text}"
                ),
            }
        }
    }

    /// A small deterministic generator: each call gives a number below its argument.
    fn generator(mut seed: u32) -> impl FnMut(u32) -> u32 {
        move |n| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) % n
        }
    }

    #[test]
    fn the_vectorized_base64_decoder_agrees_with_the_base64_crate() {
        let mut next = generator(0x1234_5678_u32);
        let check = |s: &str| {
            assert_eq!(
                decode_standard_base64(s),
                STANDARD_LENIENT.decode(s).ok(),
                "{s:?}"
            );
        };
        // Hostile text: other alphabets, padding anywhere, spaces and line breaks.
        let alphabet = b"AZagh09+/=-_ \n";
        for _ in 0..20_000 {
            let len = next(40) as usize;
            let s: String = (0..len)
                .map(|_| char::from(alphabet[next(alphabet.len() as u32) as usize]))
                .collect();
            check(&s);
        }
        // Real encodings of every length, padded, unpadded, over-padded and cut short.
        for len in 0..80 {
            let bytes: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
            let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let bare = padded.trim_end_matches('=');
            for s in [
                padded.clone(),
                bare.to_string(),
                format!("{padded}="),
                format!("{bare}="),
                padded.chars().skip(1).collect(),
            ] {
                check(&s);
            }
            if !bare.is_empty() {
                // The last character with its unused bits set.
                let mut odd = bare.to_string();
                let last = odd.pop().unwrap();
                odd.push(if last == '/' { '+' } else { '/' });
                check(&odd);
            }
        }
    }

    #[test]
    fn duplicates_are_found_among_few_keys_and_many() {
        for n in [0usize, 1, 2, 8, 9, 40] {
            let keys: Vec<String> = (0..n).map(|k| format!("k{k}")).collect();
            assert!(!has_duplicate(&keys, |k| k), "{n} distinct");
            for (a, b) in [(0, n.saturating_sub(1)), (n / 2, n.saturating_sub(1))] {
                if a < b {
                    let mut dup = keys.clone();
                    dup[b] = dup[a].clone();
                    assert!(has_duplicate(&dup, |k| k), "{n}: {a} and {b}");
                }
            }
        }
    }

    #[test]
    fn the_untouched_path_agrees_with_the_tree() {
        let tokens = [
            r#"{"flow_type":"broker_oidc","idp_values":"mitid","idp_params":"{\"uuid\":\"u\",\"t\":\"a b\"}"}"#,
            r#"{"flow_type":"broker_oidc","idp_values":"mitid nemid","idp":"mitid"}"#,
            r#"{ "flow_type" : "broker_oidc" }"#,
            r#"{"flow_type":"other"}"#,
            r#"{"flow_type":1}"#,
            r#"{"idp_values":"evil"}"#,
            r#"{"idp":"mitid","idp_values":["mitid"]}"#,
            r#"{"idp_params":{"uuid":"u"}}"#,
            r#"{"idp_params":"{\"a\":{\"b\":{\"c\":{}}}}"}"#,
            r#"{"idp_params":"{\"a\":1,\"a\":2}"}"#,
            r#"{"idp_params":"not json"}"#,
            r#"{"idp_params":"[1]"}"#,
            r#"{"idp_params":"1"}"#,
            r#"{"idp_params":7}"#,
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}"#,
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1}"#,
            r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k1":2}"#,
            r#"{"idp_params":"{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"a\":2}"}"#,
            r#"{"a":"\u00e6\n","b":[1,2.5,null,true],"c":{}}"#,
            r#"{"a":1}	"#,
            r#"[1]"#,
            r#"{}"#,
        ];
        let schema = LhtRules {
            required_keys: vec!["flow_type".into()],
            allowed_values: BTreeMap::from([("flow_type".into(), vec!["broker_oidc".into()])]),
            allowed_idps: vec!["mitid".into(), "nemid".into()],
            ..LhtRules::default()
        };
        let variants = [
            LhtRules::default(),
            schema.clone(),
            LhtRules {
                nested_json: NestedJson::Object,
                ..LhtRules::default()
            },
            LhtRules {
                output: OutputFormat::Base64url,
                ..schema.clone()
            },
            LhtRules {
                output: OutputFormat::Base64,
                ..LhtRules::default()
            },
            LhtRules {
                output: OutputFormat::Unchanged,
                ..schema
            },
            LhtRules {
                max_depth: 3,
                ..LhtRules::default()
            },
        ];
        let mut taken = 0;
        for rules in &variants {
            for text in tokens {
                let tree = from_json_tree(text, text.trim(), TokenFormat::Json, &[], rules);
                match from_json_as_is(text, text.trim(), TokenFormat::Json, rules) {
                    Ok(None) => {}
                    Ok(Some(n)) => {
                        taken += 1;
                        let t = tree.unwrap_or_else(|e| panic!("{text}: tree refused: {e:?}"));
                        assert_eq!(n.token.expose(), t.token.expose(), "{text}");
                        assert_eq!(n.report, t.report, "{text}");
                    }
                    Err(e) => {
                        taken += 1;
                        assert_eq!(Some(e), tree.err(), "{text}");
                    }
                }
            }
        }
        // Both outcomes of the untouched path are exercised, not only the hand-over.
        assert!(taken >= 20, "only {taken} cases took the untouched path");
    }

    #[test]
    fn nested_repairs_and_arrays() {
        let token = r#"{"a":["{"b":"[1,2]"}"],"c":"{"d":"{"e":1}"}"}"#;
        let n = norm(
            token,
            &LhtRules {
                max_depth: 8,
                ..repairing()
            },
        )
        .unwrap();
        let fields: Vec<_> = n.report.repairs.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["a[0]", "c", "c.d"]);
        let v = json_of(&n);
        assert_eq!(v["c"], json!(r#"{"d":"{\"e\":1}"}"#));
        // Legitimate strings that merely start with a brace are left alone.
        let ok = r#"{"a":"{","b":"[x"}"#;
        let n = norm(ok, &repairing()).unwrap();
        assert!(!n.report.repaired());
        assert_eq!(json_of(&n), json!({"a": "{", "b": "[x"}));
    }

    #[test]
    fn a_repaired_nested_string_is_forwarded_repaired() {
        // The token itself is valid JSON; the text inside `idp_params` is not.
        let token = r#"{"idp_params":"{\"a\":\"{\"b\":1}\"}"}"#;
        assert!(norm(token, &LhtRules::default()).is_err());
        let n = norm(token, &repairing()).unwrap();
        let inner = json_of(&n)["idp_params"].as_str().unwrap().to_string();
        let parsed: Value = serde_json::from_str(&inner).expect("forwarded as valid JSON");
        assert_eq!(parsed, json!({"a": r#"{"b":1}"#}));
    }

    #[test]
    fn compact_means_no_whitespace_outside_strings() {
        for (text, compact) in [
            (r#"{"a":"x y\"\\","b":[1,{"c":"\t"}]}"#, true),
            (r#"{"a":"\\"}"#, true),
            (r#"{"a":"\\" }"#, false),
            (r#"{"a": 1}"#, false),
            ("{\"a\":1,\n\"b\":2}", false),
            ("{\"a\":1,\t\"b\":2}", false),
            ("{\"a\":\"b \\\" c\"}", true),
            ("{\"a\":\"b, c\"}", true),
            ("{\"a\":\"b\",\"c\":[1, 2]}", false),
            (" {}", false),
            ("{} ", false),
            ("{\"a\":1}\r", false),
            ("{}", true),
        ] {
            assert_eq!(is_compact(text), compact, "{text:?}");
        }
    }

    #[test]
    fn the_quick_compact_test_agrees_with_the_walk() {
        let mut next = generator(0x2545_f491_u32);
        // Strings full of what the quick test looks at: spaces beside structural bytes,
        // escaped quotes and backslashes.
        let pieces = [
            " ", ",", ", ", " :", "{ ", " }", "[", "]", "\"", "\\", "a", "b c",
        ];
        let value = |next: &mut dyn FnMut(u32) -> u32| -> Value {
            let text = |next: &mut dyn FnMut(u32) -> u32| -> String {
                (0..next(5)).map(|_| pieces[next(12) as usize]).collect()
            };
            let mut map = serde_json::Map::new();
            for _ in 0..next(4) + 1 {
                let v = match next(4) {
                    0 => Value::String(text(next)),
                    1 => json!([text(next), 1, {"k": text(next)}]),
                    2 => json!({"n": null, "t": true}),
                    _ => json!(-1.5),
                };
                map.insert(text(next), v);
            }
            Value::Object(map)
        };
        for _ in 0..2000 {
            let v = value(&mut next);
            let compact = serde_json::to_string(&v).unwrap();
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            // One space put between two tokens: outside strings, beside a structural byte.
            let mut outside = Vec::new();
            let (mut in_string, mut escaped) = (false, false);
            for (at, &b) in compact.as_bytes().iter().enumerate() {
                let structural = |b: u8| matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',');
                if !in_string && (structural(b) || at > 0 && structural(compact.as_bytes()[at - 1]))
                {
                    outside.push(at);
                }
                if escaped {
                    escaped = false;
                } else if in_string {
                    escaped = b == b'\\';
                    in_string = b != b'"';
                } else {
                    in_string = b == b'"';
                }
            }
            let at = outside[next(outside.len() as u32) as usize];
            let spaced = format!("{} {}", &compact[..at], &compact[at..]);
            for (text, expected) in [
                (&compact, true),
                (&pretty, pretty == compact),
                (&spaced, false),
            ] {
                assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
                assert_eq!(is_compact(text), expected, "{text}");
                assert_eq!(compact_by_walk(text.as_bytes()), expected, "{text}");
            }
        }
    }

    #[test]
    fn unchanged_compact_json_is_forwarded_as_written() {
        let compact = r#"{"z":1,"idp_params":"{\"b\":2}","a":"\u00e6"}"#;
        assert_eq!(norm(compact, &repairing()).unwrap().token.expose(), compact);
        // Whitespace outside strings, a change, or another output means serializing again.
        let spaced = r#"{ "z": 1, "a": "x y" }"#;
        assert_eq!(
            norm(spaced, &repairing()).unwrap().token.expose(),
            r#"{"a":"x y","z":1}"#
        );
        let object = LhtRules {
            nested_json: NestedJson::Object,
            ..repairing()
        };
        assert_eq!(
            norm(compact, &object).unwrap().token.expose(),
            r#"{"a":"æ","idp_params":{"b":2},"z":1}"#
        );
        // In a form, the untouched token keeps the client's percent-encoding.
        let body = format!(
            "login_hint_token={}&scope=openid",
            form_urlencoded::byte_serialize(compact.as_bytes()).collect::<String>()
        );
        let mut form = Form::parse(body.as_bytes()).unwrap();
        normalize_in_form(&mut form, &policy(&repairing()), 0).unwrap();
        assert_eq!(form.encode(), body.as_bytes());
    }

    #[test]
    fn schema_rules_apply() {
        let rules = LhtRules {
            required_keys: vec!["flow_type".into()],
            allowed_values: [("flow_type".to_string(), vec!["broker_oidc".to_string()])].into(),
            allowed_idps: vec!["mitid".into(), "nemlogin".into()],
            ..Default::default()
        };
        rules.clone().compile().unwrap();
        let ok = r#"{"flow_type":"broker_oidc","idp_values":"mitid nemlogin","idp":"mitid"}"#;
        assert!(norm(ok, &rules).is_ok());
        for (token, expect) in [
            (r#"{"idp":"mitid"}"#, "required key `flow_type`"),
            (r#"{"flow_type":"x"}"#, "allowed: broker_oidc"),
            (r#"{"flow_type":1}"#, "not allowed"),
            (r#"{"flow_type":"broker_oidc","idp":"evil"}"#, "`idp`"),
            (
                r#"{"flow_type":"broker_oidc","idp_values":"mitid evil"}"#,
                "`idp_values`",
            ),
        ] {
            let e = norm(token, &rules).unwrap_err();
            assert!(e.description.contains(expect), "{token}: {}", e.description);
            assert!(!e.description.contains("evil"));
        }
    }

    #[test]
    fn folding_moves_params_into_the_token() {
        let rules = LhtRules {
            fold_params: vec!["idp_values".into(), "prompt".into()],
            ..Default::default()
        };
        rules.clone().compile().unwrap();
        let mut form = Form::parse(
            b"scope=openid&idp_values=mitid&prompt=login&login_hint_token=%7B%22idp_values%22%3A%22mitid%22%7D",
        )
        .unwrap();
        let report = normalize_in_form(&mut form, &policy(&rules), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(report.folded, ["idp_values", "prompt"]);
        assert!(!form.contains("idp_values") && !form.contains("prompt"));
        let v: Value = serde_json::from_str(form.get(PARAM).unwrap()).unwrap();
        assert_eq!(v, json!({"idp_values": "mitid", "prompt": "login"}));

        let e = normalize(
            r#"{"prompt":"none"}"#,
            &[("prompt", "login")],
            &policy(&rules),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("`prompt` differs"));
        // Without a token there is nothing to fold into.
        let mut form = Form::parse(b"login_hint=x&prompt=login").unwrap();
        assert_eq!(
            normalize_in_form(&mut form, &policy(&rules), NOW).unwrap(),
            None
        );
        assert!(form.contains("prompt"));
        // Folding core parameters is a configuration error.
        let bad = LhtRules {
            fold_params: vec!["scope".into()],
            ..Default::default()
        };
        assert!(bad.compile().unwrap_err().message.contains("`scope`"));
    }

    #[test]
    fn jwt_tokens_are_forwarded_unchanged_and_checked() {
        let claims = json!({"sub_id": {"format": "email"}, "exp": NOW + 60});
        let token = hs256(&claims, None);
        let n = norm(&token, &LhtRules::default()).unwrap();
        assert_eq!(n.token.expose(), &token);
        assert_eq!(n.report.format, TokenFormat::Jwt);
        assert_eq!(n.report.signature, SignatureCheck::Unverified);

        let expired = hs256(&json!({"exp": NOW - 1}), None);
        let e = norm(&expired, &LhtRules::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::ExpiredLoginHintToken);
        assert_eq!(e.status, 400);
        let lenient = LhtRules {
            leeway_seconds: 5,
            ..Default::default()
        };
        assert!(norm(&expired, &lenient).is_ok());
        let e = norm(&hs256(&json!({"exp": "soon"}), None), &LhtRules::default()).unwrap_err();
        assert!(e.description.contains("`exp`"));
        let e = norm(
            &hs256(&json!({"nbf": NOW + 100}), None),
            &LhtRules::default(),
        )
        .unwrap_err();
        assert!(e.description.contains("`nbf`"));

        let none = unsigned(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#);
        let e = norm(&none, &LhtRules::default()).unwrap_err();
        assert!(e.description.contains("allow_unsigned_jwt"));
        let allow = LhtRules {
            allow_unsigned_jwt: true,
            ..Default::default()
        };
        assert_eq!(
            norm(&none, &allow).unwrap().report.signature,
            SignatureCheck::Unsigned
        );
        let bad_payload = unsigned(r#"{"alg":"HS256"}"#, "[1]");
        assert!(norm(&bad_payload, &allow)
            .unwrap_err()
            .description
            .contains("payload"));
    }

    #[test]
    fn jwt_signatures_are_verified_with_configured_keys() {
        let rules = LhtRules {
            require_signed: true,
            keys: KeyConfig {
                hmac_secrets: vec![HMAC_SECRET.into()],
                public_keys_pem: vec![EC_PUBLIC_PEM.into()],
                jwks: None,
            },
            ..Default::default()
        };
        rules.clone().compile().unwrap();
        let claims = json!({"sub": "x"});
        for token in [hs256(&claims, None), es256(&claims)] {
            assert_eq!(
                norm(&token, &rules).unwrap().report.signature,
                SignatureCheck::Verified
            );
        }
        let mut forged = hs256(&claims, None);
        forged.push('A');
        assert!(norm(&forged, &rules).is_err());
        let e = norm(r#"{"idp":"mitid"}"#, &rules).unwrap_err();
        assert!(e.description.contains("signed"));
        assert!(LhtRules {
            require_signed: true,
            ..Default::default()
        }
        .compile()
        .unwrap_err()
        .to_string()
        .starts_with("login_hint_token.require_signed:"));
    }

    #[test]
    fn folding_into_a_jwt_only_drops_equal_params() {
        let rules = LhtRules {
            fold_params: vec!["idp_values".into()],
            ..Default::default()
        };
        let token = hs256(&json!({"idp_values": "mitid"}), None);
        let n = normalize(&token, &[("idp_values", "mitid")], &policy(&rules), NOW).unwrap();
        assert_eq!(n.report.folded, ["idp_values"]);
        assert_eq!(n.token.expose(), &token);
        let token = hs256(&json!({}), None);
        let e = normalize(&token, &[("idp_values", "mitid")], &policy(&rules), NOW).unwrap_err();
        assert!(e.description.contains("cannot be folded"));
    }

    #[test]
    fn disabled_passes_anything_within_the_size_cap() {
        let rules = LhtRules {
            enabled: false,
            ..Default::default()
        };
        let n = norm("opaque-token", &rules).unwrap();
        assert_eq!(n.token.expose(), "opaque-token");
        assert_eq!(n.report.format, TokenFormat::Opaque);
        assert!(norm(&"x".repeat(5000), &rules).is_err());
    }

    #[test]
    fn config_parses_from_toml_and_rejects_typos() {
        let rules: LhtRules = toml::from_str(
            r#"
            repair_unescaped_json = true
            output = "base64url"
            nested_json = "object"
            fold_params = ["idp_values", "prompt"]
            [allowed_values]
            flow_type = ["broker_oidc"]
            [keys]
            hmac_secrets = ["0123456789abcdef0123456789abcdef"]
            "#,
        )
        .unwrap();
        rules.clone().compile().unwrap();
        assert_eq!(rules.output, OutputFormat::Base64url);
        assert!(!format!("{rules:?}").contains("0123456789abcdef"));
        assert!(toml::from_str::<LhtRules>("repair_unescaped = true").is_err());
        assert!(toml::from_str::<LhtRules>("output = \"xml\"").is_err());
        LhtRules::default().compile().unwrap();
    }

    #[test]
    fn debug_never_shows_the_token() {
        let n = norm(r#"{"idp":"mitid","name":"Alice"}"#, &LhtRules::default()).unwrap();
        assert!(!format!("{n:?}").contains("Alice"));
    }
}
