//! The pingora glue: the only `ProxyHttp` implementation.
//!
//! Thin on purpose: it reads what the pure modules need, calls them, and writes what they
//! decide. The hooks run inside pingora's proxy app, or, for a request on one of the
//! gateway's paths named exactly, in the same order on pingora's session without it
//! (`edge/own_requests.rs`, which [`Gateway`]'s `claims` decides). Requests on the CIBA
//! endpoints (`ciba`) and the metadata documents (`discovery`) are answered by the gateway
//! after its own exchange with the OP (`upstream_request`, `op_client`); every other path is
//! proxied by pingora untouched. A refusal on either
//! becomes an answer in one place (`refusal::finish`), and what a request's handling noted
//! is counted in one place, the `logging` hook (`tally`).

mod answer;
mod bridge;
mod ciba;
mod client_cert;
mod discovery;
mod fapi;
mod h2_body;
mod names;
mod numbers;
mod ping;
mod refusal;
mod route;
mod tally;
mod upstream_request;

pub use answer::failure_error;
pub use discovery::{Document, DISCOVERY_PATH, METADATA_PATH};
pub use route::{route, routes_for, Route};

use self::answer::{answer_error, err_headers, write_json};
use self::refusal::{finish, Count, Stop};
use self::tally::Tally;
use self::upstream_request::{op_path_and_query, set_forwarded_fields};
use crate::ciba::discovery::Endpoints;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::pipeline::Endpoint;
use crate::ciba::redact;
use crate::ciba::routing::Routes;
use crate::edge::in_flight::InFlight;
use crate::edge::op_client::{Connector, Failure};
use crate::edge::reload::{Live, Runtime};
use crate::edge::request_id::{RequestId, RequestIds};
use crate::metrics;
use crate::state::pings::Pings;
use crate::state::rate_limit;
use crate::state::store::Store;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What start-up learned about the OP, shared by every request: its endpoints and its
/// current address.
#[derive(Debug, Default)]
pub struct OpLink {
    /// Set once, when the CIBA endpoints are known (configured or discovered).
    pub endpoints: OnceLock<Endpoints>,
    /// The OP at its current address; empty until its host name first resolves, never
    /// emptied afterwards.
    peer: ArcSwapOption<HttpPeer>,
    /// The OP's issuer and endpoint URLs from its discovery document (FAPI `aud`).
    pub op_names: OnceLock<crate::ciba::fapi::OpNames>,
}

impl OpLink {
    /// Records the endpoints; the first value wins.
    pub fn set_endpoints(&self, e: Endpoints) {
        let _ = self.endpoints.set(e);
    }

    /// Points new upstream connections at this peer.
    pub fn set_peer(&self, peer: HttpPeer) {
        self.peer.store(Some(Arc::new(peer)));
    }

    /// The OP's peer, once its address is known.
    pub fn peer(&self) -> Option<Arc<HttpPeer>> {
        self.peer.load_full()
    }

    /// Whether the OP's address is known.
    pub fn has_peer(&self) -> bool {
        self.peer.load().is_some()
    }

    /// Whether the gateway can route CIBA requests yet.
    pub fn is_ready(&self) -> bool {
        self.endpoints.get().is_some() && self.has_peer()
    }
}

/// The gateway service: a handle on its state, shared by pingora's proxy app and the
/// guard's own serving of the requests the gateway answers itself (`edge/own_requests.rs`).
#[derive(Clone)]
pub struct Gateway(Arc<GatewayState>);

/// What every request of the gateway service reads.
pub struct GatewayState {
    /// The configuration in force; each request reads the snapshot it started with.
    runtime: Arc<Runtime>,
    op: Arc<OpLink>,
    store: Store,
    connector: Connector,
    request_ids: RequestIds,
    request_metrics: metrics::RequestMetrics,
    /// The OP's `Host`, parsed once.
    host: HeaderValue,
    /// The gateway's paths under the routing rule, built once the endpoints are known.
    routes: OnceLock<Routes>,
    /// What the gateway holds for the ping requests it polls, when it pings clients.
    pings: Option<Arc<Pings>>,
    /// The PAR bridge, when `[bridge]` is enabled.
    bridge: Option<Arc<crate::edge::bridge::Bridge>>,
    /// The FAPI profile's caches and key fetcher.
    fapi: fapi::Shared,
}

