//! HTTP/2 connections (ALPN `h2` on the TLS listener), served by the edge guard with the
//! limits an HTTP/1 connection has.
//!
//! pingora's blanket `ServerApp` impl would run its own HTTP/2 accept loop, with no idle
//! bound on a connection unless asked, no deadline for the first request, and its
//! default header-list and stream limits. The guard runs this loop instead:
//!
//! - the h2 handshake (the client's preface and SETTINGS) and the first request's header
//!   within `server.client_header_timeout_seconds`;
//! - SETTINGS_MAX_HEADER_LIST_SIZE from `server.max_header_bytes`, and at most
//!   `server.tls.max_concurrent_streams` streams at once;
//! - a connection with no stream open for `server.keepalive_timeout_seconds` is closed;
//! - each request's header is checked ([`check`]) before pingora's proxy sees it, with
//!   the rules `header_check` applies to HTTP/1 (framing, authority, CONNECT); refused
//!   ones get the JSON error on their stream and never reach the OP;
//! - more than [`MAX_REFUSED`] refused streams end the connection.
//!
//! The h2 codec itself refuses connection-specific fields (`Connection`,
//! `Transfer-Encoding`, `Keep-Alive`, `Upgrade`, `TE` other than `trailers`) and DATA
//! that does not add up to `Content-Length` (a stream error the proxy sees as a failed
//! body read); pingora refuses conflicting `Content-Length`s and `:authority`/`Host`
//! conflicts. [`check`] repeats the first ones so that no rule depends on a
//! dependency's version alone.

use crate::ciba::error::OAuthError;
use crate::metrics;
use bytes::Bytes;
use pingora::apps::HttpServerApp;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v2::server::{handshake, H2Accept, H2Options, HttpSession};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Refused streams after which a connection is closed (pingora's own budget is 32).
pub const MAX_REFUSED: usize = 16;

/// What an HTTP/2 connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct H2Limits {
    /// Deadline for the h2 handshake and for the first request's header.
    pub header_timeout: Duration,
    /// A connection without an open stream for this long is closed.
    pub idle_timeout: Duration,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_bytes: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
}

/// Serves one HTTP/2 connection to its end, and returns only once every stream it started
/// has ended: the caller's connection permit covers the requests, as on HTTP/1, even when
/// the client went away while the gateway still waits on the OP for them.
pub async fn serve<A>(app: &Arc<A>, stream: Stream, limits: H2Limits, shutdown: &ShutdownWatch)
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let active = Arc::new(Active::default());
    accept(app, stream, limits, shutdown, &active).await;
    active.drained().await;
}

/// The accept loop: dispatches each stream to a task counted in `active`.
async fn accept<A>(
    app: &Arc<A>,
    stream: Stream,
    limits: H2Limits,
    shutdown: &ShutdownWatch,
    active: &Arc<Active>,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    let digest = Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });
    let mut options = H2Options::new();
    options
        .max_header_list_size(limits.max_header_bytes)
        .max_concurrent_streams(limits.max_concurrent_streams)
        // Fewer resets a client may provoke or send before the connection is closed
        // (the "rapid reset" and "made you reset" floods).
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(64));
    let started = tokio::time::Instant::now();
    let mut conn =
        match tokio::time::timeout(limits.header_timeout, handshake(stream, Some(options))).await {
            Ok(Ok(c)) => c,
            Ok(Err(_)) => return,
            Err(_) => {
                metrics::CONNECTIONS_REFUSED
                    .with_label_values(&["header_timeout"])
                    .inc();
                return;
            }
        };
    let mut first = true;
    let mut refused = 0usize;
    let mut shutdown_watch = shutdown.clone();
    let mut draining = false;
    loop {
        // The first request's header has a deadline from the connection's start; later,
        // a connection without open streams is idle and bounded by the keep-alive time.
        let idle_bound = if first {
            limits.header_timeout.saturating_sub(started.elapsed())
        } else {
            limits.idle_timeout
        };
        let next = tokio::select! {
            biased;
            _ = shutdown_watch.changed(), if !draining => {
                conn.graceful_shutdown();
                draining = true;
                continue;
            }
            n = HttpSession::from_h2_conn(&mut conn, digest.clone()) => n,
            _ = active.idle_for(idle_bound) => {
                if first {
                    metrics::CONNECTIONS_REFUSED
                        .with_label_values(&["header_timeout"])
                        .inc();
                }
                return;
            }
        };
        let session = match next {
            Err(_) | Ok(None) => return,
            Ok(Some(H2Accept::Rejected)) => {
                refused += 1;
                if refused >= MAX_REFUSED {
                    return;
                }
                continue;
            }
            Ok(Some(H2Accept::Session(s))) => s,
        };
        first = false;
        let mut session = session;
        if let Some(e) = check(session.req_header()) {
            metrics::CONNECTIONS_REFUSED
                .with_label_values(&["malformed_header"])
                .inc();
            let _ = answer(&mut session, &e).await;
            refused += 1;
            if refused >= MAX_REFUSED {
                return;
            }
            continue;
        }
        let app = app.clone();
        let shutdown = shutdown.clone();
        let open = active.open();
        tokio::spawn(async move {
            // Held as long as the request is served, so the connection is not idle.
            let _open = open;
            app.process_new_http(ServerSession::new_http2(session), &shutdown)
                .await;
        });
    }
}

