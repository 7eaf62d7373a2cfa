//! The CIBA pipeline: what happens to a request on a CIBA endpoint before it may reach the
//! OP, and to the OP's answer before the client sees it.
//!
//! Pure functions over bytes and strings; the proxy calls them and does the I/O. Every CIBA
//! rule plugs in here: request validation and normalization on the way in, the OP's
//! answer on the way out.

use crate::ciba::authorize::{self, Report, ValidationPolicy};
use crate::ciba::client_auth::claimed_client;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::ClientId;
use crate::ciba::login_hint_token::LhtPolicy;

/// The CIBA endpoints the gateway enforces rules on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The backchannel authentication endpoint (CIBA 7).
    Backchannel,
    /// The token endpoint (CIBA 10.1).
    Token,
}

impl Endpoint {
    /// Name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Backchannel => "backchannel",
            Endpoint::Token => "token",
        }
    }

    /// The HTTP status of `code` at this endpoint.
    pub fn status_of(self, code: ErrorCode) -> u16 {
        match self {
            Endpoint::Backchannel => code.status(),
            Endpoint::Token => code.token_endpoint_status(),
        }
    }
}

/// The validation and normalization rules from the configuration, checked and compiled.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `[validation]`.
    pub validation: ValidationPolicy,
    /// `[login_hint_token]`.
    pub login_hint_token: LhtPolicy,
}

/// A request as the proxy read it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The `Authorization` header, if any (never logged).
    pub authorization: Option<&'a str>,
    /// The whole body.
    pub body: &'a [u8],
}

/// A request the gateway lets through, and the form to forward.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The form as it will be forwarded.
    pub form: Form,
    /// The client the request claims to be.
    pub client: Option<ClientId>,
    /// What backchannel validation found and changed (none at the token endpoint).
    pub report: Option<Report>,
}

/// Checks a request on a CIBA endpoint; an error is answered by the gateway itself.
///
/// Each error carries its endpoint's status as built: the checks both endpoints share
/// (content type, form, client) give only codes whose status is the same at both
/// (tested), and the rest run at the backchannel endpoint only.
///
/// Backchannel requests are validated (CIBA 7.1, 7.1.1, 7.2, 13) and their
/// `login_hint_token` normalized; `now_unix` is the time for JWT expiry checks, read at
/// the backchannel endpoint only (a token request may pass 0).
pub fn check_request(
    req: Inbound<'_>,
    rules: &Rules,
    now_unix: u64,
) -> Result<Accepted, OAuthError> {
    if !is_form(req.content_type) {
        return Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        )
        .with_reason("content_type"));
    }
    let mut form = Form::parse(req.body)?;
    let client = claimed_client(&form, req.authorization)?;
    let report = match req.endpoint {
        Endpoint::Backchannel => Some(authorize::validate_backchannel(
            &mut form,
            client.as_ref(),
            &rules.validation,
            &rules.login_hint_token,
            now_unix,
        )?),
        Endpoint::Token => None,
    };
    Ok(Accepted {
        form,
        client,
        report,
    })
}

/// The `auth_req_id` of a CIBA poll (CIBA 10.1), when the token request is one.
pub fn ciba_poll(form: &Form) -> Option<&str> {
    if form.get("grant_type") == Some(crate::ciba::discovery::CIBA_GRANT) {
        form.get("auth_req_id")
    } else {
        None
    }
}

fn is_form(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The OP's answer as the proxy buffered it.
#[derive(Debug, Clone, Copy)]
pub struct OpAnswer<'a> {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The OP's status.
    pub status: u16,
    /// The OP's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The OP's body.
    pub body: &'a [u8],
}

/// What the client receives instead of, or as, the OP's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// The OP's answer is a JSON object, parsed once here for the steps that follow.
    Json(serde_json::Value),
    /// Replace it with a gateway error.
    Replace(OAuthError),
}

