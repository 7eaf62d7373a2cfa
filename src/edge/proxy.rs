//! The pingora glue: the only `ProxyHttp` implementation.
//!
//! Thin on purpose: it reads what the pure modules need, calls them, and writes what they
//! decide. Requests on the CIBA endpoints and the discovery document are answered by the
//! gateway (after its own exchange with the OP, see `op_client`); every other path is
//! proxied by pingora untouched.

use crate::ciba::discovery::{self, Endpoints};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::AuthReqId;
use crate::ciba::ids::ClientId;
use crate::ciba::pipeline::{self, Endpoint, Outbound};
use crate::ciba::polling::OpVerdict;
use crate::ciba::redact;
use crate::ciba::routing::{Outcome, Refusal, Routes, Target, Variants};
use crate::ciba::translate;
use crate::config::{Config, UnknownPolicy};
use crate::edge::in_flight::InFlight;
use crate::edge::op_client::{self, Answer, Connector, Failure};
use crate::edge::request_id::{RequestId, RequestIds};
use crate::metrics;
use crate::state::poll_store::{Full, Polled};
use crate::state::rate_limit::{self, Limited, RateLimits};
use crate::state::store::{Store, Unavailable, UNAVAILABLE_RETRY};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    fn target(self) -> Target {
        match self {
            Document::OpenId => Target::Discovery,
            Document::OAuth => Target::Metadata,
        }
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus the ones the
/// gateway sets itself.
const HOP_BY_HOP: &[&str] = &[
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

/// State shared by every request: what start-up learned about the OP.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set once, when the CIBA endpoints are known (configured or discovered).
    pub endpoints: OnceLock<Endpoints>,
    /// The OP at its current address; empty until its host name first resolves, never
    /// emptied afterwards.
    peer: ArcSwapOption<HttpPeer>,
}

impl Shared {
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

/// The gateway service.
pub struct Gateway {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    store: Store,
    limits: Arc<RateLimits>,
    client_labels: std::collections::HashSet<String>,
    connector: Connector,
    ids: RequestIds,
    request_metrics: metrics::RequestMetrics,
    /// The OP's `Host`, parsed once.
    host: HeaderValue,
    /// The gateway's paths under the routing rule, built once the endpoints are known.
    routes: OnceLock<Routes>,
}

impl Gateway {
    /// Builds the service from a validated configuration.
    pub fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        store: Store,
        limits: Arc<RateLimits>,
    ) -> Self {
        // At start-up only: upstream.url passed http's URI parser, which admits no byte
        // that a header value refuses.
        let host = HeaderValue::from_str(&cfg.upstream.authority())
            .expect("a validated upstream.url is a valid Host header");
        let client_labels = cfg.client_labels.iter().cloned().collect();
        Gateway {
            cfg,
            shared,
            store,
            limits,
            client_labels,
            connector: Connector::new(None),
            ids: RequestIds::new(),
            request_metrics: metrics::RequestMetrics::default(),
            host,
            routes: OnceLock::new(),
        }
    }

    /// The routes for the known endpoints, built on first use.
    fn routes(&self, endpoints: &Endpoints) -> &Routes {
        self.routes.get_or_init(|| routes_for(endpoints, &self.cfg))
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Any path the gateway does not own: proxied untouched.
    #[default]
    PassThrough,
    /// A CIBA endpoint.
    Ciba(Endpoint),
    /// A metadata document, served rewritten.
    Discovery(Document),
}

impl Route {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::PassThrough => "other",
            Route::Ciba(e) => e.as_str(),
            Route::Discovery(_) => "discovery",
        }
    }
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct RequestCtx {
    route: Route,
    started: Option<Instant>,
    request_id: RequestId,
    client: Option<ClientId>,
    /// The error code when the gateway answered with an error of its own.
    local_error: Option<ErrorCode>,
    upstream_seconds: Option<f64>,
    upstream_failure: Option<Failure>,
    /// The `auth_req_id` a proxied vendor cancel call names.
    cancel: Option<AuthReqId>,
    /// Counts this request as in flight until the context is dropped; held, never read.
    _in_flight: Option<InFlight>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // Made once a request's header has been read, dropped when it has been answered,
        // whichever way it ends.
        RequestCtx {
            _in_flight: Some(InFlight::enter()),
            ..RequestCtx::default()
        }
    }

    /// Runs first for every request; returns `Ok(true)` when the gateway answered itself.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        bound_keepalive(session, self.cfg.keepalive_timeout_seconds);
        // Per read on passed-through bodies (nginx's client_body_timeout); the CIBA
        // endpoints also hold the whole body to this deadline (`read_body`).
        session.set_read_timeout(Some(self.cfg.edge.body_timeout));
        ctx.request_id = self
            .ids
            .for_request(session.req_header().headers.get("x-request-id"));

        // Until the CIBA paths are known the gateway cannot tell a poll from any other
        // request; letting it through would skip every rule. So nothing passes, and nothing
        // passes before the OP's host name has resolved either.
        let (Some(endpoints), true) = (self.shared.endpoints.get(), self.shared.has_peer()) else {
            let what = if self.shared.has_peer() {
                "the gateway has not yet learned the OpenID Provider's endpoints"
            } else {
                "the gateway has not yet resolved the OpenID Provider's host name"
            };
            let e = OAuthError::new(ErrorCode::TemporarilyUnavailable, what)
                .with_retry_after(self.cfg.upstream.discovery_retry.as_secs().max(1));
            return answer_error(session, ctx, e).await;
        };
        ctx.route = match route(
            session.req_header(),
            self.routes(endpoints),
            self.cfg.variants,
        ) {
            Ok(r) => r,
            Err(e) => return answer_error(session, ctx, e).await,
        };
        match ctx.route {
            Route::PassThrough => {
                if let Some(cancel) = &self.cfg.polling.cancel {
                    let req = session.req_header();
                    ctx.cancel = cancel
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
            Route::Ciba(endpoint) => Box::pin(self.serve_ciba(session, ctx, endpoint)).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // request_filter let no request this far before the first address was known, and a
        // known address is never forgotten.
        match self.shared.peer() {
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
        upstream_request.insert_header(http::header::HOST, self.host.clone())?;
        if self
            .cfg
            .profile
            .op_path(session.req_header().uri.path())
            .is_some()
        {
            let mapped = self.op_path_and_query(&session.req_header().uri, None);
            upstream_request.set_uri(mapped.parse().map_err(|_| {
                pingora::Error::explain(
                    ErrorType::InternalError,
                    "a profile path is not a valid URI",
                )
            })?);
        }
        append_forwarded_for(session, upstream_request)?;
        upstream_request.insert_header("x-request-id", ctx.request_id.header_value())?;
        Ok(())
    }

    /// Runs when a proxied answer's header arrives.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(id) = &ctx.cancel {
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
                ctx.upstream_failure = Some(failure);
                metrics::UPSTREAM_FAILURES
                    .with_label_values(&[failure.as_str()])
                    .inc();
                Some(failure_error(failure))
            }
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                ErrorType::ReadTimedout => Some(body_timeout()),
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
                ctx.local_error = Some(err.code);
                if write_json(session, err_response(&err), err.to_json().into())
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
        let client_label = match &ctx.client {
            Some(c) if self.client_labels.contains(c.as_str()) => c.as_str(),
            Some(_) => "other",
            None => "none",
        };
        self.request_metrics.count(endpoint, status, client_label);
        if let Some(code) = ctx.local_error {
            metrics::LOCAL_ANSWERS
                .with_label_values(&[endpoint, code.as_str()])
                .inc();
        }
        if let Some(s) = ctx.upstream_seconds {
            self.request_metrics.upstream_seconds(endpoint, s);
        }
        let elapsed_ms = ctx
            .started
            .map(|s| s.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            method = %session.req_header().method,
            path = %self.logged_path(session),
            endpoint,
            client_id = ctx.client.as_ref().map(ClientId::as_str).unwrap_or("-"),
            status,
            outcome = outcome(ctx),
            upstream_ms = ctx.upstream_seconds.map(|s| s * 1000.0).unwrap_or(-1.0),
            duration_ms = elapsed_ms,
        );
    }

    /// What pingora's own error log prints about a request: method and path only, because
    /// a query string may carry a hint or a token.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} id={}",
            req.method,
            self.logged_path(session),
            ctx.request_id
        )
    }
}