/// The HTTP/2 counterpart of `header_check`: what the gateway refuses in a request's
/// header before the proxy sees it.
pub fn check(req: &RequestHeader) -> Option<OAuthError> {
    if req.method == http::Method::CONNECT {
        return Some(OAuthError::invalid_request("CONNECT is not served here").with_status(405));
    }
    let h = &req.headers;
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        if h.contains_key(name) {
            return Some(OAuthError::invalid_request(
                "a connection-specific header field is not allowed in HTTP/2",
            ));
        }
    }
    if h.get_all(http::header::TE).iter().any(|v| v != "trailers") {
        return Some(OAuthError::invalid_request(
            "TE other than trailers is not allowed in HTTP/2",
        ));
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.next().is_some() {
            return Some(OAuthError::invalid_request(
                "Content-Length is sent more than once",
            ));
        }
        let v = first.as_bytes();
        if !((1..=19).contains(&v.len()) && v.iter().all(u8::is_ascii_digit)) {
            return Some(OAuthError::invalid_request(
                "Content-Length is not a number",
            ));
        }
    }
    let mut hosts = h.get_all(http::header::HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() {
            return Some(OAuthError::invalid_request(
                "the Host header is sent more than once",
            ));
        }
        if host.as_bytes().contains(&b'@') {
            return Some(OAuthError::invalid_request(
                "the Host header carries userinfo",
            ));
        }
        if let Some(authority) = req.uri.authority() {
            if !authority
                .as_str()
                .eq_ignore_ascii_case(host.to_str().unwrap_or(""))
            {
                return Some(OAuthError::invalid_request(
                    "the Host header differs from :authority",
                ));
            }
        }
    }
    if req
        .uri
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Some(OAuthError::invalid_request(":authority carries userinfo"));
    }
    None
}

/// Answers a refused stream with its JSON error.
async fn answer(session: &mut HttpSession, e: &OAuthError) -> pingora::Result<()> {
    let body = Bytes::from(e.to_json());
    let mut h = ResponseHeader::build(e.status, Some(4))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(h), false)?;
    tokio::time::timeout(Duration::from_secs(2), session.write_body(body, true))
        .await
        .unwrap_or(Ok(()))
}

/// Streams being served on a connection.
#[derive(Default)]
struct Active {
    count: AtomicUsize,
    idle: Notify,
}

impl Active {
    fn open(self: &Arc<Self>) -> OpenStream {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.idle.notify_waiters();
        OpenStream(self.clone())
    }

    /// Resolves once no stream is open.
    async fn drained(&self) {
        loop {
            let changed = self.idle.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }

    /// Resolves once no stream has been open for `d`.
    async fn idle_for(&self, d: Duration) {
        loop {
            // Registered before the count is read, so a change in between is not missed.
            let changed = self.idle.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count.load(Ordering::Acquire) != 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(d) => return,
                _ = &mut changed => {}
            }
        }
    }
}

/// One stream being served; the connection is not idle while it lives.
struct OpenStream(Arc<Active>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/token", None).unwrap();
        r.set_uri("https://gw.example/token".parse().unwrap());
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn framing_and_authority_are_refused_as_in_http1() {
        let refused: &[(&str, &[(&str, &str)])] = &[
            ("CONNECT", &[]),
            ("POST", &[("content-length", "3"), ("content-length", "3")]),
            ("POST", &[("content-length", "3, 3")]),
            ("POST", &[("content-length", "+3")]),
            ("POST", &[("transfer-encoding", "chunked")]),
            ("POST", &[("connection", "close")]),
            ("POST", &[("keep-alive", "5")]),
            ("POST", &[("upgrade", "h2c")]),
            ("POST", &[("te", "gzip")]),
            ("POST", &[("host", "gw.example"), ("host", "gw.example")]),
            ("POST", &[("host", "other.example")]),
            ("POST", &[("host", "u@gw.example")]),
        ];
        for (method, headers) in refused {
            assert!(
                check(&req(method, headers)).is_some(),
                "{method} {headers:?}"
            );
        }
        let passed: &[&[(&str, &str)]] = &[
            &[],
            &[("content-length", "3")],
            &[("te", "trailers")],
            &[("host", "GW.example")],
        ];
        for headers in passed {
            assert!(check(&req("POST", headers)).is_none(), "{headers:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_stream() {
        let a = Arc::new(Active::default());
        let open = a.open();
        let waited = tokio::spawn({
            let a = a.clone();
            async move {
                let t = tokio::time::Instant::now();
                a.idle_for(Duration::from_secs(5)).await;
                t.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(open);
        let took = waited.await.unwrap();
        assert!(took >= Duration::from_secs(8), "{took:?}");
    }
}
