//! Assembles the pingora server: the proxy, the metrics listener, endpoint discovery.

use crate::ciba::clock::SystemClock;
use crate::ciba::discovery;
use crate::config::Config;
use crate::config::StateBackend;
use crate::edge::admin::AdminApp;
use crate::edge::bridge::Bridge;
use crate::edge::guard::{EdgeGuard, GuardSettings};
use crate::edge::h2::H2Limits;
use crate::edge::in_flight;
use crate::edge::notify::{Notifier, NotifyOptions};
use crate::edge::op_client::{self, Connector};
use crate::edge::ping_poller::PingPoller;
use crate::edge::proxy::{Gateway, OpLink, DISCOVERY_PATH};
use crate::edge::reload::Runtime;
use crate::edge::resolve;
use crate::edge::tls::{TlsState, Watcher};
use crate::metrics;
use crate::state::bridge_store::BridgeStore;
use crate::state::pings::Pings;
use crate::state::poll_store::PollStore;
use crate::state::seal::Sealer;
use crate::state::store::{StateStore, Store};
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;

/// Builds a ready-to-run server for `cfg`; `op` exposes readiness to the caller.
pub fn build(cfg: Config) -> (Server, Arc<OpLink>) {
    build_reloadable(cfg).into_server()
}

/// A ready-to-run server and the handles a running gateway is steered with.
pub struct Built {
    /// The server, to run.
    pub server: Server,
    /// What start-up learns about the OP (readiness).
    pub op: Arc<OpLink>,
    /// The listener's TLS, when `[server.tls]` is set: `TlsState::reload` rotates its
    /// certificate (a reload does, and the file watcher).
    pub tls: Option<Arc<TlsState>>,
    /// The runtime a reload replaces the configuration of (`edge/reload.rs`; `main`
    /// listens for `SIGHUP`).
    pub runtime: Arc<Runtime>,
}

impl Built {
    /// The server and the OP's readiness, for a caller that steers nothing else.
    pub fn into_server(self) -> (Server, Arc<OpLink>) {
        (self.server, self.op)
    }
}

