//! The demo OP in authorization-code mode, for `ciba-gateway demo --bridge`: an OP with no
//! CIBA at all, as the PAR bridge meets one. Discovery, a pushed authorization request
//! endpoint (RFC 9126), an authorization endpoint with an approve and a deny link, a token
//! endpoint that checks PKCE (S256) and issues an ES256-signed ID token, and its JWKS.
//!
//! A demo, not an OP for users: anyone who opens the link approves as the `login_hint`,
//! and the approve link is a GET. Its issuer is its own URL, which the user's browser
//! opens directly.

use super::op::{authenticate, basic_credentials, error, DEMO_CLIENT_ID};
use crate::ciba::bridge::page::escape;
use crate::ciba::bridge::pkce;
use crate::ciba::form::Form;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a pushed request and a code live.
const LIFETIME: Duration = Duration::from_secs(600);

struct Pushed {
    params: HashMap<String, String>,
    expires: Instant,
}

struct Code {
    redirect_uri: String,
    challenge: String,
    nonce: String,
    subject: String,
    expires: Instant,
}

/// The demo OP with the authorization code flow only.
pub struct CodeOp {
    issuer: String,
    callback_path: String,
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    // std Mutex, not tokio's: nothing is awaited while either is held.
    pushed: Mutex<HashMap<String, Pushed>>,
    codes: Mutex<HashMap<String, Code>>,
}

impl CodeOp {
    /// An OP at `issuer` that redirects only to a URL whose path is `callback_path`.
    pub fn new(issuer: &str, callback_path: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the operating system's random source works");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a generated key parses");
        let mut kid = [0u8; 6];
        rng.fill(&mut kid).expect("random");
        CodeOp {
            issuer: issuer.trim_end_matches('/').to_string(),
            callback_path: callback_path.to_string(),
            key,
            kid: URL_SAFE_NO_PAD.encode(kid),
            rng,
            pushed: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
        }
    }

    fn handle(&self) -> String {
        let mut b = [0u8; 32];
        self.rng.fill(&mut b).expect("random");
        pkce::encode(&b)
    }

    fn discovery(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "pushed_authorization_request_endpoint": format!("{i}/par"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/jwks"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        })
    }

    fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
    }

