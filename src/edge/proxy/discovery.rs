//! The metadata documents, served rewritten: OpenID Connect Discovery (always) and RFC 8414
//! authorization server metadata (when the OP publishes it), fetched from the OP on every
//! request so that neither shows a client the OP's internal URLs.

use super::answer::{failure_error, relay_headers, write_json};
use super::{Count, Gateway, RequestCtx, Stop};
use crate::ciba::discovery::{self, Endpoints};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::routing::Target;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

/// The well-known discovery path (OpenID Connect Discovery 1.0, section 4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// The well-known authorization server metadata path (RFC 8414, section 3).
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The metadata documents the gateway serves rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// OpenID Connect Discovery 1.0; the OP must publish it.
    OpenId,
    /// OAuth 2.0 Authorization Server Metadata (RFC 8414); served when the OP publishes it.
    OAuth,
}

impl Document {
    /// The routing target of its path.
    pub fn target(self) -> Target {
        match self {
            Document::OpenId => Target::Discovery,
            Document::OAuth => Target::Metadata,
        }
    }
}

impl Gateway {
    /// Fetches `doc` from the OP, rewrites it for the gateway's public URL and writes it.
    pub(super) async fn discovery_steps(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoints: &Endpoints,
        doc: Document,
    ) -> Result<(), Stop> {
        let live = self.live(ctx);
        let public_base = match &live.cfg.public_url {
            Some(u) => u.clone(),
            None => derived_base(session.req_header(), live.cfg.tls.is_some()),
        };
        let request = self.upstream_request(session, ctx, 0)?;
        let again = |ctx: &RequestCtx| self.upstream_request(session, ctx, 0).ok();
        let answer = self
            .exchange(ctx, request, again, Bytes::new())
            .await
            .map_err(failure_error)?;
        if answer.status == 404 && doc == Document::OAuth {
            // Optional metadata the OP does not publish.
            return Err(OAuthError::invalid_request(
                "the OpenID Provider publishes no such document",
            )
            .with_status(404)
            .into());
        }
        if answer.status != 200 {
            return Err(OAuthError::new(
                ErrorCode::ServerError,
                format!(
                    "the OpenID Provider answered the discovery request with status {}",
                    answer.status
                ),
            )
            .into());
        }
        let profile = &live.cfg.profile;
        let public_path = |p: &str| profile.to_public_path(p).into_owned();
        let modes: &[&str] = if live.cfg.ping.is_some() {
            &["ping"]
        } else {
            &[]
        };
        let body = discovery::rewrite_with_modes(
            &answer.body,
            &public_base,
            endpoints,
            &public_path,
            modes,
        )
        .map_err(|why| {
            Stop::Refuse(
                OAuthError::new(ErrorCode::ServerError, why),
                Count::BadAnswer,
            )
        })?;
        let body = self.fapi_metadata(&live, body);
        let mut h = relay_headers(&answer);
        // The document differs per public URL, so a shared cache must not mix them.
        h.insert(http::header::VARY, http::HeaderValue::from_static("host"));
        write_json(session, answer.status, h, body.into()).await?;
        Ok(())
    }
}

/// The public base URL when none is configured: the request's own `Host` (HTTP/2's
/// `:authority` when it sent none), over https when the listener speaks TLS, else http.
pub(super) fn derived_base(req: &RequestHeader, tls: bool) -> String {
    let host = super::header_str(req, http::header::HOST)
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}
