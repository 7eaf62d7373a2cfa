//! Fetching a client's JWK Set from its `jwks_uri`: one `GET`, SSRF-safe as the ping
//! notifier is (`notify.rs`): the URL checked before any lookup (`ciba/address.rs`), every
//! resolved address checked, the connection made to a checked address, no redirect
//! followed, the body capped (`fapi.jwks_max_bytes`), the keys counted
//! (`fapi.jwks_max_keys`), the whole fetch within `fapi.jwks_fetch_timeout_ms`. Logs name
//! the host and the outcome only.

use crate::ciba::address::{self, Host};
use crate::ciba::jwt::KeySet;
use crate::config::JwksLimits;
use bytes::BytesMut;
use jsonwebtoken::jwk::JwkSet;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;

/// Fetches JWK Sets; cheap to share.
pub struct JwksFetcher {
    connector: pingora::connectors::http::v1::Connector,
}

impl Default for JwksFetcher {
    fn default() -> Self {
        JwksFetcher {
            connector: pingora::connectors::http::v1::Connector::new(None),
        }
    }
}

impl std::fmt::Debug for JwksFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksFetcher")
    }
}

impl JwksFetcher {
    /// Fetches and parses the key set at `uri`; the error says why, without the body.
    pub async fn fetch(
        &self,
        uri: &str,
        allow_insecure: bool,
        limits: &JwksLimits,
    ) -> Result<KeySet, String> {
        let url: http::Uri = uri.parse().map_err(|_| "not a URL".to_string())?;
        let host = url.host().unwrap_or("").to_string();
        let result = match tokio::time::timeout(
            limits.timeout,
            Box::pin(self.fetch_inner(&url, allow_insecure, limits)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err("timed out".into()),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        crate::metrics::JWKS_FETCHES
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(keys) => tracing::info!(host, keys = keys.len(), "jwks_uri fetched"),
            Err(why) => tracing::warn!(host, why = why.as_str(), "jwks_uri fetch failed"),
        }
        result
    }

    async fn fetch_inner(
        &self,
        url: &http::Uri,
        allow_insecure: bool,
        limits: &JwksLimits,
    ) -> Result<KeySet, String> {
        let endpoint = address::endpoint(url, allow_insecure)
            .map_err(|r| format!("refused ({})", r.as_str()))?;
        let ips = match &endpoint.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => crate::edge::resolve::lookup(name.clone(), endpoint.port)
                .await
                .map_err(|_| "the host name did not resolve".to_string())?
                .into_iter()
                .map(|a| a.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Err("the host name did not resolve".into());
        }
        for ip in &ips {
            address::check(*ip, allow_insecure)
                .map_err(|r| format!("refused address ({})", r.as_str()))?;
        }
        let addr = SocketAddr::new(ips[0], endpoint.port);
        let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.server_name.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(limits.timeout);
        o.total_connection_timeout = Some(limits.timeout);
        o.read_timeout = Some(limits.timeout);
        o.write_timeout = Some(limits.timeout);
        o.verify_cert = true;
        o.verify_hostname = true;
        let (mut session, _) = Box::pin(self.connector.get_http_session(&peer))
            .await
            .map_err(|_| "could not connect".to_string())?;
        session.read_timeout = Some(limits.timeout);
        session.write_timeout = Some(limits.timeout);
        let mut req = RequestHeader::build("GET", endpoint.path.as_bytes(), Some(4))
            .map_err(|_| "bad request target".to_string())?;
        let _ = req.insert_header("host", endpoint.authority.as_str());
        let _ = req.insert_header("accept", "application/jwk-set+json, application/json");
        let _ = req.insert_header("connection", "close");
        let _ = req.insert_header(
            "user-agent",
            concat!("ciba-gateway/", env!("CARGO_PKG_VERSION")),
        );
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|_| "could not send".to_string())?;
        session
            .finish_body()
            .await
            .map_err(|_| "could not send".to_string())?;
        let status = crate::edge::op_client::read_final_response(&mut session)
            .await
            .map_err(|_| "no answer".to_string())?;
        if status != 200 {
            return Err(format!("status {status}"));
        }
        let declared = session
            .resp_header()
            .and_then(|h| h.headers.get("content-length"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limits.max_bytes) {
            return Err("the document is larger than fapi.jwks_max_bytes".into());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_body_bytes()
            .await
            .map_err(|_| "the body could not be read".to_string())?
        {
            if body.len() + chunk.len() > limits.max_bytes {
                return Err("the document is larger than fapi.jwks_max_bytes".into());
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body, limits.max_keys)
    }
}

/// A JWK Set document with at most `max_keys` keys, as signing keys.
pub fn parse(body: &[u8], max_keys: usize) -> Result<KeySet, String> {
    // Count before building keys: a document of a thousand RSA keys costs nothing to refuse.
    let raw: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "not JSON".to_string())?;
    let n = raw
        .get("keys")
        .and_then(|k| k.as_array())
        .map(Vec::len)
        .ok_or("not a JWK Set")?;
    if n > max_keys {
        return Err("more keys than fapi.jwks_max_keys".into());
    }
    let set: JwkSet = serde_json::from_value(raw).map_err(|_| "not a JWK Set".to_string())?;
    KeySet::from_jwk_set(&set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = include_str!("../../tests/data/fapi/client-a.jwks.json");

    #[test]
    fn documents_are_counted_before_keys_are_built() {
        assert_eq!(parse(JWKS.as_bytes(), 2).unwrap().len(), 2);
        assert!(parse(JWKS.as_bytes(), 1)
            .unwrap_err()
            .contains("jwks_max_keys"));
        for bad in [
            &b"<html>"[..],
            b"{}",
            br#"{"keys":{}}"#,
            br#"{"keys":[{"kty":"nope"}]}"#,
        ] {
            assert!(parse(bad, 5).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Encryption and symmetric keys are not signing keys.
        let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        set["keys"][0]["use"] = "enc".into();
        set["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert_eq!(parse(set.to_string().as_bytes(), 5).unwrap().len(), 1);
    }
}
