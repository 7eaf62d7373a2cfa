//! The configuration file (TOML) and its validation into a typed [`Config`].
//!
//! `FileConfig` mirrors the file (every section `deny_unknown_fields`, so a typo is an
//! error, not a silently ignored key); [`Config`] is what the rest of the gateway uses,
//! with durations, parsed addresses and an upstream that is known to be reachable by URL.
//! Validation errors name the key, e.g. `upstream.url: ...`.

use crate::ciba::authorize::ValidationRules;
use crate::ciba::login_hint_token::LhtRules;
use crate::ciba::pipeline::Rules;
use crate::ciba::polling::PollPolicy;
use crate::ciba::profile::Profile;
pub use crate::ciba::routing::CancelRoute;
use crate::ciba::routing::{self, Variants};
use crate::state::poll_store::StoreLimits;
use crate::state::rate_limit::RateLimitConfig;
use crate::state::redis_store::{FailureMode, RedisConfig};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body the gateway can replay upstream.
///
/// pingora's retry buffer holds at most 64 KiB; a body larger than that would be read,
/// checked, and then silently not forwarded. So the configured cap may not exceed it.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: listeners and process settings.
    #[serde(default)]
    pub server: ServerSection,
    /// `[upstream]`: the OP behind the gateway.
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// `[polling]`: poll enforcement per `auth_req_id`.
    #[serde(default)]
    pub polling: PollingSection,
    /// `[rate_limit]`: per-client and per-address limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[profile]`: the OP's dialect.
    #[serde(default)]
    pub profile: Profile,
    /// `[validation]`: backchannel request rules.
    #[serde(default)]
    pub validation: ValidationRules,
    /// `[login_hint_token]`: normalization rules.
    #[serde(default)]
    pub login_hint_token: LhtRules,
    /// `[state]`: where poll state and rate limits live.
    #[serde(default)]
    pub state: StateSection,
    /// `[logging]`.
    #[serde(default)]
    pub logging: LoggingSection,
    /// `[routing]`: how other spellings of the gateway's paths are treated.
    #[serde(default)]
    pub routing: RoutingSection,
}

/// `[routing]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// `normalize` (default) or `refuse`: what a variant spelling of an endpoint's path gets.
    #[serde(default)]
    pub variants: Variants,
}

/// `[state]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `memory` (default) or `redis`.
    pub backend: Option<String>,
    /// `redis://host:port/db`; may carry a password.
    pub redis_url: Option<String>,
    /// Prefix of every key.
    pub redis_key_prefix: Option<String>,
    /// Milliseconds each Redis operation may take.
    pub redis_timeout_ms: Option<u64>,
    /// Multiplexed connections to Redis.
    pub redis_connections: Option<usize>,
    /// `open` or `closed`: what to do while Redis cannot answer.
    pub failure_mode: Option<String>,
}

/// Where poll state and rate-limit counters live.
#[derive(Debug, Clone)]
pub enum StateBackend {
    /// In this process.
    Memory,
    /// In Redis, shared by replicas.
    Redis {
        /// Connection settings.
        redis: RedisConfig,
        /// Multiplexed connections.
        connections: usize,
    },
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Client ids that get their own `client` label value; all others are `other`.
    #[serde(default)]
    pub client_labels: Vec<String>,
}

/// `[polling]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PollingSection {
    /// Smallest interval the gateway enforces, in seconds (CIBA's default is 5).
    pub min_interval_seconds: Option<u64>,
    /// Largest `expires_in` passed on to clients, in seconds.
    pub max_expires_in_seconds: Option<u64>,
    /// Milliseconds of network jitter forgiven when a poll comes early.
    pub tolerance_ms: Option<u64>,
    /// `forward` or `reject`: what to do with a poll for an `auth_req_id` the gateway never saw.
    pub unknown_auth_req_id: Option<String>,
    /// Where `slow_down` stops growing the interval, in seconds.
    pub max_interval_seconds: Option<u64>,
    /// Seconds after expiry during which polls are still answered `expired_token`.
    pub expired_grace_seconds: Option<u64>,
    /// Seconds the OP's answer about an `auth_req_id` the gateway never saw is remembered.
    pub remember_seconds: Option<u64>,
    /// Outstanding requests tracked across all clients.
    pub max_tracked: Option<usize>,
    /// Outstanding requests tracked per client.
    pub max_tracked_per_client: Option<usize>,
    /// Seconds between sweeps of expired entries.
    pub sweep_interval_seconds: Option<u64>,
    /// HTTP method of the OP's cancel call, e.g. `DELETE`.
    pub cancel_method: Option<String>,
    /// Path of the OP's cancel call with an `{auth_req_id}` placeholder.
    pub cancel_path: Option<String>,
}

