//! The FAPI-CIBA security profile (FAPI-CIBA ID1 on FAPI 1.0 Advanced): the rules the
//! gateway adds for the clients the profile covers, so that an OP which gets them wrong
//! never sees a request that breaks them.
//!
//! - `request_object.rs`: a signed authentication request is required (CIBA 7.1.1,
//!   FAPI-CIBA 5.2.2), its algorithm, signature and claims checked;
//! - `assertion.rs`: client authentication is `private_key_jwt` (RFC 7523, OIDC Core 9)
//!   or mutual TLS, and an assertion's algorithm, signature and claims are checked;
//! - `claims.rs`: the claim checks both share (`aud`, `iss`, times, `jti`).
//!
//! Pure: keys come in as a [`KeySet`](crate::ciba::jwt::KeySet), time as an argument; the
//! replay cache (`jti` used once) and the fetching of a `jwks_uri` are the edge's.

pub mod assertion;
pub mod claims;
pub mod request_object;

#[cfg(test)]
mod tests;

use crate::ciba::config_error::ConfigError;
use crate::ciba::error::OAuthError;
use jsonwebtoken::Algorithm;
use std::str::FromStr;

/// The algorithms allowed when none are configured (FAPI 1.0 Advanced 8.6: PS256 or ES256).
pub const DEFAULT_ALGS: [&str; 2] = ["PS256", "ES256"];

/// FAPI-CIBA 5.2.2 / FAPI 1.0 Advanced 5.2.2: a request object's `exp - nbf` at most
/// 60 minutes, and `nbf` no more than 60 minutes in the past.
pub const MAX_LIFETIME_SECONDS: u64 = 3600;

/// How far in the future a client assertion's `exp` may be: 60 minutes.
pub const MAX_ASSERTION_AHEAD_SECONDS: u64 = 3600;

/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// A set of signing algorithms a FAPI client may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAlgs(Vec<Algorithm>);

impl Default for AllowedAlgs {
    fn default() -> Self {
        AllowedAlgs(vec![Algorithm::PS256, Algorithm::ES256])
    }
}

impl AllowedAlgs {
    /// Parses configured names; `key` names the setting in an error. `none`, the RSA
    /// PKCS#1 v1.5 algorithms (RS*, FAPI 1.0 Advanced 8.6) and the HMAC ones (a shared
    /// secret is no proof of a private key) are refused.
    pub fn parse(names: &[String], key: &str) -> Result<AllowedAlgs, ConfigError> {
        if names.is_empty() {
            return Err(ConfigError::new(key, "must list at least one algorithm"));
        }
        let mut algs = Vec::new();
        for name in names {
            let alg = Algorithm::from_str(name).map_err(|_| {
                ConfigError::new(
                    key,
                    format!("`{name}` is not a JWS algorithm (use PS256, ES256, PS384, PS512, ES384 or EdDSA)"),
                )
            })?;
            match alg {
                Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA => {}
                _ => {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "`{name}` is not allowed under FAPI (RS* and HS* are refused; \
                             FAPI 1.0 Advanced 8.6 asks for PS256 or ES256)"
                        ),
                    ))
                }
            }
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        Ok(AllowedAlgs(algs))
    }

    /// Whether `alg` (a JOSE header's `alg`, compared exactly) is allowed.
    pub fn allows(&self, alg: &str) -> bool {
        Algorithm::from_str(alg).is_ok_and(|a| self.0.contains(&a))
    }

    /// The names, in configured order (for discovery and error descriptions).
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|a| alg_name(*a)).collect()
    }
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// The profile's settings the rules need, compiled from `[fapi]`.
#[derive(Debug, Clone, Default)]
pub struct FapiPolicy {
    /// Algorithms a request object may be signed with.
    pub request_algs: AllowedAlgs,
    /// Algorithms a client assertion may be signed with.
    pub assertion_algs: AllowedAlgs,
    /// Seconds of clock difference forgiven (`nbf`/`iat` ahead, `exp` just passed).
    pub clock_skew: u64,
}

/// What the OP is called, for `aud`: its issuer, and the endpoint URLs it accepts in a
/// client assertion's `aud` (OIDC Core 9: the token endpoint; node-oidc-provider and others
/// also take the endpoint the assertion is sent to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpNames {
    /// The OP's issuer identifier.
    pub issuer: String,
    /// The OP's own token endpoint URL.
    pub token_endpoint: String,
    /// The OP's own backchannel authentication endpoint URL.
    pub backchannel_endpoint: String,
}

/// A `jti` to be claimed once, until `exp` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The JWT's `jti`.
    pub jti: String,
    /// When it may be forgotten: the JWT's `exp`.
    pub exp: u64,
}

/// Why a request was refused; `unknown_key` when no key of the client matched, so a
/// refreshed key set (from `jwks_uri`) may let the request through.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The answer.
    pub error: OAuthError,
    /// No key matched the object's `kid` and `alg`.
    pub unknown_key: bool,
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Refused {
            error,
            unknown_key: false,
        }
    }
}
