//! Backchannel authentication request validation (CIBA 7.1, 7.1.1, 7.2, 13; RFC 6749 3.2).
//!
//! [`validate_backchannel`] checks a parsed form against the spec and the operator's
//! [`ValidationRules`], normalizes its `login_hint_token` in place (see
//! [`crate::ciba::login_hint_token`]), and reports what it did. Pure: time is an argument.
//!
//! Checks run in this order, so a request with several defects gets the first one's error:
//! request object shape (7.1.1), `scope`, the hints (7.1: exactly one), `id_token_hint`
//! shape, `binding_message`, `user_code`, `requested_expiry`, `client_notification_token`,
//! and last the `login_hint_token`, which is the only check that changes the form.
//! Error descriptions name the parameter and the problem, never its value.

use crate::ciba::config_error::ConfigError;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::ClientId;
use crate::ciba::jwt::Jwt;
use crate::ciba::login_hint_token::{self as lht, LhtPolicy, LhtReport, OutputFormat};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Longest `client_notification_token` accepted, in characters.
pub const MAX_NOTIFICATION_TOKEN_CHARS: usize = 1024;

/// The three ways to name the end-user (CIBA 7.1); exactly one must be sent.
pub const HINTS: [&str; 3] = ["login_hint_token", "id_token_hint", "login_hint"];

/// Authentication request parameters, which CIBA 7.1.1 puts only inside a signed `request`.
pub const AUTH_PARAMS: [&str; 9] = [
    "scope",
    "login_hint_token",
    "id_token_hint",
    "login_hint",
    "binding_message",
    "user_code",
    "requested_expiry",
    "client_notification_token",
    "acr_values",
];

/// How a client receives its result (CIBA 5); registered with the OP, mirrored here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    #[default]
    Poll,
    /// The OP notifies the client, which then polls once.
    Ping,
    /// The OP pushes the tokens to the client.
    Push,
}

/// `[validation]`: the operator's rules for backchannel requests.
///
/// ```toml
/// [validation]
/// binding_message_max_chars = 64      # Unicode scalar values, not bytes
/// binding_message_pattern = '[\p{L}\p{N} .,:!?+-]+'   # optional; anchored by the gateway
/// requested_expiry_min = 1
/// requested_expiry_max = 600
/// require_user_code = false
/// delivery_mode = "poll"              # poll | ping | push
/// [validation.clients."client-id"]    # any key above, for one client
/// delivery_mode = "ping"
/// binding_message_pattern = ""        # "" drops the global pattern for this client
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationRules {
    /// Longest `binding_message`, in Unicode scalar values.
    pub binding_message_max_chars: usize,
    /// A regex the whole `binding_message` must match.
    pub binding_message_pattern: Option<String>,
    /// Smallest `requested_expiry`, in seconds.
    pub requested_expiry_min: u64,
    /// Largest `requested_expiry`, in seconds.
    pub requested_expiry_max: u64,
    /// Refuse requests without `user_code` (`missing_user_code`).
    pub require_user_code: bool,
    /// The clients' token delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Overrides per `client_id`.
    pub clients: BTreeMap<String, ClientRules>,
}

/// `[validation.clients."id"]`: overrides for one client; an absent key inherits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientRules {
    /// Overrides `binding_message_max_chars`.
    pub binding_message_max_chars: Option<usize>,
    /// Overrides `binding_message_pattern`; `""` means no pattern.
    pub binding_message_pattern: Option<String>,
    /// Overrides `requested_expiry_min`.
    pub requested_expiry_min: Option<u64>,
    /// Overrides `requested_expiry_max`.
    pub requested_expiry_max: Option<u64>,
    /// Overrides `require_user_code`.
    pub require_user_code: Option<bool>,
    /// Overrides `delivery_mode`.
    pub delivery_mode: Option<DeliveryMode>,
}

impl Default for ValidationRules {
    fn default() -> Self {
        ValidationRules {
            binding_message_max_chars: 64,
            binding_message_pattern: None,
            requested_expiry_min: 1,
            requested_expiry_max: 600,
            require_user_code: false,
            delivery_mode: DeliveryMode::Poll,
            clients: BTreeMap::new(),
        }
    }
}

/// `[validation]` checked, with its patterns compiled: what requests are validated with.
///
/// Only [`ValidationRules::compile`] makes one, so no request can meet a pattern that does
/// not compile or limits that failed their check.
#[derive(Debug, Clone)]
pub struct ValidationPolicy {
    rules: ValidationRules,
    patterns: Patterns,
}

impl ValidationPolicy {
    /// The rules as written.
    pub fn rules(&self) -> &ValidationRules {
        &self.rules
    }
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        ValidationRules::default()
            .compile()
            .expect("the default rules pass their own check")
    }
}

/// Compiled binding-message patterns: the global one and per-client overrides.
#[derive(Debug, Clone, Default)]
struct Patterns {
    global: Option<Regex>,
    clients: HashMap<String, Option<Regex>>,
}

/// The rules in force for one request.
struct Effective<'a> {
    max_chars: usize,
    pattern: Option<&'a Regex>,
    expiry_min: u64,
    expiry_max: u64,
    require_user_code: bool,
    delivery_mode: DeliveryMode,
}

fn compile_pattern(key: &str, pattern: &str) -> Result<Regex, ConfigError> {
    // Anchored so that a pattern like `[a-z]+` constrains the whole message, not a substring.
    RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ConfigError::new(key, format!("not a valid regex: {e}")))
}

impl ValidationRules {
    /// Checks the rules and compiles their patterns; the error names the key, e.g.
    /// `validation.binding_message_pattern`.
    pub fn compile(self) -> Result<ValidationPolicy, ConfigError> {
        let patterns = self.patterns()?;
        self.check_limits(
            "validation",
            self.binding_message_max_chars,
            self.requested_expiry_min,
            self.requested_expiry_max,
        )?;
        for (id, c) in &self.clients {
            let prefix = format!("validation.clients.\"{id}\"");
            self.check_limits(
                &prefix,
                c.binding_message_max_chars
                    .unwrap_or(self.binding_message_max_chars),
                c.requested_expiry_min.unwrap_or(self.requested_expiry_min),
                c.requested_expiry_max.unwrap_or(self.requested_expiry_max),
            )?;
        }
        Ok(ValidationPolicy {
            rules: self,
            patterns,
        })
    }