/// `[server]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address the proxy listens on.
    pub listen: Option<String>,
    /// Address of the metrics/health listener.
    pub metrics_listen: Option<String>,
    /// The gateway's public base URL, used in the rewritten discovery document.
    pub public_url: Option<String>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// Whether the proxy's worker threads share one work-stealing runtime.
    pub work_stealing: Option<bool>,
    /// Largest accepted body on a CIBA endpoint, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_seconds: Option<u64>,
    /// Seconds an idle kept-alive client connection is held open.
    pub keepalive_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a whole request header.
    pub client_header_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a CIBA request's whole body (per read elsewhere).
    pub client_body_timeout_seconds: Option<u64>,
    /// Largest request header, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Concurrent client connections, overall.
    pub max_connections: Option<usize>,
    /// Concurrent client connections from one source address.
    pub max_connections_per_address: Option<usize>,
}

/// `[upstream]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Base URL of the OP, e.g. `https://op.internal:8443` or `http://127.0.0.1:3000/op`.
    pub url: Option<String>,
    /// Path of the backchannel authentication endpoint on the OP (skips discovery for it).
    pub backchannel_path: Option<String>,
    /// Path of the token endpoint on the OP (skips discovery for it).
    pub token_path: Option<String>,
    /// Milliseconds to establish a TCP (and TLS) connection.
    pub connect_timeout_ms: Option<u64>,
    /// Milliseconds to wait for each read from the OP.
    pub read_timeout_ms: Option<u64>,
    /// Milliseconds to wait for each write to the OP.
    pub write_timeout_ms: Option<u64>,
    /// Seconds between discovery attempts while the OP's discovery document is unavailable.
    pub discovery_retry_seconds: Option<u64>,
    /// Seconds between lookups of the OP's host name, when `url` names a host.
    pub resolve_interval_seconds: Option<u64>,
    /// Verify the OP's TLS certificate (default true).
    pub tls_verify: Option<bool>,
}

/// `[logging]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// A `tracing` filter such as `info` or `ciba_gateway=debug`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<String>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
}

/// A configuration error naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `upstream.url`, or the file for syntax errors.
    pub key: String,
    /// What is wrong and, where possible, a hint.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// What to do with a poll for an `auth_req_id` the gateway has no state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Send it to the OP (default): a restarted gateway does not break flows in flight.
    Forward,
    /// Answer `invalid_grant` locally.
    Reject,
}

