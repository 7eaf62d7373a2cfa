//! `[ping]`: the clients the gateway pings (CIBA 10.2) on behalf of an OP that only polls,
//! the key that encrypts what it holds for them, and the bounds of its polling work.

use super::err;
use super::file::PingSection;
use crate::ciba::address;
use crate::ciba::authorize::{DeliveryMode, ValidationPolicy};
use crate::ciba::config_error::ConfigError;
use crate::ciba::ids::Secret;
use crate::ciba::ping::{AuthMethod, SecretMethod};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::time::Duration;

/// `ping.max_concurrent_polls` when unset.
pub const DEFAULT_MAX_CONCURRENT_POLLS: usize = 16;
/// `ping.queue_capacity` when unset.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// `ping.lease_seconds` when unset.
pub const DEFAULT_LEASE_SECONDS: u64 = 10;

/// Ping delivery, when at least one client is registered for it.
#[derive(Debug, Clone)]
pub struct Ping {
    /// The clients, by `client_id`.
    pub clients: BTreeMap<String, PingClient>,
    /// The 32-byte key the gateway's encryption and credential-hash keys derive from.
    pub key: Secret<[u8; 32]>,
    /// Polls of the OP in flight at once.
    pub max_concurrent_polls: usize,
    /// Ping requests waiting for the OP's answer.
    pub queue_capacity: usize,
    /// The notifier's timeouts, pauses, body cap and extra roots.
    pub notify: NotifySettings,
    /// With Redis: how long a replica's hold on a ping request outlives its last renewal.
    pub lease: std::time::Duration,
}

/// The notifier's settings as configured; a `None` keeps the notifier's own default
/// (`NotifyOptions::default()`, where each default is stated).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// `ping.notify_connect_timeout_ms`.
    pub connect_timeout: Option<Duration>,
    /// `ping.notify_write_timeout_ms`.
    pub write_timeout: Option<Duration>,
    /// `ping.notify_read_timeout_ms`.
    pub read_timeout: Option<Duration>,
    /// `ping.notify_backoff_first_ms`.
    pub backoff_first: Option<Duration>,
    /// `ping.notify_backoff_cap_ms`.
    pub backoff_cap: Option<Duration>,
    /// `ping.notify_max_body_bytes`.
    pub max_body: Option<usize>,
    /// `ping.notify_ca_file`'s certificates (DER), each checked as a trust anchor.
    pub extra_roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("backoff_first", &self.backoff_first)
            .field("backoff_cap", &self.backoff_cap)
            .field("max_body", &self.max_body)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// The longest timeout or pause a `ping.notify_*_ms` key takes: ten minutes.
const MAX_NOTIFY_MS: u64 = 600_000;
/// The largest `ping.notify_max_body_bytes`: 1 MiB.
const MAX_NOTIFY_BODY: usize = 1 << 20;
/// The largest `ping.notify_ca_file`: 1 MiB of PEM.
const MAX_CA_FILE: u64 = 1 << 20;

/// One client the gateway pings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingClient {
    /// Its notification endpoint.
    pub endpoint: http::Uri,
    /// Whether http and internal addresses are allowed for it.
    pub allow_insecure: bool,
    /// The only method it may authenticate with; `None`: either secret method.
    pub auth_method: Option<SecretMethod>,
}

