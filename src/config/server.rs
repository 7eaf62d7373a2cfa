//! `[server]`: the listeners, the worker threads, and what a client connection may hold.

use super::err;
use super::file::ServerSection;
use super::Overrides;
use crate::ciba::config_error::ConfigError;
use std::net::SocketAddr;
use std::time::Duration;

/// The largest request body the gateway can replay upstream.
///
/// pingora's retry buffer holds at most 64 KiB; a body larger than that would be read,
/// checked, and then silently not forwarded. So the configured cap may not exceed it.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;
/// The smallest header cap: a request line and a few ordinary headers must fit.
pub const MIN_HEADER_BYTES: usize = 1024;
/// The largest header cap: pingora's own buffer limit (1 MiB).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;

/// `server.listen` when unset.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// `server.metrics_listen` when unset.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9091";
/// `server.work_stealing` when unset.
pub const DEFAULT_WORK_STEALING: bool = true;
/// `server.max_body_bytes` when unset.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// `server.shutdown_grace_seconds` when unset.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 35;
/// `server.keepalive_timeout_seconds` when unset.
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECONDS: u64 = 75;
/// `server.client_header_timeout_seconds` when unset.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT_SECONDS: u64 = 10;
/// `server.client_body_timeout_seconds` when unset.
pub const DEFAULT_CLIENT_BODY_TIMEOUT_SECONDS: u64 = 10;
/// `server.max_header_bytes` when unset.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// `server.max_connections` when unset.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `server.max_connections_per_address` when unset.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// `[server]` validated, without the edge limits.
#[derive(Debug, Clone)]
pub(super) struct Server {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub public_url: Option<String>,
    pub threads: Threads,
    pub work_stealing: bool,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub keepalive_timeout_seconds: u64,
}

/// How many proxy worker threads, and why that many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// `server.threads` as written.
    Configured(usize),
    /// `server.threads` unset: the CPUs this process may run on.
    UsableCpus(usize),
}

impl Threads {
    /// The CPUs this process may use: its affinity mask, bounded by a cgroup CPU quota
    /// (std reads both on Linux), so that a gateway pinned or limited to one core does not
    /// run two threads that take turns on it (a longer tail, BENCHMARKS.md).
    fn usable_cpus() -> Threads {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Threads::UsableCpus(n.min(1024))
    }

    /// The number of threads.
    pub fn count(self) -> usize {
        match self {
            Threads::Configured(n) | Threads::UsableCpus(n) => n,
        }
    }
}

impl std::fmt::Display for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threads::Configured(n) => write!(f, "{n} (server.threads)"),
            Threads::UsableCpus(n) => write!(f, "{n} (the CPUs this process may use)"),
        }
    }
}

/// What a client connection may hold: deadlines, the header cap, connection caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Deadline for a whole request header (from accept for the first request on a
    /// connection, from its first byte for later ones).
    pub header_timeout: Duration,
    /// Deadline for a whole CIBA request body; per read on passed-through paths.
    pub body_timeout: Duration,
    /// Largest request header in bytes, leading empty lines included.
    pub max_header_bytes: usize,
    /// Concurrent client connections, overall.
    pub max_connections: usize,
    /// Concurrent client connections per source address (trusted proxies exempt).
    pub max_connections_per_address: usize,
}

/// Checks `[server]`'s listeners, threads and body settings; command-line values win.
pub(super) fn validate_server(s: &ServerSection, o: &Overrides) -> Result<Server, ConfigError> {
    let listen = parse_addr(
        "server.listen",
        o.listen
            .as_deref()
            .or(s.listen.as_deref())
            .unwrap_or(DEFAULT_LISTEN),
    )?;
    let metrics_listen = parse_addr(
        "server.metrics_listen",
        o.metrics_listen
            .as_deref()
            .or(s.metrics_listen.as_deref())
            .unwrap_or(DEFAULT_METRICS_LISTEN),
    )?;
    if listen == metrics_listen && listen.port() != 0 {
        return Err(err(
            "server.metrics_listen",
            "must differ from server.listen: metrics are served on their own listener",
        ));
    }
    let public_url = match o.public_url.as_deref().or(s.public_url.as_deref()) {
        None => None,
        Some(u) => Some(parse_public_url(u)?),
    };
    let threads = match s.threads {
        Some(n) if n == 0 || n > 1024 => {
            return Err(err("server.threads", "must be between 1 and 1024"));
        }
        Some(n) => Threads::Configured(n),
        None => Threads::usable_cpus(),
    };
    let max_body_bytes = s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        return Err(err(
            "server.max_body_bytes",
            format!("must be between 1 and {MAX_BODY_LIMIT} (the largest body the proxy can replay upstream)"),
        ));
    }
    let shutdown_grace = Duration::from_secs(
        s.shutdown_grace_seconds
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
    );
    let keepalive_timeout_seconds = s
        .keepalive_timeout_seconds
        .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT_SECONDS);
    if keepalive_timeout_seconds == 0 || keepalive_timeout_seconds > 3600 {
        return Err(err(
            "server.keepalive_timeout_seconds",
            "must be between 1 and 3600",
        ));
    }
    Ok(Server {
        listen,
        metrics_listen,
        public_url,
        threads,
        work_stealing: s.work_stealing.unwrap_or(DEFAULT_WORK_STEALING),
        max_body_bytes,
        shutdown_grace,
        keepalive_timeout_seconds,
    })
}

/// Checks `[server]`'s client deadlines, header cap and connection caps.
pub(super) fn validate_edge(s: &ServerSection) -> Result<EdgeLimits, ConfigError> {
    let seconds = |key: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 || v > 3600 {
            return Err(err(key, "must be between 1 and 3600"));
        }
        Ok(Duration::from_secs(v))
    };
    let header_timeout = seconds(
        "server.client_header_timeout_seconds",
        s.client_header_timeout_seconds,
        DEFAULT_CLIENT_HEADER_TIMEOUT_SECONDS,
    )?;
    let body_timeout = seconds(
        "server.client_body_timeout_seconds",
        s.client_body_timeout_seconds,
        DEFAULT_CLIENT_BODY_TIMEOUT_SECONDS,
    )?;
    let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&max_header_bytes) {
        return Err(err(
            "server.max_header_bytes",
            format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} (pingora's own header limit); {DEFAULT_MAX_HEADER_BYTES} suits most clients"),
        ));
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(err(
            "server.max_connections",
            "must be between 1 and 1000000 (and below the process's open-file limit)",
        ));
    }
    let max_connections_per_address = s
        .max_connections_per_address
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
    if max_connections_per_address == 0 || max_connections_per_address > max_connections {
        return Err(err(
            "server.max_connections_per_address",
            "must be between 1 and server.max_connections; a load balancer in rate_limit.trusted_proxies is exempt",
        ));
    }
    Ok(EdgeLimits {
        header_timeout,
        body_timeout,
        max_header_bytes,
        max_connections,
        max_connections_per_address,
    })
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        err(
            key,
            format!("`{value}` is not an address; write it as IP:PORT, e.g. 127.0.0.1:8080"),
        )
    })
}

fn parse_public_url(value: &str) -> Result<String, ConfigError> {
    let uri: http::Uri = value.parse().map_err(|_| {
        err(
            "server.public_url",
            "is not a URL; write e.g. https://id.example.com",
        )
    })?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(err(
            "server.public_url",
            "must be an http(s) URL with a host and no query, e.g. https://id.example.com",
        )),
    }
}
