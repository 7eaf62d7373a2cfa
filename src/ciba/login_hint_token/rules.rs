//! What the `[login_hint_token]` rules are ([`LhtRules`], checked at start-up by
//! [`LhtRules::compile`] into an [`LhtPolicy`]) and what normalizing a token reports
//! ([`LhtReport`], [`Normalized`]). The rules are applied in the parent module.

use super::{LhtPolicy, HARD_MAX_DEPTH};
use crate::ciba::config_error::ConfigError;
use crate::ciba::ids::Secret;
use crate::ciba::jwt::KeyConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

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