/// Checks the OP's answer on a CIBA endpoint.
///
/// CIBA answers are JSON (7.3, 11, 13); anything else (an HTML error page, a proxy's text
/// 502) is replaced by a `server_error` with status 502, so clients always parse JSON.
/// The OP's body is never echoed: it may carry tokens or personal data.
pub fn check_response(resp: OpAnswer<'_>) -> Outbound {
    if is_json(resp.content_type) {
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice(resp.body) {
            return Outbound::Json(v);
        }
    }
    Outbound::Replace(OAuthError::new(
        ErrorCode::ServerError,
        format!(
            "the OpenID Provider answered the {} request with status {} and no JSON body",
            resp.endpoint.as_str(),
            resp.status
        ),
    ))
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct.split(';').next().unwrap_or("").trim().as_bytes();
    // Compared without letter case, and without a lower-cased copy.
    let (prefix, suffix) = (b"application/", b"+json");
    media.eq_ignore_ascii_case(b"application/json")
        || (media.len() >= prefix.len() + suffix.len()
            && media[..prefix.len()].eq_ignore_ascii_case(prefix)
            && media[media.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_at_the_token_endpoint_carry_its_status() {
        let cases: [(Option<&str>, &[u8], Option<&str>); 6] = [
            (None, b"a=1", None),
            (Some("application/json"), b"{}", None),
            (Some("application/x-www-form-urlencoded"), b"a=1&a=2", None),
            (Some("application/x-www-form-urlencoded"), b"a=%zz", None),
            (
                Some("application/x-www-form-urlencoded"),
                b"client_id=a&client_secret=s",
                Some("Basic YjpzCg=="),
            ),
            (
                Some("application/x-www-form-urlencoded"),
                b"client_id=a",
                Some("Basic !!"),
            ),
        ];
        for (ct, body, authorization) in cases {
            let req = Inbound {
                endpoint: Endpoint::Token,
                content_type: ct,
                authorization,
                body,
            };
            let e = check_request(req, &Rules::default(), 0).unwrap_err();
            assert_eq!(e.status, Endpoint::Token.status_of(e.code), "{e:?}");
        }
        for code in [ErrorCode::InvalidRequest, ErrorCode::InvalidClient] {
            assert_eq!(Endpoint::Token.status_of(code), code.status());
        }
    }

    fn inbound<'a>(ct: Option<&'a str>, body: &'a [u8]) -> Inbound<'a> {
        Inbound {
            endpoint: Endpoint::Backchannel,
            content_type: ct,
            authorization: None,
            body,
        }
    }

    #[test]
    fn accepts_a_form_and_finds_the_client() {
        let ok = check_request(
            inbound(
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                b"client_id=c1&scope=openid&login_hint=a",
            ),
            &Rules::default(),
            0,
        )
        .unwrap();
        assert_eq!(ok.client.unwrap().as_str(), "c1");
        assert_eq!(ok.form.get("scope"), Some("openid"));
    }

    #[test]
    fn refuses_other_media_types() {
        for ct in [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("multipart/form-data"),
        ] {
            let e = check_request(inbound(ct, b"a=1"), &Rules::default(), 0).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn json_media_types_are_recognised_in_any_letter_case() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/problem+json ",
            "APPLICATION/VND.X+JSON",
            "application/+json",
        ] {
            assert!(is_json(Some(ct)), "{ct}");
        }
        for ct in [
            "",
            "text/json",
            "application/jsonx",
            "application/json+x",
            "application+json",
            "json",
            "text/plain+json",
        ] {
            assert!(!is_json(Some(ct)), "{ct}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn non_json_answers_become_server_error() {
        let html = OpAnswer {
            endpoint: Endpoint::Token,
            status: 500,
            content_type: Some("text/html"),
            body: b"<html>oops</html>",
        };
        match check_response(html) {
            Outbound::Replace(e) => {
                assert_eq!(e.code, ErrorCode::ServerError);
                assert_eq!(e.status, 502);
                assert!(!e.description.contains("oops"));
            }
            other => panic!("{other:?}"),
        }
        let json = OpAnswer {
            endpoint: Endpoint::Token,
            status: 400,
            content_type: Some("application/json; charset=utf-8"),
            body: br#"{"error":"authorization_pending"}"#,
        };
        assert_eq!(
            check_response(json),
            Outbound::Json(serde_json::json!({"error": "authorization_pending"}))
        );
        let lying = OpAnswer {
            content_type: Some("application/json"),
            body: b"not json",
            ..json
        };
        assert!(matches!(check_response(lying), Outbound::Replace(_)));
    }
}
