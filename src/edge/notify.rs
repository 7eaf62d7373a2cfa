//! The CIBA ping callback (CIBA Core 10.2): one `POST` of `{"auth_req_id":"..."}` with the
//! client's `client_notification_token` as a bearer token, to the client's configured
//! notification endpoint, retried with bounded backoff until the request expires.
//!
//! The gateway sends these requests from inside the operator's network to addresses a
//! configuration names, so the notifier is where server-side request forgery would happen
//! (Keycloak CVE-2026-1518). The rules (`ciba/address.rs` decides, this file enforces):
//!
//! - The URL is read and checked before any lookup (scheme, user information, a host that
//!   is an address in any spelling, `localhost`).
//! - On every try the host name is resolved again, and every address of the answer is
//!   checked; one refused address refuses the try (a name that answers a public and a
//!   private address is a rebinding attempt, not a choice to make). The connection then
//!   goes to a checked address itself: the peer is built from the `SocketAddr`, so no
//!   second lookup can choose another one. So a name that rebinds between tries is caught
//!   on the try that would use the new address.
//! - A refused address ends the ping at once (`blocked`), with no connection attempted.
//! - Redirects are never followed (a redirect is a refusal, not retried): following one
//!   would let the client's endpoint aim the gateway, bearer token included, anywhere.
//! - The answer's body is read up to `max_body` bytes and discarded; connections are never
//!   pooled, so each try connects (and so checks) afresh.
//! - Logs name the endpoint's host, the status and the outcome; never the token, the
//!   `auth_req_id` or the answer's body.
//!
//! Why pingora's connector rather than tokio with rustls: it is already in the build with
//! the system's root certificates (pingora's `rustls` feature), it takes a resolved
//! `SocketAddr` with the TLS server name given apart (SNI = the URL's host), it has every
//! connect, TLS, read and write timeout as a peer option, and its HTTP/1.1 reader is the one
//! the gateway already trusts for the OP's answers; no new TLS or HTTP dependency. Extra
//! roots (a client's private CA, `ping.notify_ca_file`) go to each peer as its own root
//! list, which replaces the connector's, so that list holds the system's roots too.

use crate::ciba::address::{self, Endpoint, Host, Refusal};
use crate::ciba::ids::{AuthReqId, Secret};
use crate::ciba::notification::{self, Backoff, Verdict};
use crate::config::NotifySettings;
use crate::edge::op_client::{read_final_response, Failure};
use crate::metrics;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where and how one client is notified (built from the configuration by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// The client's `backchannel_client_notification_endpoint`: https, or http only with
    /// `allow_insecure`.
    pub url: http::Uri,
    /// Allows `http://` and loopback, private, link-local, shared and reserved addresses
    /// (tests, internal deployments). Cloud metadata, unspecified, multicast and broadcast
    /// addresses stay refused.
    pub allow_insecure: bool,
}

/// The result of delivering one ping, retries included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The endpoint answered 2xx.
    Delivered,
    /// The endpoint answered with a status that is not retried: 4xx (401 and 403
    /// included), a redirect (never followed), or no final status.
    Refused {
        /// The endpoint's status.
        status: u16,
    },
    /// Not delivered: the deadline came first (5xx, timeouts, connection failures until
    /// then), or the endpoint was refused (`blocked` in the metrics and the log) and no
    /// connection was attempted.
    GaveUp,
}

/// Resolves a notification endpoint's host name; a parameter so tests can answer any
/// address without DNS.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync {
    /// Every address `host` resolves to.
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addrs = crate::edge::resolve::lookup(host.to_string(), 0).await?;
        Ok(addrs.into_iter().map(|a| a.ip()).collect())
    }
}

/// Timeouts, backoff and the body cap of the notifier.
#[derive(Clone)]
pub struct NotifyOptions {
    /// TCP connect timeout of one try; the TLS handshake gets as long again. The host
    /// name's lookup is bounded by it too.
    pub connect_timeout: Duration,
    /// Timeout of each write of the request.
    pub write_timeout: Duration,
    /// Timeout of each read of the answer, and of reading (and discarding) its body.
    pub read_timeout: Duration,
    /// The pause after the first failed try; each next one doubles, with jitter.
    pub backoff_first: Duration,
    /// The longest pause between tries.
    pub backoff_cap: Duration,
    /// Bytes of an answer's body read (and discarded) at most.
    pub max_body: usize,
    /// How host names are resolved.
    pub resolver: Arc<dyn Resolve>,
    /// Root certificates (DER) an endpoint's chain may end at, besides the system's: a
    /// private CA. Each must be a valid root (`config::pem_roots` reads and checks PEM).
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            backoff_first: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_body: 4096,
            resolver: Arc::new(SystemResolver),
            extra_roots: Vec::new(),
        }
    }
}

