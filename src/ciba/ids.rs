//! Identifier and secret newtypes.
//!
//! `Secret` is how the gateway keeps credentials and personal data out of logs by
//! construction: its `Debug` and `Display` print `[redacted]`, so a stray `{:?}` cannot leak it.

use std::fmt;
use std::sync::Arc;

/// A value that must never be logged: a secret, a token, a hint naming a person.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a sensitive value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself; every call site is a place where it may leave the gateway.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `client_id` a request claims (the OP, not the gateway, authenticates it).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Wraps a client id.
    pub fn new(id: &str) -> Self {
        ClientId(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", &*self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `auth_req_id` handed out by the OP.
///
/// It is a handle a client redeems for tokens, so `Debug` shows only a short prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthReqId(Box<str>);

impl AuthReqId {
    /// Wraps an `auth_req_id`.
    pub fn new(id: &str) -> Self {
        AuthReqId(Box::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthReqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(6).collect();
        write!(f, "AuthReqId({prefix}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn auth_req_id_debug_is_a_prefix() {
        let id = AuthReqId::new("abcdefghijklmnop");
        assert_eq!(format!("{id:?}"), "AuthReqId(abcdef…)");
    }
}
