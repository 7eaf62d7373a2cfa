//! The configuration file (TOML) and its validation into a typed [`Config`].
//!
//! [`FileConfig`] mirrors the file (`file.rs`: every section `deny_unknown_fields`, so a
//! typo is an error, not a silently ignored key); [`Config`] is what the rest of the gateway
//! uses, with durations, parsed addresses, compiled patterns and parsed keys, so no request
//! meets a setting that did not pass its check. Each section is validated in its own module,
//! where its defaults are stated; the CIBA rule sets (`[validation]`, `[login_hint_token]`,
//! `[profile]`) check and compile themselves. Every error is a [`ConfigError`] naming the
//! key, e.g. `upstream.url: ...`.

pub mod bridge;
mod client_certificates;
mod clients;
mod fapi;
mod file;
pub mod live_keys;
mod logging;
mod ping;
mod polling;
mod server;
mod state;
mod tls;
mod upstream;

#[cfg(test)]
mod keys;
#[cfg(test)]
mod tests;

pub use crate::ciba::config_error::ConfigError;
pub use crate::ciba::routing::CancelRoute;
pub use client_certificates::{ClientCertificates, DEFAULT_FORWARD_HEADER};
pub use clients::{CertificateIdentity, Client, Clients};
pub use fapi::{Fapi, JwksLimits};
pub use file::{
    ClientCertificatesSection, ClientSection, FapiSection, FileConfig, LoggingSection,
    MetricsSection, PingClientSection, PingSection, PollingSection, RoutingSection, ServerSection,
    StateSection, TlsSection, UpstreamSection,
};
pub use logging::LogFormat;
pub use ping::{pem_roots, NotifySettings, Ping, PingClient};
pub use polling::{Polling, UnknownPolicy};
pub use server::{EdgeLimits, Threads, MAX_BODY_LIMIT, MAX_HEADER_BYTES, MIN_HEADER_BYTES};
pub use state::{BackendKind, StateBackend};
pub use tls::{load_pair, provider, ClientAuth, MinVersion, TlsSettings};
pub use upstream::{OpSettings, UpstreamTls};

use crate::ciba::pipeline::Rules;
use crate::ciba::profile::Profile;
use crate::ciba::routing::Variants;
use crate::state::rate_limit::RateLimitConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    pub threads: Threads,
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
    /// TLS at the listener (`[server.tls]`); `None`: plain HTTP/1.1.
    pub tls: Option<TlsSettings>,
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
    /// Ping delivery on the OP's behalf, when a client is registered for it.
    pub ping: Option<Ping>,
    /// Each configured client's authentication method, certificate and keys.
    pub clients: Arc<Clients>,
    /// The PAR bridge, when enabled.
    pub bridge: Option<bridge::Bridge>,
    /// Where client certificates come from, how the OP gets them, the CAs they chain to.
    pub client_certificates: Arc<ClientCertificates>,
    /// The FAPI-CIBA profile.
    pub fapi: Arc<Fapi>,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Reads, parses and validates a file, then applies command-line overrides.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_with_text(path, overrides).map(|(cfg, _)| cfg)
    }

    /// [`Config::load`], also returning the text it validated (empty without a file), so
    /// a reload can compare it with the next one (`live_keys`).
    pub fn load_with_text(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, String), ConfigError> {
        let (file, text) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    err(
                        &p.display().to_string(),
                        format!("cannot read the configuration file: {e}"),
                    )
                })?;
                let file = parse_file(&text).map_err(|mut e| {
                    if e.key.is_empty() {
                        e.key = p.display().to_string();
                    }
                    e
                })?;
                (file, text)
            }
            None => (FileConfig::default(), String::new()),
        };
        Ok((validate(file, overrides)?, text))
    }
}

