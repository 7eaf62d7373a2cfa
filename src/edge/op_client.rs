//! The gateway's own exchanges with the OP: CIBA requests, the discovery document, and the
//! one place that builds the upstream peer with its timeouts.
//!
//! CIBA and discovery answers are small JSON documents that the gateway must read whole
//! before it can decide what the client sees (a status may change, a body is rewritten),
//! so these requests are not streamed through pingora's proxy loop: the gateway makes the
//! request itself over pingora's pooled connector and answers the client locally.
//!
//! pingora leaves every upstream timeout unset by default, so a stalled OP would hold a
//! request forever; every peer is built here with all of them set, and every exchange has
//! an overall deadline on top.

use crate::config::OpSettings;
use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::time::fast_timeout::fast_timeout;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use pingora::ErrorType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Largest answer read from the OP on a CIBA or discovery exchange.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// How long an idle pooled connection is kept.
///
/// Shorter than node's 5 s keep-alive default, so the gateway rarely picks a connection
/// the OP is about to close.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Builds the peer for the OP at `addr` (its host name already resolved) with connect, read
/// and write timeouts set.
///
/// The address is resolved by the caller: pingora would resolve a name here, once, and
/// panic when it does not resolve.
pub fn peer(upstream: &OpSettings, addr: SocketAddr) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, upstream.tls, upstream.host.clone());
    let o = &mut peer.options;
    o.connection_timeout = Some(upstream.connect_timeout);
    o.total_connection_timeout = Some(upstream.connect_timeout * 2);
    o.read_timeout = Some(upstream.read_timeout);
    o.write_timeout = Some(upstream.write_timeout);
    o.idle_timeout = Some(POOL_IDLE);
    o.verify_cert = upstream.tls_verify;
    o.verify_hostname = upstream.tls_verify;
    // pingora's connector trusts a peer's own CA list instead of the system roots, and
    // presents a peer's certificate when the OP asks for one.
    if let Some(roots) = &upstream.tls_files.roots {
        let ca: Vec<WrappedX509> = roots
            .iter()
            .map(|der| WrappedX509::new(der.clone(), parse_x509))
            .collect();
        o.ca = Some(Arc::from(ca.into_boxed_slice()));
    }
    if let Some((chain, key)) = &upstream.tls_files.client {
        peer.client_cert_key = Some(Arc::new(CertKey::new(chain.clone(), key.clone())));
    }
    peer
}

/// The overall deadline of one exchange: connecting plus waiting for the whole answer.
pub fn deadline(upstream: &OpSettings) -> Duration {
    upstream.connect_timeout * 2 + upstream.read_timeout
}

/// HTTP/1.1 connections to the OP, pooled. The OP is spoken to in HTTP/1.1 only (the peer
/// offers no other ALPN), so the one-protocol connector serves, and its pool lookup is a
/// small future of its own (see `attempt`).
pub type Connector = pingora::connectors::http::v1::Connector;

/// Why an exchange with the OP failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect (refused, unreachable, TLS handshake failed).
    Connect,
    /// Connect, read, write or the overall deadline ran out.
    Timeout,
    /// The connection broke mid-exchange.
    Reset,
    /// The OP's answer was not valid HTTP, or larger than [`MAX_ANSWER`].
    BadResponse,
}

impl Failure {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
            Failure::BadResponse => "bad_response",
        }
    }

    /// Classifies a pingora error.
    pub fn from_error_type(t: &ErrorType) -> Failure {
        match t {
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout => Failure::Timeout,
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure
            | ErrorType::TLSWantX509Lookup
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::BindError
            | ErrorType::SocketError
            | ErrorType::ConnectProxyFailure => Failure::Connect,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                Failure::Reset
            }
            _ => Failure::BadResponse,
        }
    }
}

/// The OP's whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers as received.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The `Content-Type` header as text.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// Sends one request with a complete body and reads the whole answer, within the deadline.
///
/// A CIBA request is not idempotent: a second backchannel request wakes the user's device
/// twice. So a request goes to the OP at most once: it is retried on a fresh connection
/// only when a pooled connection failed before any byte of it was written (the OP closed
/// the idle connection and the header write itself failed). Once anything was written
/// (the OP may have read the request), a failure is final and the client gets a
/// `server_error` (see `failure_error` in the proxy); a fresh connection is never retried.
/// The discovery GET follows the same rule.
pub async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    request: RequestHeader,
    body: Bytes,
    deadline: Duration,
) -> Result<Answer, Failure> {
    let copy = request.clone();
    exchange_with(connector, peer, request, move || Some(copy), body, deadline).await
}

