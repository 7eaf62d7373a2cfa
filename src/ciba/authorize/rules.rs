//! The `[validation]` configuration: the operator's rules for backchannel requests, globally
//! and per client, checked at start-up, and the rules in force for one request.

use crate::ciba::config_error::ConfigError;
use crate::ciba::ids::ClientId;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

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
pub(super) struct Effective<'a> {
    /// Longest `binding_message`, in characters.
    pub(super) max_chars: usize,
    /// The pattern `binding_message` must match, if any.
    pub(super) pattern: Option<&'a Regex>,
    /// Smallest `requested_expiry`, in seconds.
    pub(super) expiry_min: u64,
    /// Largest `requested_expiry`, in seconds.
    pub(super) expiry_max: u64,
    /// Whether `user_code` is required.
    pub(super) require_user_code: bool,
    /// The client's token delivery mode.
    pub(super) delivery_mode: DeliveryMode,
}

/// Compiles a `binding_message` pattern, anchored; the error names `key`.
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
    pub(super) fn effective(&self, client: Option<&ClientId>) -> Effective<'_> {
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
