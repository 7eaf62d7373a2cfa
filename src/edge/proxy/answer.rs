//! Writing the gateway's own answers: JSON errors, relayed OP answers, their headers.

use super::RequestCtx;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::edge::op_client::{Answer, Failure};
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus the ones the
/// gateway sets itself.
pub(super) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "host",
    "accept-encoding",
    "content-encoding",
];

/// Answers with an OAuth error and records it for the access log; `Ok(true)` for
/// `request_filter` (answered).
pub(super) async fn answer_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: OAuthError,
) -> Result<bool> {
    ctx.tally.local_error = Some(e.code);
    if !session.is_body_done() {
        // Answered before the whole body was read (413, 405, 429, a refused framing): what
        // is left on the connection is not a request, so it cannot be reused.
        session.set_keepalive(None);
    }
    // Boxed so that every caller's future does not carry pingora's response writer.
    Box::pin(write_json(session, err_response(&e), e.to_json().into())).await?;
    Ok(true)
}

/// The response header of an OAuth error: its status, no caching, its `Retry-After`.
pub(super) fn err_response(e: &OAuthError) -> ResponseHeader {
    let mut h = ResponseHeader::build(e.status, Some(4)).expect("a valid status code");
    no_store(&mut h).expect("static headers");
    if let Some(s) = e.retry_after {
        h.insert_header("retry-after", s.to_string())
            .expect("digits are a valid header");
    }
    h
}

/// CIBA answers carry tokens or their errors: no cache may keep them (RFC 6749 5.1).
pub(super) fn no_store(h: &mut ResponseHeader) -> Result<()> {
    h.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    h.insert_header(PRAGMA, HeaderValue::from_static("no-cache"))
}

/// Writes a complete JSON answer with its length.
pub(super) async fn write_json(
    session: &mut Session,
    mut h: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    h.insert_header(CONTENT_TYPE, HeaderValue::from_static("application/json"))?;
    h.set_content_length(body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The OP's status and end-to-end headers, for relaying its answer.
pub(super) fn relay_header(answer: &Answer) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(answer.status, Some(answer.headers.len()))?;
    for (name, value) in answer.headers.iter() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != http::header::CONTENT_TYPE {
            h.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(h)
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
