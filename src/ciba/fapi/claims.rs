//! The claim checks a FAPI request object and a client assertion share: the signature
//! with an allowed algorithm, `aud`, `iss`, the numeric dates and `jti`.
//!
//! Each failure is a phrase naming the claim (or header parameter), never its value; the
//! caller makes it an `invalid_request` or an `invalid_client`.

use super::{AllowedAlgs, MAX_JTI_BYTES};
use crate::ciba::jwt::{Jwt, KeySet, Verification};
use serde_json::{Map, Value};

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// `alg: none` (any letter case).
    Unsigned,
    /// An algorithm the profile does not allow.
    AlgNotAllowed,
    /// No key of the client fits the `kid` and algorithm: a refreshed key set may have one.
    UnknownKey,
    /// Keys fit, but none verified the signature.
    BadSignature,
    /// A `crit` header parameter: extensions the gateway (and most OPs) do not implement,
    /// which RFC 7515 4.1.11 says must then be refused.
    Critical,
}

impl SignatureError {
    /// The description for `what` ("request object", "`client_assertion`").
    pub fn describe(&self, what: &str, algs: &AllowedAlgs) -> String {
        match self {
            SignatureError::Unsigned => {
                format!("{what} must be signed; `alg` none is refused (FAPI-CIBA 5.2.2)")
            }
            SignatureError::AlgNotAllowed => format!(
                "{what}: header `alg` is not allowed; use {} (FAPI 1.0 Advanced 8.6)",
                algs.names().join(" or ")
            ),
            SignatureError::UnknownKey => format!(
                "{what}: no key of the client matches header `kid` and `alg`; sign with a key \
                 in the client's JWK Set"
            ),
            SignatureError::BadSignature => {
                format!("{what}: the signature does not verify with the client's keys")
            }
            SignatureError::Critical => format!(
                "{what}: header parameter `crit` names extensions the gateway does not \
                 implement (RFC 7515 4.1.11)"
            ),
        }
    }
}

/// Checks `jwt`'s algorithm against `algs` and its signature against `keys`.
pub fn check_signature(
    jwt: &Jwt<'_>,
    keys: &KeySet,
    algs: &AllowedAlgs,
) -> Result<(), SignatureError> {
    if jwt.is_unsigned() {
        return Err(SignatureError::Unsigned);
    }
    if !algs.allows(jwt.alg()) {
        return Err(SignatureError::AlgNotAllowed);
    }
    if jwt.header.contains_key("crit") {
        return Err(SignatureError::Critical);
    }
    match keys.verify(jwt) {
        Verification::Verified => Ok(()),
        Verification::UnsupportedAlg => Err(SignatureError::AlgNotAllowed),
        Verification::NoMatchingKey => Err(SignatureError::UnknownKey),
        Verification::BadSignature => Err(SignatureError::BadSignature),
    }
}

/// A required NumericDate claim (RFC 7519 2), in whole seconds (a fraction is dropped).
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<u64, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(format!("claim `{name}` is missing")),
        Some(v) => match v.as_f64() {
            Some(n) if (0.0..1e15).contains(&n) => Ok(n as u64),
            _ => Err(format!("claim `{name}` must be a number of seconds")),
        },
    }
}

/// `aud` is one of `accepted`, or an array holding one of them (RFC 7519 4.1.3).
pub fn check_aud(claims: &Map<String, Value>, accepted: &[&str]) -> Result<(), String> {
    let is_accepted = |v: &Value| v.as_str().is_some_and(|s| accepted.contains(&s));
    match claims.get("aud") {
        None | Some(Value::Null) => Err("claim `aud` is missing".into()),
        Some(Value::String(_)) if is_accepted(&claims["aud"]) => Ok(()),
        Some(Value::Array(items)) if items.iter().any(is_accepted) => Ok(()),
        Some(Value::String(_) | Value::Array(_)) => {
            Err("claim `aud` does not name the OpenID Provider".into())
        }
        Some(_) => Err("claim `aud` must be a string or an array of strings".into()),
    }
}

/// A string claim equal to `expected` (the client id).
pub fn check_is_client(
    claims: &Map<String, Value>,
    name: &str,
    expected: &str,
) -> Result<(), String> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(format!("claim `{name}` is missing")),
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(Value::String(_)) => Err(format!(
            "claim `{name}` does not name the authenticated client"
        )),
        Some(_) => Err(format!("claim `{name}` must be a string")),
    }
}

/// A non-empty string `jti` of at most [`MAX_JTI_BYTES`].
pub fn jti(claims: &Map<String, Value>) -> Result<String, String> {
    match claims.get("jti") {
        None | Some(Value::Null) => Err("claim `jti` is missing".into()),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_JTI_BYTES => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!(
            "claim `jti` must be 1 to {MAX_JTI_BYTES} bytes long"
        )),
        Some(_) => Err("claim `jti` must be a string".into()),
    }
}

/// `exp` not passed (a `skew` forgiven).
pub fn check_not_expired(exp: u64, now: u64, skew: u64) -> Result<(), String> {
    if exp.saturating_add(skew) <= now {
        return Err("claim `exp` has passed".into());
    }
    Ok(())
}

/// A date claim (`nbf`, `iat`) not in the future beyond `skew`.
pub fn check_not_future(name: &str, value: u64, now: u64, skew: u64) -> Result<(), String> {
    if value > now.saturating_add(skew) {
        return Err(format!("claim `{name}` is in the future"));
    }
    Ok(())
}