impl Gateway {
    /// Builds the service from the configuration in force.
    pub fn new(runtime: Arc<Runtime>, op: Arc<OpLink>, store: Store) -> Self {
        // At start-up only (upstream.url needs a restart): it passed http's URI parser,
        // which admits no byte that a header value refuses.
        let host = HeaderValue::from_str(&runtime.current().cfg.upstream.authority())
            .expect("a validated upstream.url is a valid Host header");
        let fapi = Arc::new(fapi::FapiRuntime::new(&runtime.current().cfg));
        Gateway(Arc::new(GatewayState {
            runtime,
            op,
            store,
            connector: Connector::new(None),
            request_ids: RequestIds::new(),
            request_metrics: metrics::RequestMetrics::default(),
            host,
            routes: OnceLock::new(),
            pings: None,
            bridge: None,
            fapi,
        }))
    }

    /// The state, while this handle is still the only one (at start-up).
    fn building(&mut self) -> &mut GatewayState {
        Arc::get_mut(&mut self.0).expect("configured before it is shared")
    }

    /// Serves ping clients (`[ping]`) from `store`, which the ping poller shares.
    pub fn with_pings(mut self, store: Arc<Pings>) -> Self {
        self.building().pings = Some(store);
        self
    }

    /// Serves CIBA over the OP's code flow (`[bridge]`).
    pub fn with_bridge(mut self, bridge: Arc<crate::edge::bridge::Bridge>) -> Self {
        self.building().bridge = Some(bridge);
        self
    }

    /// The routes for the known endpoints, built on first use (from restart-only keys:
    /// the upstream's base path and the profile's paths).
    fn routes(&self, endpoints: &Endpoints) -> &Routes {
        self.routes
            .get_or_init(|| routes_for(endpoints, &self.runtime.current().cfg))
    }

    /// The request's id: the client's `X-Request-Id` when it is plain, else a new one; the
    /// same for every use.
    fn request_id<'a>(&self, ctx: &'a RequestCtx, session: &Session) -> &'a RequestId {
        ctx.request_id.get_or_init(|| {
            self.request_ids
                .for_request(session.req_header().headers.get(names::X_REQUEST_ID))
        })
    }
}

impl GatewayState {
    /// The configuration snapshot `ctx`'s request started with.
    fn live(&self, ctx: &RequestCtx) -> Arc<Live> {
        ctx.live.clone().unwrap_or_else(|| self.runtime.current())
    }
}

impl std::ops::Deref for Gateway {
    type Target = GatewayState;

    fn deref(&self) -> &GatewayState {
        &self.0
    }
}

impl crate::edge::own_requests::OwnRequests for Gateway {
    /// A target that is exactly one of the gateway's paths (a CIBA endpoint or a metadata
    /// document), which `request_filter` serves or refuses in every routing mode. Other
    /// spellings, refused or not, take pingora's path, as does everything before the
    /// endpoints and the OP's address are known.
    fn claims(&self, target: &[u8]) -> Option<RequestCtx> {
        let endpoints = self.op.endpoints.get()?;
        if !self.op.has_peer() {
            return None;
        }
        self.routes(endpoints).exact(target).map(|_| self.new_ctx())
    }
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct RequestCtx {
    route: Route,
    started: Option<Instant>,
    /// Made on first use (the OP's copy, the logs): a request the gateway answers itself
    /// with the access log off never needs one.
    request_id: OnceLock<RequestId>,
    client: Option<ClientId>,
    upstream_seconds: Option<f64>,
    /// What the handling noted for the metrics, counted in `logging`.
    tally: Tally,
    /// The `auth_req_id` a proxied vendor cancel call names.
    cancelled_id: Option<AuthReqId>,
    /// Whether the request named a CIBA endpoint's mTLS alias (RFC 8705 5).
    via_alias: bool,
    /// The client's certificate: from its TLS handshake, or from a trusted proxy's header.
    client_cert: Option<std::sync::Arc<crate::ciba::client_cert::ClientCertificate>>,
    /// Counts this request as in flight until the context is dropped; held, never read.
    _in_flight: Option<InFlight>,
    /// The configuration this request is handled under, taken when it starts: a reload
    /// meanwhile changes what the next requests see, never this one.
    live: Option<Arc<Live>>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // Made once a request's header has been read, dropped when it has been answered,
        // whichever way it ends.
        RequestCtx {
            _in_flight: Some(InFlight::enter()),
            live: Some(self.runtime.current()),
            ..RequestCtx::default()
        }
    }

