//! `[server.tls]`: TLS at the listener (certificate files, versions, suites, HTTP/2,
//! client certificates at the handshake, rotation), and the certificate files' check that
//! `--check`, start-up and every reload share.

use super::err;
use super::file::TlsSection;
use crate::ciba::config_error::ConfigError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `server.tls.handshake_timeout_seconds` when unset.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;
/// `server.tls.watch_interval_seconds` when unset (off).
pub const DEFAULT_WATCH_INTERVAL_SECONDS: u64 = 0;
/// `server.tls.max_concurrent_streams` when unset.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The lowest TLS version the listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Whether the handshake asks the client for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Never asks.
    #[default]
    Off,
    /// Asks; a client without one still connects.
    Optional,
    /// Asks; a handshake without a certificate fails.
    Required,
}

/// `[server.tls]` validated. Holds file names, never key material (the files are read by
/// [`load_pair`] where they are used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; RSA or ECDSA).
    pub key_file: PathBuf,
    /// Lowest accepted version.
    pub min_version: MinVersion,
    /// Restrict the cipher suites to FAPI 1.0 Advanced 8.5's (those rustls has).
    pub fapi_ciphers: bool,
    /// Offer HTTP/2 by ALPN besides HTTP/1.1.
    pub http2: bool,
    /// Client certificates at the handshake.
    pub client_auth: ClientAuth,
    /// Deadline for the TLS handshake, from accept.
    pub handshake_timeout: Duration,
    /// How often the certificate files are looked at for a change; `None`: never.
    pub watch_interval: Option<Duration>,
    /// Concurrent streams an HTTP/2 connection may open.
    pub max_concurrent_streams: u32,
}

/// Checks `[server.tls]` and reads its files once, so that a bad pair stops start-up (and
/// `--check`) with the key named.
pub(super) fn validate_tls(t: TlsSection) -> Result<TlsSettings, ConfigError> {
    let cert_file = t.cert_file.ok_or_else(|| {
        err(
            "server.tls.cert_file",
            "is required with [server.tls]: a PEM file with the certificate chain, leaf first",
        )
    })?;
    let key_file = t.key_file.ok_or_else(|| {
        err(
            "server.tls.key_file",
            "is required with [server.tls]: a PEM file with the certificate's private key",
        )
    })?;
    let handshake = t
        .handshake_timeout_seconds
        .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_SECONDS);
    if handshake == 0 || handshake > 3600 {
        return Err(err(
            "server.tls.handshake_timeout_seconds",
            "must be between 1 and 3600",
        ));
    }
    let watch = t
        .watch_interval_seconds
        .unwrap_or(DEFAULT_WATCH_INTERVAL_SECONDS);
    if watch > 86_400 {
        return Err(err(
            "server.tls.watch_interval_seconds",
            "must be between 0 (off) and 86400",
        ));
    }
    let streams = t
        .max_concurrent_streams
        .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS);
    if !(1..=1000).contains(&streams) {
        return Err(err(
            "server.tls.max_concurrent_streams",
            "must be between 1 and 1000",
        ));
    }
    let settings = TlsSettings {
        cert_file: PathBuf::from(cert_file),
        key_file: PathBuf::from(key_file),
        min_version: t.min_version.unwrap_or_default(),
        fapi_ciphers: t.fapi_ciphers.unwrap_or(false),
        http2: t.http2.unwrap_or(true),
        client_auth: t.client_auth.unwrap_or_default(),
        handshake_timeout: Duration::from_secs(handshake),
        watch_interval: (watch > 0).then(|| Duration::from_secs(watch)),
        max_concurrent_streams: streams,
    };
    load_pair(&settings)?;
    Ok(settings)
}

/// The crypto provider the listener uses: ring's, its suites cut to FAPI's when asked.
pub fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if settings.fapi_ciphers {
        p.cipher_suites.retain(|s| is_fapi_suite(s.suite()));
    }
    p
}