/// Parses TOML text; unknown keys, wrong types and words outside a closed set are errors
/// naming the key. A syntax error has no key (`Config::load` puts the file there).
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        // toml's message already says "unknown field `x`, expected one of ..." or "unknown
        // variant `x`, expected `a` or `b`" with the line and a caret; keep it whole, it is
        // the most useful thing we can show, and name the key it is about.
        err(&key_of(text), e.to_string().trim_end().to_string())
    })
}

/// The dotted key a file's type error is about (`state.failure_mode`; the section for an
/// unknown key), or nothing for a syntax error. The text parser reports the line; the
/// same file read as a table again reports the key path, which is all that is kept of it.
fn key_of(text: &str) -> String {
    let Ok(table) = text.parse::<toml::Table>() else {
        return String::new();
    };
    let Err(e) = <FileConfig as serde::Deserialize>::deserialize(table) else {
        return String::new();
    };
    let shown = e.to_string();
    shown
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `"))
        .and_then(|l| l.strip_suffix('`'))
        .unwrap_or_default()
        .to_string()
}

/// Turns the file plus overrides into a typed [`Config`].
pub fn validate(file: FileConfig, o: &Overrides) -> Result<Config, ConfigError> {
    let server = server::validate_server(&file.server, o)?;
    let edge = server::validate_edge(&file.server)?;
    let tls = file.server.tls.map(tls::validate_tls).transpose()?;
    let upstream = upstream::validate_upstream(file.upstream, o)?;
    let polling = polling::validate_polling(file.polling)?;
    let rate_limit = file.rate_limit;
    if rate_limit.max_keys == 0 {
        return Err(err("rate_limit.max_keys", "must be at least 1"));
    }
    let state = state::validate_state(file.state)?;
    let validation = file.validation.compile()?;
    let ping = ping::validate_ping(file.ping, &validation)?;
    let login_hint_token = file.login_hint_token.compile()?;
    let profile = file.profile;
    profile.validate()?;
    let clients = clients::validate_clients(file.clients)?;
    let bridge = bridge::validate_bridge(file.bridge, &upstream, ping.is_some())?;
    bridge::check_clients(bridge.as_ref(), &clients)?;
    let client_certificates = client_certificates::validate_client_certificates(
        file.client_certificates,
        !rate_limit.trusted_proxies.is_empty(),
    )?;
    clients::check_certificate_sources(&clients, &client_certificates)?;
    let fapi = fapi::validate_fapi(file.fapi, &clients, &validation, ping.as_ref(), &upstream)?;
    let client_labels = validate_client_labels(file.metrics.client_labels)?;
    let log_level = file
        .logging
        .level
        .unwrap_or_else(|| logging::DEFAULT_LEVEL.to_string());
    logging::check_log_level(&log_level)?;

    Ok(Config {
        listen: server.listen,
        metrics_listen: server.metrics_listen,
        public_url: server.public_url,
        threads: server.threads,
        work_stealing: server.work_stealing,
        max_body_bytes: server.max_body_bytes,
        shutdown_grace: server.shutdown_grace,
        keepalive_timeout_seconds: server.keepalive_timeout_seconds,
        edge,
        tls,
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
        ping,
        clients: Arc::new(clients),
        bridge,
        client_certificates: Arc::new(client_certificates),
        fapi: Arc::new(fapi),
        log_level,
        log_format: file.logging.format.unwrap_or_default(),
    })
}

/// Checks `metrics.client_labels`: bounded, and without the reserved label values.
fn validate_client_labels(labels: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if labels.len() > 1000 {
        return Err(err(
            "metrics.client_labels",
            "lists more than 1000 clients; every one is a label value in every series",
        ));
    }
    if let Some(reserved) = labels
        .iter()
        .find(|c| matches!(c.as_str(), "none" | "other"))
    {
        return Err(err(
            "metrics.client_labels",
            format!("lists `{reserved}`, which is the label of requests without a listed client"),
        ));
    }
    Ok(labels)
}

/// A [`ConfigError`] about `key`.
fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}
