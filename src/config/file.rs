//! The configuration file as written: one struct per section, every one
//! `deny_unknown_fields`, so a typo is an error rather than a silently ignored key.
//!
//! An absent key is `None` here; its default is applied by validation (the sections' own
//! modules), so each default is stated once. Closed sets of words are enums, so a wrong
//! word is refused by the parser with the allowed ones listed.

use super::logging::LogFormat;
use super::polling::UnknownPolicy;
use super::state::BackendKind;
use crate::ciba::authorize::ValidationRules;
use crate::ciba::login_hint_token::LhtRules;
use crate::ciba::profile::Profile;
use crate::ciba::routing::Variants;
use crate::state::rate_limit::RateLimitConfig;
use crate::state::redis_store::FailureMode;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    /// `[ping]`: ping delivery on behalf of an OP that only polls.
    #[serde(default)]
    pub ping: PingSection,
    /// `[clients."id"]`: each client's authentication method, certificate and keys.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSection>,
    /// `[bridge]`: CIBA in front of an OP that has only the authorization code flow.
    #[serde(default)]
    pub bridge: BridgeSection,
    /// `[client_certificates]`: where client certificates come from and how the OP gets them.
    #[serde(default)]
    pub client_certificates: ClientCertificatesSection,
    /// `[fapi]`: the FAPI-CIBA security profile.
    #[serde(default)]
    pub fapi: FapiSection,
}

/// `[client_certificates]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificatesSection {
    /// The header a TLS terminator listed in `rate_limit.trusted_proxies` puts the client's
    /// certificate in; unset, no such header is believed.
    pub proxy_header: Option<String>,
    /// `pem` (URL-encoded PEM, default) or `rfc9440` (`:base64 DER:`).
    pub proxy_header_format: Option<crate::ciba::cert_header::CertFormat>,
    /// The header the OP gets the client's certificate in.
    pub forward_header: Option<String>,
    /// `pem` (URL-encoded PEM, default) or `rfc9440`.
    pub forward_format: Option<crate::ciba::cert_header::CertFormat>,
    /// A PEM bundle of the CAs `tls_client_auth` certificates must chain to.
    pub ca_file: Option<String>,
}

/// `[clients."id"]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The client's `token_endpoint_auth_method` as registered at the OP.
    pub token_endpoint_auth_method: Option<crate::ciba::client_auth::AuthMethod>,
    /// `tls_client_auth`: the certificate's subject distinguished name.
    pub tls_client_auth_subject_dn: Option<String>,
    /// `tls_client_auth`: a dNSName in the certificate's subjectAltName.
    pub tls_client_auth_san_dns: Option<String>,
    /// `tls_client_auth`: a URI in the certificate's subjectAltName.
    pub tls_client_auth_san_uri: Option<String>,
    /// `tls_client_auth`: an IP address in the certificate's subjectAltName.
    pub tls_client_auth_san_ip: Option<String>,
    /// `tls_client_auth`: an e-mail address in the certificate's subjectAltName.
    pub tls_client_auth_san_email: Option<String>,
    /// SHA-256 thumbprints (base64url, as `x5t#S256`) of certificates pinned for the client.
    #[serde(default)]
    pub certificate_thumbprints: Vec<String>,
    /// The client's public keys: a JWK Set document, inline.
    pub jwks: Option<String>,
    /// Where the client publishes its JWK Set.
    pub jwks_uri: Option<String>,
    /// Whether the FAPI-CIBA profile covers this client (overrides `fapi.enabled`).
    pub fapi: Option<bool>,
    /// The client's requests carry a unique authorization context: `binding_message` is
    /// not required under FAPI.
    pub request_context: Option<bool>,
    /// Allows an http `jwks_uri` and loopback, private or link-local addresses (tests,
    /// internal key servers).
    pub jwks_uri_allow_insecure: Option<bool>,
}

/// `[fapi]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FapiSection {
    /// Cover every client with the profile.
    pub enabled: Option<bool>,
    /// The OP's issuer identifier, when discovery does not give it.
    pub issuer: Option<String>,
    /// Algorithms a request object may be signed with.
    pub request_signing_alg_values: Option<Vec<String>>,
    /// Algorithms a client assertion may be signed with.
    pub client_assertion_signing_alg_values: Option<Vec<String>>,
    /// Seconds of clock difference forgiven.
    pub clock_skew_seconds: Option<u64>,
    /// Most `jti` values remembered in memory.
    pub replay_cache_max_entries: Option<usize>,
    /// Largest `jwks_uri` document, in bytes.
    pub jwks_max_bytes: Option<usize>,
    /// Most keys in a `jwks_uri` document.
    pub jwks_max_keys: Option<usize>,
    /// Seconds fetched keys are used before they are fetched again.
    pub jwks_cache_seconds: Option<u64>,
    /// Shortest time between two fetches of one client's keys, in seconds.
    pub jwks_refresh_min_seconds: Option<u64>,
    /// Milliseconds a `jwks_uri` fetch may take in all.
    pub jwks_fetch_timeout_ms: Option<u64>,
}