/// Checks `[ping]`; `None` when it registers no client. `validation` is checked first:
/// a client the OP would push to cannot be pinged.
pub(super) fn validate_ping(
    p: PingSection,
    validation: &ValidationPolicy,
) -> Result<Option<Ping>, ConfigError> {
    let notify = validate_notify(&p)?;
    let key = match (p.key, p.key_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "ping.key_file",
                "is set together with ping.key; keep one of them",
            ))
        }
        (Some(k), None) => Some(decode_key("ping.key", &k)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "ping.key_file",
                    format!("cannot read the key file: {}", e.kind()),
                )
            })?;
            Some(decode_key("ping.key_file", &text)?)
        }
        (None, None) => None,
    };
    let max_concurrent_polls = p
        .max_concurrent_polls
        .unwrap_or(DEFAULT_MAX_CONCURRENT_POLLS);
    if !(1..=1024).contains(&max_concurrent_polls) {
        return Err(err(
            "ping.max_concurrent_polls",
            "must be between 1 and 1024",
        ));
    }
    let queue_capacity = p.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    if !(1..=1_000_000).contains(&queue_capacity) {
        return Err(err("ping.queue_capacity", "must be between 1 and 1000000"));
    }
    let lease_seconds = p.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !(1..=300).contains(&lease_seconds) {
        return Err(err(
            "ping.lease_seconds",
            "must be between 1 and 300 (seconds a dead replica's ping requests wait before another takes them over)",
        ));
    }
    let mut clients = BTreeMap::new();
    for (id, c) in p.clients {
        let prefix = format!("ping.clients.\"{id}\"");
        let allow_insecure = c.allow_insecure.unwrap_or(false);
        let endpoint = c.notification_endpoint.ok_or_else(|| {
            err(
                &format!("{prefix}.notification_endpoint"),
                "is required: the client's backchannel_client_notification_endpoint",
            )
        })?;
        let endpoint = check_endpoint(
            &format!("{prefix}.notification_endpoint"),
            &endpoint,
            allow_insecure,
        )?;
        let auth_method = c
            .token_endpoint_auth_method
            .map(|m| replayable(&format!("{prefix}.token_endpoint_auth_method"), m))
            .transpose()?;
        let rules = validation.rules();
        let mode = rules
            .clients
            .get(&id)
            .and_then(|r| r.delivery_mode)
            .unwrap_or(rules.delivery_mode);
        if mode == DeliveryMode::Push {
            return Err(err(
                &prefix,
                "is registered for push delivery in [validation]; a ping client's delivery_mode is poll or ping",
            ));
        }
        clients.insert(
            id,
            PingClient {
                endpoint,
                allow_insecure,
                auth_method,
            },
        );
    }
    if clients.is_empty() {
        return Ok(None);
    }
    let key = key.ok_or_else(|| {
        err(
            "ping.key",
            "is required when ping.clients lists a client: 32 random bytes in Base64 \
             (e.g. `openssl rand -base64 32`), or set ping.key_file",
        )
    })?;
    Ok(Some(Ping {
        clients,
        key,
        max_concurrent_polls,
        queue_capacity,
        notify,
        lease: std::time::Duration::from_secs(lease_seconds),
    }))
}

/// A ping client's method, refused when the gateway cannot poll with it.
fn replayable(key: &str, method: AuthMethod) -> Result<SecretMethod, ConfigError> {
    method.replayable().map_err(|why| {
        err(
            key,
            format!(
                "is {}, which the gateway cannot use for ping delivery: {why}; register the \
                 client for poll delivery (remove it from ping.clients), or have it \
                 authenticate with client_secret_post or client_secret_basic",
                method.name()
            ),
        )
    })
}

/// Checks the `ping.notify_*` keys.
fn validate_notify(p: &PingSection) -> Result<NotifySettings, ConfigError> {
    let backoff_first = millis("ping.notify_backoff_first_ms", p.notify_backoff_first_ms)?;
    let backoff_cap = millis("ping.notify_backoff_cap_ms", p.notify_backoff_cap_ms)?;
    if let (Some(first), Some(cap)) = (backoff_first, backoff_cap) {
        if cap < first {
            return Err(err(
                "ping.notify_backoff_cap_ms",
                "is less than ping.notify_backoff_first_ms; the longest pause cannot be shorter than the first",
            ));
        }
    }
    let max_body = match p.notify_max_body_bytes {
        Some(n) if n > MAX_NOTIFY_BODY => {
            return Err(err(
                "ping.notify_max_body_bytes",
                format!("must be at most {MAX_NOTIFY_BODY}; the answer's body is discarded"),
            ))
        }
        n => n,
    };
    let extra_roots = match &p.notify_ca_file {
        Some(path) => read_roots("ping.notify_ca_file", path)?,
        None => Vec::new(),
    };
    Ok(NotifySettings {
        connect_timeout: millis(
            "ping.notify_connect_timeout_ms",
            p.notify_connect_timeout_ms,
        )?,
        write_timeout: millis("ping.notify_write_timeout_ms", p.notify_write_timeout_ms)?,
        read_timeout: millis("ping.notify_read_timeout_ms", p.notify_read_timeout_ms)?,
        backoff_first,
        backoff_cap,
        max_body,
        extra_roots,
    })
}

/// A `ping.notify_*_ms` key: 1 ms to ten minutes.
fn millis(key: &str, ms: Option<u64>) -> Result<Option<Duration>, ConfigError> {
    match ms {
        None => Ok(None),
        Some(ms) if (1..=MAX_NOTIFY_MS).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
        Some(_) => Err(err(
            key,
            format!("must be between 1 and {MAX_NOTIFY_MS} (milliseconds)"),
        )),
    }
}