impl std::fmt::Debug for NotifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("backoff_first", &self.backoff_first)
            .field("backoff_cap", &self.backoff_cap)
            .field("max_body", &self.max_body)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl NotifyOptions {
    /// The defaults, with what the configuration sets (`[ping]`'s `notify_*` keys).
    pub fn configured(s: &NotifySettings) -> Self {
        let d = NotifyOptions::default();
        NotifyOptions {
            connect_timeout: s.connect_timeout.unwrap_or(d.connect_timeout),
            write_timeout: s.write_timeout.unwrap_or(d.write_timeout),
            read_timeout: s.read_timeout.unwrap_or(d.read_timeout),
            backoff_first: s.backoff_first.unwrap_or(d.backoff_first),
            backoff_cap: s.backoff_cap.unwrap_or(d.backoff_cap),
            max_body: s.max_body.unwrap_or(d.max_body),
            extra_roots: s.extra_roots.clone(),
            ..d
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.backoff_first,
            cap: self.backoff_cap,
        }
    }

    /// The longest one try may take: lookup, connect and TLS, the write, the answer. A try
    /// beyond it (an endpoint that drips its answer) counts as a timeout and is retried.
    fn try_limit(&self) -> Duration {
        self.connect_timeout * 3 + self.write_timeout + self.read_timeout * 2
    }
}

/// Sends CIBA 10.2 pings; cheap to clone; bounded retries up to a deadline.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    opts: NotifyOptions,
    /// HTTP/1.1 connections, never pooled (see the module doc).
    connector: pingora::connectors::http::v1::Connector,
    /// Connections attempted since start (each follows a successful check).
    connects: AtomicU64,
    /// With extra roots: every root a certificate may chain to (the system's and the extra
    /// ones), given to each peer; `None`: the connector's own (the system's).
    roots: Option<Arc<CaType>>,
}

/// How a ping ended, finer than [`Delivery`]: what the metrics and the log say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered(u16),
    Refused(u16),
    GaveUp,
    Blocked(Refusal),
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Refused(_) => "refused",
            Outcome::GaveUp => "gave_up",
            Outcome::Blocked(_) => "blocked",
        }
    }

    fn delivery(self) -> Delivery {
        match self {
            Outcome::Delivered(_) => Delivery::Delivered,
            Outcome::Refused(status) => Delivery::Refused { status },
            Outcome::GaveUp | Outcome::Blocked(_) => Delivery::GaveUp,
        }
    }
}

/// How one try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tried {
    /// The endpoint's final status.
    Answered(u16),
    /// No answer: lookup, connection, timeout or a broken answer. Retried.
    Failed(Failure),
    /// An address of the answer is refused. Not retried.
    Blocked(Refusal),
}

/// The request of one ping, built once and sent on each try.
struct Ping {
    header: RequestHeader,
    body: Bytes,
}

impl Notifier {
    /// A notifier with these options.
    pub fn new(opts: NotifyOptions) -> Self {
        let roots = roots(&opts.extra_roots);
        Notifier {
            inner: Arc::new(Inner {
                opts,
                connector: pingora::connectors::http::v1::Connector::new(None),
                connects: AtomicU64::new(0),
                roots,
            }),
        }
    }

