//! The bridge's requests to the OP: the authorization request (pushed, RFC 9126, or as a
//! plain URL), the code exchange (RFC 6749 4.1.3 with RFC 7636), and what the OP's
//! refusals become for the CIBA client.

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use serde_json::Value;

/// What a `login_hint_token` becomes at an OP that knows only the code flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginHintTokenMapping {
    /// Refused with `invalid_request`: the OP has no parameter for it.
    #[default]
    Refuse,
    /// Sent as the authorization request's `login_hint` (the OP reads it as it likes).
    LoginHint,
}

/// The gateway-made values of one authorization request.
#[derive(Debug, Clone, Copy)]
pub struct Handles<'a> {
    /// The gateway's callback, registered at the OP for the client.
    pub redirect_uri: &'a str,
    /// The fresh `state`.
    pub state: &'a str,
    /// The fresh `nonce`.
    pub nonce: &'a str,
    /// The PKCE S256 challenge.
    pub code_challenge: &'a str,
}

/// The authorization request's parameters from a validated backchannel request: the
/// client's `scope`, `acr_values` and hint, the gateway's handles, PKCE S256.
///
/// What the code flow has no place for is refused rather than dropped: a signed
/// `request` object (its claims would be lost), a `user_code`, and a `login_hint_token`
/// unless mapped.
pub fn authorization_params(
    form: &Form,
    client_id: &str,
    h: Handles<'_>,
    lht: LoginHintTokenMapping,
) -> Result<Vec<(&'static str, String)>, OAuthError> {
    if form.contains("request") {
        return Err(refuse(
            "the bridge cannot forward a signed `request` object to an authorization code \
             flow; send the parameters in the form",
        ));
    }
    if form.contains("user_code") {
        return Err(refuse(
            "parameter `user_code` is not supported by this OpenID Provider",
        ));
    }
    let mut out: Vec<(&'static str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", h.redirect_uri.into()),
        ("scope", form.get("scope").unwrap_or("openid").into()),
        ("state", h.state.into()),
        ("nonce", h.nonce.into()),
        ("code_challenge", h.code_challenge.into()),
        ("code_challenge_method", "S256".into()),
    ];
    if let Some(acr) = form.get("acr_values") {
        out.push(("acr_values", acr.into()));
    }
    if let Some(hint) = form.get("login_hint") {
        out.push(("login_hint", hint.into()));
    }
    if let Some(hint) = form.get("id_token_hint") {
        out.push(("id_token_hint", hint.into()));
    }
    if let Some(token) = form.get("login_hint_token") {
        match lht {
            LoginHintTokenMapping::LoginHint => out.push(("login_hint", token.into())),
            LoginHintTokenMapping::Refuse => {
                return Err(refuse(
                    "parameter `login_hint_token` is not supported by this OpenID Provider; \
                     send `login_hint` or `id_token_hint`",
                ))
            }
        }
    }
    Ok(out)
}

/// Form-encodes pairs.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `endpoint` with `query` appended (after `&` when it already has a query).
pub fn with_query(endpoint: &str, query: &str) -> String {
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{query}")
}

/// The URL the user opens after a pushed request (RFC 9126 4): `client_id` and
/// `request_uri` only.
pub fn pushed_url(authorization_endpoint: &str, client_id: &str, request_uri: &str) -> String {
    with_query(
        authorization_endpoint,
        &encode([("client_id", client_id), ("request_uri", request_uri)]),
    )
}

/// The OP's answer to a pushed authorization request (RFC 9126 2.2): `request_uri` and
/// `expires_in` on 201 (200 accepted too); anything else becomes the CIBA error the client
/// should see ([`op_refusal`]).
pub fn pushed_answer(status: u16, body: &[u8]) -> Result<(String, u64), OAuthError> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if matches!(status, 200 | 201) {
        let uri = value.get("request_uri").and_then(Value::as_str);
        let exp = value.get("expires_in").and_then(Value::as_u64);
        return match (uri, exp) {
            (Some(u), Some(e)) if !u.is_empty() && e > 0 => Ok((u.to_string(), e)),
            _ => Err(bad_op(
                "the OpenID Provider's pushed authorization answer lacks `request_uri` or `expires_in`",
            )),
        };
    }
    Err(op_refusal(status, &value))
}

/// What an OP's refusal of the pushed request becomes at the backchannel endpoint: the
/// client's own faults keep their code (`invalid_client` 401 included), the gateway's
/// setup faults (an unregistered callback, PAR switched off) are a `server_error`.
pub fn op_refusal(status: u16, body: &Value) -> OAuthError {
    let code = body.get("error").and_then(Value::as_str).unwrap_or("");
    match code {
        "invalid_client" => OAuthError::new(
            ErrorCode::InvalidClient,
            "the OpenID Provider did not authenticate the client",
        ),
        "invalid_scope" => OAuthError::new(
            ErrorCode::InvalidScope,
            "the OpenID Provider refused the `scope`",
        ),
        "unauthorized_client" => OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the OpenID Provider does not allow this client the authorization code flow",
        ),
        "access_denied" => OAuthError::new(
            ErrorCode::AccessDenied,
            "the OpenID Provider refused the request",
        ),
        // The client's parameters passed the gateway's checks, so this may also be the
        // OP refusing the gateway's callback (node-oidc-provider says invalid_request for
        // an unregistered redirect_uri): the description says both.
        "invalid_request" => OAuthError::invalid_request(
            "the OpenID Provider refused the authentication request: its parameters, or the \
             gateway's callback if that is not registered for this client",
        ),
        _ if status == 401 => OAuthError::new(
            ErrorCode::InvalidClient,
            "the OpenID Provider did not authenticate the client",
        ),
        _ => bad_op(
            "the OpenID Provider refused the gateway's authorization request; check that the \
             gateway's callback is registered for the client and that the OP allows PAR",
        ),
    }
    .with_reason(super::REASON)
}