    fn check_limits(
        &self,
        prefix: &str,
        chars: usize,
        min: u64,
        max: u64,
    ) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if chars == 0 {
            return Err(ConfigError::new(
                key("binding_message_max_chars"),
                "must be at least 1",
            ));
        }
        if min == 0 {
            return Err(ConfigError::new(
                key("requested_expiry_min"),
                "must be at least 1 (CIBA 7.1: a positive integer)",
            ));
        }
        if min > max {
            return Err(ConfigError::new(
                key("requested_expiry_max"),
                format!("smaller than requested_expiry_min ({max} < {min})"),
            ));
        }
        Ok(())
    }

    fn patterns(&self) -> Result<Patterns, ConfigError> {
        let mut out = Patterns::default();
        if let Some(p) = self.binding_message_pattern.as_deref() {
            out.global = Some(compile_pattern("validation.binding_message_pattern", p)?);
        }
        for (id, c) in &self.clients {
            if let Some(p) = c.binding_message_pattern.as_deref() {
                let key = format!("validation.clients.\"{id}\".binding_message_pattern");
                let re = if p.is_empty() {
                    None
                } else {
                    Some(compile_pattern(&key, p)?)
                };
                out.clients.insert(id.clone(), re);
            }
        }
        Ok(out)
    }
}

impl ValidationPolicy {
    /// The rules in force for `client`: its overrides over the global ones.
    fn effective(&self, client: Option<&ClientId>) -> Effective<'_> {
        let rules = &self.rules;
        let overrides = client.and_then(|c| rules.clients.get(c.as_str()));
        let pattern = match client.and_then(|c| self.patterns.clients.get(c.as_str())) {
            Some(per_client) => per_client.as_ref(),
            None => self.patterns.global.as_ref(),
        };
        let o = overrides.cloned().unwrap_or_default();
        Effective {
            max_chars: o
                .binding_message_max_chars
                .unwrap_or(rules.binding_message_max_chars),
            pattern,
            expiry_min: o.requested_expiry_min.unwrap_or(rules.requested_expiry_min),
            expiry_max: o.requested_expiry_max.unwrap_or(rules.requested_expiry_max),
            require_user_code: o.require_user_code.unwrap_or(rules.require_user_code),
            delivery_mode: o.delivery_mode.unwrap_or(rules.delivery_mode),
        }
    }
}

/// Which hint named the end-user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintKind {
    /// `login_hint`.
    LoginHint,
    /// `login_hint_token`.
    LoginHintToken,
    /// `id_token_hint`.
    IdTokenHint,
}

impl HintKind {
    /// The parameter name, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            HintKind::LoginHint => "login_hint",
            HintKind::LoginHintToken => "login_hint_token",
            HintKind::IdTokenHint => "id_token_hint",
        }
    }
}

/// What validation found and changed, for metrics; holds no parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The hint that named the end-user.
    pub hint: HintKind,
    /// Whether the parameters came in a signed `request` object (7.1.1).
    pub request_object: bool,
    /// What happened to the `login_hint_token`, when there was one.
    pub login_hint_token: Option<LhtReport>,
}

impl Report {
    /// Whether the gateway re-encoded the token or moved parameters, so the forwarded form
    /// may differ from the client's.
    pub fn changed(&self) -> bool {
        self.login_hint_token
            .as_ref()
            .is_some_and(|r| r.output != OutputFormat::Unchanged || !r.folded.is_empty())
    }

    /// Whether a `login_hint_token` was repaired.
    pub fn repaired(&self) -> bool {
        self.login_hint_token
            .as_ref()
            .is_some_and(LhtReport::repaired)
    }

    /// Form parameters folded into the `login_hint_token`.
    pub fn folded(&self) -> &[String] {
        self.login_hint_token
            .as_ref()
            .map(|r| r.folded.as_slice())
            .unwrap_or_default()
    }
}

fn invalid(reason: &'static str, msg: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(msg.into()).with_reason(reason)
}

/// Validates a backchannel authentication request and normalizes its `login_hint_token`
/// in place; on `Err`, answer the client with it and do not forward.
///
/// `client` is the id the request claims ([`crate::ciba::client_auth::claimed_client`]), used to
/// pick per-client rules; `now_unix` is the current time in seconds.
pub fn validate_backchannel(
    form: &mut Form,
    client: Option<&ClientId>,
    rules: &ValidationPolicy,
    lht_rules: &LhtPolicy,
    now_unix: u64,
) -> Result<Report, OAuthError> {
    let eff = rules.effective(client);
    if form.get("request").is_some() {
        return validate_request_object(form, client, &eff, lht_rules, now_unix);
    }
    let hint = check_params(form, &eff, "")?;
    let login_hint_token = lht::normalize_in_form(form, lht_rules, now_unix)?;
    Ok(Report {
        hint,
        request_object: false,
        login_hint_token,
    })
}

