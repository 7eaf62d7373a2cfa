//! Ping delivery on behalf of an OP that only polls (CIBA 10.2): what a ping client's
//! backchannel request must carry and leaves with the gateway, the poll the gateway sends
//! for it, how the OP's answer to that poll is read, and what a redemption gets.
//!
//! The gateway replays the client's own credential to the OP, so only credentials that
//! can be replayed are accepted: `client_secret_post` and `client_secret_basic`. A JWT
//! `client_assertion` (private_key_jwt, client_secret_jwt) is single-use and short-lived
//! by design, and the gateway holds no key to make one, so such a request is refused.
//! Pure: no I/O, no time.

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::{AuthReqId, ClientId, Secret};
use crate::ciba::polling::OpVerdict;
use crate::ciba::translate::classify_token_answer;
use serde_json::Value;

/// The `reason` (a metrics label) of every refusal by these rules.
pub const REASON: &str = "ping";

const TOKEN: &str = "client_notification_token";

pub use crate::ciba::client_auth::AuthMethod;

/// The two ways of authenticating the gateway can replay in its polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMethod {
    /// `client_secret_post`.
    Post,
    /// `client_secret_basic`.
    Basic,
}

impl SecretMethod {
    /// The method's registered name.
    pub fn name(self) -> &'static str {
        match self {
            SecretMethod::Post => "client_secret_post",
            SecretMethod::Basic => "client_secret_basic",
        }
    }
}

/// A client credential as presented, kept to be replayed in the gateway's polls.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post {
        /// The form's `client_id`.
        client_id: String,
        /// The form's `client_secret`.
        secret: String,
    },
    /// `client_secret_basic`: the credentials of the `Authorization: Basic` header.
    Basic(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Post { .. } => f.write_str("Credential::Post([redacted])"),
            Credential::Basic(_) => f.write_str("Credential::Basic([redacted])"),
        }
    }
}

impl Credential {
    /// How it was presented.
    pub fn method(&self) -> SecretMethod {
        match self {
            Credential::Post { .. } => SecretMethod::Post,
            Credential::Basic(_) => SecretMethod::Basic,
        }
    }

    /// The bytes the keyed hash is taken over: the method, the client and the secret, so
    /// the same secret presented another way, or for another client, does not match.
    pub fn hash_input(&self, client: &ClientId) -> Secret<Vec<u8>> {
        let (method, value) = match self {
            Credential::Post { secret, .. } => (b'P', secret.as_str()),
            Credential::Basic(b) => (b'B', b.as_str()),
        };
        let mut out = Vec::with_capacity(2 + client.as_str().len() + value.len());
        out.push(method);
        out.extend_from_slice(client.as_str().as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        Secret::new(out)
    }

    /// The credential as bytes, for sealing; [`Credential::from_bytes`] reads it back.
    pub fn to_bytes(&self) -> Secret<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Credential::Post { client_id, secret } => {
                out.push(b'P');
                out.extend_from_slice(client_id.as_bytes());
                out.push(0);
                out.extend_from_slice(secret.as_bytes());
            }
            Credential::Basic(b) => {
                out.push(b'B');
                out.extend_from_slice(b.as_bytes());
            }
        }
        Secret::new(out)
    }

    /// Reads what [`Credential::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<Credential> {
        let (method, rest) = bytes.split_first()?;
        let rest = std::str::from_utf8(rest).ok()?;
        match method {
            b'P' => {
                let (client_id, secret) = rest.split_once('\0')?;
                Some(Credential::Post {
                    client_id: client_id.into(),
                    secret: secret.into(),
                })
            }
            b'B' => Some(Credential::Basic(rest.into())),
            _ => None,
        }
    }
}

/// What a ping client's backchannel request leaves with the gateway.
#[derive(Debug)]
pub struct PingStart {
    /// The credential to replay in the gateway's polls.
    pub credential: Credential,
    /// The client's `client_notification_token`, the bearer of its ping.
    pub notification_token: Secret<String>,
}