/// [`build`], also returning the handles: the runtime a reload replaces the configuration
/// of and the listener's TLS. Reloaders of the parts built here are registered here; the
/// runtime takes more until the server runs.
pub fn build_reloadable(cfg: Config) -> Built {
    let cfg = Arc::new(cfg);
    let runtime = Runtime::new(cfg.clone());
    // The files passed validation moments ago; one that changed since is a start-up error.
    let tls = cfg.tls.as_ref().map(|t| {
        TlsState::new(t).unwrap_or_else(|e| {
            eprintln!("ciba-gateway: configuration error: {e}");
            std::process::exit(2)
        })
    });
    if let Some(state) = &tls {
        // A reload rotates the listener's certificate: read and checked before the swap
        // (a bad pair refuses the whole reload), put in use right after it.
        let state = state.clone();
        runtime.add_reloader(Box::new(move |cfg| match &cfg.tls {
            Some(settings) => {
                let prepared = state.prepare(settings)?;
                Ok(Some(Box::new(move || prepared.commit())))
            }
            None => Ok(None),
        }));
    }
    let conf = ServerConf {
        threads: cfg.threads.count(),
        grace_period_seconds: Some(cfg.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        work_stealing: cfg.work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let op = Arc::new(OpLink::default());
    let store: Store = Arc::new(match &cfg.state {
        StateBackend::Memory => StateStore::Memory(PollStore::new(
            cfg.polling.policy,
            cfg.polling.limits,
            Arc::new(SystemClock),
        )),
        StateBackend::Redis { redis, connections } => StateStore::redis(
            redis.clone(),
            *connections,
            cfg.polling.policy,
            cfg.polling.limits,
        ),
    });
    {
        // The poll rules' numbers and tracking bounds follow each reload; what the store
        // tracks stays, each entry with the interval and expiry it was given.
        let store = store.clone();
        runtime.follow(Box::new(move |live| {
            store.set_poll_settings(live.cfg.polling.policy, live.cfg.polling.limits)
        }));
    }
    let pings = cfg.ping.as_ref().map(|p| {
        let sealer = Sealer::new(&p.key);
        Arc::new(match &cfg.state {
            StateBackend::Memory => Pings::memory(sealer, p.queue_capacity),
            StateBackend::Redis { redis, .. } => {
                Pings::redis(redis.clone(), sealer, p.queue_capacity, p.lease)
            }
        })
    });
    let bridge_store = bridge_store(&cfg);
    let mut proxy = Service::new(
        "ciba-gateway".to_string(),
        guarded_proxy(
            &server,
            &runtime,
            op.clone(),
            store.clone(),
            pings.clone(),
            tls.clone(),
            bridge_store.clone(),
        ),
    );
    proxy.add_tcp(&cfg.listen.to_string());

    let mut ops = Service::new(
        "metrics".to_string(),
        HttpServer::new_app(AdminApp {
            op: op.clone(),
            store: store.clone(),
        }),
    );
    ops.add_tcp(&cfg.metrics_listen.to_string());

    match resolve::OpAddress::of(&cfg.upstream.host, cfg.upstream.port) {
        resolve::OpAddress::Fixed(addr) => op.set_peer(op_client::peer(&cfg.upstream, addr)),
        resolve::OpAddress::Name { .. } => {
            server.add_service(background_service(
                "upstream resolver",
                Resolver {
                    cfg: cfg.clone(),
                    op: op.clone(),
                },
            ));
        }
    }

    let discovery = background_service(
        "discovery",
        Discovery {
            cfg: cfg.clone(),
            op: op.clone(),
        },
    );

    let sweeper = background_service(
        "poll sweeper",
        Sweeper {
            store: store.clone(),
            runtime: runtime.clone(),
            bridge: bridge_store,
        },
    );

    if let Some(pings) = pings {
        let poller = PingPoller::new(
            runtime.clone(),
            op.clone(),
            pings,
            Notifier::new(
                cfg.ping
                    .as_ref()
                    .map(|p| NotifyOptions::configured(&p.notify))
                    .unwrap_or_default(),
            ),
        );
        runtime.follow(poller.follower());
        server.add_service(background_service("ping poller", poller));
    }
    if let (Some(state), Some(every)) = (&tls, cfg.tls.as_ref().and_then(|t| t.watch_interval)) {
        server.add_service(background_service(
            "certificate watcher",
            Watcher {
                state: state.clone(),
                every,
            },
        ));
    }
    server.add_service(proxy);
    server.add_service(background_service("drain", Drain));
    server.add_service(sweeper);
    server.add_service(ops);
    server.add_service(discovery);
    Built {
        server,
        op,
        tls,
        runtime,
    }
}

/// The proxy app behind the edge guard (connection caps, header deadline and cap).
///
/// pingora's `http_proxy_service_with_name` would serve the proxy app directly; the guard
/// takes its place as the listener's app and runs it on each guarded connection.
fn guarded_proxy(
    server: &Server,
    runtime: &Arc<Runtime>,
    op: Arc<OpLink>,
    store: Store,
    pings: Option<Arc<Pings>>,
    tls: Option<Arc<TlsState>>,
    bridge_store: Option<Arc<BridgeStore>>,
) -> EdgeGuard<Gateway> {
    let mut gateway = Gateway::new(runtime.clone(), op.clone(), store.clone());
    if let Some(pings) = pings {
        gateway = gateway.with_pings(pings);
    }
    if let Some(bridge) = bridge_store.and_then(|b| bridge(&runtime.current().cfg, op, store, b)) {
        gateway = gateway.with_bridge(bridge);
    }
    let proxy = pingora::proxy::http_proxy(&server.configuration, gateway.clone());
    let settings = |cfg: &Config| GuardSettings {
        limits: cfg.edge,
        keepalive: std::time::Duration::from_secs(cfg.keepalive_timeout_seconds),
        trusted: cfg.rate_limit.trusted_proxies.clone(),
    };
    let live = runtime.current();
    let start = settings(&live.cfg);
    let keepalive = start.keepalive;
    let guard = EdgeGuard::new(proxy, gateway, start.limits, start.keepalive, start.trusted);
    // Connections accepted after a reload get its deadlines, header cap and caps.
    let handle = guard.handle();
    runtime.follow(Box::new(move |live| handle.set(settings(&live.cfg))));
    let cfg = &live.cfg;
    match (tls, &cfg.tls) {
        (Some(state), Some(t)) => guard.with_tls(
            state,
            t.handshake_timeout,
            H2Limits {
                header_timeout: cfg.edge.header_timeout,
                idle_timeout: keepalive,
                // validate_edge holds it below 1 MiB.
                max_header_bytes: u32::try_from(cfg.edge.max_header_bytes).unwrap_or(u32::MAX),
                max_concurrent_streams: t.max_concurrent_streams,
            },
        ),
        _ => guard,
    }
}

/// The PAR bridge's records for `[bridge]`: in memory or in Redis (the state backend's).
fn bridge_store(cfg: &Config) -> Option<Arc<BridgeStore>> {
    let b = cfg.bridge.as_ref()?;
    let sealer = Sealer::new(&b.key);
    Some(Arc::new(match &cfg.state {
        StateBackend::Memory => BridgeStore::memory(sealer),
        StateBackend::Redis { redis, .. } => BridgeStore::redis(redis.clone(), sealer),
    }))
}

/// The PAR bridge for `[bridge]` over `store`, with its notifier when
/// `bridge.notifier_url` is set.
fn bridge(
    cfg: &Arc<Config>,
    op: Arc<OpLink>,
    polls: Store,
    store: Arc<BridgeStore>,
) -> Option<Arc<Bridge>> {
    let b = cfg.bridge.as_ref()?;
    if cfg.public_url.is_none() {
        tracing::warn!(
            "bridge: server.public_url is unset, so the callback's redirect_uri follows each \
             backchannel request's Host header; set it in production"
        );
    }
    let notifier = b
        .notifier
        .as_ref()
        .map(|_| Notifier::new(NotifyOptions::default()));
    Bridge::new(cfg.clone(), op, store, polls, notifier).map(Arc::new)
}

/// Follows the OP's host name in DNS, pointing new upstream connections at its address.
struct Resolver {
    cfg: Arc<Config>,
    op: Arc<OpLink>,
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, shutdown: ShutdownWatch) {
        let up = &self.cfg.upstream;
        resolve::follow(
            &up.host,
            up.port,
            resolve::Schedule {
                every: up.resolve_interval,
                // While nothing is known the gateway is not ready: retry at the pace the
                // not-ready answers' Retry-After announces.
                retry: up.discovery_retry,
            },
            resolve::lookup,
            |addr| self.op.set_peer(op_client::peer(up, addr)),
            || metrics::UPSTREAM_RESOLVE_FAILURES.inc(),
            shutdown,
        )
        .await;
    }
}

/// Ends a graceful shutdown as soon as no request is in flight.
///
/// After SIGTERM pingora stops accepting and then sleeps the whole grace period, however
/// idle it is. This watches the requests still being answered and exits once there are
/// none; the grace period stays the upper bound.
struct Drain;

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        loop {
            if in_flight::count() == 0 {
                tracing::info!("no request in flight; exiting before the grace period ends");
                std::process::exit(0);
            }
            tokio::time::sleep(DRAIN_CHECK).await;
        }
    }
}