/// CIBA 7.1.1: every authentication parameter inside the signed `request`, none outside.
fn validate_request_object(
    form: &Form,
    client: Option<&ClientId>,
    eff: &Effective<'_>,
    lht_rules: &LhtPolicy,
    now_unix: u64,
) -> Result<Report, OAuthError> {
    const R: &str = "request_object";
    for name in AUTH_PARAMS {
        if form.contains(name) {
            return Err(invalid(
                R,
                format!(
                    "parameter `{name}` must not appear outside `request` when a signed \
                     request object is sent (CIBA 7.1.1)"
                ),
            ));
        }
    }
    let request = form.get("request").unwrap_or_default();
    let jwt = Jwt::decode(request).map_err(|e| invalid(R, format!("parameter `request` {e}")))?;
    if jwt.is_unsigned() {
        return Err(invalid(
            R,
            "parameter `request` must be a signed JWT (CIBA 7.1.1); `alg` none is refused",
        ));
    }
    if let (Some(client), Some(iss)) = (client, jwt.payload.get("iss")) {
        if iss.as_str() != Some(client.as_str()) {
            return Err(invalid(
                R,
                "request object: claim `iss` does not name the authenticated client (CIBA 7.1.1)",
            ));
        }
    }
    if let Some(exp) = jwt.payload.get("exp") {
        match exp.as_f64() {
            Some(exp) if exp > now_unix as f64 => {}
            Some(_) => {
                return Err(invalid(
                    R,
                    "request object: claim `exp` is in the past; sign a fresh request object",
                ))
            }
            None => {
                return Err(invalid(
                    R,
                    "request object: claim `exp` must be a number of seconds",
                ))
            }
        }
    }
    // Validate the claims with the very rules used for form parameters, via a form view.
    let mut inner = Form::default();
    for name in AUTH_PARAMS {
        let text = match jwt.payload.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if name == "requested_expiry" => n.to_string(),
            Some(_) => {
                return Err(invalid(
                    R,
                    format!("request object: claim `{name}` must be a string"),
                ))
            }
        };
        inner.set(name, text);
    }
    let hint = check_params(&inner, eff, "request object: ")?;
    let login_hint_token = match inner.get(lht::PARAM) {
        None => None,
        Some(token) => {
            // A signed object cannot be rewritten: check the token, forward it as sent.
            let n = lht::normalize(token, &[], lht_rules, now_unix).map_err(|mut e| {
                e.description = format!("request object: {}", e.description).into();
                e
            })?;
            if n.report.repaired() {
                return Err(invalid(
                    "login_hint_token",
                    "request object: login_hint_token holds unescaped JSON, which cannot be \
                     repaired inside a signed request object; escape it",
                ));
            }
            let mut report = n.report;
            report.output = OutputFormat::Unchanged;
            Some(report)
        }
    };
    Ok(Report {
        hint,
        request_object: true,
        login_hint_token,
    })
}

/// The checks shared by form parameters and request-object claims; `ctx` prefixes errors.
fn check_params(form: &Form, eff: &Effective<'_>, ctx: &str) -> Result<HintKind, OAuthError> {
    check_scope(form, ctx)?;
    let hint = check_hints(form, ctx)?;
    if let Some(t) = form.get("id_token_hint") {
        Jwt::decode(t).map_err(|e| {
            invalid(
                "id_token_hint",
                format!("{ctx}parameter `id_token_hint` {e}"),
            )
        })?;
    }
    if let Some(m) = form.get("binding_message") {
        check_binding_message(m, eff, ctx)?;
    }
    if eff.require_user_code && form.get("user_code").is_none() {
        return Err(OAuthError::new(
            ErrorCode::MissingUserCode,
            format!("{ctx}parameter `user_code` is required for this client"),
        )
        .with_reason("user_code"));
    }
    if let Some(e) = form.get("requested_expiry") {
        check_requested_expiry(e, eff, ctx)?;
    }
    check_notification_token(form, eff, ctx)?;
    Ok(hint)
}

/// CIBA 7.1: `client_notification_token` is required for ping and push clients, and
/// whenever it is sent, in any mode (the gateway may not know the client's), it is at
/// most 1024 characters of RFC 6750 2.1 `b64token` syntax. Sent empty, it is refused
/// rather than read as absent: an empty value is not a `b64token`.
fn check_notification_token(form: &Form, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    const P: &str = "client_notification_token";
    let sent = form.pairs().find(|(name, _)| *name == P).map(|(_, v)| v);
    let problem = match sent {
        None if eff.delivery_mode != DeliveryMode::Poll => {
            "is required for a client registered for ping or push delivery (CIBA 7.1)".into()
        }
        None => return Ok(()),
        Some(t) if t.chars().count() > MAX_NOTIFICATION_TOKEN_CHARS => {
            format!("is longer than {MAX_NOTIFICATION_TOKEN_CHARS} characters (CIBA 7.1)")
        }
        Some(t) if !is_b64token(t) => "must be a Bearer token: letters, digits and \
             `-._~+/`, optionally ending in `=` (RFC 6750 2.1, CIBA 7.1)"
            .into(),
        Some(_) => return Ok(()),
    };
    Err(invalid(P, format!("{ctx}parameter `{P}` {problem}")))
}

/// RFC 6750 2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn check_scope(form: &Form, ctx: &str) -> Result<(), OAuthError> {
    let Some(scope) = form.get("scope") else {
        return Err(invalid(
            "scope",
            format!("{ctx}parameter `scope` is required and must include `openid` (CIBA 7.1)"),
        ));
    };
    // RFC 6749 3.3: scope tokens are NQCHAR (printable ASCII but `"` and `\`).
    let nqchar = |c: char| matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if !scope.chars().all(|c| c == ' ' || nqchar(c)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("{ctx}parameter `scope` holds characters RFC 6749 3.3 does not allow"),
        )
        .with_reason("scope"));
    }
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("{ctx}parameter `scope` must include `openid` (CIBA 7.1)"),
        )
        .with_reason("scope"));
    }
    Ok(())
}

fn check_hints(form: &Form, ctx: &str) -> Result<HintKind, OAuthError> {
    let present = HINTS.map(|h| form.get(h).is_some());
    match present {
        [true, false, false] => Ok(HintKind::LoginHintToken),
        [false, true, false] => Ok(HintKind::IdTokenHint),
        [false, false, true] => Ok(HintKind::LoginHint),
        [false, false, false] => Err(invalid(
            "hint",
            format!(
                "{ctx}one of `login_hint_token`, `id_token_hint` or `login_hint` is required \
                 (CIBA 7.1)"
            ),
        )),
        _ => {
            let sent: Vec<&str> = HINTS
                .iter()
                .zip(present)
                .filter_map(|(h, p)| p.then_some(*h))
                .collect();
            Err(invalid(
                "hint",
                format!(
                    "{ctx}only one of `login_hint_token`, `id_token_hint` and `login_hint` may \
                     be sent (CIBA 7.1); got `{}`",
                    sent.join("`, `")
                ),
            ))
        }
    }
}

/// Characters that make a message shown to the end-user say something other than it seems.
fn is_refused_char(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates: reorder text on the device's screen.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        // Line and paragraph separators: a second "line" the client did not show.
        || matches!(c, '\u{2028}' | '\u{2029}')
}