/// [`exchange`], with the request for a retry made by `again` only when one is needed, so
/// the common exchange (no retry) copies no request header. `None` from `again` ends the
/// exchange with the first try's failure.
pub async fn exchange_with(
    connector: &Connector,
    peer: &HttpPeer,
    request: RequestHeader,
    again: impl FnOnce() -> Option<RequestHeader> + Send,
    body: Bytes,
    deadline: Duration,
) -> Result<Answer, Failure> {
    let work = async {
        match attempt(connector, peer, request, &body).await {
            Err(failed) if failed.retryable() => match again() {
                Some(request) => attempt(connector, peer, request, &body)
                    .await
                    .map_err(|f| f.failure),
                None => Err(failed.failure),
            },
            other => other.map_err(|f| f.failure),
        }
    };
    // Boxed before the timer wraps it: `timeout` moves its future into itself, and this
    // one holds pingora's client session (KiB), so a pointer is cheaper to move. pingora's
    // shared timer wheel: a tokio timer armed while the OP answers wakes the runtime's own
    // driver through its eventfd, a write and an extra epoll event per exchange.
    match fast_timeout(deadline, Box::pin(work)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

/// How one try failed, and how far it got: what decides whether it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Why it failed.
    pub failure: Failure,
    /// The connection came from the pool rather than being opened for this try.
    pub reused: bool,
    /// Some of the request may have reached the OP: the header write completed, or a
    /// later step (body, answer) failed.
    pub written: bool,
}

impl Failed {
    /// Whether the request may be sent again on a fresh connection: only when a pooled
    /// connection broke before anything of the request was written, so the OP cannot
    /// have seen it.
    pub fn retryable(self) -> bool {
        self.reused && !self.written && self.failure == Failure::Reset
    }
}

/// One try on a pooled or a new connection.
async fn attempt(
    connector: &Connector,
    peer: &HttpPeer,
    request: RequestHeader,
    body: &[u8],
) -> Result<Answer, Failed> {
    let fail = |reused: bool, written: bool| {
        move |e: Box<pingora::Error>| Failed {
            failure: Failure::from_error_type(e.etype()),
            reused,
            written,
        }
    };
    let (mut session, reused) = match connector.reused_http_session(peer).await {
        Some(pooled) => (pooled, true),
        // Boxed: connecting (TCP, TLS) is about 9 KiB of future state, which inline would
        // be copied on every exchange, pooled or not.
        None => Box::pin(connector.get_http_session(peer))
            .await
            .map_err(fail(false, false))?,
    };
    // pingora's connector leaves the peer's read and write timeouts off the session (its
    // proxy sets them itself), so each read and write here would wait until the overall
    // deadline; set them as the peer says.
    session.read_timeout = peer.options.read_timeout;
    session.write_timeout = peer.options.write_timeout;
    if body.is_empty() {
        // A failed header write may still have put part of the header on the wire, but
        // never a whole one: the OP cannot have acted on it.
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(fail(reused, false))?;
        session.finish_body().await.map_err(fail(reused, true))?;
    } else {
        session = write_with_body(session, peer, &request, body)
            .await
            .map_err(|(failure, written)| Failed {
                failure,
                reused,
                written,
            })?;
    }
    let bad = Failed {
        failure: Failure::BadResponse,
        reused,
        written: true,
    };
    match read_final_response(&mut session).await {
        // A `101` switches protocols, which the gateway never asked for.
        Ok(101) | Err(None) => return Err(bad),
        Ok(_) => {}
        Err(Some(e)) => return Err(fail(reused, true)(e)),
    }
    let header = session.resp_header().ok_or(bad)?;
    let status = header.status.as_u16();
    let headers = header.headers.clone();
    let mut buf = BytesMut::new();
    while let Some(chunk) = session
        .read_body_bytes()
        .await
        .map_err(fail(reused, true))?
    {
        if buf.len() + chunk.len() > MAX_ANSWER {
            return Err(bad);
        }
        buf.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(session, peer, Some(POOL_IDLE))
        .await;
    Ok(Answer {
        status,
        headers,
        body: buf.freeze(),
    })
}

/// Interim (1xx) answers read before a final answer, at most (as pings always allowed).
const MAX_INTERIM: usize = 3;

/// Reads an answer's header past the interim ones (`100 Continue`, `103 Early Hints`: no
/// body, RFC 9110 15.2), which pingora's client hands back one by one; the final status
/// (a `101` counts as final). `Err(None)` after more than [`MAX_INTERIM`] interim answers or
/// without a header, `Err(Some(e))` when the read failed.
pub async fn read_final_response(
    session: &mut HttpSession,
) -> Result<u16, Option<Box<pingora::Error>>> {
    for _ in 0..=MAX_INTERIM {
        session.read_response().await.map_err(Some)?;
        let status = session.resp_header().ok_or(None)?.status.as_u16();
        if !(100..200).contains(&status) || status == 101 {
            return Ok(status);
        }
    }
    Err(None)
}

/// Writes a request with a body as one buffer, then hands back a session for the answer.
///
/// pingora's client writes and flushes the header, then the body: two sends, and the OP
/// may wake for a header whose body has not arrived. One buffer is one send, as nginx
/// sends a proxied request. Only for requests with a body (POSTs to the CIBA endpoints):
/// the session made for the answer has not seen the request, which matters only for a
/// HEAD (an answer without a body) or a request that asks to close (the gateway never
/// forwards `Connection`).
///
/// On failure, `written` says whether a whole header may have reached the OP (the rule
/// for a retry, as with pingora's header write): some bytes of the header alone never are.
async fn write_with_body(
    session: HttpSession,
    peer: &HttpPeer,
    request: &RequestHeader,
    body: &[u8],
) -> Result<HttpSession, (Failure, bool)> {
    let mut wire = http_req_header_to_wire(request).ok_or((Failure::BadResponse, false))?;
    let header_len = wire.len();
    wire.extend_from_slice(body);
    let mut stream = session.into_inner();
    let mut sent = 0;
    let write = async {
        while sent < wire.len() {
            match stream.write(&wire[sent..]).await {
                Ok(0) => return Err(Failure::Reset),
                Ok(n) => sent += n,
                Err(_) => return Err(Failure::Reset),
            }
        }
        stream.flush().await.map_err(|_| Failure::Reset)
    };
    let written = match peer.options.write_timeout {
        Some(t) => tokio::time::timeout(t, write)
            .await
            .unwrap_or(Err(Failure::Timeout)),
        None => write.await,
    };
    if let Err(f) = written {
        return Err((f, sent >= header_len));
    }
    let mut session = HttpSession::new_with_options(stream, peer);
    session.read_timeout = peer.options.read_timeout;
    session.write_timeout = peer.options.write_timeout;
    Ok(session)
}

/// Builds a GET for `path` (under the upstream's base path) with the OP's `Host`.
pub fn get_request(upstream: &OpSettings, path: &str) -> Result<RequestHeader, String> {
    let full_path = format!("{}{}", upstream.base_path, path);
    let mut req = RequestHeader::build("GET", full_path.as_bytes(), None)
        .map_err(|e| format!("cannot build request: {e}"))?;
    req.insert_header("host", upstream.authority())
        .and_then(|_| req.insert_header("accept", "application/json"))
        .and_then(|_| {
            req.insert_header(
                "user-agent",
                concat!("ciba-gateway/", env!("CARGO_PKG_VERSION")),
            )
        })
        .map_err(|e| format!("cannot build request: {e}"))?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pooled_connection_that_failed_before_writing_is_retried() {
        let all = [
            Failure::Connect,
            Failure::Timeout,
            Failure::Reset,
            Failure::BadResponse,
        ];
        for failure in all {
            for reused in [false, true] {
                for written in [false, true] {
                    let f = Failed {
                        failure,
                        reused,
                        written,
                    };
                    let want = failure == Failure::Reset && reused && !written;
                    assert_eq!(f.retryable(), want, "{f:?}");
                }
            }
        }
    }
}
