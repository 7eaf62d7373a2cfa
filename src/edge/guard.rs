//! The edge guard: what a client connection may hold before pingora's HTTP code sees it.
//!
//! pingora 0.9.1 has no deadline for a whole request header (its client read timeout is per
//! read, 60 s, and while a kept-alive connection waits its keep-alive timeout is per read
//! too), buffers an unfinished header up to a constant 1 MiB, and has no cap on client
//! connections. So the proxy app is wrapped: [`EdgeGuard`] is the listening service's
//! `ServerApp` and, for each connection,
//!
//! 1. takes a place under `server.max_connections` and `server.max_connections_per_address`
//!    (a [`Permit`] held as long as the connection), or answers 503 and closes (closes
//!    only, over TLS);
//! 2. with `[server.tls]`, runs the TLS handshake within its deadline (`edge/tls.rs`), and
//!    serves an ALPN `h2` connection with the HTTP/2 limits (`edge/h2.rs`);
//! 3. reads each request header itself, up to its empty line (`header_end`), within
//!    `server.client_header_timeout_seconds` and `server.max_header_bytes`, answering 408
//!    or 431 itself and closing;
//! 4. hands pingora's HTTP/1 session a [`Replay`] stream that gives back those bytes first,
//!    so pingora parses a header that is already complete, and runs the proxy on it: the
//!    proxy app for most requests, the proxy's hooks alone (`own_requests`) for one on a path
//!    the gateway always answers itself;
//! 5. on keep-alive, waits for the next request's first byte at most
//!    `server.keepalive_timeout_seconds`, then gives that header its own deadline.
//!
//! This is the loop pingora's blanket `ServerApp` impl for HTTP apps runs, with the reads
//! guarded: pingora runs keep-alive reuse inside that loop, never handing a reused
//! connection back to the listener, so the guard owns the loop rather than wrapping it.
//! Request bytes are never logged: `Replay`'s `Debug` prints only how many it holds.

use crate::ciba::error::{ErrorCode, OAuthError};
use crate::config::EdgeLimits;
use crate::edge::h2::{self, H2Limits};
use crate::edge::header_check::{self, Fault, Verdict};
use crate::edge::header_end::HeaderEnd;
use crate::edge::own_requests::{self, OwnRequests};
use crate::edge::tls::TlsState;
use crate::metrics;
use crate::state::conn_limit::{ConnLimits, Permit, Refused};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::BufMut;
use ipnet::IpNet;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::modules::http::HttpModules;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// How long a refused connection is drained before it is closed, so that the client reads
/// the answer instead of a reset (closing with unread bytes sends RST, which can discard
/// the answer in the client's buffer).
const LINGER: Duration = Duration::from_secs(1);
/// At most this much is drained from a refused connection.
const LINGER_BYTES: usize = 64 * 1024;
/// How long writing a refusal may take.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
/// The first allocation for a header; it grows by doubling up to the cap.
const FIRST_BUF: usize = 1024;
/// `Retry-After` on a 503 for a connection over a cap.
const BUSY_RETRY_SECONDS: u64 = 1;

/// The proxy app behind connection caps, header deadlines and the header cap.
pub struct EdgeGuard<P: ProxyHttp> {
    inner: Arc<HttpProxy<P>>,
    /// The same proxy's hooks, for the requests it answers itself (`own_requests`).
    own: P,
    /// The downstream modules of those requests: none. pingora's default set is response
    /// compression at level 0, which does nothing, and the gateway's own answers carry tokens
    /// and errors that are never to be compressed.
    own_modules: HttpModules,
    settings: Arc<ArcSwap<GuardSettings>>,
    conns: Arc<ConnLimits>,
    /// TLS at the listener (`edge/tls.rs`), with the limits of HTTP/2 connections.
    tls: Option<(Arc<TlsState>, Duration, H2Limits)>,
}

/// What the guard holds a connection to, read once when it is accepted.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// Deadlines, header cap and connection caps.
    pub limits: EdgeLimits,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive: Duration,
    /// Proxies exempt from the per-address connection cap.
    pub trusted: Vec<IpNet>,
}

/// Changes a running guard's settings (a configuration reload): connections accepted
/// afterwards get the new ones; open connections keep theirs.
#[derive(Clone)]
pub struct GuardHandle {
    settings: Arc<ArcSwap<GuardSettings>>,
    conns: Arc<ConnLimits>,
}

