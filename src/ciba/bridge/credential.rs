//! The credential a bridge client presents, and the gateway's own check of it when the OP
//! cannot do it (`bridge.mode = "plain"`).
//!
//! The gateway authenticates to the OP with the client's own credential twice: at the
//! pushed authorization request and, later, at the token endpoint when the user comes
//! back. Only a secret can be presented twice: a `client_assertion` (private_key_jwt,
//! client_secret_jwt) is single-use and bound to one endpoint, and the gateway holds no
//! key to make another, so such a request is refused with `invalid_client`.

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub use crate::ciba::ping::Credential;

/// The replayable credential a request presents: `client_secret` in the form, or HTTP
/// Basic. A `client_assertion`, another `Authorization` scheme, or none is `invalid_client`.
pub fn presented(form: &Form, authorization: Option<&str>) -> Result<Credential, OAuthError> {
    if form.contains("client_assertion") || form.contains("client_assertion_type") {
        return Err(refuse(
            "the bridge accepts client_secret_basic or client_secret_post: a \
             `client_assertion` is single-use and cannot also be presented at the token \
             endpoint when the user returns",
        ));
    }
    if let Some(h) = authorization {
        return match h.split_once(' ') {
            Some((scheme, value))
                if scheme.eq_ignore_ascii_case("basic") && !value.trim().is_empty() =>
            {
                Ok(Credential::Basic(value.trim().to_string()))
            }
            _ => Err(refuse(
                "the bridge accepts client_secret_basic or client_secret_post; this \
                 Authorization scheme is not one of them",
            )),
        };
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Credential::Post {
            client_id: id.to_string(),
            secret: secret.to_string(),
        }),
        _ => Err(refuse(
            "client authentication is required: client_secret_basic or client_secret_post",
        )),
    }
}

/// The client id and secret a credential carries (HTTP Basic decoded as RFC 6749 2.3.1
/// says: Base64, then each half form-urlencoded).
pub fn id_and_secret(c: &Credential) -> Option<(String, String)> {
    match c {
        Credential::Post { client_id, secret } => Some((client_id.clone(), secret.clone())),
        Credential::Basic(b64) => {
            let raw = STANDARD.decode(b64.as_bytes()).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (id, secret) = text.split_once(':')?;
            Some((url_decode(id)?, url_decode(secret)?))
        }
    }
}

/// Whether `secret` hashes (SHA-256) to `expected`, compared in constant time.
pub fn secret_matches(secret: &str, expected: &[u8; 32]) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    digest
        .as_ref()
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The 401 every failed or unusable client authentication gets.
pub fn refuse(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, why).with_reason(super::REASON)
}

fn url_decode(s: &str) -> Option<String> {
    // `+` is a space in form encoding; a malformed escape is a refusal, not a guess.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn only_secrets_are_accepted() {
        let f = form("client_id=c&client_secret=s");
        assert_eq!(
            presented(&f, None).unwrap(),
            Credential::Post {
                client_id: "c".into(),
                secret: "s".into()
            }
        );
        assert_eq!(
            presented(&form("scope=openid"), Some("Basic Yzpz")).unwrap(),
            Credential::Basic("Yzpz".into())
        );
        for (body, auth) in [
            (
                "client_id=c&client_assertion=x&client_assertion_type=y",
                None,
            ),
            ("client_id=c", None),
            ("client_id=c", Some("Bearer abc")),
            ("client_id=c", Some("Basic ")),
        ] {
            let e = presented(&form(body), auth).unwrap_err();
            assert_eq!(
                (e.code, e.status),
                (ErrorCode::InvalidClient, 401),
                "{body}"
            );
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let b = STANDARD.encode("my%3Aclient:p%40ss+word");
        assert_eq!(
            id_and_secret(&Credential::Basic(b)).unwrap(),
            ("my:client".into(), "p@ss word".into())
        );
        assert!(id_and_secret(&Credential::Basic("!!".into())).is_none());
        let bad = STANDARD.encode("c:%zz");
        assert!(id_and_secret(&Credential::Basic(bad)).is_none());
    }

    #[test]
    fn secrets_are_compared_by_hash() {
        let mut want = [0u8; 32];
        want.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b"s3cret").as_ref());
        assert!(secret_matches("s3cret", &want));
        assert!(!secret_matches("s3cret ", &want));
        assert!(!secret_matches("", &want));
    }
}