/// FAPI 1.0 Advanced 8.5: for TLS 1.2 only `TLS_DHE_RSA_WITH_AES_{128,256}_GCM_*` and
/// `TLS_ECDHE_RSA_WITH_AES_{128,256}_GCM_*` (rustls implements no DHE suite, so the two
/// ECDHE_RSA ones); TLS 1.3's suites are all allowed.
pub fn is_fapi_suite(s: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as C;
    matches!(
        s,
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | C::TLS13_AES_128_GCM_SHA256
            | C::TLS13_AES_256_GCM_SHA384
            | C::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// Reads and checks the certificate chain and key files: PEM, a chain whose leaf is an
/// X.509 certificate, a key the provider can sign with, and the key matching the leaf.
/// The errors name `server.tls.cert_file` or `server.tls.key_file` and never print the
/// files' contents; start-up, `--check` and every reload give the same message.
pub fn load_pair(settings: &TlsSettings) -> Result<Arc<CertifiedKey>, ConfigError> {
    let (chain, key) = read_pair(
        ("server.tls.cert_file", &settings.cert_file),
        ("server.tls.key_file", &settings.key_file),
    )?;
    let provider = provider(settings);
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        err(
            "server.tls.key_file",
            format!("is not a key the gateway can sign with (RSA or ECDSA P-256/P-384): {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    check_match(&certified, "server.tls.cert_file", "server.tls.key_file")?;
    if settings.fapi_ciphers && settings.min_version == MinVersion::Tls12 {
        let rsa = matches!(certified.key.algorithm(), rustls::SignatureAlgorithm::RSA);
        if !rsa {
            return Err(err(
                "server.tls.fapi_ciphers",
                "allows only ECDHE_RSA suites in TLS 1.2, which an ECDSA key cannot use; set server.tls.min_version = \"1.3\" or use an RSA certificate",
            ));
        }
    }
    Ok(Arc::new(certified))
}

/// Whether the key is the leaf's: a mismatch names the key file, a leaf that cannot be
/// read (an X.509 v1 certificate, say) names the certificate file.
pub(super) fn check_match(
    certified: &CertifiedKey,
    cert_key: &str,
    key_key: &str,
) -> Result<(), ConfigError> {
    use rustls::{Error, InconsistentKeys};
    match certified.keys_match() {
        // The key cannot say what its public half is: nothing to compare.
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(err(
            key_key,
            format!("does not match the certificate in {cert_key} (the first one is the leaf)"),
        )),
        Err(e) => Err(err(
            cert_key,
            format!("the first certificate (the leaf) cannot be used; an X.509 v3 certificate is needed: {e}"),
        )),
    }
}

/// A PEM certificate chain (leaf first) and a PEM private key, read and parsed; each
/// comes with the configuration key errors about it name.
pub fn read_pair(
    (cert_key, cert_file): (&str, &std::path::Path),
    (key_key, key_file): (&str, &std::path::Path),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let chain = read_chain(cert_key, cert_file)?;
    let pem = std::fs::read(key_file).map_err(|e| {
        err(
            key_key,
            format!("cannot be read ({}): {e}", key_file.display()),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        err(
            key_key,
            "holds no private key in PEM (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )
    })?;
    Ok((chain, key))
}

/// A PEM certificate chain: at least one certificate, each an X.509 certificate.
pub fn read_chain(
    key: &str,
    file: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(file)
        .map_err(|e| err(key, format!("cannot be read ({}): {e}", file.display())))?;
    if PrivateKeyDer::pem_slice_iter(&pem).any(|k| k.is_ok()) {
        return Err(err(
            key,
            "holds a private key; keep the key in its own file",
        ));
    }
    let mut chain = Vec::new();
    for (n, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let n = n + 1;
        let cert = cert.map_err(|e| err(key, format!("certificate {n} is not valid PEM: {e}")))?;
        x509_parser::parse_x509_certificate(&cert)
            .map_err(|_| err(key, format!("certificate {n} is not an X.509 certificate")))?;
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(err(
            key,
            "holds no certificate; give PEM blocks (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_file, validate, Config, ConfigError, Overrides};
    use std::path::Path;

    fn load(text: &str) -> Result<Config, ConfigError> {
        validate(parse_file(text)?, &Overrides::default())
    }

    /// A self-signed ECDSA P-256 pair (PKCS#8) written as `name`.pem and `name`-key.pem.
    fn pair(dir: &Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}-key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn file(cert: &str, key: &str, extra: &str) -> String {
        format!("[upstream]\nurl = \"http://a:1\"\n[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{extra}")
    }

    #[test]
    fn a_valid_pair_gets_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "a");
        let t = load(&file(&c, &k, "")).unwrap().tls.unwrap();
        assert_eq!(t.min_version, super::MinVersion::Tls12);
        assert!(t.http2 && !t.fapi_ciphers);
        assert_eq!(t.client_auth, super::ClientAuth::Off);
        assert_eq!(t.handshake_timeout.as_secs(), 10);
        assert_eq!(t.watch_interval, None);
        assert!(load("[upstream]\nurl = \"http://a:1\"\n")
            .unwrap()
            .tls
            .is_none());
    }

    #[test]
    fn errors_name_the_key_and_never_print_the_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "a");
        let (c2, k2) = pair(dir.path(), "b");
        let key_text = std::fs::read_to_string(&k).unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all").unwrap();
        let junk = junk.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        let cases = [
            (
                "[upstream]\nurl = \"http://a:1\"\n[server.tls]\nkey_file = \"x\"\n".to_string(),
                "server.tls.cert_file",
            ),
            (
                format!("[upstream]\nurl = \"http://a:1\"\n[server.tls]\ncert_file = \"{c}\"\n"),
                "server.tls.key_file",
            ),
            (file(&missing, &k, ""), "server.tls.cert_file"),
            (file(&junk, &k, ""), "server.tls.cert_file"),
            (file(&k, &k, ""), "server.tls.cert_file"),
            (file(&c, &junk, ""), "server.tls.key_file"),
            (file(&c, &k2, ""), "server.tls.key_file"),
            (file(&c2, &k, ""), "server.tls.key_file"),
            (
                file(&c, &k, "fapi_ciphers = true\n"),
                "server.tls.fapi_ciphers",
            ),
            (
                file(&c, &k, "min_version = \"1.1\"\n"),
                "server.tls.min_version",
            ),
            (
                file(&c, &k, "client_auth = \"maybe\"\n"),
                "server.tls.client_auth",
            ),
            (
                file(&c, &k, "handshake_timeout_seconds = 0\n"),
                "server.tls.handshake_timeout_seconds",
            ),
            (
                file(&c, &k, "watch_interval_seconds = 100000\n"),
                "server.tls.watch_interval_seconds",
            ),
            (
                file(&c, &k, "max_concurrent_streams = 0\n"),
                "server.tls.max_concurrent_streams",
            ),
            (file(&c, &k, "cipher_suites = []\n"), "server.tls"),
        ];
        for (text, key) in cases {
            let e = load(&text).unwrap_err();
            assert!(e.key.starts_with(key), "{key}: {e}");
            let shown = e.to_string();
            assert!(!shown.contains("PRIVATE KEY-----\n"), "{shown}");
            assert!(!shown.contains(key_text.lines().nth(1).unwrap()), "{shown}");
        }
        // TLS 1.3 only: an ECDSA key is fine with the FAPI suites.
        assert!(load(&file(
            &c,
            &k,
            "fapi_ciphers = true\nmin_version = \"1.3\"\n"
        ))
        .is_ok());
    }

    #[test]
    fn the_fapi_set_is_tls13_and_ecdhe_rsa_aes_gcm() {
        use rustls::CipherSuite as C;
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "a");
        let mut t = load(&file(&c, &k, "")).unwrap().tls.unwrap();
        t.fapi_ciphers = true;
        let suites: Vec<C> = super::provider(&t)
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert!(suites.contains(&C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
        assert!(suites.contains(&C::TLS13_AES_128_GCM_SHA256));
        assert!(!suites.contains(&C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
        assert!(!suites.contains(&C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256));
        assert!(suites.iter().all(|s| super::is_fapi_suite(*s)));
    }

    #[test]
    fn upstream_tls_files_need_an_https_url_and_a_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "a");
        let (_, k2) = pair(dir.path(), "b");
        let up = |url: &str, extra: &str| format!("[upstream]\nurl = \"{url}\"\n{extra}");
        let ok = load(&up(
            "https://op:443",
            &format!("ca_file = \"{c}\"\nclient_cert_file = \"{c}\"\nclient_key_file = \"{k}\"\n"),
        ))
        .unwrap();
        assert!(ok.upstream.tls_files.roots.is_some() && ok.upstream.tls_files.client.is_some());
        let debug = format!("{:?}", ok.upstream);
        assert!(
            !debug.contains(&format!(
                "{:?}",
                &ok.upstream.tls_files.client.as_ref().unwrap().1[..8]
            )),
            "{debug}"
        );
        let cases = [
            (
                up("http://op:80", &format!("ca_file = \"{c}\"\n")),
                "upstream.ca_file",
            ),
            (
                up("https://op", &format!("ca_file = \"{k}\"\n")),
                "upstream.ca_file",
            ),
            (
                up("https://op", &format!("client_cert_file = \"{c}\"\n")),
                "upstream.client_key_file",
            ),
            (
                up("https://op", &format!("client_key_file = \"{k}\"\n")),
                "upstream.client_cert_file",
            ),
            (
                up(
                    "https://op",
                    &format!("client_cert_file = \"{c}\"\nclient_key_file = \"{k2}\"\n"),
                ),
                "upstream.client_key_file",
            ),
        ];
        for (text, key) in cases {
            let e = load(&text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }
}