    /// Connections attempted so far (each to an address that passed the checks).
    pub fn connections_attempted(&self) -> u64 {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Delivers one ping to `target`, trying again after 5xx answers, timeouts and
    /// connection failures until `deadline`; counts the outcome in
    /// `ciba_gateway_pings_total`.
    pub async fn ping(
        &self,
        target: &NotifyTarget,
        bearer: &Secret<String>,
        auth_req_id: &AuthReqId,
        deadline: std::time::Instant,
    ) -> Delivery {
        let deadline =
            Instant::now() + deadline.saturating_duration_since(std::time::Instant::now());
        let host = target.url.host().unwrap_or("");
        let outcome = match address::endpoint(&target.url, target.allow_insecure) {
            Err(refusal) => Outcome::Blocked(refusal),
            Ok(endpoint) => match build(&endpoint, bearer, auth_req_id) {
                Some(ping) => {
                    self.deliver(&endpoint, target.allow_insecure, &ping, deadline)
                        .await
                }
                None => {
                    tracing::warn!(
                        host,
                        "ping: the notification token is not a valid header value; not sent"
                    );
                    Outcome::GaveUp
                }
            },
        };
        metrics::PINGS.with_label_values(&[outcome.label()]).inc();
        match outcome {
            Outcome::Delivered(status) | Outcome::Refused(status) => {
                tracing::info!(host, status, outcome = outcome.label(), "ping")
            }
            Outcome::GaveUp => tracing::warn!(
                host,
                outcome = "gave_up",
                "ping: not delivered before the request expired"
            ),
            Outcome::Blocked(why) => tracing::warn!(
                host,
                outcome = "blocked",
                refused = why.as_str(),
                "ping: the notification endpoint is refused; no connection made"
            ),
        }
        outcome.delivery()
    }

    /// Posts a JSON document (no bearer) to `target` with the same address checks,
    /// timeouts and retries as a ping, until `deadline`; for the bridge's authentication-
    /// device notifier. Logs the host and outcome only, never the body.
    pub async fn post_json(
        &self,
        target: &NotifyTarget,
        body: Bytes,
        deadline: std::time::Instant,
    ) -> Delivery {
        let deadline =
            Instant::now() + deadline.saturating_duration_since(std::time::Instant::now());
        let host = target.url.host().unwrap_or("");
        let outcome = match address::endpoint(&target.url, target.allow_insecure) {
            Err(refusal) => Outcome::Blocked(refusal),
            Ok(endpoint) => match build_json(&endpoint, body) {
                Some(req) => {
                    self.deliver(&endpoint, target.allow_insecure, &req, deadline)
                        .await
                }
                None => Outcome::GaveUp,
            },
        };
        tracing::info!(host, outcome = outcome.label(), "bridge notification");
        outcome.delivery()
    }

    async fn deliver(
        &self,
        endpoint: &Endpoint,
        allow_insecure: bool,
        ping: &Ping,
        deadline: Instant,
    ) -> Outcome {
        let opts = &self.inner.opts;
        retry(opts.backoff(), opts.try_limit(), deadline, |_| {
            self.try_once(endpoint, allow_insecure, ping)
        })
        .await
    }

    /// One try: resolve, check every address, then connect to the checked addresses in
    /// turn (the next only when connecting failed) and send the ping.
    async fn try_once(&self, endpoint: &Endpoint, allow_insecure: bool, ping: &Ping) -> Tried {
        let addrs = match self.candidates(endpoint, allow_insecure).await {
            Ok(addrs) => addrs,
            Err(tried) => return tried,
        };
        let mut last = Failure::Connect;
        for addr in addrs {
            match self.exchange(endpoint, addr, ping).await {
                Ok(status) => return Tried::Answered(status),
                Err((failure, connected)) => {
                    last = failure;
                    if connected {
                        break;
                    }
                }
            }
        }
        Tried::Failed(last)
    }

    /// The addresses a try may connect to: the host's, resolved now, every one checked.
    async fn candidates(
        &self,
        endpoint: &Endpoint,
        allow_insecure: bool,
    ) -> Result<Vec<SocketAddr>, Tried> {
        let ips = match &endpoint.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                let opts = &self.inner.opts;
                match tokio::time::timeout(opts.connect_timeout, opts.resolver.lookup(name)).await {
                    Ok(Ok(ips)) if !ips.is_empty() => ips,
                    _ => return Err(Tried::Failed(Failure::Connect)),
                }
            }
        };
        checked(&ips, allow_insecure)
            .map(|ips| {
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip, endpoint.port))
                    .collect()
            })
            .map_err(|range| Tried::Blocked(Refusal::Range(range)))
    }

    /// The peer for one checked address, every timeout set, the certificate verified
    /// against the URL's host.
    fn peer(&self, endpoint: &Endpoint, addr: SocketAddr) -> HttpPeer {
        // An empty server name would make pingora skip certificate verification.
        assert!(
            !endpoint.server_name.is_empty(),
            "a parsed host is never empty"
        );
        let opts = &self.inner.opts;
        let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.server_name.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(opts.connect_timeout);
        o.total_connection_timeout = Some(opts.connect_timeout * 2);
        o.read_timeout = Some(opts.read_timeout);
        o.write_timeout = Some(opts.write_timeout);
        o.verify_cert = true;
        o.verify_hostname = true;
        // A per-peer root list replaces the connector's, so it holds the system's roots too.
        o.ca.clone_from(&self.inner.roots);
        peer
    }

    /// Connects to `addr`, sends the ping, reads the final status and discards the body.
    /// A failure says whether the connection was made (after which no other address is
    /// tried: the endpoint may have received the ping).
    async fn exchange(
        &self,
        endpoint: &Endpoint,
        addr: SocketAddr,
        ping: &Ping,
    ) -> Result<u16, (Failure, bool)> {
        let peer = self.peer(endpoint, addr);
        let failed = |connected| {
            move |e: Box<pingora::Error>| (Failure::from_error_type(e.etype()), connected)
        };
        self.inner.connects.fetch_add(1, Ordering::SeqCst);
        let (mut session, _) = Box::pin(self.inner.connector.get_http_session(&peer))
            .await
            .map_err(failed(false))?;
        // The connector does not carry the peer's read and write timeouts over to the
        // session (pingora's proxy sets them itself), so they are set here.
        let opts = &self.inner.opts;
        session.read_timeout = Some(opts.read_timeout);
        session.write_timeout = Some(opts.write_timeout);
        session
            .write_request_header(Box::new(ping.header.clone()))
            .await
            .map_err(failed(true))?;
        session.write_body(&ping.body).await.map_err(failed(true))?;
        session.finish_body().await.map_err(failed(true))?;
        let status = read_final_response(&mut session).await.map_err(|e| {
            let failure = e.map_or(Failure::BadResponse, |e| {
                Failure::from_error_type(e.etype())
            });
            (failure, true)
        })?;
        // Read so the endpoint can finish its answer; what it says is never looked at.
        let _ = tokio::time::timeout(opts.read_timeout, discard_body(&mut session, opts.max_body))
            .await;
        // Dropped, not pooled: the next try connects (and checks) afresh.
        Ok(status)
    }
}