/// How often a shutting-down gateway looks for the last request to finish.
const DRAIN_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Drops expired poll state and stale rate-limit keys periodically, shard by shard (no global lock).
struct Sweeper {
    store: Store,
    /// The interval and the rate limiters in force, read at each sweep.
    runtime: Arc<Runtime>,
    /// The bridge's records, when `[bridge]` is on.
    bridge: Option<Arc<BridgeStore>>,
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let every = self.runtime.current().cfg.polling.sweep_interval;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            // The tracked-ids gauge is read at scrape time (ops.rs), not here.
            self.store.sweep();
            self.runtime.current().limits.retain_recent();
            if let Some(b) = &self.bridge {
                b.sweep(crate::edge::bridge::now_ms());
            }
        }
    }
}

/// Learns the CIBA endpoints, retrying until the OP answers.
///
/// The gateway starts even when the OP is down, rather than exiting: an orchestrator
/// restarting both would otherwise loop. Until the endpoints are known `/readyz` says 503
/// and every proxied request gets a 503 JSON error.
struct Discovery {
    cfg: Arc<Config>,
    op: Arc<OpLink>,
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let up = &self.cfg.upstream;
        if let (Some(b), Some(t)) = (self.backchannel_path(), &up.token_path) {
            tracing::info!(backchannel = %b, token = %t, "CIBA endpoints configured");
            self.op.set_endpoints(self.public(discovery::Endpoints {
                backchannel: b.clone(),
                token: t.clone(),
                mtls_backchannel: up.mtls_backchannel_path.clone(),
                mtls_token: up.mtls_token_path.clone(),
            }));
            return;
        }
        let connector = Connector::new(None);
        loop {
            match self.attempt(&connector).await {
                Ok(e) => {
                    tracing::info!(backchannel = %e.backchannel, token = %e.token, "CIBA endpoints discovered");
                    self.op.set_endpoints(self.public(e));
                    return;
                }
                Err(why) => tracing::warn!(
                    "discovery from {}{} failed: {why}; retrying in {}s (set upstream.backchannel_path and upstream.token_path to skip discovery)",
                    up.base_url(),
                    DISCOVERY_PATH,
                    up.discovery_retry.as_secs()
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(up.discovery_retry) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Discovery {
    /// The backchannel path when it is not discovered: configured for the OP, or the
    /// bridge's own (the OP has none in bridge mode).
    fn backchannel_path(&self) -> Option<&String> {
        self.cfg.upstream.backchannel_path.as_ref().or(self
            .cfg
            .bridge
            .as_ref()
            .map(|b| &b.backchannel_path))
    }

    /// The OP's endpoints under the names clients use (the profile's public paths).
    fn public(&self, op: discovery::Endpoints) -> discovery::Endpoints {
        let p = &self.cfg.profile;
        let public = |path: &str| p.to_public_path(path).into_owned();
        discovery::Endpoints {
            backchannel: public(&op.backchannel),
            token: public(&op.token),
            mtls_backchannel: op.mtls_backchannel.as_deref().map(public),
            mtls_token: op.mtls_token.as_deref().map(public),
        }
    }

    async fn attempt(&self, connector: &Connector) -> Result<discovery::Endpoints, String> {
        let up = &self.cfg.upstream;
        let peer = self.op.peer().ok_or("the host name has not resolved yet")?;
        let req = op_client::get_request(up, DISCOVERY_PATH)?;
        let answer = op_client::exchange(
            connector,
            &peer,
            req,
            bytes::Bytes::new(),
            op_client::deadline(up),
        )
        .await
        .map_err(|f| format!("upstream failure ({})", f.as_str()))?;
        if answer.status != 200 {
            return Err(format!("status {}", answer.status));
        }
        if let Some(names) = discovery::op_names(&answer.body) {
            let _ = self.op.op_names.set(names);
        }
        let mut found = discovery::endpoints_from(
            &answer.body,
            self.backchannel_path().map(String::as_str),
            up.token_path.as_deref(),
        )?;
        // Configured alias paths win over the document's, as the endpoints' do.
        if up.mtls_backchannel_path.is_some() {
            found.mtls_backchannel = up.mtls_backchannel_path.clone();
        }
        if up.mtls_token_path.is_some() {
            found.mtls_token = up.mtls_token_path.clone();
        }
        Ok(found)
    }
}