impl Gateway {
    /// The request's path as logs print it: without an `auth_req_id` (see [`redact`]).
    fn logged_path<'a>(&self, session: &'a Session) -> std::borrow::Cow<'a, str> {
        redact::logged_path(
            session.req_header().uri.path(),
            self.cfg.polling.cancel.as_ref(),
        )
    }

    async fn serve_ciba(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
    ) -> Result<bool> {
        let address = self.source_address(session);
        match self
            .store
            .check_address(&self.limits, endpoint, address)
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(l)) => return answer_error(session, ctx, rate_limited(endpoint, l)).await,
            Err(Unavailable) => return answer_error(session, ctx, store_unavailable()).await,
        }
        if session.req_header().method != http::Method::POST {
            let e = OAuthError::invalid_request("this endpoint accepts POST only")
                .with_status(405)
                .with_reason("method");
            return refuse(session, ctx, endpoint, e).await;
        }
        let body =
            match read_body(session, self.cfg.max_body_bytes, self.cfg.edge.body_timeout).await {
                Ok(b) => b,
                Err(e) => return refuse(session, ctx, endpoint, e).await,
            };
        let req = session.req_header();
        let authorization = match single_authorization(req) {
            Ok(a) => a,
            Err(e) => return refuse(session, ctx, endpoint, e).await,
        };
        let inbound = pipeline::Inbound {
            endpoint,
            content_type: header_str(req, "content-type"),
            authorization,
            body: &body,
        };
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let accepted = match pipeline::check_request(inbound, &self.cfg.rules, now_unix) {
            Ok(a) => a,
            Err(mut e) => {
                // The code's own status is the backchannel's; the token endpoint differs
                // (RFC 6749 5.2). Statuses set on purpose (413, 405) stay.
                if e.status == e.code.status() {
                    e.status = endpoint.status_of(e.code);
                }
                return refuse(session, ctx, endpoint, e).await;
            }
        };
        ctx.client = accepted.client.clone();
        if let Some(lht) = accepted
            .report
            .as_ref()
            .and_then(|r| r.login_hint_token.as_ref())
        {
            let repaired = if lht.repaired() { "true" } else { "false" };
            metrics::LOGIN_HINT_TOKENS
                .with_label_values(&[lht.format.as_str(), repaired])
                .inc();
        }
        if let Some(client) = &accepted.client {
            let credential = accepted
                .form
                .get("client_secret")
                .or_else(|| header_str(session.req_header(), "authorization"));
            let fingerprint = self.limits.fingerprint(credential);
            match self
                .store
                .check_client(&self.limits, endpoint, client, fingerprint)
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(l)) => return answer_error(session, ctx, rate_limited(endpoint, l)).await,
                Err(Unavailable) => return answer_error(session, ctx, store_unavailable()).await,
            }
        }
        let mut polled: Option<(AuthReqId, ClientId)> = None;
        match endpoint {
            Endpoint::Backchannel => {
                if let Some(client) = &accepted.client {
                    let admitted = match self.store.admit(client).await {
                        Ok(a) => a,
                        Err(Unavailable) => {
                            return answer_error(session, ctx, store_unavailable()).await
                        }
                    };
                    if let Err(full) = admitted {
                        return answer_error(session, ctx, tracking_full(full)).await;
                    }
                }
            }
            Endpoint::Token => {
                if let Some(id) = pipeline::ciba_poll(&accepted.form) {
                    // CIBA 10.1: the client authenticates at the token endpoint. A poll that
                    // names no client could be neither owned nor throttled.
                    let Some(client) = accepted.client.clone() else {
                        let e = OAuthError::new(
                            ErrorCode::InvalidClient,
                            "a CIBA token request must identify its client",
                        )
                        .with_status(401)
                        .with_reason("client");
                        return refuse(session, ctx, endpoint, e).await;
                    };
                    let id = AuthReqId::new(id);
                    if let Err(e) = self.poll_decision(&id, &client).await {
                        return answer_error(session, ctx, e).await;
                    }
                    polled = Some((id, client));
                }
            }
        }
        let forward = Bytes::from(accepted.form.encode());
        let request = self.upstream_request(session, ctx, forward.len())?;
        let answer = match self.exchange(ctx, request, forward).await {
            Ok(a) => a,
            Err(f) => return answer_error(session, ctx, failure_error(f)).await,
        };
        let outbound = pipeline::check_response(pipeline::Upstream {
            endpoint,
            status: answer.status,
            content_type: answer.content_type(),
            body: &answer.body,
        });
        let value = match outbound {
            Outbound::Json(v) => v,
            Outbound::Replace(e) => {
                metrics::UPSTREAM_FAILURES
                    .with_label_values(&["bad_response"])
                    .inc();
                return answer_error(session, ctx, e).await;
            }
        };
        // The profile maps the OP's dialect onto the spec.
        let translated = self.cfg.profile.translate(endpoint, answer.status, value);
        if translated.unknown_error {
            metrics::UPSTREAM_UNKNOWN_ERRORS
                .with_label_values(&[endpoint.as_str()])
                .inc();
        }
        let status = translated.status;
        let mut value = translated.body;
        match endpoint {
            Endpoint::Backchannel if status == 200 => {
                if let Err(e) = self.track_ack(&mut value, ctx.client.clone()).await {
                    metrics::UPSTREAM_FAILURES
                        .with_label_values(&["bad_response"])
                        .inc();
                    return answer_error(session, ctx, e).await;
                }
            }
            Endpoint::Token => {
                if let Some((id, client)) = &polled {
                    let verdict = translate::classify_token_answer(status, &value);
                    if verdict != OpVerdict::Unclear {
                        self.store.report(id, client, verdict).await;
                    }
                }
            }
            Endpoint::Backchannel => {}
        }
        let body = Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"));
        let mut h = relay_header(&answer)?;
        h.set_status(status)?;
        no_store(&mut h)?;
        write_json(session, h, body).await?;
        Ok(true)
    }

    /// The address the request comes from, honouring forwarding headers from trusted proxies.
    fn source_address(&self, session: &Session) -> std::net::IpAddr {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let req = session.req_header();
        rate_limit::source_address(
            peer,
            header_str(req, "x-forwarded-for"),
            header_str(req, "forwarded"),
            &self.cfg.rate_limit.trusted_proxies,
        )
    }

    /// The OP's path (the profile's mapping of the public one, `public` when routed to one
    /// of the gateway's paths) with the request's query.
    fn op_path_and_query(&self, uri: &http::Uri, public: Option<&str>) -> String {
        let path = self.cfg.profile.to_op_path(public.unwrap_or(uri.path()));
        match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        }
    }

    /// Applies the poll rules (CIBA 11) to a token request; an error is answered locally.
    ///
    /// An id the gateway does not know is forwarded once to learn what the OP thinks of it
    /// (`unknown_auth_req_id = "forward"`), or refused (`"reject"`).
    async fn poll_decision(&self, id: &AuthReqId, client: &ClientId) -> Result<(), OAuthError> {
        let learn = self.cfg.polling.unknown == UnknownPolicy::Forward;
        let polled = self
            .store
            .poll(id, client, learn)
            .await
            .map_err(|Unavailable| store_unavailable())?;
        match polled {
            Polled::Decided(decision) => decision.refusal().map_or(Ok(()), Err),
            // Only when the shared store failed open (or the id is too long to store): the
            // OP still enforces its own rules.
            Polled::Unknown if learn => Ok(()),
            Polled::Unknown => Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "unknown auth_req_id",
            )),
            Polled::Full(full) => Err(tracking_full(full)),
        }
    }

    /// Records a 200 acknowledgement and rewrites it in place with the enforced interval
    /// and expiry; an ack for a request that named no client is left as the OP sent it.
    async fn track_ack(
        &self,
        ack: &mut serde_json::Value,
        client: Option<ClientId>,
    ) -> Result<(), OAuthError> {
        let invalid = |why: String| {
            OAuthError::new(
                ErrorCode::ServerError,
                format!("the OpenID Provider sent an invalid acknowledgement: {why}"),
            )
        };
        let op_ack = translate::parse_ack(ack).map_err(invalid)?;
        let Some(client) = client else {
            tracing::warn!(
                "an acknowledgement for a request that named no client cannot be tracked"
            );
            return Ok(());
        };
        let enforced = self
            .store
            .record_ack(
                op_ack.auth_req_id,
                client,
                op_ack.interval,
                op_ack.expires_in,
            )
            .await
            .map_err(|e| invalid(e.to_string()))?;
        translate::rewrite_ack(ack, &enforced);
        Ok(())
    }

    async fn serve_discovery(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoints: &Endpoints,
        doc: Document,
    ) -> Result<bool> {
        let public_base = match &self.cfg.public_url {
            Some(u) => u.clone(),
            None => derived_base(session.req_header()),
        };
        let request = self.upstream_request(session, ctx, 0)?;
        let answer = match self.exchange(ctx, request, Bytes::new()).await {
            Ok(a) => a,
            Err(f) => return answer_error(session, ctx, failure_error(f)).await,
        };
        if answer.status == 404 && doc == Document::OAuth {
            // Optional metadata the OP does not publish.
            let e = OAuthError::invalid_request("the OpenID Provider publishes no such document")
                .with_status(404);
            return answer_error(session, ctx, e).await;
        }
        if answer.status != 200 {
            let e = OAuthError::new(
                ErrorCode::ServerError,
                format!(
                    "the OpenID Provider answered the discovery request with status {}",
                    answer.status
                ),
            );
            return answer_error(session, ctx, e).await;
        }
        let profile = &self.cfg.profile;
        let public_path = |p: &str| profile.to_public_path(p).into_owned();
        let body = match discovery::rewrite(&answer.body, &public_base, endpoints, &public_path) {
            Ok(b) => b,
            Err(why) => {
                metrics::UPSTREAM_FAILURES
                    .with_label_values(&["bad_response"])
                    .inc();
                return answer_error(session, ctx, OAuthError::new(ErrorCode::ServerError, why))
                    .await;
            }
        };
        let mut h = relay_header(&answer)?;
        // The document differs per public URL, so a shared cache must not mix them.
        h.insert_header("vary", "host")?;
        write_json(session, h, body.into()).await?;
        Ok(true)
    }

    /// The request the gateway sends to the OP: the client's headers minus hop-by-hop ones,
    /// the OP's `Host`, and the body's length.
    fn upstream_request(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        body_len: usize,
    ) -> Result<RequestHeader> {
        let src = session.req_header();
        // The endpoint's own path, whichever spelling of it the client used.
        let public = match ctx.route {
            Route::Ciba(Endpoint::Backchannel) => Some(Target::Backchannel),
            Route::Ciba(Endpoint::Token) => Some(Target::Token),
            Route::Discovery(doc) => Some(doc.target()),
            Route::PassThrough => None,
        }
        .and_then(|t| self.routes.get()?.public_path(t));
        let path = self.op_path_and_query(&src.uri, public);
        let mut req = RequestHeader::build(
            src.method.clone(),
            path.as_bytes(),
            Some(src.headers.len() + 4),
        )?;
        for (name, value) in src.headers.iter() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                req.append_header(name.clone(), value.clone())?;
            }
        }
        req.insert_header(http::header::HOST, self.host.clone())?;
        if body_len > 0 || src.method == http::Method::POST {
            req.insert_header("content-length", body_len.to_string())?;
        }
        req.insert_header("x-request-id", ctx.request_id.header_value())?;
        append_forwarded_for(session, &mut req)?;
        Ok(req)
    }

    async fn exchange(
        &self,
        ctx: &mut RequestCtx,
        request: RequestHeader,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let Some(peer) = self.shared.peer() else {
            ctx.upstream_failure = Some(Failure::Connect);
            return Err(Failure::Connect);
        };
        let start = Instant::now();
        // Boxed: pingora's client session and the deadline make this future about 5 KiB,
        // which inline would be copied also for the requests answered without the OP.
        let result = Box::pin(op_client::exchange(
            &self.connector,
            &peer,
            request,
            body,
            op_client::deadline(&self.cfg.upstream),
        ))
        .await;
        ctx.upstream_seconds = Some(start.elapsed().as_secs_f64());
        if let Err(f) = result {
            ctx.upstream_failure = Some(f);
            metrics::UPSTREAM_FAILURES
                .with_label_values(&[f.as_str()])
                .inc();
        }
        result
    }
}

