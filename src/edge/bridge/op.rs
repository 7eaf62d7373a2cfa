//! The bridge's exchanges with the OP: its metadata (from discovery, fetched once and
//! kept), its signing keys (`jwks_uri`, kept five minutes, fetched again for an unknown
//! key at most every ten seconds), and form posts (PAR, the code exchange) authenticated
//! with the client's own credential.

use super::Bridge;
use crate::ciba::bridge::credential::Credential;
use crate::ciba::discovery::url_path;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::jwt::KeySet;
use crate::config::bridge::BridgeMode;
use crate::edge::op_client::{self, Answer};
use crate::edge::proxy::{failure_error, DISCOVERY_PATH};
use bytes::Bytes;
use pingora::http::RequestHeader;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the bridge needs from the OP's discovery document.
#[derive(Debug, Clone)]
pub(super) struct Metadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`, as the user's browser reaches it.
    pub authorization_endpoint: String,
    /// The path of `pushed_authorization_request_endpoint` (PAR mode).
    pub par_path: Option<String>,
    /// The path of `token_endpoint`.
    pub token_path: String,
    /// The path of `jwks_uri`.
    pub jwks_path: String,
}

/// The OP's signing keys and when they were fetched.
pub(super) struct Keys {
    set: KeySet,
    fetched: Instant,
}

/// Keys older than this are fetched again.
const KEYS_FRESH: Duration = Duration::from_secs(300);
/// An unknown key fetches the set again at most this often.
const KEYS_REFETCH: Duration = Duration::from_secs(10);

impl Bridge {
    /// The OP's metadata, fetched on first use (and again after a failure).
    pub(super) async fn metadata(&self) -> Result<Arc<Metadata>, OAuthError> {
        if let Some(m) = self.metadata.load_full() {
            return Ok(m);
        }
        let answer = self.get(DISCOVERY_PATH, true).await?;
        let m = Arc::new(parse_metadata(&answer.body, self.settings.mode)?);
        self.metadata.store(Some(m.clone()));
        Ok(m)
    }

    /// The OP's signing keys; `again` when the cached set verified nothing.
    pub(super) async fn keys(&self, again: bool) -> Result<KeySet, OAuthError> {
        if let Some(k) = self.keys.load_full() {
            let age = k.fetched.elapsed();
            if age < KEYS_FRESH && (!again || age < KEYS_REFETCH) {
                return Ok(k.set.clone());
            }
        }
        let m = self.metadata().await?;
        let answer = self.get(&m.jwks_path, false).await?;
        if answer.status != 200 {
            return Err(op_fault(
                "the OpenID Provider's jwks_uri did not answer 200",
            ));
        }
        let set = KeySet::from_published_jwks(&answer.body)
            .ok_or_else(|| op_fault("the OpenID Provider's jwks_uri is not a JWK Set"))?;
        self.keys.store(Some(Arc::new(Keys {
            set: set.clone(),
            fetched: Instant::now(),
        })));
        Ok(set)
    }

    /// A GET on the OP; `base` prefixes `upstream.base_path` (the discovery path).
    async fn get(&self, path: &str, base: bool) -> Result<Answer, OAuthError> {
        let up = &self.cfg.upstream;
        let req = if base {
            op_client::get_request(up, path)
        } else {
            op_client::get_request(
                &crate::config::OpSettings {
                    base_path: String::new(),
                    ..up.clone()
                },
                path,
            )
        }
        .map_err(|_| op_fault("the gateway could not build its request to the OpenID Provider"))?;
        self.send(req, Bytes::new()).await
    }

    /// Posts `pairs` to the OP's `path`, authenticated as `credential` says (HTTP Basic,
    /// or `client_id` and `client_secret` in the form).
    pub(super) async fn post_form(
        &self,
        path: &str,
        mut pairs: Vec<(&'static str, String)>,
        credential: &Credential,
    ) -> Result<Answer, OAuthError> {
        let up = &self.cfg.upstream;
        let mut basic = None;
        match credential {
            Credential::Post { client_id, secret } => {
                if !pairs.iter().any(|(k, _)| *k == "client_id") {
                    pairs.push(("client_id", client_id.clone()));
                }
                pairs.push(("client_secret", secret.clone()));
            }
            Credential::Basic(b64) => basic = Some(b64.as_str()),
        }
        let body = crate::ciba::bridge::par::encode(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let build = || -> Result<RequestHeader, Box<pingora::Error>> {
            let mut req = RequestHeader::build("POST", path.as_bytes(), Some(6))?;
            req.insert_header("host", up.authority())?;
            req.insert_header("content-type", "application/x-www-form-urlencoded")?;
            req.insert_header("content-length", body.len().to_string())?;
            req.insert_header("accept", "application/json")?;
            req.insert_header(
                "user-agent",
                concat!("ciba-gateway/", env!("CARGO_PKG_VERSION")),
            )?;
            if let Some(b) = basic {
                let mut v = http::HeaderValue::from_str(&format!("Basic {b}"))
                    .map_err(|_| pingora::Error::new(pingora::ErrorType::InvalidHTTPHeader))?;
                v.set_sensitive(true);
                req.insert_header("authorization", v)?;
            }
            Ok(req)
        };
        let req = build().map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the client's credential cannot be sent on",
            )
        })?;
        self.send(req, Bytes::from(body)).await
    }

    async fn send(&self, req: RequestHeader, body: Bytes) -> Result<Answer, OAuthError> {
        let peer = self
            .op
            .peer()
            .ok_or_else(|| failure_error(op_client::Failure::Connect))?;
        Box::pin(op_client::exchange(
            &self.connector,
            &peer,
            req,
            body,
            op_client::deadline(&self.cfg.upstream),
        ))
        .await
        .map_err(failure_error)
    }
}

/// Reads the metadata the bridge needs; PAR mode needs the PAR endpoint.
fn parse_metadata(doc: &[u8], mode: BridgeMode) -> Result<Metadata, OAuthError> {
    let v: Value = serde_json::from_slice(doc)
        .map_err(|_| op_fault("the OpenID Provider's discovery document is not JSON"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let path = |k: &str| s(k).and_then(url_path);
    let (Some(issuer), Some(authorization_endpoint), Some(token_path), Some(jwks_path)) = (
        s("issuer"),
        s("authorization_endpoint"),
        path("token_endpoint"),
        path("jwks_uri"),
    ) else {
        return Err(op_fault(
            "the OpenID Provider's discovery document lacks issuer, authorization_endpoint, token_endpoint or jwks_uri",
        ));
    };
    let par_path = path("pushed_authorization_request_endpoint");
    if mode == BridgeMode::Par && par_path.is_none() {
        return Err(op_fault(
            "the OpenID Provider publishes no pushed_authorization_request_endpoint; set bridge.mode = \"plain\"",
        ));
    }
    Ok(Metadata {
        issuer: issuer.into(),
        authorization_endpoint: authorization_endpoint.into(),
        par_path,
        token_path,
        jwks_path,
    })
}

/// A `server_error` about the OP.
pub(super) fn op_fault(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, why).with_reason(crate::ciba::bridge::REASON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_needs_the_par_endpoint_in_par_mode() {
        let doc = br#"{"issuer":"https://op","authorization_endpoint":"https://op/auth","token_endpoint":"http://op.internal/token","jwks_uri":"https://op/jwks"}"#;
        assert!(parse_metadata(doc, BridgeMode::Par).is_err());
        let m = parse_metadata(doc, BridgeMode::Plain).unwrap();
        assert_eq!(
            (m.token_path.as_str(), m.jwks_path.as_str()),
            ("/token", "/jwks")
        );
        assert!(parse_metadata(b"{}", BridgeMode::Plain).is_err());
    }
}
