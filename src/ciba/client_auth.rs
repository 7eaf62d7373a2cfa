//! Which `client_id` a request claims (CIBA 7.1: client authentication as at the token
//! endpoint).
//!
//! The gateway does not verify secrets or assertions (the OP does), but it must know who a
//! request claims to be, to key poll state and rate limits, and it refuses requests that
//! claim two different identities. Three sources can name the client: the form's
//! `client_id`, HTTP Basic credentials, and a JWT `client_assertion` (RFC 7523 3, whose `sub`
//! is the client id; private_key_jwt and client_secret_jwt).

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::ClientId;
use crate::ciba::jwt::Jwt;
use base64::Engine;
use serde::Deserialize;

/// RFC 7523 2.2: the `client_assertion_type` of a JWT client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest client id accepted; real ones are UUID-sized.
const MAX_CLIENT_ID: usize = 256;

/// The client id claimed by the form's `client_id`, an HTTP Basic header and/or a JWT
/// `client_assertion`; any two that disagree are `invalid_client`, and a request that
/// authenticates in two ways at once is `invalid_request` (see [`single_method`]).
///
/// `Ok(None)` when the request names no client at all (the OP will refuse it).
pub fn claimed_client(
    form: &Form,
    authorization: Option<&str>,
) -> Result<Option<ClientId>, OAuthError> {
    let from_basic = match authorization {
        Some(h)
            if h.len() > 6 && h.is_char_boundary(6) && h[..6].eq_ignore_ascii_case("basic ") =>
        {
            Some(basic_client_id(&h[6..])?)
        }
        _ => None,
    };
    single_method(form, from_basic.is_some())?;
    let from_assertion = assertion_client_id(form)?;
    let sources = [
        ("`client_id` in the form", form.get("client_id")),
        ("the Authorization header", from_basic.as_deref()),
        ("`client_assertion`", from_assertion.as_deref()),
    ];
    let mut claimed: Option<(&str, &str)> = None;
    for (source, id) in sources {
        let Some(id) = id else { continue };
        match claimed {
            Some((first, seen)) if seen != id => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    format!("{first} and {source} name different clients"),
                )
                .with_reason("client_mismatch"))
            }
            Some(_) => {}
            None => claimed = Some((source, id)),
        }
    }
    let Some((_, id)) = claimed else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > MAX_CLIENT_ID || id.chars().any(char::is_control) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "`client_id` is malformed",
        ));
    }
    Ok(Some(ClientId::new(id)))
}

/// RFC 6749 2.3: "The client MUST NOT use more than one authentication method in each
/// request." The methods are HTTP Basic (`basic` is whether the request carries Basic
/// credentials), `client_secret` in the form and a `client_assertion`; `client_id` alone is
/// no credential. A parameter sent empty still counts: the OP may read it either way.
fn single_method(form: &Form, basic: bool) -> Result<(), OAuthError> {
    let methods = [
        (basic, "HTTP Basic"),
        (form.contains("client_secret"), "`client_secret`"),
        (form.contains("client_assertion"), "`client_assertion`"),
    ];
    let used: Vec<&str> = methods
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    if used.len() > 1 {
        return Err(OAuthError::invalid_request(format!(
            "the client authenticates with {}; use exactly one method (RFC 6749 2.3)",
            used.join(" and ")
        ))
        .with_reason("client_auth_methods"));
    }
    Ok(())
}

/// The client id a JWT `client_assertion` names: its `sub`, which must equal its `iss`
/// (RFC 7523 3). The signature is the OP's to verify; only the shape is checked here.
fn assertion_client_id(form: &Form) -> Result<Option<String>, OAuthError> {
    let assertion = form.get("client_assertion");
    let kind = form.get("client_assertion_type");
    let assertion = match (assertion, kind) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "parameter `client_assertion_type` is sent without `client_assertion`",
            )
            .with_reason("client_assertion"))
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "parameter `client_assertion` needs `client_assertion_type` (RFC 7521 4.2)",
            )
            .with_reason("client_assertion"))
        }
        (Some(_), Some(kind)) if kind != JWT_BEARER => {
            return Err(OAuthError::invalid_request(format!(
                "parameter `client_assertion_type` is not supported; use {JWT_BEARER}"
            ))
            .with_reason("client_assertion"))
        }
        (Some(a), Some(_)) => a,
    };
    let invalid = |what: String| {
        OAuthError::new(ErrorCode::InvalidClient, what).with_reason("client_assertion")
    };
    let jwt = Jwt::decode(assertion).map_err(|e| invalid(format!("`client_assertion` {e}")))?;
    let sub = jwt.claim_str("sub").ok_or_else(|| {
        invalid("`client_assertion` has no string `sub` claim (RFC 7523 3)".into())
    })?;
    match jwt.claim_str("iss") {
        Some(iss) if iss == sub => Ok(Some(sub.to_string())),
        Some(_) => Err(invalid(
            "`client_assertion` has an `iss` that differs from its `sub` (RFC 7523 3)".into(),
        )),
        None => Err(invalid(
            "`client_assertion` has no string `iss` claim (RFC 7523 3)".into(),
        )),
    }
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
    // Encoded, a `&` is `%26`; a raw one would end the form value early and name another
    // client than the OP reads.
    if raw[..colon].contains(&b'&') {
        return Err(bad());
    }
    let id = Form::parse(&[b"x=", &raw[..colon]].concat())
        .ok()
        .and_then(|f| f.get("x").map(str::to_string))
        .ok_or_else(bad)?;
    Ok(id)
}