/// The certificates of a PEM file of root certificates (`key` names it in errors).
fn read_roots(key: &str, path: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
    let cannot = |e: std::io::Error| err(key, format!("cannot read the file: {}", e.kind()));
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_CA_FILE {
        return Err(err(
            key,
            format!("is larger than {MAX_CA_FILE} bytes; give only the roots notifications need"),
        ));
    }
    let pem = std::fs::read(path).map_err(cannot)?;
    pem_roots(&pem).map_err(|why| err(key, why))
}

/// The certificates of PEM text, each checked as a trust anchor (as the TLS handshake reads
/// it) and as an X.509 certificate (as the connector keeps it): their DER, in order.
pub fn pem_roots(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if PrivateKeyDer::pem_slice_iter(pem).any(|k| k.is_ok()) {
        return Err("holds a private key; give only the CA certificates".into());
    }
    let mut roots = Vec::new();
    for (n, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let n = n + 1;
        let cert = cert.map_err(|e| format!("certificate {n} is not valid PEM: {e}"))?;
        let mut store = rustls::RootCertStore::empty();
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {n} is not a usable root certificate: {e}"))?;
        x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| format!("certificate {n} is not an X.509 certificate: {e}"))?;
        roots.push(cert.to_vec());
    }
    if roots.is_empty() {
        return Err("holds no certificate; give PEM blocks (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(roots)
}

/// A 32-byte key from its Base64 text (standard or URL-safe alphabet, padded or not).
pub(super) fn decode_key(key: &str, text: &str) -> Result<Secret<[u8; 32]>, ConfigError> {
    let text = text.trim();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| {
            err(
                key,
                "is not Base64; generate one with `openssl rand -base64 32`",
            )
        })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        err(
            key,
            format!(
                "decodes to {} bytes; it must be exactly 32 (`openssl rand -base64 32`)",
                b.len()
            ),
        )
    })?;
    Ok(Secret::new(bytes))
}

