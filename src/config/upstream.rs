//! `[upstream]`: where the OP lives and how long to wait for it.

use super::err;
use super::file::UpstreamSection;
use super::Overrides;
use crate::ciba::config_error::ConfigError;
use crate::ciba::routing;
use std::time::Duration;

/// `upstream.connect_timeout_ms` when unset.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// `upstream.read_timeout_ms` when unset.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 35_000;
/// `upstream.write_timeout_ms` when unset.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// `upstream.discovery_retry_seconds` when unset.
pub const DEFAULT_DISCOVERY_RETRY_SECONDS: u64 = 5;
/// `upstream.resolve_interval_seconds` when unset.
pub const DEFAULT_RESOLVE_INTERVAL_SECONDS: u64 = 30;
/// `upstream.tls_verify` when unset.
pub const DEFAULT_TLS_VERIFY: bool = true;

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
    /// The backchannel endpoint's mTLS alias path on the OP, when configured.
    pub mtls_backchannel_path: Option<String>,
    /// The token endpoint's mTLS alias path on the OP, when configured.
    pub mtls_token_path: Option<String>,
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
    /// Private roots and the gateway's client certificate for a TLS OP.
    pub tls_files: UpstreamTls,
}

/// `upstream.ca_file` and `upstream.client_cert_file`/`client_key_file`, read and checked.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// Roots (DER) the OP's certificate must chain to, instead of the system's.
    pub roots: Option<Vec<Vec<u8>>>,
    /// The gateway's client certificate chain (DER, leaf first) and its key (DER).
    pub client: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, nor the certificates' bytes.
        f.debug_struct("UpstreamTls")
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .field("client_cert", &self.client.is_some())
            .finish()
    }
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

/// `upstream.url` taken apart.
struct Address {
    tls: bool,
    host: String,
    port: u16,
    base_path: String,
}

/// Checks `[upstream]`; `--upstream` wins over `upstream.url`.
pub(super) fn validate_upstream(
    u: UpstreamSection,
    o: &Overrides,
) -> Result<OpSettings, ConfigError> {
    let url = o.upstream.as_deref().or(u.url.as_deref()).ok_or_else(|| {
        err(
            "upstream.url",
            "is required: set it in the file or pass --upstream URL",
        )
    })?;
    let Address {
        tls,
        host,
        port,
        base_path,
    } = parse_upstream_url(url)?;
    let backchannel_path = check_path("upstream.backchannel_path", u.backchannel_path)?;
    let token_path = check_path("upstream.token_path", u.token_path)?;
    if let (Some(b), Some(t)) = (&backchannel_path, &token_path) {
        // The routing rule folds spellings together; two endpoints must stay two.
        if routing::canonical_path(b.as_bytes()) == routing::canonical_path(t.as_bytes()) {
            return Err(err(
                "upstream.token_path",
                "names the same path as upstream.backchannel_path once letter case, slashes and encodings are folded",
            ));
        }
    }
    let mtls_backchannel_path =
        check_path("upstream.mtls_backchannel_path", u.mtls_backchannel_path)?;
    let mtls_token_path = check_path("upstream.mtls_token_path", u.mtls_token_path)?;
    // An alias of one endpoint must not be the other endpoint in another spelling.
    let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => {
            routing::canonical_path(a.as_bytes()) == routing::canonical_path(b.as_bytes())
        }
        _ => false,
    };
    if same(&mtls_token_path, &backchannel_path) || same(&mtls_token_path, &mtls_backchannel_path) {
        return Err(err(
            "upstream.mtls_token_path",
            "names the backchannel endpoint or its alias once letter case, slashes and encodings are folded",
        ));
    }
    if same(&mtls_backchannel_path, &token_path) {
        return Err(err(
            "upstream.mtls_backchannel_path",
            "names the token endpoint once letter case, slashes and encodings are folded",
        ));
    }
    let connect_timeout = millis(
        "upstream.connect_timeout_ms",
        u.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
    )?;
    let read_timeout = millis(
        "upstream.read_timeout_ms",
        u.read_timeout_ms,
        DEFAULT_READ_TIMEOUT_MS,
    )?;
    let write_timeout = millis(
        "upstream.write_timeout_ms",
        u.write_timeout_ms,
        DEFAULT_WRITE_TIMEOUT_MS,
    )?;
    let retry = u
        .discovery_retry_seconds
        .unwrap_or(DEFAULT_DISCOVERY_RETRY_SECONDS);
    if retry == 0 {
        return Err(err(
            "upstream.discovery_retry_seconds",
            "must be at least 1",
        ));
    }
    let resolve = u
        .resolve_interval_seconds
        .unwrap_or(DEFAULT_RESOLVE_INTERVAL_SECONDS);
    if resolve == 0 || resolve > 86_400 {
        return Err(err(
            "upstream.resolve_interval_seconds",
            "must be between 1 and 86400",
        ));
    }
    let tls_files = validate_tls_files(tls, u.ca_file, u.client_cert_file, u.client_key_file)?;
    Ok(OpSettings {
        tls_files,
        tls,
        host,
        port,
        base_path,
        backchannel_path,
        token_path,
        mtls_backchannel_path,
        mtls_token_path,
        connect_timeout,
        read_timeout,
        write_timeout,
        discovery_retry: Duration::from_secs(retry),
        resolve_interval: Duration::from_secs(resolve),
        tls_verify: u.tls_verify.unwrap_or(DEFAULT_TLS_VERIFY),
    })
}

/// Reads `upstream.ca_file` and the client certificate pair, for an https OP only.
fn validate_tls_files(
    tls: bool,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
) -> Result<UpstreamTls, ConfigError> {
    let https_only = |key: &str| {
        err(
            key,
            "applies to an https upstream.url only; the OP is spoken to over plain HTTP",
        )
    };
    let roots = match ca_file {
        None => None,
        Some(_) if !tls => return Err(https_only("upstream.ca_file")),
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| err("upstream.ca_file", format!("cannot be read ({path}): {e}")))?;
            Some(super::pem_roots(&pem).map_err(|e| err("upstream.ca_file", e))?)
        }
    };
    let client = match (cert_file, key_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "upstream.client_key_file",
                "is required with upstream.client_cert_file",
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "upstream.client_cert_file",
                "is required with upstream.client_key_file",
            ))
        }
        (Some(_), Some(_)) if !tls => return Err(https_only("upstream.client_cert_file")),
        (Some(c), Some(k)) => {
            let (chain, key) = super::tls::read_pair(
                ("upstream.client_cert_file", std::path::Path::new(&c)),
                ("upstream.client_key_file", std::path::Path::new(&k)),
            )?;
            let signing = rustls::crypto::ring::default_provider()
                .key_provider
                .load_private_key(key.clone_key())
                .map_err(|e| {
                    err(
                        "upstream.client_key_file",
                        format!("is not a key the gateway can sign with: {e}"),
                    )
                })?;
            super::tls::check_match(
                &rustls::sign::CertifiedKey::new(chain.clone(), signing),
                "upstream.client_cert_file",
                "upstream.client_key_file",
            )?;
            Some((
                chain.iter().map(|c| c.to_vec()).collect(),
                key.secret_der().to_vec(),
            ))
        }
    };
    Ok(UpstreamTls { roots, client })
}

/// A duration in milliseconds, 1 to 3600000.
pub(super) fn millis(key: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
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

fn parse_upstream_url(value: &str) -> Result<Address, ConfigError> {
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
    Ok(Address {
        tls,
        host,
        port,
        base_path,
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
