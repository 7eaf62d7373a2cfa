//! Assembles the pingora server: the proxy, the metrics listener, endpoint discovery.

use crate::ciba::clock::SystemClock;
use crate::ciba::discovery;
use crate::config::Config;
use crate::config::StateBackend;
use crate::edge::admin::AdminApp;
use crate::edge::guard::EdgeGuard;
use crate::edge::in_flight;
use crate::edge::notify::{Notifier, NotifyOptions};
use crate::edge::op_client::{self, Connector};
use crate::edge::ping_poller::PingPoller;
use crate::edge::proxy::{Gateway, OpLink, DISCOVERY_PATH};
use crate::edge::resolve;
use crate::metrics;
use crate::state::pings::Pings;
use crate::state::poll_store::PollStore;
use crate::state::rate_limit::RateLimits;
use crate::state::seal::Sealer;
use crate::state::store::{StateStore, Store};
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;

/// Builds a ready-to-run server for `cfg`; `op` exposes readiness to the caller.
pub fn build(cfg: Config) -> (Server, Arc<OpLink>) {
    let cfg = Arc::new(cfg);
    let conf = ServerConf {
        threads: cfg.threads,
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
    let limits = Arc::new(RateLimits::new(&cfg.rate_limit));
    let pings = cfg.ping.as_ref().map(|p| {
        let sealer = Sealer::new(&p.key);
        Arc::new(match &cfg.state {
            StateBackend::Memory => Pings::memory(sealer, p.queue_capacity),
            StateBackend::Redis { redis, .. } => {
                Pings::redis(redis.clone(), sealer, p.queue_capacity, p.lease)
            }
        })
    });
    let mut proxy = Service::new(
        "ciba-gateway".to_string(),
        guarded_proxy(
            &server,
            &cfg,
            op.clone(),
            store.clone(),
            limits.clone(),
            pings.clone(),
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
            store,
            limits,
            every: cfg.polling.sweep_interval,
        },
    );

    if let Some(pings) = pings {
        server.add_service(background_service(
            "ping poller",
            PingPoller::new(
                cfg.clone(),
                op.clone(),
                pings,
                Notifier::new(
                    cfg.ping
                        .as_ref()
                        .map(|p| NotifyOptions::configured(&p.notify))
                        .unwrap_or_default(),
                ),
            ),
        ));
    }
    server.add_service(proxy);
    server.add_service(background_service("drain", Drain));
    server.add_service(sweeper);
    server.add_service(ops);
    server.add_service(discovery);
    (server, op)
}

/// The proxy app behind the edge guard (connection caps, header deadline and cap).
///
/// pingora's `http_proxy_service_with_name` would serve the proxy app directly; the guard
/// takes its place as the listener's app and runs it on each guarded connection.
fn guarded_proxy(
    server: &Server,
    cfg: &Arc<Config>,
    op: Arc<OpLink>,
    store: Store,
    limits: Arc<RateLimits>,
    pings: Option<Arc<Pings>>,
) -> EdgeGuard<HttpProxy<Gateway>> {
    let mut gateway = Gateway::new(cfg.clone(), op, store, limits);
    if let Some(pings) = pings {
        gateway = gateway.with_pings(pings);
    }
    let proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    EdgeGuard::new(
        proxy,
        cfg.edge,
        std::time::Duration::from_secs(cfg.keepalive_timeout_seconds),
        cfg.rate_limit.trusted_proxies.clone(),
    )
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
    limits: Arc<RateLimits>,
    every: std::time::Duration,
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
            // The tracked-ids gauge is read at scrape time (ops.rs), not here.
            self.store.sweep();
            self.limits.retain_recent();
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
        if let (Some(b), Some(t)) = (&up.backchannel_path, &up.token_path) {
            tracing::info!(backchannel = %b, token = %t, "CIBA endpoints configured");
            self.op.set_endpoints(self.public(discovery::Endpoints {
                backchannel: b.clone(),
                token: t.clone(),
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
    /// The OP's endpoints under the names clients use (the profile's public paths).
    fn public(&self, op: discovery::Endpoints) -> discovery::Endpoints {
        let p = &self.cfg.profile;
        discovery::Endpoints {
            backchannel: p.to_public_path(&op.backchannel).into_owned(),
            token: p.to_public_path(&op.token).into_owned(),
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
        discovery::endpoints_from(
            &answer.body,
            up.backchannel_path.as_deref(),
            up.token_path.as_deref(),
        )
    }
}
