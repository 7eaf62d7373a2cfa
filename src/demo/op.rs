//! A small built-in OpenID Provider for `ciba-gateway demo` and for fault tests.
//!
//! It speaks just enough CIBA poll mode for a walkthrough: discovery, a backchannel
//! endpoint, a token endpoint and an empty JWKS. A simulated authentication device approves
//! each request a few seconds after it starts, and denies it when `login_hint` is `deny`.
//! It is not an OP to put in front of users: tokens are unsigned and there is no real user.
//!
//! Its issuer is the gateway's public URL, not its own address: clients only ever see it
//! through the gateway, whose rewritten discovery document keeps the OP's issuer, and an
//! OpenID client library checks that the issuer is the URL it discovered from.

use crate::ciba::discovery::CIBA_GRANT;
use crate::ciba::form::Form;
use async_trait::async_trait;
use base64::Engine;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The demo client's id.
pub const DEMO_CLIENT_ID: &str = "demo-client";
/// The demo client's secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";
/// The `login_hint` the simulated device refuses.
pub const DENY_HINT: &str = "deny";

/// Lifetime of a demo `auth_req_id`, in seconds.
pub const EXPIRES_IN: u64 = 120;

struct Pending {
    decided_at: Instant,
    expires_at: Instant,
    deny: bool,
    subject: String,
}

/// The demo OP.
pub struct DemoOp {
    issuer: String,
    approve_after: Duration,
    interval: Option<u64>,
    // std Mutex, not tokio's: nothing is awaited while it is held.
    pending: Mutex<HashMap<String, Pending>>,
}

impl DemoOp {
    /// A demo OP whose issuer is `issuer` and whose device answers after `approve_after`.
    pub fn new(issuer: &str, approve_after: Duration) -> Self {
        DemoOp {
            issuer: issuer.trim_end_matches('/').to_string(),
            approve_after,
            interval: None,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The same OP, announcing `interval` seconds in every acknowledgement (as many OPs do).
    pub fn announcing_interval(self, interval: Option<u64>) -> Self {
        DemoOp { interval, ..self }
    }

    fn discovery(&self) -> (u16, serde_json::Value) {
        let i = &self.issuer;
        (
            200,
            json!({
                "issuer": i,
                "token_endpoint": format!("{i}/token"),
                "backchannel_authentication_endpoint": format!("{i}/backchannel"),
                "jwks_uri": format!("{i}/jwks"),
                "grant_types_supported": [CIBA_GRANT],
                "scopes_supported": ["openid", "profile"],
                "backchannel_token_delivery_modes_supported": ["poll"],
                "backchannel_user_code_parameter_supported": false,
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                // Its ID tokens are unsigned; said here so a client library accepts them
                // (OpenID Connect allows `none` when, as in CIBA, no ID token comes from
                // the authorization endpoint).
                "id_token_signing_alg_values_supported": ["none"],
            }),
        )
    }

    fn backchannel(
        &self,
        form: &Form,
        basic: Option<(String, String)>,
    ) -> (u16, serde_json::Value) {
        if let Err(e) = authenticate(form, basic) {
            return e;
        }
        if !form
            .get("scope")
            .unwrap_or("")
            .split(' ')
            .any(|s| s == "openid")
        {
            return error(400, "invalid_scope", "scope must contain openid");
        }
        let Some(hint) = form.get("login_hint") else {
            return error(400, "invalid_request", "the demo OP needs login_hint");
        };
        let id: String = {
            let bytes: [u8; 24] = rand::thread_rng().gen();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("demo state lock");
        pending.retain(|_, p| p.expires_at > now);
        pending.insert(
            id.clone(),
            Pending {
                decided_at: now + self.approve_after,
                expires_at: now + Duration::from_secs(EXPIRES_IN),
                deny: hint == DENY_HINT,
                subject: hint.to_string(),
            },
        );
        // By default like node-oidc-provider: no `interval` in the acknowledgement.
        let mut ack = json!({"auth_req_id": id, "expires_in": EXPIRES_IN});
        if let Some(interval) = self.interval {
            ack["interval"] = json!(interval);
        }
        (200, ack)
    }

    fn token(&self, form: &Form, basic: Option<(String, String)>) -> (u16, serde_json::Value) {
        if let Err(e) = authenticate(form, basic) {
            return e;
        }
        if form.get("grant_type") != Some(CIBA_GRANT) {
            return error(400, "unsupported_grant_type", "the demo OP only does CIBA");
        }
        let Some(id) = form.get("auth_req_id") else {
            return error(400, "invalid_request", "auth_req_id is missing");
        };
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("demo state lock");
        let Some(p) = pending.get(id) else {
            return error(400, "invalid_grant", "unknown auth_req_id");
        };
        if now >= p.expires_at {
            pending.remove(id);
            return error(400, "expired_token", "the request has expired");
        }
        if now < p.decided_at {
            return error(
                400,
                "authorization_pending",
                "the user has not answered yet",
            );
        }
        let p = pending.remove(id).expect("present above");
        if p.deny {
            return error(400, "access_denied", "the user refused");
        }
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id_token = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(
                json!({"iss": self.issuer, "sub": p.subject, "aud": DEMO_CLIENT_ID, "iat": iat, "exp": iat + 3600})
            )
        );
        let access: [u8; 24] = rand::thread_rng().gen();
        (
            200,
            json!({
                "access_token": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(access),
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": id_token,
                "scope": "openid",
            }),
        )
    }
}

/// An OAuth error answer of the demo OPs.
pub(super) fn error(status: u16, code: &str, description: &str) -> (u16, serde_json::Value) {
    (
        status,
        json!({"error": code, "error_description": description}),
    )
}

/// Checks the demo client's credential, from HTTP Basic or the form.
pub(super) fn authenticate(
    form: &Form,
    basic: Option<(String, String)>,
) -> Result<(), (u16, serde_json::Value)> {
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            form.get("client_id").unwrap_or("").to_string(),
            form.get("client_secret").unwrap_or("").to_string(),
        ),
    };
    if id == DEMO_CLIENT_ID && secret == DEMO_CLIENT_SECRET {
        Ok(())
    } else {
        Err(error(
            401,
            "invalid_client",
            "unknown client or wrong secret",
        ))
    }
}

/// The client id and secret of an `Authorization: Basic` header.
pub(super) fn basic_credentials(session: &ServerSession) -> Option<(String, String)> {
    let h = session
        .req_header()
        .headers
        .get("authorization")?
        .to_str()
        .ok()?;
    let encoded = h.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

#[async_trait]
impl ServeHttp for DemoOp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > 64 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let path = session.req_header().uri.path().to_string();
        let post = session.req_header().method == http::Method::POST;
        let basic = basic_credentials(session);
        let (status, value) = match (path.as_str(), post) {
            ("/.well-known/openid-configuration", false) => self.discovery(),
            ("/jwks", false) => (200, json!({"keys": []})),
            ("/backchannel", true) | ("/token", true) => match Form::parse(&body) {
                Err(e) => error(400, "invalid_request", &e.description),
                Ok(form) if path == "/token" => self.token(&form, basic),
                Ok(form) => self.backchannel(&form, basic),
            },
            _ => error(404, "not_found", "no such endpoint on the demo OP"),
        };
        let bytes = serde_json::to_vec(&value).expect("json values serialize");
        Response::builder()
            .status(status)
            .header("content-type", "application/json; charset=utf-8")
            .header("content-length", bytes.len())
            .header("cache-control", "no-store")
            .body(bytes)
            .expect("static parts form a valid response")
    }
}
