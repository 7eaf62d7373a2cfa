//! `[fapi]`: the FAPI-CIBA security profile, for every client (`fapi.enabled`) or per
//! client (`clients."id".fapi`), checked against the clients, the delivery modes and ping
//! at start-up, so no covered client can be served without keys or with a method the
//! profile forbids.

use super::clients::Clients;
use super::err;
use super::file::FapiSection;
use super::ping::Ping;
use super::upstream::OpSettings;
use crate::ciba::address;
use crate::ciba::authorize::{DeliveryMode, ValidationPolicy};
use crate::ciba::client_auth::AuthMethod;
use crate::ciba::config_error::ConfigError;
use crate::ciba::fapi::{AllowedAlgs, FapiPolicy, DEFAULT_ALGS};
use crate::ciba::jwt::KeySet;
use std::collections::HashMap;
use std::time::Duration;

/// `fapi.clock_skew_seconds` when unset.
pub const DEFAULT_CLOCK_SKEW: u64 = 10;
/// `fapi.replay_cache_max_entries` when unset.
pub const DEFAULT_REPLAY_MAX: usize = 100_000;
/// `fapi.jwks_max_bytes` when unset.
pub const DEFAULT_JWKS_MAX_BYTES: usize = 64 * 1024;
/// `fapi.jwks_max_keys` when unset.
pub const DEFAULT_JWKS_MAX_KEYS: usize = 20;
/// `fapi.jwks_cache_seconds` when unset.
pub const DEFAULT_JWKS_CACHE: u64 = 300;
/// `fapi.jwks_refresh_min_seconds` when unset.
pub const DEFAULT_JWKS_REFRESH_MIN: u64 = 30;
/// `fapi.jwks_fetch_timeout_ms` when unset.
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 3000;

/// Bounds on fetching a client's `jwks_uri`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    /// Largest document read, in bytes.
    pub max_bytes: usize,
    /// Most keys accepted in one document.
    pub max_keys: usize,
    /// How long fetched keys are used before they are fetched again.
    pub cache: Duration,
    /// The shortest time between two fetches for one client (an unknown `kid` refreshes
    /// at most this often).
    pub refresh_min: Duration,
    /// The whole fetch's deadline (lookup, connect, TLS, request, answer).
    pub timeout: Duration,
}

/// The profile as configured.
#[derive(Debug, Clone)]
pub struct Fapi {
    /// Every client is covered (`fapi.enabled`); a client's own `fapi` key wins.
    pub enabled: bool,
    /// The OP's issuer when configured (`fapi.issuer`); else learned from discovery.
    pub issuer: Option<String>,
    /// What the pure rules need: algorithms and clock skew.
    pub policy: FapiPolicy,
    /// Most `jti`s remembered in memory at once.
    pub replay_max_entries: usize,
    /// `jwks_uri` fetching bounds.
    pub jwks: JwksLimits,
    /// Each covered client's inline `jwks`, parsed.
    pub inline_keys: HashMap<String, KeySet>,
    /// Whether any client is covered at all.
    pub active: bool,
}

impl Fapi {
    /// Whether the profile covers `client_id`: its own `fapi` key, else `fapi.enabled`.
    pub fn covers(&self, clients: &Clients, client_id: &str) -> bool {
        clients
            .get(client_id)
            .and_then(|c| c.fapi)
            .unwrap_or(self.enabled)
    }
}

