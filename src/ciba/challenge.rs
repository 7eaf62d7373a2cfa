//! The `WWW-Authenticate` challenge an `invalid_client` answer owes a client that
//! authenticated with the `Authorization` header.
//!
//! RFC 6749 5.2: if the client attempted to authenticate via the `Authorization` header, the
//! server MUST answer 401 with a `WWW-Authenticate` field matching the scheme the client
//! used. The challenge carries the realm and, as node-oidc-provider's own does, the error
//! and its description, so a client library reports the same error whether the gateway or
//! the OP refused the request.

use crate::ciba::error::{ErrorCode, OAuthError};

/// The realm of a challenge when the gateway does not know the OP's issuer.
pub const FALLBACK_REALM: &str = "OpenID Provider";

/// Longest scheme echoed back; a longer one is not a scheme any client sends.
const MAX_SCHEME: usize = 32;

/// The `WWW-Authenticate` value for `e`, when it is `invalid_client` and the request carried
/// an `Authorization` header; `None` otherwise.
///
/// The scheme is the client's own (`Basic` in its usual spelling whatever the letter case,
/// since that is the one the gateway reads credentials from); a scheme that is not an HTTP
/// token is answered as `Basic`, the only scheme for client credentials (RFC 6749 2.3.1).
pub fn challenge(e: &OAuthError, authorization: Option<&str>, realm: &str) -> Option<String> {
    if e.code != ErrorCode::InvalidClient {
        return None;
    }
    let authorization = authorization?;
    let sent = authorization
        .trim_start_matches([' ', '\t'])
        .split([' ', '\t'])
        .next()
        .unwrap_or("");
    let scheme = if sent.is_empty()
        || sent.len() > MAX_SCHEME
        || !sent.bytes().all(is_tchar)
        || sent.eq_ignore_ascii_case("basic")
    {
        "Basic"
    } else {
        sent
    };
    let mut out = String::with_capacity(64 + realm.len() + e.description.len());
    out.push_str(scheme);
    out.push_str(" realm=");
    quoted(&mut out, realm);
    out.push_str(", error=\"");
    out.push_str(e.code.as_str());
    out.push_str("\", error_description=");
    quoted(&mut out, &e.description);
    Some(out)
}

/// A token character (RFC 9110 5.6.2): header names, schemes, parameter names.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `s` as a quoted-string (RFC 9110 5.6.4): `"` and `\` escaped, and anything a
/// header value may not hold (control characters, non-ASCII) replaced by `?`.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '\t' => out.push(c),
            c if c.is_ascii_graphic() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_client(description: &str) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidClient, description.to_string())
    }

    #[test]
    fn only_invalid_client_with_an_authorization_header_is_challenged() {
        let e = invalid_client("bad");
        assert!(challenge(&e, None, "r").is_none());
        for code in crate::ciba::error::ALL {
            let other = OAuthError::new(code, "x");
            assert_eq!(
                challenge(&other, Some("Basic YTpi"), "r").is_some(),
                code == ErrorCode::InvalidClient,
                "{code:?}"
            );
        }
        assert_eq!(
            challenge(&e, Some("Basic YTpi"), "https://op.example").as_deref(),
            Some(
                "Basic realm=\"https://op.example\", error=\"invalid_client\", \
                 error_description=\"bad\""
            )
        );
    }

    #[test]
    fn the_scheme_is_the_clients_own() {
        let e = invalid_client("d");
        let scheme = |h: &str| {
            let c = challenge(&e, Some(h), "r").unwrap();
            c.split(' ').next().unwrap().to_string()
        };
        // (sent, answered)
        let table = [
            ("Basic YTpi", "Basic"),
            ("basic YTpi", "Basic"),
            ("BASIC YTpi", "Basic"),
            ("  Basic YTpi", "Basic"),
            ("Basic", "Basic"),
            ("Bearer abc", "Bearer"),
            ("DPoP abc", "DPoP"),
            ("", "Basic"),
            ("   ", "Basic"),
            ("Ba\"sic x", "Basic"),
            ("Bäsic x", "Basic"),
            ("Basic,evil x", "Basic"),
            (&"A".repeat(33), "Basic"),
        ];
        for (sent, answered) in table {
            assert_eq!(scheme(sent), answered, "{sent:?}");
        }
    }

    #[test]
    fn realm_and_description_are_quoted_strings_a_header_can_hold() {
        let e = invalid_client("a \"quoted\" back\\slash\r\nX-Evil: 1 é");
        let c = challenge(&e, Some("Basic x"), "r\"\n").unwrap();
        assert_eq!(
            c,
            "Basic realm=\"r\\\"?\", error=\"invalid_client\", \
             error_description=\"a \\\"quoted\\\" back\\\\slash??X-Evil: 1 ?\""
        );
        assert!(http::HeaderValue::from_str(&c).is_ok());
    }
}