/// The roots a peer trusts when there are extra ones: the system's (as pingora's connector
/// loads them, `SSL_CERT_FILE` and `SSL_CERT_DIR` included) and the extra ones. A root the
/// connector's parser cannot read is left out (the configuration has checked the extra
/// ones); pingora builds its store from this list on each connection.
fn roots(extra: &[Vec<u8>]) -> Option<Arc<CaType>> {
    if extra.is_empty() {
        return None;
    }
    let system = pingora::tls::load_native_certs().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ping: the system's root certificates could not be read; only ping.notify_ca_file is trusted");
        Vec::new()
    });
    let ders = system
        .iter()
        .map(|c| c.to_vec())
        .chain(extra.iter().cloned());
    let list: Vec<WrappedX509> = ders
        .filter_map(|der| {
            WrappedX509::try_new(der, |raw| {
                x509_parser::parse_x509_certificate(raw).map(|(_, cert)| cert)
            })
            .ok()
        })
        .collect();
    Some(Arc::from(list.into_boxed_slice()))
}

/// The addresses, when every one may be reached; else the range of the first refused.
fn checked(ips: &[IpAddr], allow_insecure: bool) -> Result<Vec<IpAddr>, address::Range> {
    for ip in ips {
        address::check(*ip, allow_insecure)?;
    }
    Ok(ips.to_vec())
}

/// Reads and drops at most `cap` bytes of the answer's body.
async fn discard_body(session: &mut pingora::protocols::http::v1::client::HttpSession, cap: usize) {
    let mut read = 0;
    while read < cap {
        match session.read_body_bytes().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => return,
        }
    }
}