impl GuardHandle {
    /// Applies `settings` to the next connections, caps included.
    pub fn set(&self, settings: GuardSettings) {
        self.conns.set_caps(
            settings.limits.max_connections,
            settings.limits.max_connections_per_address,
        );
        self.settings.store(Arc::new(settings));
    }
}

impl<P: ProxyHttp> EdgeGuard<P> {
    /// A handle that changes this guard's settings while it runs.
    pub fn handle(&self) -> GuardHandle {
        GuardHandle {
            settings: self.settings.clone(),
            conns: self.conns.clone(),
        }
    }

    /// Wraps `inner`, whose hooks `own` shares; `trusted` proxies are exempt from the
    /// per-address cap.
    pub fn new(
        inner: HttpProxy<P>,
        own: P,
        limits: EdgeLimits,
        keepalive: Duration,
        trusted: Vec<IpNet>,
    ) -> Self {
        EdgeGuard {
            inner: Arc::new(inner),
            own,
            own_modules: HttpModules::new(),
            conns: ConnLimits::new(limits.max_connections, limits.max_connections_per_address),
            settings: Arc::new(ArcSwap::from_pointee(GuardSettings {
                limits,
                keepalive,
                trusted,
            })),
            tls: None,
        }
    }

    /// Speaks TLS: each connection's handshake within `handshake_timeout`, after its permit
    /// is taken; HTTP/2 connections (ALPN `h2`) served under `h2`.
    pub fn with_tls(
        mut self,
        state: Arc<TlsState>,
        handshake_timeout: Duration,
        h2: H2Limits,
    ) -> Self {
        self.tls = Some((state, handshake_timeout, h2));
        self
    }
}

#[async_trait]
impl<P> ServerApp for EdgeGuard<P>
where
    P: OwnRequests,
    P::CTX: Send + Sync,
{
    /// Runs once per accepted connection and serves it to the end; returns `None` (the
    /// connection is never handed back to the listener).
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let settings = self.settings.load_full();
        let peer = peer_ip(&stream);
        let exempt = peer.is_some_and(|ip| settings.trusted.iter().any(|n| n.contains(&ip)));
        let _open = match self.conns.acquire(peer, exempt) {
            Ok(p) => Open::new(p),
            Err(why) if self.tls.is_some() => {
                // No answer over TLS: a handshake costs what the cap is there to save.
                metrics::CONNECTIONS_REFUSED
                    .with_label_values(&[why.as_str()])
                    .inc();
                return None;
            }
            Err(why) => {
                refuse_connection(stream, why).await;
                return None;
            }
        };
        let (stream, accepted) = match &self.tls {
            None => (stream, accepted),
            Some((tls, deadline, h2)) => {
                let handshake =
                    tokio::time::timeout_at(accepted + *deadline, tls.handshake(stream));
                let stream = match handshake.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => {
                        metrics::CONNECTIONS_REFUSED
                            .with_label_values(&["tls_handshake_failed"])
                            .inc();
                        return None;
                    }
                    Err(_) => {
                        metrics::CONNECTIONS_REFUSED
                            .with_label_values(&["tls_handshake_timeout"])
                            .inc();
                        return None;
                    }
                };
                if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                    h2::serve(&self.inner, stream, *h2, shutdown).await;
                    return None;
                }
                // The first header's deadline starts when the handshake is done.
                (stream, Instant::now())
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // Only a TLS listener negotiates h2, and it is served above.
            return None;
        }
        self.serve_http1(stream, accepted, &settings, shutdown)
            .await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

