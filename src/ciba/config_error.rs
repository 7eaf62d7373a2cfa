//! The one configuration error: the dotted key at fault and what is wrong with it.
//!
//! It lives with the rules because each rule set checks its own section (`[validation]`,
//! `[login_hint_token]`, `[profile]`), and the rules may not depend on the configuration
//! layer; `crate::config` re-exports it.

use std::fmt;

/// A configuration error naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `upstream.url`, or the file for syntax errors.
    pub key: String,
    /// What is wrong, in lowercase, and where possible a hint.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}
