//! Which `client_id` a request claims (CIBA 7.1: client authentication as at the token
//! endpoint).
//!
//! The gateway does not verify secrets or assertions (the OP does), but it must know who a
//! request claims to be, to key poll state and rate limits, and it refuses requests that
//! claim two different identities.

use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::ids::ClientId;
use base64::Engine;

/// Longest client id accepted; real ones are UUID-sized.
const MAX_CLIENT_ID: usize = 256;

/// The client id claimed by the form's `client_id` and/or an HTTP Basic header.
///
/// `Ok(None)` when the request names no client at all (the OP will refuse it).
pub fn claimed_client(
    form: &Form,
    authorization: Option<&str>,
) -> Result<Option<ClientId>, OAuthError> {
    let from_basic = match authorization {
        Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
            Some(basic_client_id(&h[6..])?)
        }
        _ => None,
    };
    let from_form = form.get("client_id");
    let id = match (from_form, from_basic.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "`client_id` in the form and in the Authorization header differ",
            )
            .with_reason("client_mismatch"))
        }
        (Some(a), _) => a.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => return Ok(None),
    };
    if id.is_empty() || id.len() > MAX_CLIENT_ID || id.chars().any(char::is_control) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "`client_id` is malformed",
        ));
    }
    Ok(Some(ClientId::new(&id)))
}

/// Decodes the client id from Basic credentials (RFC 6749 2.3.1: form-encoded, then Base64).
fn basic_client_id(credentials: &str) -> Result<String, OAuthError> {
    let bad = || {
        OAuthError::new(
            ErrorCode::InvalidClient,
            "the Basic Authorization header is malformed",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .map_err(|_| bad())?;
    let colon = raw.iter().position(|b| *b == b':').ok_or_else(bad)?;
    let id = Form::parse(&[b"x=", &raw[..colon]].concat())
        .ok()
        .and_then(|f| f.get("x").map(str::to_string))
        .ok_or_else(bad)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    #[test]
    fn form_or_basic_or_both_agreeing() {
        let form = Form::parse(b"client_id=abc").unwrap();
        assert_eq!(
            claimed_client(&form, None).unwrap().unwrap().as_str(),
            "abc"
        );
        let empty = Form::default();
        let h = basic("a%20b", "s:e:c");
        assert_eq!(
            claimed_client(&empty, Some(&h)).unwrap().unwrap().as_str(),
            "a b"
        );
        let h = basic("abc", "s");
        assert_eq!(
            claimed_client(&form, Some(&h)).unwrap().unwrap().as_str(),
            "abc"
        );
        assert_eq!(claimed_client(&empty, Some("Bearer x")).unwrap(), None);
    }

    #[test]
    fn disagreement_and_garbage_are_invalid_client() {
        let form = Form::parse(b"client_id=abc").unwrap();
        let cases = [basic("xyz", "s"), "Basic !!!".into(), "Basic eHl6".into()];
        for h in cases {
            let e = claimed_client(&form, Some(&h)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{h}");
            assert_eq!(e.status, 401);
        }
        let long = Form::parse(format!("client_id={}", "a".repeat(300)).as_bytes()).unwrap();
        assert!(claimed_client(&long, None).is_err());
    }
}