    /// Runs first for every request; returns `Ok(true)` when the gateway answered itself.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // The start is for the access log's duration and a passed-through answer's upstream
        // time (read again below once the route is known): an answer of the gateway's own
        // with the access log off reads the clock for neither.
        if tracing::enabled!(target: "access", tracing::Level::INFO) {
            ctx.started = Some(Instant::now());
        }
        let live = self.live(ctx);
        bound_keepalive(session, live.cfg.keepalive_timeout_seconds);
        // Per read on passed-through bodies (nginx's client_body_timeout); the CIBA
        // endpoints also hold the whole body to this deadline (`read_body`).
        session.set_read_timeout(Some(live.cfg.edge.body_timeout));
        // The certificate the client presented in its TLS handshake, for every request on
        // that connection (HTTP/1 or each HTTP/2 stream); its trust is decided per client.
        ctx.client_cert = crate::edge::tls::client_certificate(session.digest());

        // Until the CIBA paths are known the gateway cannot tell a poll from any other
        // request; letting it through would skip every rule. So nothing passes, and nothing
        // passes before the OP's host name has resolved either.
        let (Some(endpoints), true) = (self.op.endpoints.get(), self.op.has_peer()) else {
            let what = if self.op.has_peer() {
                "the gateway has not yet learned the OpenID Provider's endpoints"
            } else {
                "the gateway has not yet resolved the OpenID Provider's host name"
            };
            let e = OAuthError::new(ErrorCode::TemporarilyUnavailable, what)
                .with_retry_after(live.cfg.upstream.discovery_retry.as_secs().max(1));
            return answer_error(self, session, ctx, e).await;
        };
        (ctx.route, ctx.via_alias) = match route::route_and_alias(
            session.req_header(),
            self.routes(endpoints),
            live.cfg.variants,
        ) {
            Ok(r) => r,
            Err(e) => return answer_error(self, session, ctx, e).await,
        };
        if let Err(e) = self.read_proxy_certificate(&live, session, ctx) {
            return answer_error(self, session, ctx, e).await;
        }
        match ctx.route {
            Route::PassThrough => {
                if ctx.started.is_none() {
                    ctx.started = Some(Instant::now());
                }
                // The bridge's own paths read their bodies themselves, within the deadline.
                if let Some(which) = self.bridge_path(session) {
                    return Box::pin(self.serve_bridge_path(session, ctx, which)).await;
                }
                if let Err(e) = h2_body::read_whole(session, live.cfg.edge.body_timeout).await {
                    ctx.tally.body_timed_out = e.status == 408;
                    return answer_error(self, session, ctx, e).await;
                }
                if let Some(cancel) = &live.cfg.polling.cancel {
                    let req = session.req_header();
                    ctx.cancelled_id = cancel
                        .auth_req_id(&req.method, req.raw_path())
                        .map(|id| AuthReqId::new(&id));
                }
                Ok(false)
            }
            // Boxed: their exchanges with the OP are several KiB of future state, which
            // inline would be copied on every request, passed through or not.
            Route::Discovery(doc) => {
                Box::pin(self.serve_discovery(session, ctx, endpoints, doc)).await
            }
            Route::Ciba(endpoint) => Box::pin(self.serve_ciba(session, ctx, endpoint, live)).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // request_filter let no request this far before the first address was known, and a
        // known address is never forgotten.
        match self.op.peer() {
            Some(peer) => Ok(Box::new((*peer).clone())),
            None => Err(pingora::Error::explain(
                ErrorType::ConnectNoRoute,
                "the OP's host name has not resolved yet",
            )),
        }
    }