impl<P> EdgeGuard<P>
where
    P: OwnRequests,
    P::CTX: Send + Sync,
{
    /// Serves every request of one HTTP/1 connection, each header read by the guard.
    async fn serve_http1(
        self: &Arc<Self>,
        stream: Stream,
        accepted: Instant,
        guard: &GuardSettings,
        shutdown: &ShutdownWatch,
    ) {
        // One box and one header buffer for the whole connection: pingora hands the box back
        // on keep-alive, so a kept-alive request allocates neither again.
        let mut conn = Box::new(Replay::new(stream));
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        // One watch on shutdown for the whole connection: it still sees a shutdown that
        // began while a request was being served, and a kept-alive request does not pay
        // for a fresh one.
        let stop = stopping(shutdown);
        tokio::pin!(stop);
        loop {
            let read = {
                let guarded = self.next_header(guard, &mut conn, first, accepted);
                tokio::select! {
                    biased;
                    r = guarded => r,
                    _ = &mut stop => return,
                }
            };
            match read {
                HeaderRead::Complete => {}
                HeaderRead::Idle | HeaderRead::Closed => return,
                HeaderRead::TimedOut { received: true } => {
                    return refuse_request(conn, Cut::HeaderTimeout).await
                }
                HeaderRead::TimedOut { received: false } => {
                    // A connection that never said anything: cut it like nginx does,
                    // without an answer to a request that does not exist.
                    metrics::CONNECTIONS_REFUSED
                        .with_label_values(&[Cut::HeaderTimeout.reason()])
                        .inc();
                    return;
                }
                HeaderRead::TooLarge => return refuse_request(conn, Cut::HeaderTooLarge).await,
            }
            let plain = match refused(conn.pending()).await {
                Ok(plain) => plain,
                Err(fault) => return refuse_request(conn, Cut::Refused(fault)).await,
            };
            let carried = settings.take();
            let prepare = |session: &mut ServerSession| {
                // As pingora's own loop does: no reuse once shutting down; the proxy bounds
                // the keep-alive on each request (`proxy::bound_keepalive`).
                if *shutdown.borrow() {
                    session.set_keepalive(None);
                } else {
                    session.set_keepalive(Some(guard.keepalive.as_secs()));
                }
                session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
                if let Some(s) = carried {
                    s.apply_to_session(session);
                }
            };
            let own = plain
                .then(|| {
                    self.own
                        .claims(header_check::request_target(conn.pending()))
                })
                .flatten();
            let reused = match own {
                Some(ctx) => {
                    let modules = &self.own_modules;
                    // Boxed: pingora's session lives in it, and the connection's own future
                    // stays small for the requests that are proxied.
                    Box::pin(own_requests::serve(&self.own, modules, conn, ctx, prepare)).await
                }
                None => {
                    let mut session = ServerSession::new_http1(conn);
                    prepare(&mut session);
                    self.inner.process_new_http(session, shutdown).await
                }
            };
            let Some(reused) = reused else {
                return;
            };
            let (s, next) = reused.consume();
            conn = Replay::reclaim(s);
            settings = next;
            first = false;
        }
    }

    /// Reads the next request header: for the first request on a connection within the
    /// header deadline from accept; for a later one, after at most the keep-alive timeout
    /// idle, within the header deadline from its first byte. The header starts at the
    /// front of `conn`'s buffer, after whatever pingora did not read of the one before.
    async fn next_header(
        &self,
        guard: &GuardSettings,
        conn: &mut Replay,
        first: bool,
        accepted: Instant,
    ) -> HeaderRead {
        let cap = guard.limits.max_header_bytes;
        conn.compact();
        let Replay { inner, buf, .. } = conn;
        let timeout = guard.limits.header_timeout;
        if first {
            return read_header(inner, buf, cap, || accepted + timeout).await;
        }
        if buf.is_empty() {
            // pingora's shared timer wheel, as its own keep-alive wait uses: arming a tokio
            // timer here wakes the runtime's own driver through its eventfd (a write and an
            // extra epoll event on every kept-alive request).
            let idle = fast_timeout(guard.keepalive, read_some(inner, buf, cap));
            match idle.await {
                Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return HeaderRead::Idle,
                Ok(Ok(_)) => {}
            }
        }
        // The deadline runs from the header's first byte; the clock is read only for a
        // header that did not come whole in its first read.
        read_header(inner, buf, cap, || Instant::now() + timeout).await
    }
}

/// How a header read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderRead {
    /// The whole header is in the buffer, with whatever followed it in the same reads.
    Complete,
    /// The deadline passed first; `received` says whether any byte had arrived.
    TimedOut {
        /// Whether the client had sent anything of the header.
        received: bool,
    },
    /// The header reached the cap without ending.
    TooLarge,
    /// The client closed the connection (or it failed) first.
    Closed,
    /// A kept-alive connection stayed idle past the keep-alive timeout.
    Idle,
}