/// The gateway's paths: the CIBA endpoints (public names) and the discovery document
/// under the upstream's base path, each also under the name the profile gives it on the OP.
pub fn routes_for(endpoints: &Endpoints, cfg: &Config) -> Routes {
    let discovery = format!("{}{}", cfg.upstream.base_path, DISCOVERY_PATH);
    let metadata = format!("{}{}", cfg.upstream.base_path, METADATA_PATH);
    let op = |p: &str| cfg.profile.to_op_path(p).into_owned();
    Routes::new(&[
        (
            Target::Backchannel,
            &endpoints.backchannel,
            &op(&endpoints.backchannel),
        ),
        (Target::Token, &endpoints.token, &op(&endpoints.token)),
        (Target::Discovery, &discovery, &op(&discovery)),
        (Target::Metadata, &metadata, &op(&metadata)),
    ])
}

/// Decides the route from the request-target as received (`routing::Routes::classify`,
/// the one rule for every spelling) and the method (a metadata document is GET and HEAD
/// only); an error is answered locally.
pub fn route(
    req: &RequestHeader,
    routes: &Routes,
    variants: Variants,
) -> Result<Route, OAuthError> {
    match routes.classify(req.raw_path()).outcome(variants) {
        Outcome::PassThrough => Ok(Route::PassThrough),
        Outcome::Serve(Target::Backchannel) => Ok(Route::Ciba(Endpoint::Backchannel)),
        Outcome::Serve(Target::Token) => Ok(Route::Ciba(Endpoint::Token)),
        Outcome::Serve(Target::Discovery) => discovery(req, Document::OpenId),
        Outcome::Serve(Target::Metadata) => discovery(req, Document::OAuth),
        Outcome::NotFound => Err(OAuthError::invalid_request(
            "no such endpoint: this spelling of the path is not served; use the path from the discovery document",
        )
        .with_status(404)
        .with_reason("path_variant")),
        Outcome::Malformed(r) => Err(malformed_target(r)),
    }
}