fn bounded(
    key: &str,
    v: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(err(key, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

/// Checks `[fapi]` and every client it covers.
pub(super) fn validate_fapi(
    f: FapiSection,
    clients: &Clients,
    validation: &ValidationPolicy,
    ping: Option<&Ping>,
    upstream: &OpSettings,
) -> Result<Fapi, ConfigError> {
    let names =
        |v: Option<Vec<String>>| v.unwrap_or_else(|| DEFAULT_ALGS.map(String::from).to_vec());
    let policy = FapiPolicy {
        request_algs: AllowedAlgs::parse(
            &names(f.request_signing_alg_values),
            "fapi.request_signing_alg_values",
        )?,
        assertion_algs: AllowedAlgs::parse(
            &names(f.client_assertion_signing_alg_values),
            "fapi.client_assertion_signing_alg_values",
        )?,
        clock_skew: bounded(
            "fapi.clock_skew_seconds",
            f.clock_skew_seconds,
            DEFAULT_CLOCK_SKEW,
            0,
            300,
        )?,
    };
    let replay_max_entries = bounded(
        "fapi.replay_cache_max_entries",
        f.replay_cache_max_entries.map(|v| v as u64),
        DEFAULT_REPLAY_MAX as u64,
        1,
        10_000_000,
    )? as usize;
    let jwks = JwksLimits {
        max_bytes: bounded(
            "fapi.jwks_max_bytes",
            f.jwks_max_bytes.map(|v| v as u64),
            DEFAULT_JWKS_MAX_BYTES as u64,
            256,
            1 << 20,
        )? as usize,
        max_keys: bounded(
            "fapi.jwks_max_keys",
            f.jwks_max_keys.map(|v| v as u64),
            DEFAULT_JWKS_MAX_KEYS as u64,
            1,
            100,
        )? as usize,
        cache: Duration::from_secs(bounded(
            "fapi.jwks_cache_seconds",
            f.jwks_cache_seconds,
            DEFAULT_JWKS_CACHE,
            1,
            86_400,
        )?),
        refresh_min: Duration::from_secs(bounded(
            "fapi.jwks_refresh_min_seconds",
            f.jwks_refresh_min_seconds,
            DEFAULT_JWKS_REFRESH_MIN,
            1,
            3600,
        )?),
        timeout: Duration::from_millis(bounded(
            "fapi.jwks_fetch_timeout_ms",
            f.jwks_fetch_timeout_ms,
            DEFAULT_JWKS_TIMEOUT_MS,
            100,
            60_000,
        )?),
    };
    if let Some(issuer) = &f.issuer {
        if crate::ciba::discovery::url_path(issuer).is_none() {
            return Err(err("fapi.issuer", "is not an http(s) URL"));
        }
    }
    let mut fapi = Fapi {
        enabled: f.enabled.unwrap_or(false),
        issuer: f.issuer,
        policy,
        replay_max_entries,
        jwks,
        inline_keys: HashMap::new(),
        active: false,
    };
    let rules = validation.rules();
    if fapi.enabled && rules.delivery_mode == DeliveryMode::Push {
        return Err(err(
            "validation.delivery_mode",
            "is push, which FAPI-CIBA 5.2.2 forbids (fapi.enabled covers every client)",
        ));
    }
    fapi.active = fapi.enabled;
    for (id, c) in &clients.by_id {
        if !fapi.covers(clients, id) {
            continue;
        }
        fapi.active = true;
        let key = |k: &str| format!("clients.{id}.{k}");
        match c.auth_method {
            None
            | Some(
                AuthMethod::PrivateKeyJwt
                | AuthMethod::TlsClientAuth
                | AuthMethod::SelfSignedTlsClientAuth,
            ) => {}
            Some(m) => {
                return Err(err(
                    &key("token_endpoint_auth_method"),
                    format!(
                        "is {}, which FAPI forbids; use private_key_jwt, tls_client_auth or \
                         self_signed_tls_client_auth (FAPI 1.0 Advanced 5.2.2)",
                        m.name()
                    ),
                ))
            }
        }
        match (&c.jwks, &c.jwks_uri) {
            (Some(set), _) => {
                let keys = KeySet::from_jwk_set(set).map_err(|e| err(&key("jwks"), e))?;
                if keys.is_empty() {
                    return Err(err(&key("jwks"), "holds no signing key"));
                }
                fapi.inline_keys.insert(id.clone(), keys);
            }
            (None, Some(uri)) => {
                let url: http::Uri = uri
                    .parse()
                    .map_err(|_| err(&key("jwks_uri"), "is not a URL"))?;
                address::endpoint(&url, c.jwks_uri_allow_insecure).map_err(|why| {
                    err(
                        &key("jwks_uri"),
                        format!(
                            "is refused ({}); an https URL to a public address, or set \
                             jwks_uri_allow_insecure for a test or internal server",
                            why.as_str()
                        ),
                    )
                })?;
            }
            (None, None) => {
                return Err(err(
                    &key("jwks"),
                    "or jwks_uri is required for a FAPI client: its request objects and \
                     assertions are verified with its keys",
                ))
            }
        }
        let mode = rules
            .clients
            .get(id)
            .and_then(|r| r.delivery_mode)
            .unwrap_or(rules.delivery_mode);
        if mode == DeliveryMode::Push {
            return Err(err(
                &format!("validation.clients.{id}.delivery_mode"),
                "is push, which FAPI-CIBA 5.2.2 forbids for a FAPI client",
            ));
        }
        if ping.is_some_and(|p| p.clients.contains_key(id)) {
            return Err(err(
                &format!("ping.clients.\"{id}\""),
                "lists a FAPI client: the gateway cannot poll on its behalf (its private_key_jwt \
                 assertions are single-use, its certificate is its own)",
            ));
        }
    }
    if fapi.enabled {
        if let Some(p) = ping {
            if let Some(id) = p.clients.keys().find(|id| fapi.covers(clients, id)) {
                return Err(err(
                    &format!("ping.clients.\"{id}\""),
                    "lists a client that fapi.enabled covers: the gateway cannot poll on a FAPI \
                     client's behalf",
                ));
            }
        }
    }
    if fapi.active
        && fapi.issuer.is_none()
        && upstream.backchannel_path.is_some()
        && upstream.token_path.is_some()
    {
        return Err(err(
            "fapi.issuer",
            "is required when upstream.backchannel_path and upstream.token_path skip discovery: \
             request objects and assertions name the OP by its issuer",
        ));
    }
    Ok(fapi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_file, validate, Overrides};

    const JWKS: &str = include_str!("../../tests/data/fapi/client-a.jwks.json");

    fn load(text: &str) -> Result<std::sync::Arc<Fapi>, ConfigError> {
        let text = format!("[upstream]\nurl = \"http://a:1\"\n{text}");
        validate(parse_file(&text)?, &Overrides::default()).map(|c| c.fapi)
    }

    fn jwks() -> String {
        format!("jwks = '{}'\n", JWKS.replace('\n', ""))
    }

    #[test]
    fn defaults_and_coverage() {
        let f = load("").unwrap();
        assert!(!f.active && !f.enabled);
        assert_eq!(f.policy.request_algs.names(), ["PS256", "ES256"]);
        assert_eq!(f.policy.clock_skew, DEFAULT_CLOCK_SKEW);
        let f = load(&format!("[clients.\"a\"]\nfapi = true\n{}", jwks())).unwrap();
        assert!(f.active && !f.enabled);
        assert_eq!(f.inline_keys["a"].len(), 2);
        let f = load(&format!(
            "[fapi]\nenabled = true\n[clients.\"a\"]\n{}[clients.\"b\"]\nfapi = false\n",
            jwks()
        ))
        .unwrap();
        assert!(f.active && f.enabled);
    }

    #[test]
    fn covered_clients_are_checked_and_errors_name_the_key() {
        let cases = [
            ("[fapi]\nrequest_signing_alg_values = [\"RS256\"]\n", "fapi.request_signing_alg_values"),
            ("[fapi]\nclient_assertion_signing_alg_values = [\"none\"]\n", "fapi.client_assertion_signing_alg_values"),
            ("[fapi]\nclock_skew_seconds = 301\n", "fapi.clock_skew_seconds"),
            ("[fapi]\njwks_max_keys = 0\n", "fapi.jwks_max_keys"),
            ("[fapi]\nissuer = \"op\"\n", "fapi.issuer"),
            ("[clients.\"a\"]\nfapi = true\n", "clients.a.jwks"),
            ("[clients.\"a\"]\nfapi = true\ntoken_endpoint_auth_method = \"client_secret_basic\"\njwks_uri = \"https://k.example/j\"\n", "clients.a.token_endpoint_auth_method"),
            ("[clients.\"a\"]\nfapi = true\njwks_uri = \"http://k.example/j\"\n", "clients.a.jwks_uri"),
            ("[clients.\"a\"]\nfapi = true\njwks_uri = \"https://127.0.0.1/j\"\n", "clients.a.jwks_uri"),
            ("[clients.\"a\"]\nfapi = true\njwks_uri = \"https://k.example/j\"\n[validation.clients.\"a\"]\ndelivery_mode = \"push\"\n", "validation.clients.a.delivery_mode"),
            ("[fapi]\nenabled = true\n[validation]\ndelivery_mode = \"push\"\n", "validation.delivery_mode"),
        ];
        for (text, key) in cases {
            let e = load(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
        // Insecure jwks_uri allowed for tests; metadata addresses never.
        assert!(load("[clients.\"a\"]\nfapi = true\njwks_uri = \"http://127.0.0.1:9/j\"\njwks_uri_allow_insecure = true\n").is_ok());
        assert!(load("[clients.\"a\"]\nfapi = true\njwks_uri = \"http://169.254.169.254/j\"\njwks_uri_allow_insecure = true\n").is_err());
        // Discovery skipped: the issuer must be configured.
        let skip = "[upstream]\nurl = \"http://a:1\"\nbackchannel_path = \"/bc\"\ntoken_path = \"/token\"\n";
        let text = format!("{skip}[clients.\"a\"]\nfapi = true\n{}", jwks());
        let e = validate(parse_file(&text).unwrap(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "fapi.issuer");
        let text = format!("{text}[fapi]\nissuer = \"https://op.example\"\n");
        assert!(validate(parse_file(&text).unwrap(), &Overrides::default()).is_ok());
    }
}
