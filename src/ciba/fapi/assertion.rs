//! Client authentication under FAPI (FAPI 1.0 Advanced 5.2.2): `private_key_jwt`
//! (RFC 7523, OIDC Core 9) or mutual TLS (RFC 8705); never a client secret.
//!
//! A `private_key_jwt` assertion is checked here: an allowed algorithm, the client's key,
//! `iss` = `sub` = the client, `aud` the OP, `exp` present and at most 60 minutes ahead,
//! a `jti` (claimed once by the edge). The TLS methods are checked by the certificate
//! code; this file only does not ask them for an assertion.

use super::claims::{self, check_signature, SignatureError};
use super::{FapiPolicy, OpNames, Refused, Replay, MAX_ASSERTION_AHEAD_SECONDS};
use crate::ciba::client_auth::AuthMethod;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::jwt::{Jwt, KeySet};
use crate::ciba::pipeline::Endpoint;

fn invalid_client(msg: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, msg.into()).with_reason("fapi_client_auth")
}

/// How a FAPI client authenticates this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A `private_key_jwt` assertion, to check with [`check`].
    PrivateKeyJwt,
    /// Mutual TLS: the certificate code checks it.
    Tls,
}

/// The method a request uses, given the client's configured one: a client secret (Basic
/// or in the form) is refused; a client configured for a TLS method sends no assertion;
/// every other client sends one.
pub fn method(
    form: &Form,
    basic: bool,
    configured: Option<AuthMethod>,
) -> Result<Method, OAuthError> {
    if basic || form.contains("client_secret") {
        return Err(invalid_client(
            "client authentication with a client secret is not allowed under FAPI; use \
             private_key_jwt or mutual TLS (FAPI 1.0 Advanced 5.2.2)",
        ));
    }
    let assertion = form.contains("client_assertion");
    match configured {
        Some(AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth) => {
            if assertion {
                return Err(invalid_client(
                    "parameter `client_assertion` is sent by a client registered for mutual \
                     TLS authentication; use one method",
                ));
            }
            Ok(Method::Tls)
        }
        _ if assertion => Ok(Method::PrivateKeyJwt),
        _ => Err(invalid_client(
            "parameter `client_assertion` is required: FAPI clients authenticate with \
             private_key_jwt or mutual TLS (FAPI 1.0 Advanced 5.2.2)",
        )),
    }
}

/// The `aud` values an assertion sent to `endpoint` may carry: the OP's issuer, its token
/// endpoint, and the endpoint the assertion is sent to (as the OP names them).
pub fn audiences(op: &OpNames, endpoint: Endpoint) -> [&str; 3] {
    let called = match endpoint {
        Endpoint::Backchannel => op.backchannel_endpoint.as_str(),
        Endpoint::Token => op.token_endpoint.as_str(),
    };
    [op.issuer.as_str(), op.token_endpoint.as_str(), called]
}

/// Checks a `private_key_jwt` assertion from `client_id` at `endpoint`; on success its
/// `jti` to claim once, until its `exp`.
pub fn check(
    form: &Form,
    client_id: &str,
    endpoint: Endpoint,
    keys: &KeySet,
    policy: &FapiPolicy,
    op: &OpNames,
    now: u64,
) -> Result<Replay, Refused> {
    let assertion = form.get("client_assertion").unwrap_or_default();
    let jwt = Jwt::decode(assertion)
        .map_err(|e| invalid_client(format!("parameter `client_assertion` {e}")))?;
    let what = "`client_assertion`";
    if let Err(e) = check_signature(&jwt, keys, &policy.assertion_algs) {
        return Err(Refused {
            error: invalid_client(e.describe(what, &policy.assertion_algs)),
            unknown_key: e == SignatureError::UnknownKey,
        });
    }
    let c = &jwt.payload;
    let fail = |why: String| invalid_client(format!("{what}: {why} (RFC 7523 3)"));
    claims::check_is_client(c, "iss", client_id).map_err(fail)?;
    claims::check_is_client(c, "sub", client_id).map_err(fail)?;
    claims::check_aud(c, &audiences(op, endpoint)).map_err(fail)?;
    let exp = claims::numeric_date(c, "exp").map_err(fail)?;
    let jti = claims::jti(c).map_err(fail)?;
    let skew = policy.clock_skew;
    claims::check_not_expired(exp, now, skew).map_err(fail)?;
    if exp > now.saturating_add(MAX_ASSERTION_AHEAD_SECONDS + skew) {
        return Err(fail("claim `exp` is more than 60 minutes ahead".into()).into());
    }
    for name in ["nbf", "iat"] {
        if c.get(name).is_some() {
            let t = claims::numeric_date(c, name).map_err(fail)?;
            claims::check_not_future(name, t, now, skew).map_err(fail)?;
        }
    }
    Ok(Replay { jti, exp })
}