/// Reads until the header in `buf` (which may hold its start already) is complete, the
/// cap is reached, or the deadline passes, which `deadline` gives the first time a read
/// is needed. Memory grows with what arrived, never past `cap`.
pub async fn read_header<R>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
    deadline: impl FnOnce() -> Instant,
) -> HeaderRead
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut deadline = Some(deadline);
    let mut at = None;
    let mut scan = HeaderEnd::new();
    let mut scanned = 0;
    loop {
        if let Some(end) = scan.feed(&buf[scanned..]) {
            return if end > cap {
                HeaderRead::TooLarge
            } else {
                HeaderRead::Complete
            };
        }
        scanned = buf.len();
        if buf.len() >= cap {
            return HeaderRead::TooLarge;
        }
        let at = *at.get_or_insert_with(|| deadline.take().expect("taken once")());
        match tokio::time::timeout_at(at, read_some(r, buf, cap)).await {
            Err(_) => {
                return HeaderRead::TimedOut {
                    received: !buf.is_empty(),
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => return HeaderRead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// One read into `buf`, growing it by doubling but never past `cap` bytes.
async fn read_some<R>(r: &mut R, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let room = cap.saturating_sub(buf.len());
    if buf.capacity() == buf.len() {
        let grow = buf.len().max(FIRST_BUF).min(room);
        buf.reserve_exact(grow);
    }
    let limit = room.min(buf.capacity() - buf.len());
    r.read_buf(&mut buf.limit(limit)).await
}

/// Why a complete header is refused before pingora sees it (`header_check`), if it is;
/// otherwise whether its target is plain origin-form (`Verdict::Pass`).
async fn refused(header: &[u8]) -> Result<bool, Fault> {
    match header_check::check(header) {
        Verdict::Pass => Ok(true),
        Verdict::Refuse(fault) => Err(fault),
        // Boxed: pingora's session is only built for these rare targets.
        Verdict::AskPingora => match Box::pin(pingora_verdict(header)).await {
            Some(fault) => Err(fault),
            None => Ok(false),
        },
    }
}

/// What pingora's own HTTP/1 reader makes of `header`: a fault where it would answer
/// its bare 400 (or 405 for `CONNECT`), `None` where it reads a request.
async fn pingora_verdict(header: &[u8]) -> Option<Fault> {
    use pingora::protocols::http::v1::server::HttpSession;
    let mut session = HttpSession::new(Box::new(io::Cursor::new(header.to_vec())));
    match session.read_request().await {
        Err(e) if e.etype() == &pingora::ErrorType::InvalidHTTPHeader => Some(Fault::Malformed),
        Ok(Some(_)) if session.req_header().method == http::Method::CONNECT => Some(Fault::Connect),
        // A request, or a header pingora would wait on or drop: its own handling stands.
        _ => None,
    }
}

/// Resolves once the server is shutting down.
async fn stopping(shutdown: &ShutdownWatch) {
    let mut w = shutdown.clone();
    if w.wait_for(|down| *down).await.is_err() {
        // The sender is gone: the server is going away; never resolve, the connection ends
        // with the process or by its own deadlines.
        std::future::pending::<()>().await;
    }
}

/// The client's IP address, IPv4-mapped IPv6 written as IPv4.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    let addr = digest.peer_addr()?.as_inet()?;
    Some(addr.ip().to_canonical())
}

/// A connection counted as open (gauge) while its permit is held.
struct Open(#[allow(dead_code)] Permit);

impl Open {
    fn new(p: Permit) -> Self {
        metrics::CLIENT_CONNECTIONS.inc();
        Open(p)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::CLIENT_CONNECTIONS.dec();
    }
}

/// Why the guard cut a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    HeaderTimeout,
    HeaderTooLarge,
    Refused(Fault),
}

impl Cut {
    fn reason(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::HeaderTooLarge => "header_too_large",
            Cut::Refused(_) => "malformed_header",
        }
    }

    fn error(self) -> OAuthError {
        match self {
            Cut::HeaderTimeout => {
                OAuthError::invalid_request("the request header was not received in time")
                    .with_status(408)
            }
            Cut::HeaderTooLarge => {
                OAuthError::invalid_request("the request header is too large").with_status(431)
            }
            Cut::Refused(fault) => fault.error(),
        }
    }
}

/// Answers a request the guard cut, then closes.
async fn refuse_request(stream: Stream, cut: Cut) {
    metrics::CONNECTIONS_REFUSED
        .with_label_values(&[cut.reason()])
        .inc();
    answer_and_close(stream, &cut.error()).await;
}

/// Answers a connection over a cap with 503, then closes.
async fn refuse_connection(stream: Stream, why: Refused) {
    metrics::CONNECTIONS_REFUSED
        .with_label_values(&[why.as_str()])
        .inc();
    let e = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        match why {
            Refused::Total => "the gateway has too many open connections; retry shortly",
            Refused::PerAddress => "too many open connections from this address; retry shortly",
        },
    )
    .with_status(503)
    .with_retry_after(BUSY_RETRY_SECONDS);
    answer_and_close(stream, &e).await;
}

/// Writes `e` as a complete HTTP/1.1 answer with `Connection: close`, then closes the
/// connection gracefully: half-close, then drain briefly so the client reads the answer.
async fn answer_and_close(mut stream: Stream, e: &OAuthError) {
    let wire = error_response(e);
    let written = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(&wire).await?;
        stream.flush().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_WRITE, AsyncWriteExt::shutdown(&mut stream)).await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 2048];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The bytes of an OAuth JSON error answer that closes the connection.
