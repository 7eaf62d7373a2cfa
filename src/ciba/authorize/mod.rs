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
//!
//! The parts: `rules` (`[validation]`, and the rules in force for one client), `params` (the
//! check of each parameter), `request_object` (CIBA 7.1.1), and this file, the entry point and
//! its [`Report`]. The hostile-request table the unit and integration tests share is
//! `tests/data/hostile_backchannel.json`.

mod params;
mod request_object;
mod rules;
#[cfg(test)]
mod tests;

pub use params::is_b64token;
pub use rules::{ClientRules, DeliveryMode, ValidationPolicy, ValidationRules};

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::ClientId;
use crate::ciba::login_hint_token::{self as lht, LhtPolicy, LhtReport, OutputFormat};
use params::check_params;
use request_object::validate_request_object;

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

/// An `invalid_request` for `reason` (a metrics label).
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
    // CIBA 7.1: the client authenticates at this endpoint. A request that names no client
    // could be held to no client's rules (its certificate, its profile, its limits, the
    // tracking of its ids) and cannot succeed at the OP.
    if client.is_none() {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "a backchannel authentication request must identify its client",
        )
        .with_status(401)
        .with_reason("client"));
    }
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