    fn par(&self, form: &Form, basic: Option<(String, String)>) -> (u16, Value) {
        if let Err(e) = authenticate(form, basic) {
            return e;
        }
        let params: HashMap<String, String> = form
            .pairs()
            .filter(|(k, _)| !matches!(*k, "client_secret"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let path_ok = params
            .get("redirect_uri")
            .and_then(|u| u.parse::<http::Uri>().ok())
            .is_some_and(|u| u.path() == self.callback_path);
        if !path_ok {
            return error(400, "invalid_redirect_uri", "not the gateway's callback");
        }
        if params.get("response_type").map(String::as_str) != Some("code")
            || params.get("code_challenge_method").map(String::as_str) != Some("S256")
            || !params.contains_key("code_challenge")
        {
            return error(
                400,
                "invalid_request",
                "response_type=code with PKCE S256 only",
            );
        }
        let uri = format!("urn:ietf:params:oauth:request_uri:{}", self.handle());
        let now = Instant::now();
        let mut pushed = self.pushed.lock().expect("demo lock");
        pushed.retain(|_, p| p.expires > now);
        pushed.insert(
            uri.clone(),
            Pushed {
                params,
                expires: now + LIFETIME,
            },
        );
        (
            201,
            json!({"request_uri": uri, "expires_in": LIFETIME.as_secs()}),
        )
    }

    /// `/authorize`: the page with the two links, or (with `decision`) the redirect.
    fn authorize(&self, query: &str) -> Response<Vec<u8>> {
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let Some(uri) = q.get("request_uri") else {
            return html(400, "<p>request_uri is missing</p>");
        };
        let decision = q.get("decision").map(String::as_str);
        let mut pushed = self.pushed.lock().expect("demo lock");
        let Some(p) = pushed.get(uri).filter(|p| p.expires > Instant::now()) else {
            return html(400, "<p>This link is not valid (used or expired).</p>");
        };
        let hint = p
            .params
            .get("login_hint")
            .cloned()
            .unwrap_or_else(|| "alice".into());
        let Some(decision) = decision else {
            let base = format!(
                "{}/authorize?{}",
                self.issuer,
                crate::ciba::bridge::par::encode([
                    ("client_id", DEMO_CLIENT_ID),
                    ("request_uri", uri.as_str())
                ])
            );
            let body = format!(
                "<h1>Demo OP</h1><p>Sign in as <b>{}</b>?</p>\
                 <p><a href=\"{}&amp;decision=approve\">Approve</a> \
                 <a href=\"{}&amp;decision=deny\">Deny</a></p>",
                escape(&hint),
                escape(&base),
                escape(&base)
            );
            return html(200, &body);
        };
        let p = pushed.remove(uri).expect("present above");
        drop(pushed);
        let get = |k: &str| p.params.get(k).cloned().unwrap_or_default();
        let redirect = get("redirect_uri");
        let state = get("state");
        let mut pairs = vec![("state", state.clone()), ("iss", self.issuer.clone())];
        if decision == "approve" {
            let code = self.handle();
            self.codes.lock().expect("demo lock").insert(
                code.clone(),
                Code {
                    redirect_uri: redirect.clone(),
                    challenge: get("code_challenge"),
                    nonce: get("nonce"),
                    subject: hint,
                    expires: Instant::now() + Duration::from_secs(60),
                },
            );
            pairs.insert(0, ("code", code));
        } else {
            pairs.insert(0, ("error", "access_denied".into()));
        }
        let location = crate::ciba::bridge::par::with_query(
            &redirect,
            &crate::ciba::bridge::par::encode(pairs.iter().map(|(k, v)| (*k, v.as_str()))),
        );
        Response::builder()
            .status(303)
            .header("location", location)
            .header("content-length", 0)
            .header("cache-control", "no-store")
            .body(Vec::new())
            .expect("a valid response")
    }

    fn token(&self, form: &Form, basic: Option<(String, String)>) -> (u16, Value) {
        if let Err(e) = authenticate(form, basic) {
            return e;
        }
        if form.get("grant_type") != Some("authorization_code") {
            return error(400, "unsupported_grant_type", "authorization_code only");
        }
        let code = form.get("code").unwrap_or("");
        let Some(c) = self.codes.lock().expect("demo lock").remove(code) else {
            return error(400, "invalid_grant", "unknown or used code");
        };
        let verifier = form.get("code_verifier").unwrap_or("");
        if c.expires <= Instant::now()
            || form.get("redirect_uri") != Some(c.redirect_uri.as_str())
            || pkce::challenge(verifier) != c.challenge
        {
            return error(400, "invalid_grant", "code, redirect_uri or code_verifier");
        }
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "ES256", "typ": "JWT", "kid": self.kid})),
            b64(json!({
                "iss": self.issuer, "sub": c.subject, "aud": DEMO_CLIENT_ID,
                "nonce": c.nonce, "iat": iat, "exp": iat + 3600,
            }))
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("signing works");
        (
            200,
            json!({
                "access_token": self.handle(),
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
                "scope": "openid",
            }),
        )
    }
}

fn html(status: u16, body: &str) -> Response<Vec<u8>> {
    let doc = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo OP</title></head><body>{body}</body></html>"
    )
    .into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-length", doc.len())
        .header("cache-control", "no-store")
        .body(doc)
        .expect("a valid response")
}

fn json_response(status: u16, value: &Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(value).expect("json values serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("content-length", bytes.len())
        .header("cache-control", "no-store")
        .body(bytes)
        .expect("a valid response")
}

#[async_trait]
impl ServeHttp for CodeOp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > 64 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let post = session.req_header().method == http::Method::POST;
        let basic = basic_credentials(session);
        let (status, value) = match (path.as_str(), post) {
            ("/.well-known/openid-configuration", false) => (200, self.discovery()),
            ("/jwks", false) => (200, self.jwks()),
            ("/authorize", false) => return self.authorize(&query),
            ("/par", true) | ("/token", true) => match Form::parse(&body) {
                Err(e) => error(400, "invalid_request", &e.description),
                Ok(form) if path == "/par" => self.par(&form, basic),
                Ok(form) => self.token(&form, basic),
            },
            _ => error(404, "not_found", "no such endpoint on the demo OP"),
        };
        json_response(status, &value)
    }
}