    /// Runs just before a proxied request goes upstream.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let live = self.live(ctx);
        if live
            .cfg
            .profile
            .op_path(session.req_header().uri.path())
            .is_some()
        {
            let mapped = op_path_and_query(&live, &session.req_header().uri, None);
            upstream_request.set_uri(mapped.parse().map_err(|_| {
                pingora::Error::explain(
                    ErrorType::InternalError,
                    "a profile path is not a valid URI",
                )
            })?);
        }
        set_forwarded_fields(
            session,
            upstream_request,
            &self.host,
            self.request_id(ctx, session).header_value(),
        )?;
        self.forward_certificate(ctx, upstream_request)?;
        Ok(())
    }

    /// Runs when a proxied answer's header arrives.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(id) = &ctx.cancelled_id {
            // Only a cancel the OP accepted ends the state; a refused one changes nothing.
            if upstream_response.status.is_success() {
                Box::pin(self.store.cancel(id)).await;
            }
        }
        if let Some(start) = ctx.started {
            ctx.upstream_seconds = Some(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Runs when a proxied request fails; writes an OAuth JSON error instead of pingora's page.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let oauth = match e.esource() {
            pingora::ErrorSource::Upstream => {
                let failure = Failure::from_error_type(e.etype());
                ctx.tally.upstream_failure = Some(failure);
                Some(failure_error(failure))
            }
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                ErrorType::ReadTimedout => {
                    ctx.tally.body_timed_out = true;
                    Some(ciba::body_timeout())
                }
                _ => Some(OAuthError::invalid_request("the request could not be read")),
            },
            _ => Some(
                OAuthError::new(
                    ErrorCode::ServerError,
                    "the gateway failed to proxy the request",
                )
                .with_status(500),
            ),
        };
        let code = match oauth {
            Some(err) if session.response_written().is_none() => {
                let status = err.status;
                ctx.tally.local_error = Some(err.code);
                if write_json(session, status, err_headers(&err), err.to_json().into())
                    .await
                    .is_err()
                {
                    0
                } else {
                    status
                }
            }
            _ => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs once per request, answered locally or proxied: metrics and the access log.
    async fn logging(
        &self,
        session: &mut Session,
        _e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        let status = session
            .response_written()
            .map(|h| h.status.as_u16())
            .unwrap_or(0);
        let endpoint = ctx.route.as_str();
        let live = self.live(ctx);
        let client_label = match &ctx.client {
            Some(c) if live.client_labels.contains(c.as_str()) => c.as_str(),
            Some(_) => "other",
            None => "none",
        };
        self.request_metrics.count(endpoint, status, client_label);
        ctx.tally.record(endpoint);
        if let Some(s) = ctx.upstream_seconds {
            self.request_metrics.upstream_seconds(endpoint, s);
        }
        // Inside the event, so the clock is read only when the access log is on.
        let elapsed_ms = || {
            ctx.started
                .map(|s| s.elapsed().as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        tracing::info!(
            target: "access",
            request_id = %self.request_id(ctx, session),
            method = %session.req_header().method,
            path = %logged_path(&live, session),
            endpoint,
            client_id = ctx.client.as_ref().map(ClientId::as_str).unwrap_or("-"),
            status,
            outcome = outcome(ctx),
            upstream_ms = ctx.upstream_seconds.map(|s| s * 1000.0).unwrap_or(-1.0),
            duration_ms = elapsed_ms(),
        );
    }

    /// What pingora's own error log prints about a request: method and path only, because
    /// a query string may carry a hint or a token.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} id={}",
            req.method,
            logged_path(&self.live(ctx), session),
            self.request_id(ctx, session)
        )
    }
}

/// The request's path as logs print it: without an `auth_req_id` (see [`redact`]).
fn logged_path<'a>(live: &Live, session: &'a Session) -> std::borrow::Cow<'a, str> {
    redact::logged_path(
        session.req_header().uri.path(),
        live.cfg.polling.cancel.as_ref(),
    )
}

impl Gateway {
    /// Serves a request on a CIBA endpoint (`ciba`) under the configuration snapshot it
    /// started with.
    async fn serve_ciba(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
        live: Arc<Live>,
    ) -> Result<bool> {
        let ended = self.ciba_steps(session, ctx, endpoint, live).await;
        finish(self, session, ctx, ended).await
    }

    /// Serves a metadata document (`discovery`).
    async fn serve_discovery(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoints: &Endpoints,
        doc: Document,
    ) -> Result<bool> {
        let ended = self.discovery_steps(session, ctx, endpoints, doc).await;
        finish(self, session, ctx, ended).await
    }

    /// The address the request comes from, honouring forwarding headers from trusted proxies.
    fn source_address(&self, live: &Live, session: &Session) -> std::net::IpAddr {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let req = session.req_header();
        rate_limit::source_address(
            peer,
            header_str(req, names::X_FORWARDED_FOR),
            header_str(req, names::FORWARDED),
            &live.cfg.rate_limit.trusted_proxies,
        )
    }
}

/// Closes the client connection after `seconds` idle between requests.
///
/// pingora 0.9 keeps an idle HTTP/1.1 connection open forever once a request asked for
/// keep-alive (0 means no limit here). A connection that may not be kept alive
/// (`Connection: close`, HTTP/1.0 without keep-alive) is left as it is.
pub fn bound_keepalive(session: &mut Session, seconds: u64) {
    if session.get_keepalive() == Some(0) {
        session.set_keepalive(Some(seconds));
    }
}

/// A header's value, when it is visible ASCII.
fn header_str(req: &RequestHeader, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The access log's outcome: the OP's failure, the gateway's error code, or `upstream`.
fn outcome(ctx: &RequestCtx) -> &'static str {
    if let Some(f) = ctx.tally.upstream_failure {
        return f.as_str();
    }
    match ctx.tally.local_error {
        Some(code) => code.as_str(),
        None => "upstream",
    }
}
