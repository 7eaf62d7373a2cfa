//! A signed request object (CIBA 7.1.1): every authentication parameter inside the signed
//! `request`, none outside, checked with the very rules used for form parameters.

use super::params::check_params;
use super::rules::Effective;
use super::{invalid, Report, AUTH_PARAMS};
use crate::ciba::error::OAuthError;
use crate::ciba::form::Form;
use crate::ciba::ids::ClientId;
use crate::ciba::jwt::Jwt;
use crate::ciba::login_hint_token::{self as lht, LhtPolicy, OutputFormat};
use serde_json::Value;

/// CIBA 7.1.1: every authentication parameter inside the signed `request`, none outside.
pub(super) fn validate_request_object(
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