/// A metadata document is read with GET or HEAD; any other method on its path is
/// answered at the edge, never forwarded.
fn discovery(req: &RequestHeader, doc: Document) -> Result<Route, OAuthError> {
    if matches!(req.method, http::Method::GET | http::Method::HEAD) {
        Ok(Route::Discovery(doc))
    } else {
        Err(
            OAuthError::invalid_request("this document accepts GET and HEAD only")
                .with_status(405)
                .with_reason("method"),
        )
    }
}

fn malformed_target(r: Refusal) -> OAuthError {
    OAuthError::invalid_request(r.describe()).with_reason("malformed_target")
}

/// Reads the whole body within `deadline` (408 after it), refusing more than `limit` bytes
/// without buffering them.
///
/// pingora's own client read timeout is per read, so a body trickled a byte at a time
/// would hold the connection for as long as the client likes; the deadline is for the
/// whole body, from the end of the header.
async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, OAuthError> {
    match tokio::time::timeout(deadline, read_body_unbounded(session, limit)).await {
        Ok(read) => read,
        Err(_) => Err(body_timeout()),
    }
}

/// The 408 for a body not received in time, counted as an edge refusal.
fn body_timeout() -> OAuthError {
    metrics::CONNECTIONS_REFUSED
        .with_label_values(&["body_timeout"])
        .inc();
    OAuthError::invalid_request("the request body was not received in time")
        .with_status(408)
        .with_reason("body_timeout")
}