/// CIBA 7.1 for a client the gateway pings: `client_notification_token` is required and
/// taken out of the form (the OP sees a poll-mode request), the request may not be a
/// signed `request` object (the token could not be taken out of it), and the client must
/// authenticate in a way the gateway can replay: the configured `method`, or when `None`
/// either secret method.
pub fn take_ping_request(
    form: &mut Form,
    authorization: Option<&str>,
    method: Option<SecretMethod>,
) -> Result<PingStart, OAuthError> {
    if form.contains("request") {
        return Err(refuse(
            "a client the gateway pings cannot send a signed `request` object: its \
             `client_notification_token` could not be taken out of it; send the parameters \
             in the form",
        ));
    }
    let credential = presented_credential(form, authorization)?;
    if let Some(method) = method.filter(|m| *m != credential.method()) {
        return Err(wrong_method(method));
    }
    if form.get(TOKEN).is_none() {
        return Err(refuse(
            "parameter `client_notification_token` is required for a client registered for \
             ping delivery (CIBA 7.1)",
        ));
    }
    let token = form.remove(TOKEN).unwrap_or_default();
    Ok(PingStart {
        credential,
        notification_token: Secret::new(token),
    })
}

/// The replayable credential a request presents: `client_secret` in the form, or HTTP
/// Basic; a `client_assertion`, another `Authorization` scheme, or none is refused.
pub fn presented_credential(
    form: &Form,
    authorization: Option<&str>,
) -> Result<Credential, OAuthError> {
    if form.contains("client_assertion") || form.contains("client_assertion_type") {
        return Err(refuse(
            "a client the gateway pings must authenticate with client_secret_post or \
             client_secret_basic: a `client_assertion` (private_key_jwt, client_secret_jwt) \
             cannot be replayed by the gateway to poll on the client's behalf",
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
                "a client the gateway pings must authenticate with client_secret_post or \
                 client_secret_basic; this Authorization scheme is not replayable",
            )),
        };
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Credential::Post {
            client_id: id.to_string(),
            secret: secret.to_string(),
        }),
        _ => Err(refuse(
            "a client the gateway pings must authenticate with client_secret_post or \
             client_secret_basic",
        )),
    }
}

/// A ping client that authenticates otherwise than its configured method: `invalid_client`,
/// as the OP holds a client to its registered method, so the gateway's polls with this
/// credential would be refused.
fn wrong_method(method: SecretMethod) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        format!(
            "this client is registered to authenticate with {}",
            method.name()
        ),
    )
    .with_status(401)
    .with_reason(REASON)
}

fn refuse(description: &'static str) -> OAuthError {
    OAuthError::invalid_request(description).with_reason(REASON)
}

/// The gateway's poll for `id` with the client's credential: the form body, and the
/// `Authorization` header value for Basic.
pub fn poll_request(
    id: &AuthReqId,
    credential: &Credential,
) -> (Secret<Vec<u8>>, Option<Secret<String>>) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", crate::ciba::discovery::CIBA_GRANT);
    form.append_pair("auth_req_id", id.as_str());
    let header = match credential {
        Credential::Post { client_id, secret } => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret);
            None
        }
        Credential::Basic(b) => Some(Secret::new(format!("Basic {b}"))),
    };
    (Secret::new(form.finish().into_bytes()), header)
}

/// What the gateway does after the OP answered one of its polls (the answer already in
/// the spec's form: checked and translated by the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// `authorization_pending`: poll again after the interval.
    Pending,
    /// The OP said `slow_down`: add 5 s to the interval (CIBA 11), then poll again.
    SlowDown,
    /// Nothing will change: tokens, `access_denied`, `expired_token`, `invalid_grant`, or
    /// another client error the same credential would get again. Held and pinged.
    Terminal,
    /// An OP fault (5xx, an unusable answer): poll again after the interval.
    Retry,
}

/// Reads the OP's answer to one of the gateway's polls.
pub fn poll_outcome(status: u16, body: &Value) -> PollOutcome {
    match classify_token_answer(status, body) {
        OpVerdict::Pending => PollOutcome::Pending,
        OpVerdict::SlowDown => PollOutcome::SlowDown,
        OpVerdict::Ended | OpVerdict::Expired => PollOutcome::Terminal,
        OpVerdict::Unclear if (400..500).contains(&status) && body.get("error").is_some() => {
            PollOutcome::Terminal
        }
        OpVerdict::Unclear => PollOutcome::Retry,
    }
}