/// The ping request: `POST` to the URL's path with the bearer token and the JSON body
/// (CIBA 10.2). `None` when the token cannot be a header value.
fn build(endpoint: &Endpoint, bearer: &Secret<String>, auth_req_id: &AuthReqId) -> Option<Ping> {
    let body = notification::body(auth_req_id);
    let mut authorization =
        http::HeaderValue::from_str(&format!("Bearer {}", bearer.expose())).ok()?;
    authorization.set_sensitive(true);
    let mut ping = build_json(endpoint, Bytes::from(body))?;
    ping.header
        .insert_header("authorization", authorization)
        .ok()?;
    Some(ping)
}

/// A JSON `POST` to the URL's path, without credentials.
fn build_json(endpoint: &Endpoint, body: Bytes) -> Option<Ping> {
    let mut header = RequestHeader::build("POST", endpoint.path.as_bytes(), Some(6)).ok()?;
    header
        .insert_header("host", endpoint.authority.as_str())
        .ok()?;
    header
        .insert_header("content-type", "application/json")
        .ok()?;
    header
        .insert_header("content-length", body.len().to_string())
        .ok()?;
    header
        .insert_header(
            "user-agent",
            concat!("ciba-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .ok()?;
    header.insert_header("connection", "close").ok()?;
    Some(Ping { header, body })
}

/// Tries until an answer that is not retried, a refused address, or the deadline; pauses
/// per `backoff` between tries and bounds each try by `try_limit` (and the deadline).
/// `try_once` gets the try's number, from 0.
async fn retry<F, Fut>(
    backoff: Backoff,
    try_limit: Duration,
    deadline: Instant,
    mut try_once: F,
) -> Outcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Tried>,
{
    let mut n = 0u32;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Outcome::GaveUp;
        }
        let limit = deadline.min(now + try_limit);
        let tried = tokio::time::timeout_at(limit, try_once(n))
            .await
            .unwrap_or(Tried::Failed(Failure::Timeout));
        let why = match tried {
            Tried::Blocked(refusal) => return Outcome::Blocked(refusal),
            Tried::Answered(status) => match notification::verdict(status) {
                Verdict::Delivered => return Outcome::Delivered(status),
                Verdict::Refused => return Outcome::Refused(status),
                Verdict::Retry => "5xx",
            },
            Tried::Failed(failure) => failure.as_str(),
        };
        let pause = backoff.pause(n, rand::random::<f64>());
        if Instant::now() + pause >= deadline {
            return Outcome::GaveUp;
        }
        metrics::PINGS.with_label_values(&["retried"]).inc();
        tracing::debug!(
            why,
            try_number = n,
            pause_ms = pause.as_millis() as u64,
            "ping: trying again"
        );
        tokio::time::sleep(pause).await;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    const BACKOFF: Backoff = Backoff {
        first: Duration::from_millis(500),
        cap: Duration::from_secs(2),
    };
    const TRY_LIMIT: Duration = Duration::from_secs(5);

    /// Runs [`retry`] over scripted tries (the last repeats); returns the outcome and when
    /// each try started, relative to the start.
    async fn run(script: Vec<Tried>, deadline: Duration) -> (Outcome, Vec<Duration>) {
        let start = Instant::now();
        let script = Mutex::new(VecDeque::from(script));
        let starts = Mutex::new(Vec::new());
        let outcome = retry(BACKOFF, TRY_LIMIT, start + deadline, |_| {
            starts.lock().unwrap().push(start.elapsed());
            let mut s = script.lock().unwrap();
            let next = if s.len() > 1 {
                s.pop_front()
            } else {
                s.front().copied()
            };
            async move { next.unwrap() }
        })
        .await;
        (outcome, starts.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_retried_with_growing_pauses_until_delivered() {
        let script = vec![
            Tried::Answered(500),
            Tried::Failed(Failure::Timeout),
            Tried::Failed(Failure::Connect),
            Tried::Answered(503),
            Tried::Answered(204),
        ];
        let (outcome, starts) = run(script, Duration::from_secs(60)).await;
        assert_eq!(outcome, Outcome::Delivered(204));
        assert_eq!(starts.len(), 5);
        // Each pause lies between half and all of its step: 0.5, 1, 2, 2 (capped) s.
        let steps = [500, 1000, 2000, 2000];
        for (i, step) in steps.iter().enumerate() {
            let gap = (starts[i + 1] - starts[i]).as_millis();
            assert!(
                gap >= step / 2 && gap <= *step,
                "pause {i}: {gap} ms, step {step}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_redirects_and_blocks_are_not_retried() {
        for (tried, want) in [
            (Tried::Answered(401), Outcome::Refused(401)),
            (Tried::Answered(403), Outcome::Refused(403)),
            (Tried::Answered(404), Outcome::Refused(404)),
            (Tried::Answered(302), Outcome::Refused(302)),
            (Tried::Answered(307), Outcome::Refused(307)),
            (Tried::Answered(200), Outcome::Delivered(200)),
            (
                Tried::Blocked(Refusal::Range(address::Range::Metadata)),
                Outcome::Blocked(Refusal::Range(address::Range::Metadata)),
            ),
        ] {
            let (outcome, starts) = run(vec![tried], Duration::from_secs(60)).await;
            assert_eq!(outcome, want, "{tried:?}");
            assert_eq!(starts, vec![Duration::ZERO], "{tried:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_give_up_at_the_deadline_without_sleeping_past_it() {
        let start = Instant::now();
        let (outcome, starts) = run(vec![Tried::Answered(500)], Duration::from_secs(10)).await;
        assert_eq!(outcome, Outcome::GaveUp);
        // 0.25-0.5, 0.5-1, then pauses of 1-2 s: between 5 and 10 tries in 10 s.
        assert!((5..=10).contains(&starts.len()), "{starts:?}");
        assert!(
            start.elapsed() <= Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_try_is_cut_by_its_limit_and_by_the_deadline() {
        let start = Instant::now();
        let tries = Mutex::new(0);
        let outcome = retry(BACKOFF, TRY_LIMIT, start + Duration::from_secs(12), |_| {
            *tries.lock().unwrap() += 1;
            std::future::pending::<Tried>()
        })
        .await;
        assert_eq!(outcome, Outcome::GaveUp);
        // Tries at 0 s and after 5 s + a pause; a third only when its pause ends before
        // the deadline, which then cuts it.
        let tries = *tries.lock().unwrap();
        assert!((2..=3).contains(&tries), "{tries}");
        assert!(
            start.elapsed() <= Duration::from_secs(12),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_tries_nothing() {
        let (outcome, starts) = run(vec![Tried::Answered(204)], Duration::ZERO).await;
        assert_eq!(outcome, Outcome::GaveUp);
        assert!(starts.is_empty());
    }

    /// Answers each lookup from a script, then repeats the last answer.
    struct Scripted(Mutex<VecDeque<Vec<IpAddr>>>);

    #[async_trait::async_trait]
    impl Resolve for Scripted {
        async fn lookup(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
            let mut s = self.0.lock().unwrap();
            let next = if s.len() > 1 {
                s.pop_front()
            } else {
                s.front().cloned()
            };
            Ok(next.unwrap_or_default())
        }
    }

    fn notifier(answers: &[&[&str]]) -> Notifier {
        let answers = answers
            .iter()
            .map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        Notifier::new(NotifyOptions {
            resolver: Arc::new(Scripted(Mutex::new(answers))),
            ..NotifyOptions::default()
        })
    }

    fn endpoint(url: &str, insecure: bool) -> Endpoint {
        address::endpoint(&url.parse().unwrap(), insecure).unwrap()
    }

    #[tokio::test]
    async fn every_try_resolves_again_and_checks_every_address() {
        let n = notifier(&[
            &["8.8.8.8"],
            &["8.8.8.8", "127.0.0.1"],
            &["169.254.169.254"],
            &["10.0.0.7"],
        ]);
        let ep = endpoint("https://client.example:8443/cb", false);
        let blocked = |r| Err(Tried::Blocked(Refusal::Range(r)));
        assert_eq!(
            n.candidates(&ep, false).await,
            Ok(vec!["8.8.8.8:8443".parse().unwrap()])
        );
        // Rebound: one hostile address among public ones refuses the try.
        assert_eq!(
            n.candidates(&ep, false).await,
            blocked(address::Range::Loopback)
        );
        assert_eq!(
            n.candidates(&ep, false).await,
            blocked(address::Range::Metadata)
        );
        assert_eq!(
            n.candidates(&ep, false).await,
            blocked(address::Range::Private)
        );
        assert_eq!(
            n.candidates(&ep, true).await,
            Ok(vec!["10.0.0.7:8443".parse().unwrap()])
        );
        assert_eq!(n.connections_attempted(), 0);
    }

    #[tokio::test]
    async fn an_empty_answer_is_a_failure_to_retry() {
        let n = notifier(&[&[]]);
        let ep = endpoint("https://client.example/cb", false);
        assert_eq!(
            n.candidates(&ep, false).await,
            Err(Tried::Failed(Failure::Connect))
        );
    }

    /// The caller spawns pings as tasks.
    #[test]
    fn a_ping_is_a_send_future() {
        fn send<T: Send>(_: &T) {}
        let n = notifier(&[&[]]);
        let target = NotifyTarget {
            url: "https://client.example/cb".parse().unwrap(),
            allow_insecure: false,
        };
        let (token, id) = (Secret::new(String::new()), AuthReqId::new("i"));
        let ping = n.ping(&target, &token, &id, std::time::Instant::now());
        send(&ping);
        send(&n);
    }

    #[test]
    fn the_request_is_the_ping_and_nothing_else() {
        let ep = endpoint("https://Client.Example:8443/cb?x=1", false);
        let ping = build(&ep, &Secret::new("tok-123".into()), &AuthReqId::new("id-1")).unwrap();
        assert_eq!(ping.header.method, http::Method::POST);
        assert_eq!(ping.header.uri, "/cb?x=1");
        let h = |name: &str| {
            ping.header
                .headers
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(h("host"), "Client.Example:8443");
        assert_eq!(h("authorization"), "Bearer tok-123");
        assert!(ping
            .header
            .headers
            .get("authorization")
            .unwrap()
            .is_sensitive());
        assert_eq!(h("content-type"), "application/json");
        assert_eq!(h("content-length"), "22");
        assert_eq!(&ping.body[..], br#"{"auth_req_id":"id-1"}"#);
        assert_eq!(ping.header.headers.len(), 6);
        // A token that would split the header is never sent.
        assert!(build(
            &ep,
            &Secret::new("a\r\nX-Evil: 1".into()),
            &AuthReqId::new("i")
        )
        .is_none());
    }

    /// The configuration reference states the defaults this file sets.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let docs = include_str!("../../docs/configuration.md");
        let d = NotifyOptions::default();
        let ms = |t: Duration| t.as_millis().to_string();
        for (key, value) in [
            ("notify_connect_timeout_ms", ms(d.connect_timeout)),
            ("notify_write_timeout_ms", ms(d.write_timeout)),
            ("notify_read_timeout_ms", ms(d.read_timeout)),
            ("notify_backoff_first_ms", ms(d.backoff_first)),
            ("notify_backoff_cap_ms", ms(d.backoff_cap)),
            ("notify_max_body_bytes", d.max_body.to_string()),
        ] {
            let row = format!("| `ping.{key}` | {value} |");
            assert!(docs.contains(&row), "docs/configuration.md: want {row}");
        }
        assert!(d.extra_roots.is_empty());
    }

    #[test]
    fn configured_settings_replace_only_what_they_set() {
        let d = NotifyOptions::default();
        let o = NotifyOptions::configured(&NotifySettings::default());
        assert_eq!(format!("{o:?}"), format!("{d:?}"));
        let o = NotifyOptions::configured(&NotifySettings {
            read_timeout: Some(Duration::from_millis(7)),
            max_body: Some(1),
            extra_roots: vec![vec![1]],
            ..NotifySettings::default()
        });
        assert_eq!((o.read_timeout, o.max_body), (Duration::from_millis(7), 1));
        assert_eq!(
            (o.connect_timeout, o.backoff_cap),
            (d.connect_timeout, d.backoff_cap)
        );
        assert_eq!(o.extra_roots, vec![vec![1]]);
    }

    #[test]
    fn the_peer_is_the_checked_address_with_the_url_host_as_server_name() {
        let n = notifier(&[&[]]);
        let ep = endpoint("https://client.example./cb", false);
        let addr: SocketAddr = "8.8.8.8:443".parse().unwrap();
        let peer = n.peer(&ep, addr);
        assert_eq!(peer.address().to_string(), "8.8.8.8:443");
        assert_eq!(peer.sni, "client.example");
        assert!(peer.is_tls());
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert!(peer.options.connection_timeout.is_some());
        assert!(peer.options.total_connection_timeout.is_some());
        assert!(peer.options.read_timeout.is_some() && peer.options.write_timeout.is_some());
    }
}