/// Poll enforcement settings.
#[derive(Debug, Clone)]
pub struct Polling {
    /// Interval, expiry and tolerance rules.
    pub policy: PollPolicy,
    /// Memory bounds.
    pub limits: StoreLimits,
    /// Polls for ids the gateway never saw.
    pub unknown: UnknownPolicy,
    /// Pause between sweeps.
    pub sweep_interval: Duration,
    /// The vendor cancel call, when configured.
    pub cancel: Option<CancelRoute>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the OP lives, parsed from `upstream.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSettings {
    /// `true` for `https`.
    pub tls: bool,
    /// Host name or address, used for TLS SNI.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path prefix without a trailing slash (empty for the root).
    pub base_path: String,
    /// Backchannel path on the OP, when configured rather than discovered.
    pub backchannel_path: Option<String>,
    /// Token path on the OP, when configured rather than discovered.
    pub token_path: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout; must exceed the OP's longest answer.
    pub read_timeout: Duration,
    /// Per-write timeout.
    pub write_timeout: Duration,
    /// Pause between discovery attempts.
    pub discovery_retry: Duration,
    /// Pause between lookups of the host name.
    pub resolve_interval: Duration,
    /// Verify the OP's certificate.
    pub tls_verify: bool,
}

impl OpSettings {
    /// `host[:port]` for the `Host` header and URLs: the port only when it is not the
    /// scheme's default, an IPv6 address in brackets.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            self.bracketed_host()
        } else {
            self.address()
        }
    }

    /// `host:port` always with the port, for the connector.
    pub fn address(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    /// `host` holds an IPv6 address without its URL brackets (it is also the TLS name),
    /// but next to a port the brackets are what keep the address readable.
    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The OP's base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.base_path)
    }

    /// Whether both CIBA paths are configured, so discovery is not needed for routing.
    pub fn paths_configured(&self) -> bool {
        self.backchannel_path.is_some() && self.token_path.is_some()
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Metrics and health listener.
    pub metrics_listen: SocketAddr,
    /// Public base URL (no trailing slash), or `None` to derive it from each request.
    pub public_url: Option<String>,
    /// Proxy worker threads.
    pub threads: usize,
    /// One work-stealing runtime (true) or one single-threaded runtime per thread (false).
    pub work_stealing: bool,
    /// Body cap on CIBA endpoints.
    pub max_body_bytes: usize,
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long an idle kept-alive client connection is held open, in whole seconds.
    pub keepalive_timeout_seconds: u64,
    /// Deadlines, header cap and connection caps for client connections.
    pub edge: EdgeLimits,
    /// The OP.
    pub upstream: OpSettings,
    /// Poll enforcement.
    pub polling: Polling,
    /// Rate limits.
    pub rate_limit: RateLimitConfig,
    /// Client ids allowed as metric label values.
    pub client_labels: Vec<String>,
    /// The OP's dialect.
    pub profile: Profile,
    /// What a variant spelling of an endpoint's path gets (`[routing] variants`).
    pub variants: Variants,
    /// Where state lives.
    pub state: StateBackend,
    /// Backchannel request validation and `login_hint_token` normalization.
    pub rules: Arc<Rules>,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Reads, parses and validates a file, then applies command-line overrides.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    err(
                        &p.display().to_string(),
                        format!("cannot read the configuration file: {e}"),
                    )
                })?;
                parse_file(&text).map_err(|mut e| {
                    if e.key.is_empty() {
                        e.key = p.display().to_string();
                    }
                    e
                })?
            }
            None => FileConfig::default(),
        };
        validate(file, overrides)
    }
}

/// Parses TOML text; unknown keys and wrong types are errors naming the key.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        // toml's message already says "unknown field `x`, expected one of ..." with the
        // line and a caret; keep it whole, it is the most useful thing we can show.
        err("", e.to_string().trim_end().to_string())
    })
}

/// Turns the file plus overrides into a typed [`Config`].
pub fn validate(file: FileConfig, o: &Overrides) -> Result<Config, ConfigError> {
    let listen = parse_addr(
        "server.listen",
        o.listen
            .as_deref()
            .or(file.server.listen.as_deref())
            .unwrap_or("127.0.0.1:8080"),
    )?;
    let metrics_listen = parse_addr(
        "server.metrics_listen",
        o.metrics_listen
            .as_deref()
            .or(file.server.metrics_listen.as_deref())
            .unwrap_or("127.0.0.1:9091"),
    )?;
    if listen == metrics_listen && listen.port() != 0 {
        return Err(err(
            "server.metrics_listen",
            "must differ from server.listen: metrics are served on their own listener",
        ));
    }
    let public_url = match o
        .public_url
        .as_deref()
        .or(file.server.public_url.as_deref())
    {
        None => None,
        Some(u) => Some(parse_public_url(u)?),
    };
    let threads = file.server.threads.unwrap_or(2);
    if threads == 0 || threads > 1024 {
        return Err(err("server.threads", "must be between 1 and 1024"));
    }
    let max_body_bytes = file.server.max_body_bytes.unwrap_or(16 * 1024);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        return Err(err(
            "server.max_body_bytes",
            format!("must be between 1 and {MAX_BODY_LIMIT} (the largest body the proxy can replay upstream)"),
        ));
    }
    let shutdown_grace = Duration::from_secs(file.server.shutdown_grace_seconds.unwrap_or(35));
    let keepalive_timeout_seconds = file.server.keepalive_timeout_seconds.unwrap_or(75);
    if keepalive_timeout_seconds == 0 || keepalive_timeout_seconds > 3600 {
        return Err(err(
            "server.keepalive_timeout_seconds",
            "must be between 1 and 3600",
        ));
    }

    let edge = validate_edge(&file.server)?;

    let url = o
        .upstream
        .as_deref()
        .or(file.upstream.url.as_deref())
        .ok_or_else(|| {
            err(
                "upstream.url",
                "is required: set it in the file or pass --upstream URL",
            )
        })?;
    let mut upstream = parse_upstream_url(url)?;
    upstream.backchannel_path =
        check_path("upstream.backchannel_path", file.upstream.backchannel_path)?;
    upstream.token_path = check_path("upstream.token_path", file.upstream.token_path)?;
    if let (Some(b), Some(t)) = (&upstream.backchannel_path, &upstream.token_path) {
        // The routing rule folds spellings together; two endpoints must stay two.
        if routing::canonical_path(b.as_bytes()) == routing::canonical_path(t.as_bytes()) {
            return Err(err(
                "upstream.token_path",
                "names the same path as upstream.backchannel_path once letter case, slashes and encodings are folded",
            ));
        }
    }
    upstream.connect_timeout = millis(
        "upstream.connect_timeout_ms",
        file.upstream.connect_timeout_ms,
        2_000,
    )?;
    upstream.read_timeout = millis(
        "upstream.read_timeout_ms",
        file.upstream.read_timeout_ms,
        35_000,
    )?;
    upstream.write_timeout = millis(
        "upstream.write_timeout_ms",
        file.upstream.write_timeout_ms,
        5_000,
    )?;
    let retry = file.upstream.discovery_retry_seconds.unwrap_or(5);
    if retry == 0 {
        return Err(err(
            "upstream.discovery_retry_seconds",
            "must be at least 1",
        ));
    }
    upstream.discovery_retry = Duration::from_secs(retry);
    let resolve = file.upstream.resolve_interval_seconds.unwrap_or(30);
    if resolve == 0 || resolve > 86_400 {
        return Err(err(
            "upstream.resolve_interval_seconds",
            "must be between 1 and 86400",
        ));
    }
    upstream.resolve_interval = Duration::from_secs(resolve);
    upstream.tls_verify = file.upstream.tls_verify.unwrap_or(true);

    let polling = validate_polling(file.polling)?;
    let rate_limit = file.rate_limit;
    if rate_limit.max_keys == 0 {
        return Err(err("rate_limit.max_keys", "must be at least 1"));
    }
    let state = validate_state(file.state)?;
    let validation = file.validation;
    validation.validate().map_err(split_key)?;
    let login_hint_token = file.login_hint_token;
    login_hint_token.validate().map_err(split_key)?;
    let profile = file.profile;
    profile
        .validate()
        .map_err(|(key, message)| err(&key, message))?;
    let client_labels = file.metrics.client_labels;
    if client_labels.len() > 1000 {
        return Err(err(
            "metrics.client_labels",
            "lists more than 1000 clients; every one is a label value in every series",
        ));
    }
    if let Some(reserved) = client_labels
        .iter()
        .find(|c| matches!(c.as_str(), "none" | "other"))
    {
        return Err(err(
            "metrics.client_labels",
            format!("lists `{reserved}`, which is the label of requests without a listed client"),
        ));
    }

    let log_level = file.logging.level.unwrap_or_else(|| "info".to_string());
    check_log_level(&log_level)?;
    let log_format = match file.logging.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        _ => return Err(err("logging.format", "must be `text` or `json`")),
    };

    Ok(Config {
        listen,
        metrics_listen,
        public_url,
        threads,
        work_stealing: file.server.work_stealing.unwrap_or(true),
        max_body_bytes,
        shutdown_grace,
        keepalive_timeout_seconds,
        edge,
        upstream,
        polling,
        rate_limit,
        client_labels,
        profile,
        variants: file.routing.variants,
        state,
        rules: Arc::new(Rules {
            validation,
            login_hint_token,
        }),
        log_level,
        log_format,
    })
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

/// The smallest header cap: a request line and a few ordinary headers must fit.
pub const MIN_HEADER_BYTES: usize = 1024;
/// The largest header cap: pingora's own buffer limit (1 MiB).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;

fn validate_edge(s: &ServerSection) -> Result<EdgeLimits, ConfigError> {
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
        10,
    )?;
    let body_timeout = seconds(
        "server.client_body_timeout_seconds",
        s.client_body_timeout_seconds,
        10,
    )?;
    let max_header_bytes = s.max_header_bytes.unwrap_or(32 * 1024);
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&max_header_bytes) {
        return Err(err(
            "server.max_header_bytes",
            format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} (pingora's own header limit); 32768 suits most clients"),
        ));
    }
    let max_connections = s.max_connections.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(err(
            "server.max_connections",
            "must be between 1 and 1000000 (and below the process's open-file limit)",
        ));
    }
    let max_connections_per_address = s.max_connections_per_address.unwrap_or(256);
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

fn validate_state(s: StateSection) -> Result<StateBackend, ConfigError> {
    match s.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            if s.redis_url.is_some() {
                return Err(err(
                    "state.redis_url",
                    "is set but state.backend is not `redis`",
                ));
            }
            Ok(StateBackend::Memory)
        }
        "redis" => {
            let url = s.redis_url.ok_or_else(|| {
                err(
                    "state.redis_url",
                    "is required with state.backend = \"redis\"",
                )
            })?;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(err(
                    "state.redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
            let timeout = millis("state.redis_timeout_ms", s.redis_timeout_ms, 200)?;
            let connections = s.redis_connections.unwrap_or(2);
            if !(1..=64).contains(&connections) {
                return Err(err("state.redis_connections", "must be between 1 and 64"));
            }
            let failure_mode = match s.failure_mode.as_deref().unwrap_or("open") {
                "open" => FailureMode::Open,
                "closed" => FailureMode::Closed,
                _ => return Err(err("state.failure_mode", "must be `open` or `closed`")),
            };
            Ok(StateBackend::Redis {
                redis: RedisConfig {
                    url,
                    key_prefix: s.redis_key_prefix.unwrap_or_else(|| "ciba:".into()),
                    timeout,
                    failure_mode,
                },
                connections,
            })
        }
        _ => Err(err("state.backend", "must be `memory` or `redis`")),
    }
}

/// Splits a `key: message` error from a section's own validation.
fn split_key(e: String) -> ConfigError {
    match e.split_once(": ") {
        Some((key, msg)) if !key.contains(' ') => err(key, msg),
        _ => err("", e),
    }
}

fn validate_polling(p: PollingSection) -> Result<Polling, ConfigError> {
    let defaults = PollPolicy::default();
    let min_interval = p
        .min_interval_seconds
        .unwrap_or(defaults.min_interval.as_secs());
    if !(1..=3600).contains(&min_interval) {
        return Err(err(
            "polling.min_interval_seconds",
            "must be between 1 and 3600",
        ));
    }
    let max_expires = p
        .max_expires_in_seconds
        .unwrap_or(defaults.max_expires_in.as_secs());
    if !(1..=86_400).contains(&max_expires) {
        return Err(err(
            "polling.max_expires_in_seconds",
            "must be between 1 and 86400",
        ));
    }
    let tolerance = p
        .tolerance_ms
        .unwrap_or(defaults.tolerance.as_millis() as u64);
    if tolerance >= min_interval * 1000 {
        return Err(err(
            "polling.tolerance_ms",
            "must be smaller than polling.min_interval_seconds, or every poll would pass",
        ));
    }
    let max_interval = p
        .max_interval_seconds
        .unwrap_or(defaults.max_interval.as_secs());
    if !(min_interval..=3600).contains(&max_interval) {
        return Err(err(
            "polling.max_interval_seconds",
            "must be between polling.min_interval_seconds and 3600",
        ));
    }
    let grace = p
        .expired_grace_seconds
        .unwrap_or(defaults.expired_grace.as_secs());
    if grace > 86_400 {
        return Err(err(
            "polling.expired_grace_seconds",
            "must be between 0 and 86400",
        ));
    }
    let remember = p.remember_seconds.unwrap_or(defaults.remember.as_secs());
    if !(1..=86_400).contains(&remember) {
        return Err(err(
            "polling.remember_seconds",
            "must be between 1 and 86400",
        ));
    }
    let unknown = match p.unknown_auth_req_id.as_deref().unwrap_or("forward") {
        "forward" => UnknownPolicy::Forward,
        "reject" => UnknownPolicy::Reject,
        _ => {
            return Err(err(
                "polling.unknown_auth_req_id",
                "must be `forward` or `reject`",
            ))
        }
    };
    let limits = StoreLimits {
        max_tracked: p.max_tracked.unwrap_or(StoreLimits::default().max_tracked),
        max_per_client: p
            .max_tracked_per_client
            .unwrap_or(StoreLimits::default().max_per_client),
    };
    if limits.max_tracked == 0 {
        return Err(err("polling.max_tracked", "must be at least 1"));
    }
    if limits.max_per_client == 0 || limits.max_per_client > limits.max_tracked {
        return Err(err(
            "polling.max_tracked_per_client",
            "must be between 1 and polling.max_tracked",
        ));
    }
    let sweep = p.sweep_interval_seconds.unwrap_or(10);
    if !(1..=3600).contains(&sweep) {
        return Err(err(
            "polling.sweep_interval_seconds",
            "must be between 1 and 3600",
        ));
    }
    let cancel = match (p.cancel_method, p.cancel_path) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "polling.cancel_path",
                "is required with polling.cancel_method",
            ))
        }
        (method, Some(path)) => {
            let method = method.unwrap_or_else(|| "DELETE".into());
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| err("polling.cancel_method", "is not an HTTP method"))?;
            let (prefix, suffix) = path.split_once("{auth_req_id}").ok_or_else(|| {
                err(
                    "polling.cancel_path",
                    "must contain `{auth_req_id}`, e.g. /op/api/v1/ciba/{auth_req_id}",
                )
            })?;
            if !prefix.starts_with('/') || suffix.contains("{auth_req_id}") {
                return Err(err(
                    "polling.cancel_path",
                    "must be an absolute path with one `{auth_req_id}`",
                ));
            }
            Some(CancelRoute {
                method,
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            })
        }
    };
    Ok(Polling {
        policy: PollPolicy {
            min_interval: Duration::from_secs(min_interval),
            max_expires_in: Duration::from_secs(max_expires),
            tolerance: Duration::from_millis(tolerance),
            max_interval: Duration::from_secs(max_interval),
            expired_grace: Duration::from_secs(grace),
            remember: Duration::from_secs(remember),
            ..defaults
        },
        limits,
        unknown,
        sweep_interval: Duration::from_secs(sweep),
        cancel,
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

fn millis(key: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    if v == 0 || v > 3_600_000 {
        return Err(err(key, "must be between 1 and 3600000 milliseconds"));
    }
    Ok(Duration::from_millis(v))
}

fn check_path(key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(p) if p.starts_with('/') && !p.contains(['?', '#', ' ']) => Ok(Some(p)),
        Some(_) => Err(err(
            key,
            "must be an absolute path such as `/op/connect/ciba`, without query",
        )),
    }
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

fn parse_upstream_url(value: &str) -> Result<OpSettings, ConfigError> {
    let uri: http::Uri = value.parse().map_err(|_| {
        err(
            "upstream.url",
            "is not a URL; write e.g. http://127.0.0.1:3000",
        )
    })?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(err("upstream.url", "must start with http:// or https://")),
    };
    // The gateway would not send them, and the error must not echo them.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(err(
            "upstream.url",
            "must not carry credentials (user:password@); the gateway does not authenticate to the OP",
        ));
    }
    let (host, port) = split_authority(uri.authority().map_or("", |a| a.as_str()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.query().is_some() {
        return Err(err("upstream.url", "must not have a query"));
    }
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(OpSettings {
        tls,
        host,
        port,
        base_path,
        backchannel_path: None,
        token_path: None,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(35),
        write_timeout: Duration::from_secs(5),
        discovery_retry: Duration::from_secs(5),
        resolve_interval: Duration::from_secs(30),
        tls_verify: true,
    })
}

/// Splits `upstream.url`'s authority into its host and port, refusing an empty host and a
/// port that is not a number from 1 to 65535 (the URL parser lets `:99999`, `:abc` and `:`
/// through, and the port would silently become the scheme's default).
fn split_authority(authority: &str) -> Result<(&str, Option<u16>), ConfigError> {
    let no_host = || {
        err(
            "upstream.url",
            "has no host; write e.g. http://127.0.0.1:3000",
        )
    };
    // A bracketed IPv6 address holds colons of its own; the port follows the bracket.
    let host_end = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').map(|i| i + 2).ok_or_else(no_host)?,
        None => authority.find(':').unwrap_or(authority.len()),
    };
    let (host, rest) = authority.split_at(host_end);
    if host.is_empty() || host == "[]" {
        return Err(no_host());
    }
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        None => return Err(no_host()),
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

/// A port of `upstream.url`: decimal digits naming 1 to 65535.
fn parse_port(text: &str) -> Result<u16, ConfigError> {
    if text == "0" || (!text.is_empty() && text.bytes().all(|b| b == b'0')) {
        return Err(err("upstream.url", "port 0 is not a port to connect to"));
    }
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| {
            err(
                "upstream.url",
                "has a port that is not a number from 1 to 65535; write e.g. http://127.0.0.1:3000",
            )
        })
}

/// The levels `logging.level` may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks `logging.level`: comma-separated directives, each a level or `target=level`,
/// every level one of [`LOG_LEVELS`] in any letter case. A tracing filter would take
/// `infoo` as a target name and log everything.
fn check_log_level(value: &str) -> Result<(), ConfigError> {
    let bad = || {
        err(
            "logging.level",
            format!(
                "must be a level ({}) or comma-separated `target=level` directives, e.g. \
                 `ciba_gateway=debug,pingora=warn`",
                LOG_LEVELS.join(", ")
            ),
        )
    };
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(bad());
    }
    for directive in directives {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if target == Some("") || !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(bad());
        }
    }
    if tracing_subscriber::EnvFilter::try_new(value).is_err() {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        validate(parse_file(text)?, &Overrides::default())
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = load("[upstream]\nurl = \"http://127.0.0.1:3000\"\n").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.upstream.authority(), "127.0.0.1:3000");
        assert_eq!(c.upstream.read_timeout, Duration::from_secs(35));
        assert_eq!(c.upstream.resolve_interval, Duration::from_secs(30));
        assert_eq!(c.keepalive_timeout_seconds, 75);
        assert_eq!(c.max_body_bytes, 16 * 1024);
        assert!(!c.upstream.paths_configured());
        assert!(c.work_stealing);
        let single = load(
            "[server]\nthreads = 1\nwork_stealing = false\n[upstream]\nurl = \"http://a:1\"\n",
        )
        .unwrap();
        assert_eq!((single.threads, single.work_stealing), (1, false));
    }

    #[test]
    fn reserved_client_labels_are_refused() {
        for name in ["none", "other"] {
            let text = format!(
                "[upstream]\nurl = \"http://a:1\"\n[metrics]\nclient_labels = [\"c1\", \"{name}\"]\n"
            );
            let e = load(&text).unwrap_err().to_string();
            assert!(
                e.contains("metrics.client_labels") && e.contains(name),
                "{e}"
            );
        }
        let ok = "[upstream]\nurl = \"http://a:1\"\n[metrics]\nclient_labels = [\"Other\"]\n";
        assert!(load(ok).is_ok());
    }

    #[test]
    fn ipv6_upstreams_keep_their_brackets_next_to_a_port() {
        let c = load("[upstream]\nurl = \"http://[::1]:3000/op\"\n").unwrap();
        assert_eq!(c.upstream.host, "::1");
        assert_eq!(c.upstream.address(), "[::1]:3000");
        assert_eq!(c.upstream.authority(), "[::1]:3000");
        assert_eq!(c.upstream.base_url(), "http://[::1]:3000/op");
        assert!(c.upstream.address().parse::<std::net::SocketAddr>().is_ok());
        let c = load("[upstream]\nurl = \"https://[2001:db8::1]/\"\n").unwrap();
        assert_eq!(c.upstream.authority(), "[2001:db8::1]");
        assert_eq!(c.upstream.address(), "[2001:db8::1]:443");
        let c = load("[upstream]\nurl = \"https://id.example.com\"\n").unwrap();
        assert_eq!(c.upstream.authority(), "id.example.com");
        assert_eq!(c.upstream.address(), "id.example.com:443");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file =
            parse_file("[upstream]\nurl = \"http://a:1\"\n[server]\nlisten = \"127.0.0.1:1\"\n")
                .unwrap();
        let o = Overrides {
            upstream: Some("https://op.example/base/".into()),
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = validate(file, &o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert!(c.upstream.tls);
        assert_eq!(c.upstream.port, 443);
        assert_eq!(c.upstream.base_path, "/base");
        assert_eq!(c.upstream.base_url(), "https://op.example/base");
    }

    #[test]
    fn cancel_route_matches_only_its_pattern() {
        let c = load("[upstream]\nurl=\"http://a\"\n[polling]\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n")
            .unwrap()
            .polling
            .cancel
            .unwrap();
        let del = http::Method::DELETE;
        let id = |m: &http::Method, t: &str| c.auth_req_id(m, t.as_bytes());
        assert_eq!(id(&del, "/op/api/v1/ciba/abc-1").as_deref(), Some("abc-1"));
        assert_eq!(id(&http::Method::GET, "/op/api/v1/ciba/abc-1"), None);
        assert_eq!(id(&del, "/op/api/v1/ciba/"), None);
        assert_eq!(id(&del, "/op/api/v1/ciba/a/b"), None);
        assert_eq!(id(&del, "/other/abc"), None);
        // Other spellings of the same path, under the routing rule; the id keeps its case.
        assert_eq!(
            id(&del, "/OP/Api/v1//ciba/AbC-1/").as_deref(),
            Some("AbC-1")
        );
        assert_eq!(
            id(&del, "/op/api/x/../v1/ciba/%61bc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            id(&del, "http://h/op/api/v1/ciba/abc?x=1").as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn upstream_credentials_are_refused_without_being_echoed() {
        for url in [
            "http://user:hunter2@op.example",
            "https://hunter2@op.example:8443/base",
        ] {
            let e = load(&format!("[upstream]\nurl = \"{url}\"\n")).unwrap_err();
            assert_eq!(e.key, "upstream.url");
            assert!(e.message.contains("credentials"), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn upstream_url_ports_and_hosts() {
        let url = |u: &str| load(&format!("[upstream]\nurl = \"{u}\"\n"));
        for bad in [
            "http://a:99999",
            "http://a:65536",
            "http://a:abc",
            "http://a:",
            "http://a:-1",
            "http://a:+80",
            "http://a: 80",
            "http://a:8o",
            "http://a:80:80",
            "http://:8080",
            "http:///x",
            "http://",
            "https://:443/",
            "http://[]:80",
            "http://[::1",
            "http://[::1]x",
            "http://[::1]:0",
            "http://a:00",
        ] {
            let e = url(bad).map(|_| ()).expect_err(bad).to_string();
            assert!(e.starts_with("upstream.url: "), "{bad}: {e}");
        }
        for (good, host, port) in [
            ("http://a:1", "a", 1),
            ("http://a:65535/x", "a", 65535),
            ("http://a:080", "a", 80),
            ("https://a", "a", 443),
            ("http://a", "a", 80),
            ("http://[::1]:3000", "::1", 3000),
            ("https://[::1]", "::1", 443),
            ("http://127.0.0.1:3000/base/", "127.0.0.1", 3000),
        ] {
            let c = url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(
                (c.upstream.host.as_str(), c.upstream.port),
                (host, port),
                "{good}"
            );
        }
    }

    #[test]
    fn logging_level_takes_known_levels_only() {
        let level = |l: &str| {
            load(&format!(
                "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"{l}\"\n"
            ))
        };
        for good in [
            "info",
            "INFO",
            "Warn",
            "off",
            "trace",
            "ciba_gateway=debug,pingora=warn",
            "warn,ciba_gateway=debug",
            "info,",
        ] {
            assert!(level(good).is_ok(), "{good}");
        }
        for bad in [
            "verbose",
            "infoo",
            "ciba_gateway=loud",
            "ciba_gateway",
            "",
            ",",
            "=info",
            "info,bogus",
            "3",
            "ciba_gateway=info=debug",
            "info, access=off",
        ] {
            let e = level(bad).map(|_| ()).expect_err(bad).to_string();
            assert!(e.starts_with("logging.level: "), "{bad}: {e}");
            assert!(
                e.contains("trace, debug, info, warn, error, off"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[upstream]\nurll = \"x\"\n", "unknown field `urll`"),
            (
                "[server]\nlisten = \"nowhere\"\n[upstream]\nurl=\"http://a\"\n",
                "server.listen",
            ),
            ("[upstream]\nurl = \"ftp://a\"\n", "upstream.url"),
            ("[server]\n", "upstream.url: is required"),
            (
                "[upstream]\nurl=\"http://a\"\nread_timeout_ms = 0\n",
                "upstream.read_timeout_ms",
            ),
            (
                "[upstream]\nurl=\"http://a\"\nbackchannel_path = \"ciba\"\n",
                "upstream.backchannel_path",
            ),
            (
                "[upstream]\nurl=\"http://a\"\nbackchannel_path = \"/Token\"\ntoken_path = \"/token/\"\n",
                "upstream.token_path",
            ),
            (
                "[routing]\nvariants = \"lenient\"\n[upstream]\nurl=\"http://a\"\n",
                "unknown variant `lenient`, expected `normalize` or `refuse`",
            ),
            (
                "[server]\nmax_body_bytes = 1000000\n[upstream]\nurl=\"http://a\"\n",
                "server.max_body_bytes",
            ),
            (
                "[logging]\nformat = \"xml\"\n[upstream]\nurl=\"http://a\"\n",
                "logging.format",
            ),
            (
                "[upstream]\nurl=\"http://a\"\n[server]\npublic_url = \"id.example.com\"\n",
                "server.public_url",
            ),
            ("[upstream]\nurl = 5\n", "invalid type"),
            ("[bogus]\n", "unknown field `bogus`"),
            ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"redis\"\n", "state.redis_url"),
            ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"etcd\"\n", "state.backend"),
            ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"redis\"\nredis_url = \"redis://x\"\nfailure_mode = \"maybe\"\n", "state.failure_mode"),
            ("[upstream]\nurl=\"http://a\"\n[validation]\nbinding_message_pattern = \"(\"\n", "validation.binding_message_pattern"),
            ("[upstream]\nurl=\"http://a\"\n[login_hint_token]\noutput = \"xml\"\n", "unknown variant `xml`"),
            ("[upstream]\nurl=\"http://a\"\n[polling]\nunknown_auth_req_id = \"drop\"\n", "polling.unknown_auth_req_id"),
            ("[upstream]\nurl=\"http://a\"\n[polling]\ntolerance_ms = 5000\n", "polling.tolerance_ms"),
            ("[upstream]\nurl=\"http://a\"\n[polling]\ncancel_path = \"/cancel\"\n", "polling.cancel_path"),
            ("[upstream]\nurl=\"http://a\"\n[polling]\nmax_tracked = 10\nmax_tracked_per_client = 11\n", "polling.max_tracked_per_client"),
            ("[upstream]\nurl=\"http://a\"\nresolve_interval_seconds = 0\n", "upstream.resolve_interval_seconds"),
            ("[upstream]\nurl=\"http://a:0\"\n", "upstream.url: port 0"),
            ("[server]\nkeepalive_timeout_seconds = 0\n[upstream]\nurl=\"http://a\"\n", "server.keepalive_timeout_seconds"),
            ("[upstream]\nurl=\"http://a\"\nresolve_interval_seconds = 86401\n", "upstream.resolve_interval_seconds"),
        ];
        for (text, expect) in cases {
            let e = load(text).expect_err(text).to_string();
            assert!(e.contains(expect), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn edge_limits_have_defaults_and_bounds() {
        let c = load("[upstream]\nurl = \"http://a:1\"\n").unwrap();
        assert_eq!(
            c.edge,
            EdgeLimits {
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(10),
                max_header_bytes: 32 * 1024,
                max_connections: 10_000,
                max_connections_per_address: 256,
            }
        );
        let set = load("[server]\nclient_header_timeout_seconds = 1\nclient_body_timeout_seconds = 2\nmax_header_bytes = 1024\nmax_connections = 5\nmax_connections_per_address = 5\n[upstream]\nurl = \"http://a:1\"\n").unwrap();
        assert_eq!(
            (
                set.edge.header_timeout,
                set.edge.body_timeout,
                set.edge.max_header_bytes
            ),
            (Duration::from_secs(1), Duration::from_secs(2), 1024)
        );
        let bad = [
            (
                "client_header_timeout_seconds = 0",
                "server.client_header_timeout_seconds",
            ),
            (
                "client_header_timeout_seconds = 3601",
                "server.client_header_timeout_seconds",
            ),
            (
                "client_body_timeout_seconds = 0",
                "server.client_body_timeout_seconds",
            ),
            ("max_header_bytes = 1023", "server.max_header_bytes"),
            ("max_header_bytes = 1048576", "server.max_header_bytes"),
            ("max_connections = 0", "server.max_connections"),
            (
                "max_connections_per_address = 0",
                "server.max_connections_per_address",
            ),
            (
                "max_connections = 10\nmax_connections_per_address = 11",
                "server.max_connections_per_address",
            ),
        ];
        for (line, key) in bad {
            let text = format!("[server]\n{line}\n[upstream]\nurl = \"http://a:1\"\n");
            let e = load(&text).expect_err(line).to_string();
            assert!(e.starts_with(key), "{line:?} gave {e:?}");
        }
    }
}
