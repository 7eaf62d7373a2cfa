//! A passed-through request body over HTTP/2, read whole within the body deadline.
//!
//! Over HTTP/1 pingora's per-read timeout (`server.client_body_timeout_seconds`) bounds a
//! passed-through body; pingora has no read timeout for an HTTP/2 stream, so a client
//! sending DATA slowly would hold a stream and an upstream connection as long as it
//! likes. So over HTTP/2 the gateway reads such a body itself, whole, within the
//! deadline and up to the most pingora can replay to the OP (its retry buffer, which
//! forwards it), as it does on the CIBA endpoints.

use super::ciba::read_body;
use crate::ciba::error::OAuthError;
use crate::config::MAX_BODY_LIMIT;
use pingora::proxy::Session;
use std::time::Duration;

/// For an HTTP/2 request with a body: reads it whole into the buffer pingora forwards.
pub(super) async fn read_whole(
    session: &mut Session,
    deadline: Duration,
) -> Result<(), OAuthError> {
    if !session.is_http2() || session.is_body_empty() {
        return Ok(());
    }
    session.enable_retry_buffering();
    read_body(session, MAX_BODY_LIMIT, deadline)
        .await
        .map(|_| ())
}