/// The code exchange's form (RFC 6749 4.1.3, RFC 7636 4.5); client authentication is
/// added by the caller as the client presented it.
pub fn token_form(code: &str, redirect_uri: &str, verifier: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.into()),
        ("redirect_uri", redirect_uri.into()),
        ("code_verifier", verifier.into()),
    ]
}

/// A successful token answer: a JSON object with `access_token`, `token_type` and
/// `id_token`. Returns the `id_token`; an error names what was wrong, never a value.
pub fn token_answer(status: u16, body: &[u8]) -> Result<String, &'static str> {
    if status != 200 {
        return Err("the OpenID Provider refused the code exchange");
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| "the token answer is not JSON")?;
    let obj = value
        .as_object()
        .ok_or("the token answer is not an object")?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    if s("access_token").is_none() || s("token_type").is_none() {
        return Err("the token answer lacks `access_token` or `token_type`");
    }
    s("id_token")
        .map(str::to_string)
        .ok_or("the token answer lacks `id_token`")
}

fn refuse(why: &'static str) -> OAuthError {
    OAuthError::invalid_request(why).with_reason(super::REASON)
}

fn bad_op(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, why).with_reason(super::REASON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn handles() -> Handles<'static> {
        Handles {
            redirect_uri: "https://gw/cb",
            state: "st",
            nonce: "no",
            code_challenge: "ch",
        }
    }

    #[test]
    fn the_authorization_request_carries_the_client_s_parameters_and_pkce() {
        let f = Form::parse(b"scope=openid+email&login_hint=alice&acr_values=x&binding_message=hi")
            .unwrap();
        let p = authorization_params(&f, "c1", handles(), LoginHintTokenMapping::Refuse).unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("scope"), Some("openid email"));
        assert_eq!(get("login_hint"), Some("alice"));
        assert_eq!(get("acr_values"), Some("x"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("redirect_uri"), Some("https://gw/cb"));
        assert_eq!(
            get("binding_message"),
            None,
            "not an authorization parameter"
        );
    }

    #[test]
    fn what_the_code_flow_cannot_carry_is_refused() {
        for body in [
            "request=a.b.c",
            "login_hint=a&user_code=1",
            "login_hint_token=x",
        ] {
            let f = Form::parse(body.as_bytes()).unwrap();
            let e = authorization_params(&f, "c", handles(), LoginHintTokenMapping::Refuse)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}");
        }
        let f = Form::parse(b"login_hint_token=tok").unwrap();
        let p = authorization_params(&f, "c", handles(), LoginHintTokenMapping::LoginHint).unwrap();
        assert!(p.contains(&("login_hint", "tok".to_string())));
    }

    #[test]
    fn urls() {
        assert_eq!(
            pushed_url("https://op/auth", "c 1", "urn:x:1"),
            "https://op/auth?client_id=c+1&request_uri=urn%3Ax%3A1"
        );
        assert_eq!(
            with_query("https://op/auth?a=1", "b=2"),
            "https://op/auth?a=1&b=2"
        );
    }

    #[test]
    fn op_refusals_become_the_client_s_errors() {
        let r = |status, body: Value| {
            let e = pushed_answer(status, body.to_string().as_bytes()).unwrap_err();
            (e.code, e.status)
        };
        assert_eq!(
            r(401, json!({"error": "invalid_client"})),
            (ErrorCode::InvalidClient, 401)
        );
        assert_eq!(r(401, json!({})), (ErrorCode::InvalidClient, 401));
        assert_eq!(
            r(400, json!({"error": "invalid_scope"})),
            (ErrorCode::InvalidScope, 400)
        );
        assert_eq!(
            r(400, json!({"error": "invalid_request"})),
            (ErrorCode::InvalidRequest, 400)
        );
        assert_eq!(
            r(400, json!({"error": "invalid_redirect_uri"})),
            (ErrorCode::ServerError, 502)
        );
        assert_eq!(r(500, json!("x")), (ErrorCode::ServerError, 502));
        assert_eq!(
            r(201, json!({"request_uri": "u"})),
            (ErrorCode::ServerError, 502)
        );
        assert_eq!(
            pushed_answer(201, br#"{"request_uri":"u","expires_in":60}"#).unwrap(),
            ("u".to_string(), 60)
        );
    }

    #[test]
    fn token_answers() {
        let ok = br#"{"access_token":"a","token_type":"Bearer","id_token":"x.y.z"}"#;
        assert_eq!(token_answer(200, ok).unwrap(), "x.y.z");
        assert!(token_answer(400, ok).is_err());
        assert!(token_answer(200, br#"{"access_token":"a","token_type":"Bearer"}"#).is_err());
        assert!(token_answer(200, b"nope").is_err());
    }
}
