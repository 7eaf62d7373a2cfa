//! A FAPI-CIBA authentication request: signed (CIBA 7.1.1, FAPI-CIBA 5.2.2), with an
//! allowed algorithm and the client's key, and the claims FAPI asks for.
//!
//! The contents (scope, hints, `binding_message`...) are checked by the ordinary rules
//! (`authorize/request_object.rs`); this file adds what the profile demands of the object
//! itself and of the form around it.

use super::claims::{self, check_signature, SignatureError};
use super::{FapiPolicy, OpNames, Refused, Replay, MAX_LIFETIME_SECONDS};
use crate::ciba::client_auth::JWT_BEARER;
use crate::ciba::error::OAuthError;
use crate::ciba::form::Form;
use crate::ciba::jwt::{Jwt, KeySet};
use serde_json::Value;

/// What a FAPI client's backchannel form may carry besides the object (CIBA 7.1.1): the
/// client's authentication and its id.
const OUTSIDE: [&str; 4] = [
    "request",
    "client_id",
    "client_assertion",
    "client_assertion_type",
];

fn invalid(msg: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(msg.into()).with_reason("fapi_request_object")
}

/// The client the request is checked for.
#[derive(Debug, Clone, Copy)]
pub struct ForClient<'a> {
    /// Its `client_id` (the authenticated client's).
    pub client_id: &'a str,
    /// Its requests carry a unique authorization context, so `binding_message` is not
    /// required (FAPI-CIBA 5.2.2).
    pub request_context: bool,
}

/// The form's shape: a `request` and nothing but the client's authentication beside it.
pub fn check_form(form: &Form) -> Result<(), OAuthError> {
    if !form.contains("request") {
        return Err(invalid(
            "a signed request object (parameter `request`) is required (CIBA 7.1.1, \
             FAPI-CIBA 5.2.2)",
        ));
    }
    for (name, _) in form.pairs() {
        if !OUTSIDE.contains(&name) {
            let named = crate::ciba::authorize::AUTH_PARAMS
                .iter()
                .find(|p| **p == name)
                .map(|p| format!("parameter `{p}`"))
                .unwrap_or_else(|| {
                    "a parameter other than `request`, `client_id` and the client's authentication"
                        .into()
                });
            return Err(invalid(format!(
                "{named} must not appear outside the signed request object (CIBA 7.1.1)"
            )));
        }
    }
    if form.contains("client_assertion_type")
        && form.get("client_assertion_type") != Some(JWT_BEARER)
    {
        return Err(invalid(
            "parameter `client_assertion_type` is not supported",
        ));
    }
    Ok(())
}

/// Checks the form and its signed `request` for `client`; on success the object's `jti`
/// to claim once, until its `exp`.
pub fn check(
    form: &Form,
    client: ForClient<'_>,
    keys: &KeySet,
    policy: &FapiPolicy,
    op: &OpNames,
    now: u64,
) -> Result<Replay, Refused> {
    check_form(form)?;
    let request = form.get("request").unwrap_or_default();
    let jwt = Jwt::decode(request).map_err(|e| invalid(format!("parameter `request` {e}")))?;
    let what = "request object";
    if let Err(e) = check_signature(&jwt, keys, &policy.request_algs) {
        return Err(Refused {
            error: invalid(e.describe(what, &policy.request_algs)),
            unknown_key: e == SignatureError::UnknownKey,
        });
    }
    let c = &jwt.payload;
    let fail = |why: String| invalid(format!("{what}: {why} (FAPI-CIBA 5.2.2)"));
    claims::check_aud(c, &[op.issuer.as_str()]).map_err(fail)?;
    claims::check_is_client(c, "iss", client.client_id).map_err(fail)?;
    let exp = claims::numeric_date(c, "exp").map_err(fail)?;
    let iat = claims::numeric_date(c, "iat").map_err(fail)?;
    let nbf = claims::numeric_date(c, "nbf").map_err(fail)?;
    let jti = claims::jti(c).map_err(fail)?;
    let skew = policy.clock_skew;
    // The time rules, the most specific first: an `nbf` 70 minutes old also makes a
    // lifetime too long or an `exp` passed, but the description names `nbf`.
    if nbf.saturating_add(MAX_LIFETIME_SECONDS) < now {
        return Err(fail("claim `nbf` is more than 60 minutes in the past".into()).into());
    }
    claims::check_not_future("nbf", nbf, now, skew).map_err(fail)?;
    claims::check_not_future("iat", iat, now, skew).map_err(fail)?;
    claims::check_not_expired(exp, now, skew).map_err(fail)?;
    if exp <= nbf || exp - nbf > MAX_LIFETIME_SECONDS {
        return Err(
            fail("claim `exp` must be after `nbf` and at most 60 minutes after it".into()).into(),
        );
    }
    // CIBA 7.1.1: a `client_id` outside the object names the object's issuer; inside, the
    // same (node-oidc-provider and others compare them, some do not).
    if form
        .get("client_id")
        .is_some_and(|id| id != client.client_id)
    {
        return Err(
            invalid("parameter `client_id` differs from the request object's `iss`").into(),
        );
    }
    match c.get("client_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == client.client_id => {}
        Some(_) => {
            return Err(
                fail("claim `client_id` does not name the authenticated client".into()).into(),
            )
        }
    }
    if !client.request_context {
        match c.get("binding_message") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(invalid(
                    "request object: claim `binding_message` is required for this client \
                     (FAPI-CIBA 5.2.2: a binding message unless the request has a unique \
                     authorization context)",
                )
                .into())
            }
        }
    }
    Ok(Replay { jti, exp })
}