/// A notification endpoint: an absolute https URL with a host, no credentials and no
/// fragment; http and an internal address only with `allow_insecure`.
///
/// Only an address written in the URL can be judged here; where a name resolves to is
/// checked when the notification connects (on every connection).
pub(super) fn check_endpoint(
    key: &str,
    url: &str,
    allow_insecure: bool,
) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| err(key, "is not a URL, e.g. https://client.example.com/cb"))?;
    // The notifier's own reading of the URL (every IPv4 spelling, IPv4 inside IPv6,
    // `localhost`), so what passes here is what it will accept.
    if uri.authority().is_none() {
        return Err(err(
            key,
            "must be an absolute URL with a host, e.g. https://client.example.com/cb",
        ));
    }
    address::endpoint(&uri, allow_insecure).map_err(|refusal| {
        let why = match refusal {
            address::Refusal::Scheme if uri.scheme_str() == Some("http") => {
                "must be https (CIBA 10.2); allow_insecure = true allows http, for tests and internal deployments".to_string()
            }
            address::Refusal::Scheme => "must be an https URL".to_string(),
            address::Refusal::Host => {
                "must be an absolute URL with a host that every URL parser reads alike, and no credentials".to_string()
            }
            address::Refusal::Range(r) if r.allowed_when_insecure() => format!(
                "names a {} address; allow_insecure = true allows it, for tests and internal deployments",
                r.as_str()
            ),
            address::Refusal::Range(r) => format!(
                "names a {} address, which no ping may reach, even with allow_insecure",
                r.as_str()
            ),
        };
        err(key, why)
    })?;
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_file, validate, Overrides};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn load(ping: &str) -> Result<Option<Ping>, ConfigError> {
        let text = format!("[upstream]\nurl = \"http://a:1\"\n{ping}");
        validate(parse_file(&text)?, &Overrides::default()).map(|c| c.ping)
    }

    fn client(endpoint: &str, extra: &str) -> String {
        format!("[ping.clients.\"c\"]\nnotification_endpoint = \"{endpoint}\"\n{extra}")
    }

    #[test]
    fn a_ping_client_needs_a_key_and_an_https_endpoint() {
        assert!(load("").unwrap().is_none());
        assert!(load(&format!("[ping]\nkey = \"{KEY}\"\n"))
            .unwrap()
            .is_none());
        let e = load(&client("https://c.example/cb", "")).unwrap_err();
        assert_eq!(e.key, "ping.key");
        let ok = load(&format!(
            "[ping]\nkey = \"{KEY}\"\n{}",
            client("https://c.example/cb", "")
        ))
        .unwrap()
        .unwrap();
        assert_eq!(ok.key.expose()[31], 31);
        assert_eq!((ok.max_concurrent_polls, ok.queue_capacity), (16, 10_000));
        let refused = [
            ("http://c.example/cb", "", "must be https"),
            ("https://127.0.0.1/cb", "", "loopback"),
            ("https://169.254.169.254/latest", "", "metadata"),
            ("https://[::1]:8443/cb", "", "loopback"),
            ("https://10.0.0.8/cb", "", "private"),
            ("https://localhost/cb", "", "loopback"),
            ("https://u:p@c.example/cb", "", "credentials"),
            ("/cb", "", "absolute"),
            ("ftp://c.example/cb", "", "https"),
        ];
        for (url, extra, why) in refused {
            let e = load(&format!("[ping]\nkey = \"{KEY}\"\n{}", client(url, extra))).unwrap_err();
            assert_eq!(e.key, "ping.clients.\"c\".notification_endpoint", "{url}");
            assert!(e.message.contains(why), "{url}: {e}");
        }
        for url in ["http://127.0.0.1:9/cb", "https://10.0.0.8/cb"] {
            let text = format!(
                "[ping]\nkey = \"{KEY}\"\n{}",
                client(url, "allow_insecure = true")
            );
            assert!(load(&text).unwrap().is_some(), "{url}");
        }
    }

    #[test]
    fn keys_are_32_bytes_of_base64_from_the_file_or_a_key_file() {
        let with = |k: &str| format!("[ping]\n{k}\n{}", client("https://c.example/cb", ""));
        let e = load(&with("key = \"c2hvcnQ=\"")).unwrap_err();
        assert!(e.key == "ping.key" && e.message.contains("5 bytes"), "{e}");
        let e = load(&with("key = \"not base64!\"")).unwrap_err();
        assert!(e.message.contains("not Base64"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let p = path.display();
        assert!(load(&with(&format!("key_file = \"{p}\"")))
            .unwrap()
            .is_some());
        let e = load(&with(&format!("key = \"{KEY}\"\nkey_file = \"{p}\""))).unwrap_err();
        assert_eq!(e.key, "ping.key_file");
        let e = load(&with("key_file = \"/nonexistent/k\"")).unwrap_err();
        assert!(
            e.key == "ping.key_file" && e.message.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn bounds_and_delivery_modes() {
        let base = format!("[ping]\nkey = \"{KEY}\"\n");
        for (k, v) in [
            ("max_concurrent_polls", "0"),
            ("max_concurrent_polls", "1025"),
            ("queue_capacity", "0"),
            ("lease_seconds", "0"),
            ("lease_seconds", "301"),
        ] {
            let e = load(&format!(
                "{base}{k} = {v}\n{}",
                client("https://c.example/", "")
            ))
            .unwrap_err();
            assert_eq!(e.key, format!("ping.{k}"));
        }
        let push = format!(
            "{base}{}[validation.clients.\"c\"]\ndelivery_mode = \"push\"\n",
            client("https://c.example/", "")
        );
        let e = load(&push).unwrap_err();
        assert!(
            e.key == "ping.clients.\"c\"" && e.message.contains("push"),
            "{e}"
        );
        let e = load("[ping.clients.\"c\"]\nallow_insecure = true\n").unwrap_err();
        assert_eq!(e.key, "ping.clients.\"c\".notification_endpoint");
    }

    #[test]
    fn only_replayable_auth_methods_are_accepted() {
        let base = format!("[ping]\nkey = \"{KEY}\"\n");
        let with = |method: &str| {
            load(&format!(
                "{base}{}",
                client(
                    "https://c.example/cb",
                    &format!("token_endpoint_auth_method = \"{method}\"\n")
                )
            ))
        };
        let method = |p: Option<Ping>| p.unwrap().clients["c"].auth_method;
        assert_eq!(
            method(load(&format!("{base}{}", client("https://c.example/cb", ""))).unwrap()),
            None
        );
        assert_eq!(
            method(with("client_secret_post").unwrap()),
            Some(SecretMethod::Post)
        );
        assert_eq!(
            method(with("client_secret_basic").unwrap()),
            Some(SecretMethod::Basic)
        );
        let key = "ping.clients.\"c\".token_endpoint_auth_method";
        for (name, why) in [
            ("private_key_jwt", "single-use"),
            ("client_secret_jwt", "single-use"),
            ("tls_client_auth", "no client certificate"),
            ("self_signed_tls_client_auth", "no client certificate"),
        ] {
            let e = with(name).unwrap_err();
            assert_eq!(e.key, key, "{name}");
            for says in [
                &format!("is {name},") as &str,
                why,
                "for poll delivery",
                "client_secret_post or client_secret_basic",
            ] {
                assert!(e.message.contains(says), "{name}: {e}");
            }
        }
        // Other spellings are not methods.
        for name in ["Private_Key_JWT", "none", "client-secret-post", ""] {
            let e = with(name).unwrap_err();
            assert!(e.to_string().contains("unknown variant"), "{name}: {e}");
        }
    }

    #[test]
    fn endpoints_are_read_as_the_notifier_reads_them() {
        let base = format!("[ping]\nkey = \"{KEY}\"\n");
        let key = "ping.clients.\"c\".notification_endpoint";
        for (url, extra, says) in [
            ("https://2130706433/cb", "", "loopback"),
            ("https://0177.0.0.1/cb", "", "loopback"),
            ("https://[::ffff:a9fe:a9fe]/cb", "", "metadata"),
            ("https://10.1.2.3/cb", "", "private"),
            ("https://localhost./cb", "", "loopback"),
            (
                "http://169.254.169.254/",
                "allow_insecure = true\n",
                "even with allow_insecure",
            ),
            ("https://user@c.example/cb", "", "no credentials"),
            ("http://c.example/cb", "", "must be https"),
        ] {
            let e = load(&format!("{base}{}", client(url, extra))).unwrap_err();
            assert_eq!(e.key, key, "{url}");
            assert!(e.message.contains(says), "{url}: {e}");
        }
        let ok = format!(
            "{base}{}",
            client("http://127.0.0.1:9/cb", "allow_insecure = true\n")
        );
        assert!(load(&ok).unwrap().is_some());
    }

    #[test]
    fn notifier_keys_are_bounded_and_unset_ones_keep_the_notifier_default() {
        let base = format!("[ping]\nkey = \"{KEY}\"\n");
        let with = |extra: &str| {
            load(&format!(
                "{base}{extra}\n{}",
                client("https://c.example/", "")
            ))
        };
        let unset = with("").unwrap().unwrap().notify;
        assert_eq!(unset, NotifySettings::default());
        let set = with(
            "notify_connect_timeout_ms = 100\nnotify_write_timeout_ms = 200\n\
             notify_read_timeout_ms = 300\nnotify_backoff_first_ms = 40\n\
             notify_backoff_cap_ms = 40\nnotify_max_body_bytes = 0",
        )
        .unwrap()
        .unwrap()
        .notify;
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            (set.connect_timeout, set.write_timeout, set.read_timeout),
            (ms(100), ms(200), ms(300))
        );
        assert_eq!((set.backoff_first, set.backoff_cap), (ms(40), ms(40)));
        assert_eq!(set.max_body, Some(0));
        for (k, v) in [
            ("notify_connect_timeout_ms", "0"),
            ("notify_write_timeout_ms", "600001"),
            ("notify_read_timeout_ms", "0"),
            ("notify_backoff_first_ms", "0"),
            ("notify_backoff_cap_ms", "9999999"),
            ("notify_max_body_bytes", "1048577"),
        ] {
            let e = with(&format!("{k} = {v}")).unwrap_err();
            assert_eq!(e.key, format!("ping.{k}"), "{e}");
        }
        let e = with("notify_backoff_first_ms = 500\nnotify_backoff_cap_ms = 499").unwrap_err();
        assert!(
            e.key == "ping.notify_backoff_cap_ms" && e.message.contains("first"),
            "{e}"
        );
        // Checked with or without a client, so `--check` catches them before one is added.
        let e = load(&format!("{base}notify_read_timeout_ms = 0\n")).unwrap_err();
        assert_eq!(e.key, "ping.notify_read_timeout_ms");
    }

    #[test]
    fn the_ca_file_is_read_and_every_certificate_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let with = |path: &str| {
            load(&format!(
                "[ping]\nkey = \"{KEY}\"\nnotify_ca_file = \"{path}\"\n{}",
                client("https://c.example/", "")
            ))
        };
        let good = write("ca.pem", &ca.pem());
        let roots = with(&good).unwrap().unwrap().notify.extra_roots;
        assert_eq!(roots, vec![ca.der().to_vec()]);
        let key = "ping.notify_ca_file";
        for (path, says) in [
            ("/nonexistent/ca.pem".to_string(), "cannot read"),
            (write("empty.pem", ""), "no certificate"),
            (
                write(
                    "key.pem",
                    &format!("{}{}", ca.pem(), ca_key.serialize_pem()),
                ),
                "private key",
            ),
            (
                write(
                    "bad.pem",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                ),
                "certificate 1",
            ),
            (
                write("big.pem", &"x".repeat(MAX_CA_FILE as usize + 1)),
                "larger",
            ),
        ] {
            let e = with(&path).unwrap_err();
            assert!(e.key == key && e.message.contains(says), "{path}: {e}");
        }
    }
}