pub fn error_response(e: &OAuthError) -> Vec<u8> {
    let body = e.to_json();
    let reason = http::StatusCode::from_u16(e.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\npragma: no-cache\r\nconnection: close\r\ncontent-length: {}\r\n",
        e.status,
        body.len()
    );
    if let Some(s) = e.retry_after {
        out.push_str(&format!("retry-after: {s}\r\n"));
    }
    out.push_str("\r\n");
    let mut wire = out.into_bytes();
    wire.extend_from_slice(&body);
    wire
}

/// A client stream that first gives back bytes the guard already read from it.
pub struct Replay {
    inner: Stream,
    /// What the guard read from `inner`; the bytes before `at` were given back already.
    buf: Vec<u8>,
    at: usize,
}

impl Replay {
    /// `inner`, with nothing read from it yet.
    pub fn new(inner: Stream) -> Self {
        Replay {
            inner,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// The bytes read from the stream and not yet given back.
    fn pending(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// Moves the bytes not yet given back to the front of the buffer.
    fn compact(&mut self) {
        self.buf.drain(..self.at);
        self.at = 0;
    }

    /// The guard's `Replay` from a stream pingora hands back for keep-alive (or,
    /// defensively, any other stream, wrapped anew).
    pub fn reclaim(stream: Stream) -> Box<Replay> {
        if stream.as_any().is::<Replay>() {
            match stream.into_any().downcast::<Replay>() {
                Ok(r) => r,
                Err(_) => unreachable!("checked with is::<Replay>()"),
            }
        } else {
            Box::new(Replay::new(stream))
        }
    }
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: they are a client's request header.
        f.debug_struct("Replay")
            .field("inner", &self.inner)
            .field("pending_len", &self.pending().len())
            .finish()
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.buf.len() {
            let n = (this.buf.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.buf[this.at..this.at + n]);
            this.at += n;
            if this.at == this.buf.len() {
                this.buf.clear();
                this.at = 0;
                if this.buf.capacity() > FIRST_BUF {
                    // A large header's buffer is freed now rather than kept with the
                    // connection: between requests a connection holds at most FIRST_BUF.
                    this.buf = Vec::new();
                }
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Replay {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Replay {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Replay {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Replay {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Replay {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Replay {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.inner.set_socket_digest(socket_digest)
    }
}

#[async_trait]
impl Peek for Replay {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.pending().is_empty() {
            self.inner.try_peek(buf).await
        } else {
            // Peeking across the replayed bytes and the socket is not supported.
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const CAP: usize = 2048;

    /// Reads a header into a fresh buffer: how it ended, and what the buffer holds.
    async fn read_new<R>(r: &mut R, deadline: Instant) -> (HeaderRead, Vec<u8>)
    where
        R: AsyncRead + Unpin,
    {
        let mut buf = Vec::new();
        let read = read_header(r, &mut buf, CAP, || deadline).await;
        (read, buf)
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_split_across_reads_is_complete_with_what_followed() {
        let (mut client, mut server) = duplex(64 * 1024);
        client
            .write_all(b"\r\nPOST / HTTP/1.1\r\nContent-Le")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            read_new(&mut server, deadline).await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.write_all(b"ngth: 2\r\n\r\nok").await.unwrap();
        let (got, buf) = reader.await.unwrap();
        assert_eq!(got, HeaderRead::Complete);
        assert_eq!(buf, b"\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_header_is_cut_at_the_deadline_not_per_read() {
        let (mut client, mut server) = duplex(64 * 1024);
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            read_new(&mut server, start + Duration::from_secs(2))
                .await
                .0
        });
        for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if reader.is_finished() {
                break;
            }
        }
        assert_eq!(
            reader.await.unwrap(),
            HeaderRead::TimedOut { received: true }
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2400),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_over_the_cap_is_refused_without_buffering_more() {
        let (mut client, mut server) = duplex(256 * 1024);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Ends just past the cap: refused even though its end arrived.
        let mut over = b"GET / HTTP/1.1\r\n".to_vec();
        over.extend(std::iter::repeat_n(b'a', CAP - over.len() - 2));
        over.extend_from_slice(b"\r\n\r\n");
        client.write_all(&over).await.unwrap();
        assert_eq!(
            read_new(&mut server, deadline).await.0,
            HeaderRead::TooLarge
        );

        // Exactly at the cap: accepted.
        let (mut client, mut server) = duplex(256 * 1024);
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.extend(std::iter::repeat_n(b'a', CAP - exact.len() - 4));
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), CAP);
        client.write_all(&exact).await.unwrap();
        client.write_all(b"GET /next").await.unwrap();
        let (read, b) = read_new(&mut server, deadline).await;
        assert_eq!(read, HeaderRead::Complete);
        assert!(b.starts_with(&exact) && b.len() <= CAP);

        // A line that never ends, 100 KiB of it: refused at the cap, the buffer never grew past it.
        let (mut client, mut server) = duplex(256 * 1024);
        client.write_all(&vec![b'a'; 100 * 1024]).await.unwrap();
        let mut buf = Vec::new();
        let mut total = 0;
        loop {
            let n = read_some(&mut server, &mut buf, CAP).await.unwrap();
            total += n;
            assert!(buf.capacity() <= CAP, "{}", buf.capacity());
            if buf.len() == CAP {
                break;
            }
        }
        assert_eq!(total, CAP);
        assert_eq!(
            read_new(&mut server, deadline).await.0,
            HeaderRead::TooLarge
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_closes_mid_header_ends_the_read() {
        let (mut client, mut server) = duplex(1024);
        client.write_all(b"GET / HTT").await.unwrap();
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(read_new(&mut server, deadline).await.0, HeaderRead::Closed);
    }

    #[tokio::test]
    async fn replay_gives_back_the_prefix_then_the_stream() {
        let (mut client, server) = duplex(1024);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut r = Replay::new(Box::new(server));
        r.buf = b"hello".to_vec();
        let mut small = [0u8; 3];
        r.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"lo world");
        assert!(!format!("{r:?}").contains("hel"));
        let r = Replay::reclaim(Box::new(r));
        assert!(r.pending().is_empty());
    }

    #[tokio::test]
    async fn a_kept_alive_connection_reuses_its_box_and_small_buffer_but_not_a_large_one() {
        let (_client, server) = duplex(1024);
        let mut r = Box::new(Replay::new(Box::new(server)));
        r.buf.reserve_exact(FIRST_BUF);
        r.buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nGET /next");
        let mut first = [0u8; 18];
        r.read_exact(&mut first).await.unwrap();
        // What pingora did not read of the first request leads the next header.
        r.compact();
        assert_eq!(r.pending(), b"GET /next");
        let mut second = [0u8; 9];
        r.read_exact(&mut second).await.unwrap();
        assert!(r.pending().is_empty());
        assert!(r.buf.capacity() >= FIRST_BUF, "the small buffer is kept");

        // pingora hands back the same box.
        let at: *const Replay = &*r;
        let stream: Stream = r;
        let mut r = Replay::reclaim(stream);
        assert!(std::ptr::eq(at, &*r));

        // A header larger than FIRST_BUF is freed once given back.
        r.buf = vec![b'a'; 4 * FIRST_BUF];
        let mut sink = vec![0u8; 4 * FIRST_BUF];
        r.read_exact(&mut sink).await.unwrap();
        assert_eq!(r.buf.capacity(), 0);
    }

    /// Whether pingora's own reader refuses `header` (its bare 400, or 405 for CONNECT).
    async fn pingora_refuses(header: &[u8]) -> bool {
        pingora_verdict(header).await.is_some()
    }

    /// The target the guard claims a request by (`own_requests`) is, byte for byte, the one
    /// `request_filter` routes by: pingora's `raw_path` of the same header.
    #[tokio::test]
    async fn the_target_the_guard_claims_by_is_the_one_pingora_routes_by() {
        use pingora::protocols::http::v1::server::HttpSession;
        let targets = [
            "/token",
            "/token?a=b%20c&d",
            "//token",
            "/%74oken",
            "/token;x=1",
            "/a/../token",
            "/./token/",
            "/TOKEN",
            "/.well-known/openid-configuration",
            "/x:y@z",
            "/-._~!$&'()*+,;=:@%2F",
            "/?",
            "/",
        ];
        for target in targets {
            for lead in ["", "\r\n"] {
                let head = format!("{lead}POST {target} HTTP/1.1\r\nHost: gw\r\n\r\n");
                assert_eq!(
                    header_check::check(head.as_bytes()),
                    Verdict::Pass,
                    "{head:?}"
                );
                assert_eq!(
                    header_check::request_target(head.as_bytes()),
                    target.as_bytes(),
                    "{head:?}"
                );
                let mut session = HttpSession::new(Box::new(io::Cursor::new(head.into_bytes())));
                assert!(session.read_request().await.unwrap().is_some());
                assert_eq!(session.req_header().raw_path(), target.as_bytes());
            }
        }
    }

    /// Every header pingora refuses, the guard refuses; the guard refuses more only for
    /// its own framing rule and the HTTP/2 preface.
    #[tokio::test]
    async fn the_guard_refuses_whatever_pingora_refuses() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for b in 0..=255u8 {
            for template in [
                "G{}T /x HTTP/1.1\r\nHost: gw\r\n\r\n",
                "GET /x{}y HTTP/1.1\r\nHost: gw\r\n\r\n",
                "GET {}/x HTTP/1.1\r\nHost: gw\r\n\r\n",
                "GET /x HTTP/1.1\r\nHo{}st: gw\r\n\r\n",
                "GET /x HTTP/1.1\r\nHost: g{}w\r\n\r\n",
                "GET /x HTTP/1.1\r\nHost: gw\r\nX: a{}b\r\n\r\n",
                "GET http://gw/x{} HTTP/1.1\r\nHost: gw\r\n\r\n",
                "POST /x HTTP/1.1\r\nContent-Length: 1{}\r\n\r\n",
            ] {
                let (head, tail) = template.split_once("{}").unwrap();
                let mut bytes = head.as_bytes().to_vec();
                bytes.push(b);
                bytes.extend_from_slice(tail.as_bytes());
                cases.push(bytes);
            }
        }
        for head in [
            "POST http://evil/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST http://u@gw/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST http://gw/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST http:gw/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST http://gw\\@evil/token HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST HTTP://GW:80/token HTTP/1.1\r\nHost: GW:80\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n",
            "CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n",
            "CONNECT gw:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET / HTTP/1.2\r\nHost: gw\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: gw\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
            "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ] {
            cases.push(head.as_bytes().to_vec());
        }
        let mut stricter = 0;
        for case in &cases {
            let ours = refused(case).await;
            let theirs = pingora_refuses(case).await;
            let shown = String::from_utf8_lossy(case);
            if theirs {
                assert!(
                    ours.is_err(),
                    "pingora refuses, the guard passes: {shown:?}"
                );
            } else if let Err(fault) = ours {
                assert!(
                    matches!(fault, Fault::Framing(_) | Fault::Http2),
                    "the guard refuses ({fault:?}), pingora reads it: {shown:?}"
                );
                stricter += 1;
            }
        }
        assert!(stricter > 0 && stricter < 40, "{stricter}");
    }

    #[test]
    fn refusals_are_complete_json_answers_that_close() {
        let wire = error_response(
            &OAuthError::new(ErrorCode::TemporarilyUnavailable, "busy")
                .with_status(503)
                .with_retry_after(1),
        );
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = resp.parse(&wire).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(resp.code, Some(503));
        let h = |name: &str| {
            resp.headers
                .iter()
                .find(|x| x.name == name)
                .map(|x| std::str::from_utf8(x.value).unwrap().to_string())
        };
        assert_eq!(h("connection").as_deref(), Some("close"));
        assert_eq!(h("retry-after").as_deref(), Some("1"));
        let body: serde_json::Value = serde_json::from_slice(&wire[n..]).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(h("content-length").unwrap(), (wire.len() - n).to_string());
        for (cut, status) in [(Cut::HeaderTimeout, 408), (Cut::HeaderTooLarge, 431)] {
            let wire = error_response(&cut.error());
            assert!(wire.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            assert!(String::from_utf8_lossy(&wire).contains("\"error\":\"invalid_request\""));
        }
    }
}
