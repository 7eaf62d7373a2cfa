//! Writing the gateway's own answers: JSON errors, relayed OP answers, their headers.

use super::names::is_hop_by_hop;
use super::numbers::decimal;
use super::{GatewayState, RequestCtx};
use crate::ciba::challenge::{challenge, FALLBACK_REALM};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::edge::op_client::{Answer, Failure};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, PRAGMA,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Answers with an OAuth error and records it for the access log; `Ok(true)` for
/// `request_filter` (answered).
pub(super) async fn answer_error(
    gw: &GatewayState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: OAuthError,
) -> Result<bool> {
    ctx.tally.local_error = Some(e.code);
    if !session.is_body_done() {
        // Answered before the whole body was read (413, 405, 429, a refused framing): what
        // is left on the connection is not a request, so it cannot be reused.
        session.set_keepalive(None);
    }
    let mut headers = err_headers(&e);
    if e.code == ErrorCode::InvalidClient {
        // Read as bytes: a header that is not visible ASCII is itself an `invalid_client`
        // (`check_request`), and the client still attempted the header.
        let authorization = session
            .req_header()
            .headers
            .get(AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        if let Some(value) = challenge(&e, authorization.as_deref(), &gw.realm(ctx)) {
            // Built from a token and quoted strings of visible ASCII only.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(WWW_AUTHENTICATE, value);
                e.status = 401;
            }
        }
    }
    // Boxed so that every caller's future does not carry pingora's response writer.
    Box::pin(write_json(session, e.status, headers, e.to_json().into())).await?;
    Ok(true)
}

impl GatewayState {
    /// The realm of the gateway's challenges: the OP's issuer when the gateway knows it
    /// (`fapi.issuer`, else discovery's), which is the realm node-oidc-provider names.
    fn realm(&self, ctx: &RequestCtx) -> String {
        self.live(ctx)
            .cfg
            .fapi
            .issuer
            .clone()
            .or_else(|| self.op.op_names.get().map(|n| n.issuer.clone()))
            .unwrap_or_else(|| FALLBACK_REALM.to_string())
    }
}

// The gateway's own answers are built as `http` header maps and handed to pingora without
// its case map: pingora's own insert turns every name into a case-preserving copy and
// parses it back, per header, where a map insert of a known name is a hash. pingora writes
// such a header with the usual capitals for the common names (`Content-Type`,
// `Cache-Control`) and in lower case otherwise, as HTTP/2 always does: names are
// case-insensitive (RFC 9110 5.1).

/// The headers of an OAuth error: no caching, its `Retry-After`.
pub(super) fn err_headers(e: &OAuthError) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(6);
    no_store(&mut h);
    if let Some(s) = e.retry_after {
        h.insert(RETRY_AFTER, decimal(s));
    }
    h
}

/// CIBA answers carry tokens or their errors: no cache may keep them (RFC 6749 5.1).
pub(super) fn no_store(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Writes a complete JSON answer with its status and length.
pub(super) async fn write_json(
    session: &mut Session,
    status: u16,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<()> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, decimal(body.len() as u64));
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(status)
        .explain_err(ErrorType::InternalError, |_| "invalid status of an answer")?;
    parts.headers = headers;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(ResponseHeader::from(parts)), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The OP's end-to-end headers, for relaying its answer.
pub(super) fn relay_headers(answer: &Answer) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(answer.headers.len() + 4);
    for (name, value) in answer.headers.iter() {
        if !is_hop_by_hop(name) && name != CONTENT_TYPE {
            // At most as many fields as the OP's own map holds: no overflow.
            h.append(name.clone(), value.clone());
        }
    }
    h
}

/// The error a client sees when the OP could not be reached or answered badly.
pub fn failure_error(f: Failure) -> OAuthError {
    match f {
        Failure::Connect => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the OpenID Provider cannot be reached",
        )
        .with_retry_after(5),
        Failure::Timeout => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the OpenID Provider did not answer in time",
        )
        .with_status(504),
        Failure::Reset => OAuthError::new(
            ErrorCode::ServerError,
            "the connection to the OpenID Provider broke",
        ),
        Failure::BadResponse => OAuthError::new(
            ErrorCode::ServerError,
            "the OpenID Provider sent an invalid answer",
        ),
    }
}
