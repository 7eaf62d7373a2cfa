//! The checks of individual parameters, shared by form parameters and the claims of a signed
//! request object: `scope`, the hints, `id_token_hint`'s shape, `binding_message`,
//! `user_code`, `requested_expiry` and `client_notification_token`.

use super::rules::Effective;
use super::{invalid, DeliveryMode, HintKind, HINTS, MAX_NOTIFICATION_TOKEN_CHARS};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::jwt::Jwt;

/// The checks shared by form parameters and request-object claims; `ctx` prefixes errors.
pub(super) fn check_params(
    form: &Form,
    eff: &Effective<'_>,
    ctx: &str,
) -> Result<HintKind, OAuthError> {
    check_scope(form, ctx)?;
    let hint = check_hints(form, ctx)?;
    if let Some(t) = form.get("id_token_hint") {
        Jwt::decode(t).map_err(|e| {
            invalid(
                "id_token_hint",
                format!("{ctx}parameter `id_token_hint` {e}"),
            )
        })?;
    }
    if let Some(m) = form.get("binding_message") {
        check_binding_message(m, eff, ctx)?;
    }
    if eff.require_user_code && form.get("user_code").is_none() {
        return Err(OAuthError::new(
            ErrorCode::MissingUserCode,
            format!("{ctx}parameter `user_code` is required for this client"),
        )
        .with_reason("user_code"));
    }
    if let Some(e) = form.get("requested_expiry") {
        check_requested_expiry(e, eff, ctx)?;
    }
    check_notification_token(form, eff, ctx)?;
    Ok(hint)
}

/// CIBA 7.1: `client_notification_token` is required for ping and push clients, and
/// whenever it is sent, in any mode (the gateway may not know the client's), it is at
/// most 1024 characters of RFC 6750 2.1 `b64token` syntax. Sent empty, it is refused
/// rather than read as absent: an empty value is not a `b64token`.
fn check_notification_token(form: &Form, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    const P: &str = "client_notification_token";
    let sent = form.pairs().find(|(name, _)| *name == P).map(|(_, v)| v);
    let problem = match sent {
        None if eff.delivery_mode != DeliveryMode::Poll => {
            "is required for a client registered for ping or push delivery (CIBA 7.1)".into()
        }
        None => return Ok(()),
        Some(t) if t.chars().count() > MAX_NOTIFICATION_TOKEN_CHARS => {
            format!("is longer than {MAX_NOTIFICATION_TOKEN_CHARS} characters (CIBA 7.1)")
        }
        Some(t) if !is_b64token(t) => "must be a Bearer token: letters, digits and \
             `-._~+/`, optionally ending in `=` (RFC 6750 2.1, CIBA 7.1)"
            .into(),
        Some(_) => return Ok(()),
    };
    Err(invalid(P, format!("{ctx}parameter `{P}` {problem}")))
}

/// RFC 6750 2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// `scope`: required, NQCHAR tokens only, `openid` among them (CIBA 7.1, RFC 6749 3.3).
fn check_scope(form: &Form, ctx: &str) -> Result<(), OAuthError> {
    let Some(scope) = form.get("scope") else {
        return Err(invalid(
            "scope",
            format!("{ctx}parameter `scope` is required and must include `openid` (CIBA 7.1)"),
        ));
    };
    // RFC 6749 3.3: scope tokens are NQCHAR (printable ASCII but `"` and `\`).
    let nqchar = |c: char| matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if !scope.chars().all(|c| c == ' ' || nqchar(c)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("{ctx}parameter `scope` holds characters RFC 6749 3.3 does not allow"),
        )
        .with_reason("scope"));
    }
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("{ctx}parameter `scope` must include `openid` (CIBA 7.1)"),
        )
        .with_reason("scope"));
    }
    Ok(())
}

/// Exactly one of the three hints (CIBA 7.1); which one it is.
fn check_hints(form: &Form, ctx: &str) -> Result<HintKind, OAuthError> {
    let present = HINTS.map(|h| form.get(h).is_some());
    match present {
        [true, false, false] => Ok(HintKind::LoginHintToken),
        [false, true, false] => Ok(HintKind::IdTokenHint),
        [false, false, true] => Ok(HintKind::LoginHint),
        [false, false, false] => Err(invalid(
            "hint",
            format!(
                "{ctx}one of `login_hint_token`, `id_token_hint` or `login_hint` is required \
                 (CIBA 7.1)"
            ),
        )),
        _ => {
            let sent: Vec<&str> = HINTS
                .iter()
                .zip(present)
                .filter_map(|(h, p)| p.then_some(*h))
                .collect();
            Err(invalid(
                "hint",
                format!(
                    "{ctx}only one of `login_hint_token`, `id_token_hint` and `login_hint` may \
                     be sent (CIBA 7.1); got `{}`",
                    sent.join("`, `")
                ),
            ))
        }
    }
}

/// Characters that make a message shown to the end-user say something other than it seems.
fn is_refused_char(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates: reorder text on the device's screen.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        // Line and paragraph separators: a second "line" the client did not show.
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `binding_message`: no control or reordering characters, within the length and pattern.
fn check_binding_message(m: &str, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    let refuse = |what: String| {
        OAuthError::new(ErrorCode::InvalidBindingMessage, format!("{ctx}{what}"))
            .with_reason("binding_message")
    };
    // Counted in Unicode scalar values: "é" is one character the user sees, two bytes.
    let mut chars = 0;
    for c in m.chars() {
        if is_refused_char(c) {
            return Err(refuse(
                "parameter `binding_message` contains control or bidirectional-override \
                 characters"
                    .into(),
            ));
        }
        chars += 1;
    }
    if chars > eff.max_chars {
        return Err(refuse(format!(
            "parameter `binding_message` is longer than {} characters",
            eff.max_chars
        )));
    }
    if let Some(re) = eff.pattern {
        if !re.is_match(m) {
            return Err(refuse(
                "parameter `binding_message` contains characters this OpenID Provider does not \
                 accept"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// `requested_expiry`: a positive integer of seconds within the client's bounds.
fn check_requested_expiry(e: &str, eff: &Effective<'_>, ctx: &str) -> Result<(), OAuthError> {
    let not_int = || {
        invalid(
            "requested_expiry",
            format!("{ctx}parameter `requested_expiry` must be a positive integer of seconds"),
        )
    };
    if !e.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_int());
    }
    let out_of_range = || {
        invalid(
            "requested_expiry",
            format!(
                "{ctx}parameter `requested_expiry` must be between {} and {} seconds",
                eff.expiry_min, eff.expiry_max
            ),
        )
    };
    // All digits: the only parse failure left is overflow, which is out of range too.
    let secs: u64 = e.parse().map_err(|_| out_of_range())?;
    if secs == 0 {
        return Err(not_int());
    }
    if secs < eff.expiry_min || secs > eff.expiry_max {
        return Err(out_of_range());
    }
    Ok(())
}