fn check_binding_message(m: &str, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    let refuse = |what: String| {
        OAuthError::new(ErrorCode::InvalidBindingMessage, format!("{ctx}{what}"))
            .with_reason("binding_message")
    };
    // Counted in Unicode scalar values: "é" is one character the user sees, two bytes.
    let mut chars = 0;
    for c in m.chars() {
        if is_refused_char(c) {
            return Err(refuse(
                "parameter `binding_message` contains control or bidirectional-override \
                 characters"
                    .into(),
            ));
        }
        chars += 1;
    }
    if chars > eff.max_chars {
        return Err(refuse(format!(
            "parameter `binding_message` is longer than {} characters",
            eff.max_chars
        )));
    }
    if let Some(re) = eff.pattern {
        if !re.is_match(m) {
            return Err(refuse(
                "parameter `binding_message` contains characters this OpenID Provider does not \
                 accept"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn check_requested_expiry(e: &str, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    let not_int = || {
        invalid(
            "requested_expiry",
            format!("{ctx}parameter `requested_expiry` must be a positive integer of seconds"),
        )
    };
    if !e.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_int());
    }
    let out_of_range = || {
        invalid(
            "requested_expiry",
            format!(
                "{ctx}parameter `requested_expiry` must be between {} and {} seconds",
                eff.expiry_min, eff.expiry_max
            ),
        )
    };
    // All digits: the only parse failure left is overflow, which is out of range too.
    let secs: u64 = e.parse().map_err(|_| out_of_range())?;
    if secs == 0 {
        return Err(not_int());
    }
    if secs < eff.expiry_min || secs > eff.expiry_max {
        return Err(out_of_range());
    }
    Ok(())
}

/// Hostile and edge-case backchannel forms the gateway must refuse on its own, with the
/// expected error code and HTTP status, for default rules and client `client-post`
/// (secret `post-secret-0123456789`, sent in the form). Shared with the integration tests.
#[doc(hidden)]
pub fn hostile_cases() -> Vec<(&'static str, String, ErrorCode, u16)> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use ErrorCode::*;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let jwt = |h: &str, p: &str| format!("{}.{}.{}", b64(h), b64(p), b64("sig"));
    let rs = r#"{"alg":"RS256","typ":"JWT"}"#;
    let client = "client_id=client-post&client_secret=post-secret-0123456789";
    let ok = "scope=openid&login_hint=alice";
    let f = |rest: &str| format!("{client}&{rest}");
    let lht = |token: &str| f(&format!("scope=openid&login_hint_token={}", enc(token)));
    let deep = format!("{}1{}", "{\"a\":".repeat(9), "}".repeat(9));
    let sg_raw = "{\"idp\":\"mitid\",\"idp_params\":\"{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\", \"ip\":\"1.1.1.1\"}\"}";
    let request = |claims: &str| jwt(rs, claims);
    let good_claims = r#"{"iss":"client-post","aud":"op","exp":4102444800,"scope":"openid","login_hint":"alice"}"#;
    let assertion = |sub: &str, iss: &str| {
        format!(
            "client_assertion_type={}&client_assertion={}",
            enc(crate::ciba::client_auth::JWT_BEARER),
            jwt(
                rs,
                &format!(r#"{{"sub":"{sub}","iss":"{iss}","aud":"op"}}"#)
            )
        )
    };
    let cases: Vec<(&'static str, String, ErrorCode)> = vec![
        // RFC 6749 3.2 and strict form encoding.
        (
            "duplicate scope",
            f("scope=openid&scope=openid&login_hint=alice"),
            InvalidRequest,
        ),
        (
            "duplicate scope, second empty",
            f("scope=openid&scope=&login_hint=alice"),
            InvalidRequest,
        ),
        (
            "duplicate client_id",
            format!("client_id=client-post&{client}&{ok}"),
            InvalidRequest,
        ),
        (
            "duplicate login_hint",
            f("scope=openid&login_hint=alice&login_hint=bob"),
            InvalidRequest,
        ),
        (
            "malformed percent-encoding",
            f("scope=openid&login_hint=al%zzice"),
            InvalidRequest,
        ),
        (
            "invalid utf-8",
            f("scope=openid&login_hint=%ff%fe"),
            InvalidRequest,
        ),
        (
            "empty parameter name",
            f("scope=openid&login_hint=alice&=x"),
            InvalidRequest,
        ),
        // scope (CIBA 7.1).
        ("missing scope", f("login_hint=alice"), InvalidRequest),
        ("empty scope", f("scope=&login_hint=alice"), InvalidRequest),
        (
            "scope without openid",
            f("scope=profile+email&login_hint=alice"),
            InvalidScope,
        ),
        (
            "scope with openid as a substring",
            f("scope=openidx&login_hint=alice"),
            InvalidScope,
        ),
        (
            "scope with a quote",
            f("scope=openid+%22x%22&login_hint=alice"),
            InvalidScope,
        ),
        (
            "scope with a newline",
            f("scope=openid%0Aprofile&login_hint=alice"),
            InvalidScope,
        ),
        // Exactly one hint (CIBA 7.1).
        ("no hint", f("scope=openid"), InvalidRequest),
        (
            "only empty hints",
            f("scope=openid&login_hint=&id_token_hint="),
            InvalidRequest,
        ),
        (
            "login_hint and id_token_hint",
            f(&format!(
                "scope=openid&login_hint=alice&id_token_hint={}",
                jwt(rs, "{}")
            )),
            InvalidRequest,
        ),
        (
            "login_hint and login_hint_token",
            f("scope=openid&login_hint=alice&login_hint_token=%7B%7D"),
            InvalidRequest,
        ),
        (
            "all three hints",
            f(&format!(
                "scope=openid&login_hint=alice&login_hint_token=%7B%7D&id_token_hint={}",
                jwt(rs, "{}")
            )),
            InvalidRequest,
        ),
        // binding_message (CIBA 7.1, 13).
        (
            "binding_message 65 ascii chars",
            f(&format!("{ok}&binding_message={}", "a".repeat(65))),
            InvalidBindingMessage,
        ),
        (
            "binding_message 65 two-byte chars",
            f(&format!("{ok}&binding_message={}", enc(&"é".repeat(65)))),
            InvalidBindingMessage,
        ),
        (
            "binding_message 65 emoji",
            f(&format!("{ok}&binding_message={}", enc(&"😉".repeat(65)))),
            InvalidBindingMessage,
        ),
        (
            "binding_message newline",
            f(&format!("{ok}&binding_message=pay%0A100")),
            InvalidBindingMessage,
        ),
        (
            "binding_message carriage return",
            f(&format!("{ok}&binding_message=pay%0D100")),
            InvalidBindingMessage,
        ),
        (
            "binding_message nul",
            f(&format!("{ok}&binding_message=pay%00100")),
            InvalidBindingMessage,
        ),
        (
            "binding_message tab",
            f(&format!("{ok}&binding_message=pay%09100")),
            InvalidBindingMessage,
        ),
        (
            "binding_message delete",
            f(&format!("{ok}&binding_message=pay%7F100")),
            InvalidBindingMessage,
        ),
        (
            "binding_message escape",
            f(&format!("{ok}&binding_message=%1B%5B2J")),
            InvalidBindingMessage,
        ),
        (
            "binding_message bidi override",
            f(&format!("{ok}&binding_message={}", enc("pay \u{202e}001"))),
            InvalidBindingMessage,
        ),
        (
            "binding_message line separator",
            f(&format!("{ok}&binding_message={}", enc("a\u{2028}b"))),
            InvalidBindingMessage,
        ),
        // requested_expiry (CIBA 7.1).
        (
            "requested_expiry zero",
            f(&format!("{ok}&requested_expiry=0")),
            InvalidRequest,
        ),
        (
            "requested_expiry negative",
            f(&format!("{ok}&requested_expiry=-1")),
            InvalidRequest,
        ),
        (
            "requested_expiry not a number",
            f(&format!("{ok}&requested_expiry=abc")),
            InvalidRequest,
        ),
        (
            "requested_expiry exponent",
            f(&format!("{ok}&requested_expiry=1e3")),
            InvalidRequest,
        ),
        (
            "requested_expiry fraction",
            f(&format!("{ok}&requested_expiry=1.5")),
            InvalidRequest,
        ),
        (
            "requested_expiry plus sign",
            f(&format!("{ok}&requested_expiry=%2B60")),
            InvalidRequest,
        ),
        (
            "requested_expiry leading space",
            f(&format!("{ok}&requested_expiry=+60")),
            InvalidRequest,
        ),
        (
            "requested_expiry overflow",
            f(&format!("{ok}&requested_expiry=99999999999999999999999")),
            InvalidRequest,
        ),
        (
            "requested_expiry above max",
            f(&format!("{ok}&requested_expiry=601")),
            InvalidRequest,
        ),
        // client_notification_token (CIBA 7.1, RFC 6750 2.1), checked in every mode.
        (
            "client_notification_token one too long",
            f(&format!(
                "{ok}&client_notification_token={}",
                "t".repeat(1025)
            )),
            InvalidRequest,
        ),
        (
            "client_notification_token empty",
            f(&format!("{ok}&client_notification_token=")),
            InvalidRequest,
        ),
        (
            "client_notification_token with a space",
            f(&format!("{ok}&client_notification_token=abc+def")),
            InvalidRequest,
        ),
        (
            "client_notification_token with = in the middle",
            f(&format!("{ok}&client_notification_token=abc%3Ddef")),
            InvalidRequest,
        ),
        (
            "client_notification_token only =",
            f(&format!("{ok}&client_notification_token=%3D%3D")),
            InvalidRequest,
        ),
        (
            "client_notification_token non-ascii",
            f(&format!("{ok}&client_notification_token={}", enc("tök"))),
            InvalidRequest,
        ),
        (
            "client_notification_token percent-encoded junk",
            f(&format!("{ok}&client_notification_token=%2541%0D%0Ax")),
            InvalidRequest,
        ),
        (
            "client_notification_token with a quote",
            f(&format!("{ok}&client_notification_token=a%22b")),
            InvalidRequest,
        ),
        (
            "client_notification_token duplicated",
            f(&format!(
                "{ok}&client_notification_token=abc&client_notification_token=abc"
            )),
            InvalidRequest,
        ),
        (
            "client_notification_token bad in a request object",
            f(&format!(
                "request={}",
                request(
                    r#"{"iss":"client-post","scope":"openid","login_hint":"a","client_notification_token":"a b"}"#
                )
            )),
            InvalidRequest,
        ),
        (
            "client_notification_token empty in a request object",
            f(&format!(
                "request={}",
                request(
                    r#"{"iss":"client-post","scope":"openid","login_hint":"a","client_notification_token":""}"#
                )
            )),
            InvalidRequest,
        ),
        (
            "client_notification_token too long in a request object",
            f(&format!(
                "request={}",
                request(&format!(
                    r#"{{"iss":"client-post","scope":"openid","login_hint":"a","client_notification_token":"{}"}}"#,
                    "t".repeat(1025)
                ))
            )),
            InvalidRequest,
        ),
        // id_token_hint must be a well-formed JWT.
        (
            "id_token_hint not a jwt",
            f("scope=openid&id_token_hint=abc"),
            InvalidRequest,
        ),
        (
            "id_token_hint bad base64",
            f("scope=openid&id_token_hint=%21%21%21.e30.c2ln"),
            InvalidRequest,
        ),
        (
            "id_token_hint payload not json",
            f(&format!(
                "scope=openid&id_token_hint={}.{}.c2ln",
                b64(rs),
                b64("not json")
            )),
            InvalidRequest,
        ),
        (
            "id_token_hint payload an array",
            f(&format!("scope=openid&id_token_hint={}", jwt(rs, "[1]"))),
            InvalidRequest,
        ),
        (
            "id_token_hint header without alg",
            f(&format!("scope=openid&id_token_hint={}", jwt("{}", "{}"))),
            InvalidRequest,
        ),
        (
            "id_token_hint encrypted",
            f("scope=openid&id_token_hint=a.b.c.d.e"),
            InvalidRequest,
        ),
        // Signed request object (CIBA 7.1.1).
        (
            "request plus scope outside",
            f(&format!("scope=openid&request={}", request(good_claims))),
            InvalidRequest,
        ),
        (
            "request plus login_hint outside",
            f(&format!(
                "login_hint=alice&request={}",
                request(good_claims)
            )),
            InvalidRequest,
        ),
        (
            "request plus binding_message outside",
            f(&format!(
                "binding_message=hi&request={}",
                request(good_claims)
            )),
            InvalidRequest,
        ),
        ("request not a jwt", f("request=abc"), InvalidRequest),
        (
            "request unsigned",
            f(&format!(
                "request={}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(good_claims)
            )),
            InvalidRequest,
        ),
        (
            "request without openid",
            f(&format!(
                "request={}",
                request(r#"{"iss":"client-post","scope":"profile","login_hint":"alice"}"#)
            )),
            InvalidScope,
        ),
        (
            "request with two hints",
            f(&format!(
                "request={}",
                request(
                    r#"{"iss":"client-post","scope":"openid","login_hint":"a","id_token_hint":"x.y.z"}"#
                )
            )),
            InvalidRequest,
        ),
        (
            "request expired",
            f(&format!(
                "request={}",
                request(r#"{"iss":"client-post","exp":1,"scope":"openid","login_hint":"a"}"#)
            )),
            InvalidRequest,
        ),
        (
            "request from another issuer",
            f(&format!(
                "request={}",
                request(r#"{"iss":"someone-else","scope":"openid","login_hint":"a"}"#)
            )),
            InvalidRequest,
        ),
        (
            "request binding_message too long",
            f(&format!(
                "request={}",
                request(&format!(
                    r#"{{"iss":"client-post","scope":"openid","login_hint":"a","binding_message":"{}"}}"#,
                    "x".repeat(65)
                ))
            )),
            InvalidBindingMessage,
        ),
        // login_hint_token.
        (
            "login_hint_token not json",
            lht("not json at all"),
            InvalidRequest,
        ),
        (
            "login_hint_token json array",
            lht("[{\"idp\":\"mitid\"}]"),
            InvalidRequest,
        ),
        ("login_hint_token bad base64", lht("@@@@"), InvalidRequest),
        (
            "login_hint_token base64 of an array",
            lht(&STANDARD.encode("[1,2]")),
            InvalidRequest,
        ),
        (
            "login_hint_token truncated json",
            lht("{\"idp\":\"mitid\""),
            InvalidRequest,
        ),
        (
            "login_hint_token duplicate key",
            lht("{\"idp\":\"mitid\",\"idp\":\"other\"}"),
            InvalidRequest,
        ),
        ("login_hint_token too deep", lht(&deep), InvalidRequest),
        (
            "login_hint_token too large",
            lht(&format!("{{\"a\":\"{}\"}}", "x".repeat(4100))),
            InvalidRequest,
        ),
        (
            "login_hint_token expired jwt",
            lht(&jwt(rs, r#"{"sub":"a","exp":1}"#)),
            ExpiredLoginHintToken,
        ),
        (
            "login_hint_token alg none",
            lht(&format!(
                "{}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(r#"{"sub":"a"}"#)
            )),
            InvalidRequest,
        ),
        (
            "login_hint_token encrypted jwt",
            lht("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
            InvalidRequest,
        ),
        (
            "login_hint_token unescaped nested json",
            lht(sg_raw),
            InvalidRequest,
        ),
        (
            "login_hint_token unescaped nested json in base64",
            lht(&STANDARD.encode(sg_raw)),
            InvalidRequest,
        ),
        (
            "login_hint_token idp_params not json",
            lht("{\"idp\":\"mitid\",\"idp_params\":\"uuid=1\"}"),
            InvalidRequest,
        ),
        // Client identity.
        (
            "client_assertion names another client",
            format!("client_id=client-post&{}&{ok}", assertion("other", "other")),
            InvalidClient,
        ),
        (
            "client_assertion iss differs from sub",
            format!(
                "client_id=client-post&{}&{ok}",
                assertion("client-post", "x")
            ),
            InvalidClient,
        ),
        (
            "client_assertion not a jwt",
            format!(
                "client_id=client-post&client_assertion_type={}&client_assertion=abc&{ok}",
                enc(crate::ciba::client_auth::JWT_BEARER)
            ),
            InvalidClient,
        ),
        (
            "client_assertion of unknown type",
            format!(
                "client_id=client-post&client_assertion_type=urn%3Ax&client_assertion={}&{ok}",
                jwt(rs, "{}")
            ),
            InvalidRequest,
        ),
        (
            "client_secret and client_assertion",
            f(&format!("{}&{ok}", assertion("client-post", "client-post"))),
            InvalidRequest,
        ),
        (
            "client_id with control character",
            format!("client_id=client%01post&client_secret=post-secret-0123456789&{ok}"),
            InvalidClient,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, body, code)| (name, body, code, code.status()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ciba::client_auth::claimed_client;
    use crate::ciba::login_hint_token::{LhtRules, NestedJson, TokenFormat};

    const NOW: u64 = 1_700_000_000;

    /// The pipeline's view: parse, find the client, validate.
    fn run(
        body: &str,
        rules: &ValidationRules,
        lht: &LhtRules,
    ) -> Result<(Form, Report), OAuthError> {
        let rules = rules.clone().compile().expect("valid rules");
        let lht = lht.clone().compile().expect("valid rules");
        let mut form = Form::parse(body.as_bytes())?;
        let client = claimed_client(&form, None)?;
        let report = validate_backchannel(&mut form, client.as_ref(), &rules, &lht, NOW)?;
        Ok((form, report))
    }

    fn check(body: &str) -> Result<(Form, Report), OAuthError> {
        run(body, &ValidationRules::default(), &LhtRules::default())
    }

    fn code(body: &str) -> ErrorCode {
        check(body).map(|_| ()).unwrap_err().code
    }

    const C: &str = "client_id=client-post&client_secret=post-secret-0123456789";

    #[test]
    fn hostile_table_is_refused_as_expected() {
        let cases = hostile_cases();
        assert!(cases.len() >= 40, "{}", cases.len());
        let mut names = std::collections::HashSet::new();
        for (name, body, want, status) in cases {
            assert!(names.insert(name), "duplicate case name {name}");
            let e = match check(&body) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => e,
            };
            assert_eq!(e.code, want, "{name}: {}", e.description);
            assert_eq!(e.status, status, "{name}");
            // Never echo values: none of the case's distinctive values may appear.
            for secret in ["alice", "post-secret", "8a9856e0", "mitid", "someone-else"] {
                assert!(!e.description.contains(secret), "{name}: {}", e.description);
            }
        }
    }

    #[test]
    fn a_minimal_request_passes_untouched() {
        let body = format!(
            "{C}&scope=openid+profile&login_hint=alice&binding_message=W4SCT&requested_expiry=120"
        );
        let (form, report) = check(&body).unwrap();
        assert_eq!(report.hint, HintKind::LoginHint);
        assert!(!report.changed() && !report.repaired());
        assert_eq!(
            form.encode(),
            Form::parse(body.as_bytes()).unwrap().encode()
        );
    }

    #[test]
    fn binding_message_counts_characters_not_bytes() {
        let ok = format!(
            "{C}&scope=openid&login_hint=a&binding_message={}",
            "%C3%A9".repeat(64)
        );
        assert!(check(&ok).is_ok());
        let emoji = format!(
            "{C}&scope=openid&login_hint=a&binding_message={}",
            "%F0%9F%98%89".repeat(64)
        );
        assert!(check(&emoji).is_ok());
        let e = check(&format!(
            "{C}&scope=openid&login_hint=a&binding_message={}",
            "%C3%A9".repeat(65)
        ))
        .unwrap_err();
        assert_eq!(
            e.description,
            "parameter `binding_message` is longer than 64 characters"
        );
        assert_eq!(e.reason, "binding_message");
    }

    #[test]
    fn binding_message_pattern_is_anchored_and_per_client() {
        let rules: ValidationRules = toml::from_str(
            r#"
            binding_message_pattern = '[A-Z0-9]+'
            [clients."client-post"]
            binding_message_max_chars = 4
            [clients."free"]
            binding_message_pattern = ""
            "#,
        )
        .unwrap();
        rules.clone().compile().unwrap();
        let lht = LhtRules::default();
        let body = |client: &str, m: &str| {
            format!("client_id={client}&scope=openid&login_hint=a&binding_message={m}")
        };
        assert!(run(&body("other", "AB12"), &rules, &lht).is_ok());
        // Anchored: a matching prefix is not enough.
        let e = run(&body("other", "AB12x"), &rules, &lht).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidBindingMessage);
        assert!(run(&body("client-post", "ABCDE"), &rules, &lht).is_err());
        assert!(run(&body("client-post", "ABCD"), &rules, &lht).is_ok());
        assert!(run(&body("free", "any+text%21"), &rules, &lht).is_ok());
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (
                "binding_message_pattern = '('",
                "validation.binding_message_pattern:",
            ),
            (
                "binding_message_max_chars = 0",
                "validation.binding_message_max_chars:",
            ),
            (
                "requested_expiry_min = 0",
                "validation.requested_expiry_min:",
            ),
            (
                "requested_expiry_min = 10\nrequested_expiry_max = 5",
                "validation.requested_expiry_max:",
            ),
            (
                "[clients.\"c\"]\nbinding_message_pattern = '['",
                "validation.clients.\"c\".binding_message_pattern:",
            ),
            (
                "[clients.\"c\"]\nrequested_expiry_max = 0",
                "validation.clients.\"c\".requested_expiry_",
            ),
        ];
        for (toml_text, prefix) in cases {
            let rules: ValidationRules = toml::from_str(toml_text).unwrap();
            let e = rules.compile().unwrap_err().to_string();
            assert!(e.starts_with(prefix), "{toml_text}: {e}");
        }
        assert!(toml::from_str::<ValidationRules>("binding_message_max = 3").is_err());
        assert!(toml::from_str::<ValidationRules>("delivery_mode = \"carrier-pigeon\"").is_err());
        assert!(toml::from_str::<ValidationRules>("[clients.c]\nfoo = 1").is_err());
        ValidationRules::default().compile().unwrap();
        // A broken pattern never reaches a request: only a compiled policy validates one.
        let e = ValidationRules {
            binding_message_pattern: Some("(".into()),
            ..Default::default()
        }
        .compile()
        .unwrap_err();
        assert_eq!(e.key, "validation.binding_message_pattern");
    }

    #[test]
    fn requested_expiry_bounds_follow_the_client() {
        let rules: ValidationRules = toml::from_str(
            "requested_expiry_min = 30\n[clients.\"slow\"]\nrequested_expiry_max = 1800",
        )
        .unwrap();
        let lht = LhtRules::default();
        let body = |c: &str, e: u64| {
            format!("client_id={c}&scope=openid&login_hint=a&requested_expiry={e}")
        };
        assert!(run(&body("x", 29), &rules, &lht).is_err());
        assert!(run(&body("x", 30), &rules, &lht).is_ok());
        assert!(run(&body("x", 600), &rules, &lht).is_ok());
        assert!(run(&body("x", 601), &rules, &lht).is_err());
        assert!(run(&body("slow", 1800), &rules, &lht).is_ok());
        let e = run(&body("slow", 1801), &rules, &lht).unwrap_err();
        assert_eq!(
            e.description,
            "parameter `requested_expiry` must be between 30 and 1800 seconds"
        );
    }

    #[test]
    fn user_code_and_delivery_mode_per_client() {
        let rules: ValidationRules = toml::from_str(
            "[clients.\"uc\"]\nrequire_user_code = true\n[clients.\"pinger\"]\ndelivery_mode = \"ping\"\n[clients.\"pusher\"]\ndelivery_mode = \"push\"",
        )
        .unwrap();
        let lht = LhtRules::default();
        let go = |b: &str| run(b, &rules, &lht);
        let e = go("client_id=uc&scope=openid&login_hint=a").unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingUserCode);
        assert_eq!(e.status, 400);
        assert!(go("client_id=uc&scope=openid&login_hint=a&user_code=1234").is_ok());
        assert!(go("client_id=other&scope=openid&login_hint=a").is_ok());
        for c in ["pinger", "pusher"] {
            let e = go(&format!("client_id={c}&scope=openid&login_hint=a")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e
                .description
                .contains("`client_notification_token` is required"));
            assert!(go(&format!(
                "client_id={c}&scope=openid&login_hint=a&client_notification_token=t"
            ))
            .is_ok());
            let long = "t".repeat(1025);
            let e = go(&format!(
                "client_id={c}&scope=openid&login_hint=a&client_notification_token={long}"
            ))
            .unwrap_err();
            assert!(e.description.contains("longer than 1024"));
            let fits = "t".repeat(1024);
            assert!(go(&format!(
                "client_id={c}&scope=openid&login_hint=a&client_notification_token={fits}"
            ))
            .is_ok());
            let e = go(&format!(
                "client_id={c}&scope=openid&login_hint=a&client_notification_token={}",
                form_urlencoded::byte_serialize("é".repeat(10).as_bytes()).collect::<String>()
            ))
            .unwrap_err();
            assert!(e.description.contains("RFC 6750"), "{}", e.description);
        }
    }

    #[test]
    fn b64token_syntax() {
        for ok in ["t", "abc==", "aZ09-._~+/", "a=", "/", "~~~", "A+/=="] {
            assert!(is_b64token(ok), "{ok}");
        }
        for bad in [
            "", "=", "==", "=abc", "a=b", "a b", "a\tb", "é", "a%41", "a\"b", "a,b",
        ] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }

    #[test]
    fn client_notification_token_passes_in_any_mode_when_well_formed() {
        let exact = "t".repeat(1024);
        let padded = format!("{}==", "A".repeat(1022));
        for token in [exact.as_str(), padded.as_str(), "aZ09-._~+/", "abc="] {
            let enc = form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>();
            let body = format!("{C}&scope=openid&login_hint=a&client_notification_token={enc}");
            let (form, _) = check(&body).unwrap_or_else(|e| panic!("{token}: {e}"));
            assert_eq!(form.get("client_notification_token"), Some(token));
        }
        let e = check(&format!(
            "{C}&scope=openid&login_hint=a&client_notification_token=secret-value+x"
        ))
        .unwrap_err();
        assert!(e.description.contains("`client_notification_token`"));
        assert!(!e.description.contains("secret-value"), "{}", e.description);
    }

    #[test]
    fn hint_errors_name_the_hints() {
        let e = check(&format!(
            "{C}&scope=openid&login_hint=a&login_hint_token=%7B%7D"
        ))
        .unwrap_err();
        assert!(
            e.description
                .ends_with("got `login_hint_token`, `login_hint`"),
            "{}",
            e.description
        );
        let e = check(&format!("{C}&scope=openid")).unwrap_err();
        assert!(e.description.contains("is required"));
        assert_eq!(
            code(&format!("{C}&login_hint=a")),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&format!("{C}&scope=profile&login_hint=a")),
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn login_hint_token_is_normalized_in_the_form() {
        let lht = LhtRules {
            repair_unescaped_json: true,
            fold_params: vec!["idp_values".into(), "prompt".into()],
            output: OutputFormat::Base64,
            nested_json: NestedJson::String,
            ..Default::default()
        };
        lht.clone().compile().unwrap();
        let sg_base64 = crate::ciba::login_hint_token::tests::SG_BASE64;
        let body = format!(
            "{C}&scope=openid&idp_values=mitid&prompt=login&login_hint_token={}",
            form_urlencoded::byte_serialize(sg_base64.as_bytes()).collect::<String>()
        );
        let (form, report) = run(&body, &ValidationRules::default(), &lht).unwrap();
        assert_eq!(report.hint, HintKind::LoginHintToken);
        assert!(report.repaired() && report.changed());
        assert_eq!(report.folded(), ["idp_values", "prompt"]);
        let r = report.login_hint_token.as_ref().unwrap();
        assert_eq!(r.format, TokenFormat::Base64);
        assert!(!form.contains("idp_values") && !form.contains("prompt"));
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(form.get("login_hint_token").unwrap())
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["idp"], "mitid");
        assert_eq!(v["idp_values"], "mitid");
        assert_eq!(v["prompt"], "login");
        let inner: Value = serde_json::from_str(v["idp_params"].as_str().unwrap()).unwrap();
        assert_eq!(inner["ip"], "1.1.1.1");
        assert!(!format!("{form:?}").contains("mitid\\\""));
    }

    #[test]
    fn a_valid_request_object_passes_and_is_checked_inside() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = |claims: &str| {
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"RS256"}"#),
                b64(claims),
                b64("sig")
            )
        };
        let ok = jwt(
            r#"{"iss":"client-post","aud":"op","exp":4102444800,"scope":"openid","login_hint_token":"{\"idp\":\"mitid\"}","requested_expiry":120}"#,
        );
        let (form, report) = check(&format!("{C}&request={ok}")).unwrap();
        assert!(report.request_object);
        assert_eq!(report.hint, HintKind::LoginHintToken);
        assert!(!report.changed());
        assert_eq!(form.get("request"), Some(ok.as_str()));
        // Inner checks carry a prefix so the client knows where to look.
        let bad = jwt(r#"{"scope":"openid","login_hint":"a","requested_expiry":0}"#);
        let e = check(&format!("{C}&request={bad}")).unwrap_err();
        assert!(
            e.description
                .starts_with("request object: parameter `requested_expiry`"),
            "{}",
            e.description
        );
        let repair = jwt(r#"{"scope":"openid","login_hint_token":"{\"a\":\"{\"b\":1}\"}"}"#);
        let lht = LhtRules {
            repair_unescaped_json: true,
            ..Default::default()
        };
        let e = run(
            &format!("{C}&request={repair}"),
            &ValidationRules::default(),
            &lht,
        )
        .unwrap_err();
        assert!(e.description.contains("cannot be repaired"));
        let obj = jwt(r#"{"scope":"openid","login_hint":{"x":1}}"#);
        assert_eq!(
            code(&format!("{C}&request={obj}")),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn config_embeds_in_a_larger_toml_file() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            validation: ValidationRules,
            #[serde(default)]
            login_hint_token: LhtRules,
        }
        let f: File = toml::from_str(
            r#"
            [validation]
            binding_message_max_chars = 32
            [validation.clients."client-ping"]
            delivery_mode = "ping"
            [login_hint_token]
            repair_unescaped_json = true
            fold_params = ["idp_values", "prompt"]
            [login_hint_token.allowed_values]
            flow_type = ["broker_oidc"]
            "#,
        )
        .unwrap();
        f.validation.clone().compile().unwrap();
        f.login_hint_token.clone().compile().unwrap();
        assert_eq!(
            f.validation.clients["client-ping"].delivery_mode,
            Some(DeliveryMode::Ping)
        );
        let empty: File = toml::from_str("").unwrap();
        assert_eq!(empty.validation.binding_message_max_chars, 64);
    }
}