/// Reads the whole body, refusing more than `limit` bytes without buffering them.
async fn read_body_unbounded(session: &mut Session, limit: usize) -> Result<Bytes, OAuthError> {
    let too_large = || {
        OAuthError::invalid_request(format!("the request body exceeds {limit} bytes"))
            .with_status(413)
    };
    let declared =
        header_str(session.req_header(), "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            // pingora's per-read timeout (`server.client_body_timeout_seconds` too).
            Err(e) if e.etype() == &ErrorType::ReadTimedout => return Err(body_timeout()),
            Err(_) => {
                return Err(OAuthError::invalid_request(
                    "the request body could not be read",
                ))
            }
        }
    }
}

/// The 503 for a request the shared store could not decide, in `closed` failure mode.
fn store_unavailable() -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the gateway's shared state is unavailable; retry shortly",
    )
    .with_retry_after(UNAVAILABLE_RETRY.as_secs())
    .with_reason("store_unavailable")
}

/// Answers a request refused by validation, counting why.
async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    e: OAuthError,
) -> Result<bool> {
    metrics::VALIDATION_REFUSALS
        .with_label_values(&[endpoint.as_str(), e.reason])
        .inc();
    answer_error(session, ctx, e).await
}

/// The 429 for a request whose answer the gateway would have no room to track.
fn tracking_full(full: Full) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many outstanding authentication requests; retry later",
    )
    .with_status(429)
    .with_retry_after(full.retry_after.as_secs().max(1))
}