/// A held answer as bytes for sealing: the status, then the JSON body.
pub fn answer_bytes(status: u16, body: &[u8]) -> Secret<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(body);
    Secret::new(out)
}

/// Reads what [`answer_bytes`] wrote.
pub fn answer_from_bytes(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (status, body) = bytes.split_at_checked(2)?;
    Some((u16::from_be_bytes([status[0], status[1]]), body))
}

/// A redemption by another client than the one that started the request.
pub fn wrong_client() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidGrant,
        "the auth_req_id was not issued to this client",
    )
    .with_status(ErrorCode::InvalidGrant.token_endpoint_status())
}

/// A redemption by the right client with another credential than at initiation.
pub fn wrong_credential() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        "the client must authenticate as it did when it started this request",
    )
    .with_status(401)
}

/// A second redemption.
pub fn used_up() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidGrant,
        "the auth_req_id has already been used up",
    )
    .with_status(ErrorCode::InvalidGrant.token_endpoint_status())
}

/// A poll within the rules before the OP answered: answered by the gateway, since the
/// gateway itself polls the OP for this request.
pub fn pending() -> OAuthError {
    OAuthError::new(
        ErrorCode::AuthorizationPending,
        "the end-user has not yet been authenticated; the client will be pinged",
    )
    .with_status(ErrorCode::AuthorizationPending.token_endpoint_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn the_token_is_required_and_taken_out() {
        let mut f = form(
            "client_id=c&client_secret=s&scope=openid&login_hint=a&client_notification_token=tok",
        );
        let start = take_ping_request(&mut f, None, None).unwrap();
        assert_eq!(start.notification_token.expose(), "tok");
        assert!(!f.contains(TOKEN));
        assert!(!String::from_utf8(f.encode()).unwrap().contains("tok"));
        assert_eq!(
            start.credential,
            Credential::Post {
                client_id: "c".into(),
                secret: "s".into()
            }
        );
        let mut f = form("client_id=c&client_secret=s&scope=openid&login_hint=a");
        let e = take_ping_request(&mut f, None, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("client_notification_token"));
    }

    #[test]
    fn only_replayable_credentials() {
        let basic = "Basic Yzpz";
        let mut f = form("scope=openid&login_hint=a&client_notification_token=t");
        let s = take_ping_request(&mut f, Some(basic), None).unwrap();
        assert_eq!(s.credential, Credential::Basic("Yzpz".into()));
        for (body, auth) in [
            (
                "client_id=c&client_assertion_type=x&client_assertion=a.b.c&client_notification_token=t",
                None,
            ),
            ("client_id=c&client_notification_token=t", None),
            ("client_id=c&client_notification_token=t", Some("Bearer x")),
            ("client_id=c&client_notification_token=t", Some("Basic ")),
            ("client_id=c&client_secret=s&request=a.b.c", None),
        ] {
            let e = take_ping_request(&mut form(body), auth, None).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}");
            assert_eq!(e.reason, REASON);
        }
        let e = take_ping_request(
            &mut form("client_id=c&client_assertion_type=x&client_assertion=a.b.c&client_notification_token=t"),
            None,
            Some(SecretMethod::Post),
        )
        .unwrap_err();
        assert!(
            e.description.contains("client_assertion"),
            "{}",
            e.description
        );
    }

    #[test]
    fn the_configured_method_is_the_only_one_accepted() {
        let post = "client_id=c&client_secret=s&client_notification_token=t";
        let bare = "client_id=c&client_notification_token=t";
        let basic = Some("Basic Yzpz");
        let ok = [
            (post, None, None),
            (bare, basic, None),
            (post, None, Some(SecretMethod::Post)),
            (bare, basic, Some(SecretMethod::Basic)),
            (bare, Some("bAsIc Yzpz"), Some(SecretMethod::Basic)),
        ];
        for (body, auth, method) in ok {
            assert!(
                take_ping_request(&mut form(body), auth, method).is_ok(),
                "{body} {auth:?} {method:?}"
            );
        }
        for (body, auth, method) in [
            (bare, basic, SecretMethod::Post),
            (post, None, SecretMethod::Basic),
            // The token is still required, but a wrong method is refused first.
            ("client_id=c&client_secret=s", None, SecretMethod::Basic),
        ] {
            let e = take_ping_request(&mut form(body), auth, Some(method)).unwrap_err();
            assert_eq!(
                (e.code, e.status),
                (ErrorCode::InvalidClient, 401),
                "{body}"
            );
            assert!(e.description.contains(method.name()), "{}", e.description);
            assert_eq!(e.reason, REASON);
        }
    }

    #[test]
    fn only_secret_methods_can_be_replayed() {
        use AuthMethod::*;
        assert_eq!(ClientSecretPost.replayable(), Ok(SecretMethod::Post));
        assert_eq!(ClientSecretBasic.replayable(), Ok(SecretMethod::Basic));
        for m in [ClientSecretJwt, PrivateKeyJwt] {
            assert!(m.replayable().unwrap_err().contains("single-use"), "{m:?}");
        }
        for m in [TlsClientAuth, SelfSignedTlsClientAuth] {
            assert!(m.replayable().unwrap_err().contains("certificate"), "{m:?}");
        }
    }

    #[test]
    fn credentials_round_trip_and_hash_apart() {
        let c = ClientId::new("c");
        let post = Credential::Post {
            client_id: "c".into(),
            secret: "s".into(),
        };
        let basic = Credential::Basic("s".into());
        for cred in [&post, &basic] {
            assert_eq!(
                Credential::from_bytes(cred.to_bytes().expose()).as_ref(),
                Some(cred)
            );
            assert!(format!("{cred:?}").contains("[redacted]"));
        }
        assert_ne!(post.hash_input(&c).expose(), basic.hash_input(&c).expose());
        assert_ne!(
            post.hash_input(&c).expose(),
            post.hash_input(&ClientId::new("d")).expose()
        );
    }

    #[test]
    fn the_poll_replays_the_credential() {
        let id = AuthReqId::new("id 1");
        let (body, h) = poll_request(
            &id,
            &Credential::Post {
                client_id: "c".into(),
                secret: "s&x".into(),
            },
        );
        assert_eq!(
            std::str::from_utf8(body.expose()).unwrap(),
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=id+1&client_id=c&client_secret=s%26x"
        );
        assert!(h.is_none());
        let (_, h) = poll_request(&id, &Credential::Basic("Yzpz".into()));
        assert_eq!(h.unwrap().expose(), "Basic Yzpz");
    }

    #[test]
    fn outcomes() {
        let e = |code: &str| serde_json::json!({ "error": code });
        assert_eq!(
            poll_outcome(400, &e("authorization_pending")),
            PollOutcome::Pending
        );
        assert_eq!(poll_outcome(400, &e("slow_down")), PollOutcome::SlowDown);
        for code in ["access_denied", "expired_token", "invalid_grant"] {
            assert_eq!(poll_outcome(400, &e(code)), PollOutcome::Terminal, "{code}");
        }
        assert_eq!(
            poll_outcome(401, &e("invalid_client")),
            PollOutcome::Terminal
        );
        assert_eq!(
            poll_outcome(200, &serde_json::json!({"access_token": "x"})),
            PollOutcome::Terminal
        );
        assert_eq!(poll_outcome(500, &e("server_error")), PollOutcome::Retry);
        assert_eq!(
            poll_outcome(503, &serde_json::json!({})),
            PollOutcome::Retry
        );
    }

    #[test]
    fn answers_round_trip() {
        let b = answer_bytes(400, br#"{"error":"access_denied"}"#);
        assert_eq!(
            answer_from_bytes(b.expose()),
            Some((400, &br#"{"error":"access_denied"}"#[..]))
        );
        assert_eq!(answer_from_bytes(b"x"), None);
    }
}