/// A client's `token_endpoint_auth_method`, by its registered name (OpenID Connect Dynamic
/// Client Registration 2; RFC 8705 2 for the TLS methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
    /// `client_id` and `client_secret` in an `Authorization: Basic` header.
    ClientSecretBasic,
    /// A JWT `client_assertion` signed with the client secret.
    ClientSecretJwt,
    /// A JWT `client_assertion` signed with the client's private key.
    PrivateKeyJwt,
    /// Mutual TLS with a PKI certificate.
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate.
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The method's registered name.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// The method as the gateway replays it, or why the gateway cannot poll with it.
    pub fn replayable(self) -> Result<crate::ciba::ping::SecretMethod, &'static str> {
        match self {
            AuthMethod::ClientSecretPost => Ok(crate::ciba::ping::SecretMethod::Post),
            AuthMethod::ClientSecretBasic => Ok(crate::ciba::ping::SecretMethod::Basic),
            AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt => Err(
                "its `client_assertion` is single-use and short-lived, so the gateway cannot \
                 replay it to poll the OP on the client's behalf",
            ),
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth => Err(
                "the gateway has no client certificate to present when it polls the OP on the \
                 client's behalf",
            ),
        }
    }
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

    #[test]
    fn hostile_basic_headers() {
        use base64::Engine;
        let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
        let empty = Form::parse(b"").unwrap();
        let refused = [
            "Basic !!!".to_string(),
            format!("Basic {}", b64(b"no-colon")),
            format!("Basic {}", b64(b":secret")),
            format!("Basic {}", b64(b"\xff\xfe:s")),
            format!("Basic {}", b64(b"a%zz:s")),
            format!("Basic {}", b64(b"a%00b:s")),
            format!("Basic {}", b64(b"a&b:s")),
            format!("Basic {}", b64(b"a&client_id=b:s")),
            format!("Basic {}", b64(b"a\nb:s")),
            format!("Basic {}:s", b64(&[b'a'; 300])),
            format!("Basic {}", b64(&[&[b'a'; 300][..], b":s"].concat())),
            "Basic ====".into(),
            "Basic YQ".into(),
        ];
        for h in &refused {
            let e = claimed_client(&empty, Some(h)).expect_err(h);
            assert_eq!(e.code, ErrorCode::InvalidClient, "{h}");
            assert_eq!(e.status, 401, "{h}");
            assert!(!e.description.contains("aaaa"), "echoes the header: {h}");
        }
        let read = [
            (format!("bAsIc {}", b64(b"a%20b:s")), Some("a b")),
            (format!("Basic   {}  ", b64(b"c1:")), Some("c1")),
            (format!("Basic {}", b64(b"c1:s:with:colons")), Some("c1")),
            (format!("Basic {}", b64(b"a%26b:s")), Some("a&b")),
            (format!("Basic {}", b64(b"a+b:s")), Some("a b")),
            ("Basic ".into(), None),
            ("Basicé".into(), None),
            ("Bearer abc".into(), None),
        ];
        for (h, want) in &read {
            let got = claimed_client(&empty, Some(h)).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(got.as_ref().map(ClientId::as_str), *want, "{h}");
        }
    }

    fn assertion(claims: &str) -> String {
        crate::ciba::jwt::tests::unsigned(r#"{"alg":"RS256"}"#, claims)
    }

    fn with_assertion(extra: &str, claims: &str) -> Form {
        let body = format!(
            "{extra}client_assertion_type={}&client_assertion={}",
            form_urlencoded::byte_serialize(JWT_BEARER.as_bytes()).collect::<String>(),
            assertion(claims)
        );
        Form::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn client_assertion_names_the_client_by_sub() {
        let ok = r#"{"iss":"abc","sub":"abc","aud":"op"}"#;
        let form = with_assertion("", ok);
        assert_eq!(
            claimed_client(&form, None).unwrap().unwrap().as_str(),
            "abc"
        );
        let form = with_assertion("client_id=abc&", ok);
        assert_eq!(
            claimed_client(&form, None).unwrap().unwrap().as_str(),
            "abc"
        );
    }

    #[test]
    fn client_assertion_disagreements_are_invalid_client() {
        let ok = r#"{"iss":"abc","sub":"abc"}"#;
        let cases: [(Form, Option<String>, &str); 5] = [
            (
                with_assertion("client_id=xyz&", ok),
                None,
                "different clients",
            ),
            (
                with_assertion("", r#"{"iss":"x","sub":"abc"}"#),
                None,
                "`iss` that differs",
            ),
            (
                with_assertion("", r#"{"iss":"abc"}"#),
                None,
                "no string `sub`",
            ),
            (
                with_assertion("", r#"{"sub":"abc"}"#),
                None,
                "no string `iss`",
            ),
            (
                with_assertion("", r#"{"sub":7,"iss":7}"#),
                None,
                "no string `sub`",
            ),
        ];
        for (form, header, expect) in cases {
            let e = claimed_client(&form, header.as_deref()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{expect}");
            assert_eq!(e.status, 401);
            assert!(e.description.contains(expect), "{}", e.description);
            assert!(!e.description.contains("abc"));
        }
        let garbage = Form::parse(
            format!("client_assertion_type={JWT_BEARER}&client_assertion=not-a-jwt").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            claimed_client(&garbage, None).unwrap_err().code,
            ErrorCode::InvalidClient
        );
    }

    #[test]
    fn two_authentication_methods_are_invalid_request() {
        let ok = r#"{"iss":"abc","sub":"abc"}"#;
        let secret = Form::parse(b"client_id=abc&client_secret=s").unwrap();
        let empty_secret = Form::parse(b"client_id=abc&client_secret=").unwrap();
        let cases: [(&str, Form, Option<String>); 7] = [
            (
                "basic and client_secret",
                secret.clone(),
                Some(basic("abc", "s")),
            ),
            (
                "basic and empty client_secret",
                empty_secret,
                Some(basic("abc", "s")),
            ),
            (
                "basic and client_secret naming other clients",
                Form::parse(b"client_id=xyz&client_secret=s").unwrap(),
                Some(basic("abc", "s")),
            ),
            (
                "basic and client_assertion",
                with_assertion("", ok),
                Some(basic("abc", "s")),
            ),
            (
                "client_assertion and client_secret",
                with_assertion("client_secret=s&", ok),
                None,
            ),
            (
                "all three",
                with_assertion("client_secret=s&", ok),
                Some(basic("abc", "s")),
            ),
            (
                "lower-case basic and client_secret",
                secret,
                Some(basic("abc", "s").replacen("Basic", "basic", 1)),
            ),
        ];
        for (name, form, header) in cases {
            let e = claimed_client(&form, header.as_deref()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{name}");
            assert_eq!(e.status, 400, "{name}");
            assert_eq!(e.reason, "client_auth_methods", "{name}");
            assert!(e.description.contains("RFC 6749 2.3"), "{name}");
            assert!(!e.description.contains("abc"), "{name}");
        }
        // One method, whatever names the client alongside it.
        let one = [
            (Form::parse(b"client_id=abc&client_secret=s").unwrap(), None),
            (
                Form::parse(b"client_id=abc").unwrap(),
                Some(basic("abc", "s")),
            ),
            (Form::default(), Some(basic("abc", "s"))),
            (with_assertion("client_id=abc&", ok), None),
            (
                Form::parse(b"client_id=abc&client_secret=s").unwrap(),
                Some("Bearer x".into()),
            ),
        ];
        for (form, header) in one {
            let got = claimed_client(&form, header.as_deref()).unwrap();
            assert_eq!(got.unwrap().as_str(), "abc");
        }
    }

    #[test]
    fn client_assertion_type_must_match() {
        let a = assertion(r#"{"iss":"abc","sub":"abc"}"#);
        for body in [
            format!("client_assertion={a}"),
            "client_assertion_type=x".to_string(),
            format!("client_assertion_type=urn%3Ax&client_assertion={a}"),
        ] {
            let form = Form::parse(body.as_bytes()).unwrap();
            let e = claimed_client(&form, None).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}");
        }
    }
}