/// The 429 for a request over a rate limit, counted by key kind.
fn rate_limited(endpoint: Endpoint, l: Limited) -> OAuthError {
    metrics::RATE_LIMITED
        .with_label_values(&[endpoint.as_str(), l.kind.as_str()])
        .inc();
    let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        format!(
            "too many requests from this {}; retry after {secs} s",
            l.kind.as_str()
        ),
    )
    .with_status(429)
    .with_retry_after(secs.max(1))
    .with_reason("rate_limited")
}

/// Answers with an OAuth error and records it for the access log.
async fn answer_error(session: &mut Session, ctx: &mut RequestCtx, e: OAuthError) -> Result<bool> {
    ctx.local_error = Some(e.code);
    if !session.is_body_done() {
        // Answered before the whole body was read (413, 405, 429, a refused framing): what
        // is left on the connection is not a request, so it cannot be reused.
        session.set_keepalive(None);
    }
    // Boxed so that every caller's future does not carry pingora's response writer.
    Box::pin(write_json(session, err_response(&e), e.to_json().into())).await?;
    Ok(true)
}

fn err_response(e: &OAuthError) -> ResponseHeader {
    let mut h = ResponseHeader::build(e.status, Some(4)).expect("a valid status code");
    no_store(&mut h).expect("static headers");
    if let Some(s) = e.retry_after {
        h.insert_header("retry-after", s.to_string())
            .expect("digits are a valid header");
    }
    h
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

/// CIBA answers carry tokens or their errors: no cache may keep them (RFC 6749 5.1).
fn no_store(h: &mut ResponseHeader) -> Result<()> {
    h.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    h.insert_header(PRAGMA, HeaderValue::from_static("no-cache"))
}

/// Writes a complete JSON answer with its length.
async fn write_json(session: &mut Session, mut h: ResponseHeader, body: Bytes) -> Result<()> {
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
fn relay_header(answer: &Answer) -> Result<ResponseHeader> {
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

/// The one `Authorization` header of a CIBA request. Two of them, or one that is not
/// visible ASCII, are refused: the gateway would read one credential and the OP another,
/// past the client-identity and one-method checks.
fn single_authorization(req: &RequestHeader) -> Result<Option<&str>, OAuthError> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(
            OAuthError::invalid_request("the Authorization header is sent more than once")
                .with_reason("client_auth_methods"),
        );
    }
    first.to_str().map(Some).map_err(|_| {
        OAuthError::new(
            ErrorCode::InvalidClient,
            "the Authorization header is not visible ASCII",
        )
    })
}

fn header_str<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The public base URL when none is configured: the request's own `Host`, over http.
fn derived_base(req: &RequestHeader) -> String {
    let host = header_str(req, "host")
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn append_forwarded_for(session: &Session, req: &mut RequestHeader) -> Result<()> {
    let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    else {
        return Ok(());
    };
    let mut value = Vec::with_capacity(64);
    // Every earlier hop's list, in order: several header lines are one list (RFC 9110 5.3).
    for prev in session.req_header().headers.get_all("x-forwarded-for") {
        value.extend_from_slice(prev.as_bytes());
        value.extend_from_slice(b", ");
    }
    push_ip(&mut value, ip);
    let value = HeaderValue::from_bytes(&value).map_err(|_| {
        pingora::Error::explain(ErrorType::InvalidHTTPHeader, "bad X-Forwarded-For")
    })?;
    req.insert_header("x-forwarded-for", value)?;
    Ok(())
}

/// Writes an address as `Display` does; IPv4 by hand, since it is on every proxied request.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

fn outcome(ctx: &RequestCtx) -> &'static str {
    if let Some(f) = ctx.upstream_failure {
        return f.as_str();
    }
    match ctx.local_error {
        Some(code) => code.as_str(),
        None => "upstream",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_plain_authorization_header_at_most() {
        let req = |values: &[&[u8]]| {
            let mut r = RequestHeader::build("POST", b"/token", None).unwrap();
            for v in values {
                r.append_header("authorization", http::HeaderValue::from_bytes(v).unwrap())
                    .unwrap();
            }
            r
        };
        assert_eq!(single_authorization(&req(&[])).unwrap(), None);
        assert_eq!(
            single_authorization(&req(&[b"Basic YTpi"])).unwrap(),
            Some("Basic YTpi")
        );
        let two = single_authorization(&req(&[b"Bearer x", b"Basic YTpi"])).unwrap_err();
        assert_eq!((two.code, two.status), (ErrorCode::InvalidRequest, 400));
        let opaque = single_authorization(&req(&[b"Basic \xe9"])).unwrap_err();
        assert_eq!(opaque.code, ErrorCode::InvalidClient);
    }

    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn every_route_label_has_a_cached_metrics_slot() {
        let routes = [
            Route::PassThrough,
            Route::Ciba(Endpoint::Backchannel),
            Route::Ciba(Endpoint::Token),
            Route::Discovery(Document::OpenId),
            Route::Discovery(Document::OAuth),
        ];
        let mut labels: Vec<&str> = routes.iter().map(|r| r.as_str()).collect();
        labels.dedup();
        assert_eq!(labels, metrics::ENDPOINT_LABELS);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut cases: Vec<IpAddr> = vec![
            Ipv6Addr::LOCALHOST.into(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ];
        for a in [0u8, 1, 9, 10, 42, 99, 100, 127, 199, 200, 250, 255] {
            cases.push(Ipv4Addr::new(a, 255 - a, a / 2, 7).into());
        }
        for ip in cases {
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