/// `[ping]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PingSection {
    /// The 32-byte key that encrypts what the gateway holds for ping requests, in Base64.
    pub key: Option<String>,
    /// A file holding `key` (Base64), instead of the key in this file.
    pub key_file: Option<String>,
    /// Polls of the OP in flight at once, across ping requests.
    pub max_concurrent_polls: Option<usize>,
    /// Ping requests waiting for the OP's answer; beyond it new ones get 429.
    pub queue_capacity: Option<usize>,
    /// Milliseconds a notification's TCP connect (and as long again its TLS handshake) may take.
    pub notify_connect_timeout_ms: Option<u64>,
    /// Milliseconds each write of a notification may take.
    pub notify_write_timeout_ms: Option<u64>,
    /// Milliseconds each read of a notification endpoint's answer may take.
    pub notify_read_timeout_ms: Option<u64>,
    /// Milliseconds of the pause after a notification's first failed try.
    pub notify_backoff_first_ms: Option<u64>,
    /// Milliseconds of the longest pause between a notification's tries.
    pub notify_backoff_cap_ms: Option<u64>,
    /// Bytes of a notification endpoint's answer body read (and discarded) at most.
    pub notify_max_body_bytes: Option<usize>,
    /// A PEM file of root certificates notification endpoints may chain to, besides the
    /// system's.
    pub notify_ca_file: Option<String>,
    /// With `state.backend = "redis"`: how long a replica's hold on a ping request outlives
    /// its last sign of life before another replica takes the request over, in seconds.
    pub lease_seconds: Option<u64>,
    /// Clients the gateway pings, by `client_id`.
    #[serde(default)]
    pub clients: BTreeMap<String, PingClientSection>,
}

/// `[ping.clients."id"]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PingClientSection {
    /// The client's `backchannel_client_notification_endpoint`: an https URL.
    pub notification_endpoint: Option<String>,
    /// Allows an http URL and loopback, private or link-local addresses (tests, internal).
    pub allow_insecure: Option<bool>,
    /// How the client authenticates; unset: `client_secret_post` or `client_secret_basic`.
    pub token_endpoint_auth_method: Option<crate::ciba::client_auth::AuthMethod>,
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
    pub backend: Option<BackendKind>,
    /// `redis://host:port/db`; may carry a password.
    pub redis_url: Option<String>,
    /// Prefix of every key.
    pub redis_key_prefix: Option<String>,
    /// Milliseconds each Redis operation may take.
    pub redis_timeout_ms: Option<u64>,
    /// Multiplexed connections to Redis.
    pub redis_connections: Option<usize>,
    /// `open` or `closed`: what to do while Redis cannot answer.
    pub failure_mode: Option<FailureMode>,
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
    pub unknown_auth_req_id: Option<UnknownPolicy>,
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
    /// `[server.tls]`: TLS at the listener; absent, the listener speaks plain HTTP/1.1.
    pub tls: Option<TlsSection>,
}

/// `[server.tls]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<String>,
    /// PEM private key of the leaf.
    pub key_file: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<super::tls::MinVersion>,
    /// Only FAPI 1.0 Advanced 8.5's cipher suites.
    pub fapi_ciphers: Option<bool>,
    /// Offer HTTP/2 by ALPN (default true).
    pub http2: Option<bool>,
    /// `off` (default), `optional` or `required`.
    pub client_auth: Option<super::tls::ClientAuth>,
    /// Seconds a client has to finish the TLS handshake.
    pub handshake_timeout_seconds: Option<u64>,
    /// Seconds between looks at the certificate files for a change (0: never).
    pub watch_interval_seconds: Option<u64>,
    /// Concurrent streams on one HTTP/2 connection.
    pub max_concurrent_streams: Option<u32>,
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
    /// A PEM bundle of the roots the OP's certificate must chain to, instead of the
    /// system's.
    pub ca_file: Option<String>,
    /// The gateway's client certificate chain (PEM) for an OP that requires mTLS.
    pub client_cert_file: Option<String>,
    /// The private key (PEM) of `client_cert_file`.
    pub client_key_file: Option<String>,
    /// Path of the backchannel endpoint's mTLS alias on the OP (RFC 8705 5), instead of
    /// discovery's `mtls_endpoint_aliases`.
    pub mtls_backchannel_path: Option<String>,
    /// Path of the token endpoint's mTLS alias on the OP (RFC 8705 5).
    pub mtls_token_path: Option<String>,
}

/// `[logging]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// A `tracing` filter such as `info` or `ciba_gateway=debug`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<LogFormat>,
}

/// `[bridge]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// Serve CIBA from the gateway over the OP's authorization code flow.
    pub enabled: Option<bool>,
    /// How the authorization request reaches the OP: `par` (pushed) or `plain` (in the URL).
    pub mode: Option<crate::config::bridge::BridgeMode>,
    /// The 32-byte key that encrypts what the gateway holds for bridge requests, in Base64.
    pub key: Option<String>,
    /// A file holding `key` (Base64), instead of the key in this file.
    pub key_file: Option<String>,
    /// The path the gateway serves the backchannel authentication endpoint on.
    pub backchannel_path: Option<String>,
    /// The path of the gateway's callback (the `redirect_uri` registered at the OP).
    pub callback_path: Option<String>,
    /// The path of the API that hands a client the URL of its pending request; "" for none.
    pub api_path: Option<String>,
    /// Longest lifetime of a bridge request, in seconds.
    pub expires_in: Option<u64>,
    /// The poll interval the acknowledgement announces, in seconds.
    pub interval: Option<u64>,
    /// The application the callback page tells the user to return to.
    pub return_to: Option<String>,
    /// What a `login_hint_token` becomes: `refuse` or `login_hint`.
    pub login_hint_token: Option<crate::ciba::bridge::par::LoginHintTokenMapping>,
    /// The external HTTP service that delivers the authorization URL to the user.
    pub notifier_url: Option<String>,
    /// Allows an http notifier URL and loopback, private or link-local addresses.
    pub notifier_allow_insecure: Option<bool>,
    /// Clients, by `client_id`.
    #[serde(default)]
    pub clients: BTreeMap<String, BridgeClientSection>,
}

/// `[bridge.clients."id"]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BridgeClientSection {
    /// With `mode = "plain"`: the SHA-256 of the client's secret, in hex.
    pub secret_sha256: Option<String>,
}
