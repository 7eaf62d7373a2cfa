//! TLS at the listener: the acceptor the edge guard runs each handshake with, the
//! certificate behind a swappable resolver (rotation without a restart), client
//! certificates asked for at the handshake, and the leaf a client presented carried to
//! every request of its connection.
//!
//! The handshake is not pingora's listener's (`add_tls`): that one runs before the guard
//! sees the connection, so a client that never finishes it would hold a socket with no
//! permit and no deadline. The guard takes the permit first and runs the handshake
//! through [`TlsState::handshake`] under `server.tls.handshake_timeout_seconds`.

use crate::ciba::client_cert::{CertSource, ClientCertificate};
use crate::config::{self, ClientAuth, ConfigError, MinVersion, TlsSettings};
use crate::metrics;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::{Acceptor, TlsSettings as PingoraTls};
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The listener's TLS: the acceptor and the certificate in force.
pub struct TlsState {
    acceptor: Acceptor,
    cert: Arc<CurrentCert>,
    /// The settings the files were last read with and their modification times, for the
    /// watcher.
    watched: Mutex<Watched>,
}

/// A checked certificate pair, not yet served: [`PreparedPair::commit`] puts it in use.
pub struct PreparedPair {
    state: Arc<TlsState>,
    settings: TlsSettings,
    pair: Arc<rustls::sign::CertifiedKey>,
    stamp: Option<(SystemTime, SystemTime)>,
}

impl PreparedPair {
    /// Serves the pair on every handshake from now on.
    pub fn commit(self) {
        self.state.cert.0.store(self.pair);
        tracing::info!("listener certificate loaded; new handshakes use it");
        metrics::TLS_RELOADS.with_label_values(&["loaded"]).inc();
        *self.state.watched.lock().unwrap_or_else(|p| p.into_inner()) = Watched {
            settings: self.settings,
            stamp: self.stamp,
        };
    }
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    settings: TlsSettings,
    stamp: Option<(SystemTime, SystemTime)>,
}

impl TlsState {
    /// Reads the certificate pair and builds the acceptor; errors name the key.
    pub fn new(settings: &TlsSettings) -> Result<Arc<TlsState>, ConfigError> {
        let cert = Arc::new(CurrentCert(ArcSwap::new(config::load_pair(settings)?)));
        let provider = Arc::new(config::provider(settings));
        let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS12, &rustls::version::TLS13],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| ConfigError::new("server.tls.min_version", e.to_string()))?;
        let builder = match settings.client_auth {
            ClientAuth::Off => builder.with_no_client_auth(),
            mode => builder.with_client_cert_verifier(Arc::new(PossessionOnly {
                provider: provider.clone(),
                required: mode == ClientAuth::Required,
            })),
        };
        let mut server = builder.with_cert_resolver(cert.clone());
        server.alpn_protocols = if settings.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        // pingora's acceptor runs the handshake and keeps what the callback returns in the
        // connection's TLS digest, which every request on it (HTTP/1 or each HTTP/2 stream)
        // can read. Its own builder fixes the versions and suites, so the rustls
        // configuration it holds is replaced by this one.
        let mut acceptor = {
            let mut tls = PingoraTls::with_callbacks(Box::new(KeepLeaf))
                .map_err(|e| ConfigError::new("server.tls", e.to_string()))?;
            tls.set_cert_resolver(cert.clone());
            tls.build()
        };
        acceptor.acceptor = pingora::tls::TlsAcceptor::from(Arc::new(server));
        Ok(Arc::new(TlsState {
            acceptor,
            cert,
            watched: Mutex::new(Watched {
                stamp: stamp(settings),
                settings: settings.clone(),
            }),
        }))
    }

    /// Runs the server side of a handshake on `stream`; no deadline here (the guard's).
    pub async fn handshake(&self, stream: Stream) -> pingora::Result<Stream> {
        let tls = self
            .acceptor
            .tls_handshake(crate::edge::guard::Replay::new(stream))
            .await?;
        Ok(Box::new(tls))
    }

    /// Reads `settings`' certificate and key files again and, when they make a valid pair,
    /// serves them on every handshake from now on; handshakes already under way finish
    /// with the pair they started with and no connection is closed. An invalid pair is
    /// refused with the message `--check` gives, counted, and the pair in force stays.
    ///
    /// Only the pair changes: versions, suites, ALPN and client authentication are fixed
    /// at start-up.
    pub fn reload(self: &Arc<Self>, settings: &TlsSettings) -> Result<(), ConfigError> {
        self.prepare(settings).map(PreparedPair::commit)
    }

    /// The first half of [`TlsState::reload`]: reads and checks the pair without putting it
    /// in use, so a configuration reload can refuse as a whole before anything changes.
    pub fn prepare(self: &Arc<Self>, settings: &TlsSettings) -> Result<PreparedPair, ConfigError> {
        let stamp = stamp(settings);
        {
            let w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            let fixed = fixed_changes(&w.settings, settings);
            if !fixed.is_empty() {
                tracing::warn!(
                    keys = %fixed.join(", "),
                    "these [server.tls] changes take effect at the next restart; only the certificate and key are reloaded"
                );
            }
        }
        match config::load_pair(settings) {
            Ok(pair) => Ok(PreparedPair {
                state: self.clone(),
                settings: settings.clone(),
                pair,
                stamp,
            }),
            Err(e) => {
                // Logged before counted: whoever watches the counter finds the reason logged.
                tracing::error!(
                    "new listener certificate refused, the previous one stays in force: {e}"
                );
                metrics::TLS_RELOADS.with_label_values(&["refused"]).inc();
                // The watched files are not tried again until they change once more; other
                // files (a reload that named new ones) leave the watch as it was.
                let mut w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                if w.settings.cert_file == settings.cert_file
                    && w.settings.key_file == settings.key_file
                {
                    w.stamp = stamp;
                }
                Err(e)
            }
        }
    }

    /// Reloads when the files' modification times changed since they were last read.
    fn reload_if_changed(self: &Arc<Self>) {
        let settings = {
            let w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            if stamp(&w.settings) == w.stamp {
                return;
            }
            w.settings.clone()
        };
        let _ = self.reload(&settings);
    }
}

/// The `[server.tls]` keys that differ between `old` and `new` but are fixed at start-up.
fn fixed_changes(old: &TlsSettings, new: &TlsSettings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    differs(old.min_version != new.min_version, "server.tls.min_version");
    differs(
        old.fapi_ciphers != new.fapi_ciphers,
        "server.tls.fapi_ciphers",
    );
    differs(old.http2 != new.http2, "server.tls.http2");
    differs(old.client_auth != new.client_auth, "server.tls.client_auth");
    differs(
        old.handshake_timeout != new.handshake_timeout,
        "server.tls.handshake_timeout_seconds",
    );
    differs(
        old.watch_interval != new.watch_interval,
        "server.tls.watch_interval_seconds",
    );
    differs(
        old.max_concurrent_streams != new.max_concurrent_streams,
        "server.tls.max_concurrent_streams",
    );
    keys
}

/// The files' modification times, when both can be read.
fn stamp(settings: &TlsSettings) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&settings.cert_file)?, m(&settings.key_file)?))
}

/// Looks at the certificate files every `server.tls.watch_interval_seconds`.
pub struct Watcher {
    /// The listener's TLS.
    pub state: Arc<TlsState>,
    /// How often.
    pub every: std::time::Duration,
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
            self.state.reload_if_changed();
        }
    }
}

/// The certificate handshakes are answered with, swapped whole on rotation.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Asks for a client certificate and accepts any chain whose holder proves possession of
/// the leaf's key (the handshake signature, checked with the provider's algorithms).
/// Whether the chain is trusted is a per-request decision taken with the client's
/// registration (`[clients."id"]`), not the listener's.
#[derive(Debug)]
struct PossessionOnly {
    provider: Arc<CryptoProvider>,
    required: bool,
}

impl ClientCertVerifier for PossessionOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Something the identity rule can read later; no trust decision here.
        x509_parser::parse_x509_certificate(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// After each handshake: the leaf certificate the client presented, if any, kept in the
/// connection's TLS digest.
struct KeepLeaf;

/// What the handshake left for the requests of a connection.
#[derive(Debug)]
pub struct PeerLeaf(pub Arc<ClientCertificate>);

#[async_trait]
impl TlsAccept for KeepLeaf {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        Some(Arc::new(PeerLeaf(Arc::new(ClientCertificate::new(
            der.to_vec(),
            false,
            CertSource::Handshake,
        )))))
    }
}

/// The certificate the client presented in the TLS handshake of this request's
/// connection, if it presented one.
pub fn client_certificate(digest: Option<&Digest>) -> Option<Arc<ClientCertificate>> {
    let ssl = digest?.ssl_digest.as_ref()?;
    ssl.extension.get::<PeerLeaf>().map(|l| l.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA-less self-signed pair for `localhost`, written to `dir` as `name`.
    fn write_pair(
        dir: &std::path::Path,
        name: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}-key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().to_vec())
    }

    fn settings(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_auth: ClientAuth,
    ) -> TlsSettings {
        TlsSettings {
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
            min_version: MinVersion::Tls12,
            fapi_ciphers: false,
            http2: true,
            client_auth,
            handshake_timeout: std::time::Duration::from_secs(5),
            watch_interval: None,
            max_concurrent_streams: 100,
        }
    }

    /// Accepts nothing but records the certificate the server presented.
    #[derive(Debug)]
    struct Record(Arc<Mutex<Vec<u8>>>, Arc<CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for Record {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = end_entity.to_vec();
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    /// One handshake against `state`, the client presenting `client` (chain, PKCS#8 key)
    /// if given: the server's side (when it succeeded) and the certificate it presented.
    async fn handshake(
        state: &TlsState,
        client: Option<(Vec<u8>, Vec<u8>)>,
    ) -> (Option<Stream>, Vec<u8>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Record(seen.clone(), provider)));
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((der, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(der)],
                    PrivateKeyDer::try_from(key).unwrap(),
                )
                .unwrap(),
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = pingora::tls::TlsConnector::from(Arc::new(config));
        let client = tokio::spawn(async move {
            let name = ServerName::try_from("localhost").unwrap();
            let mut s = connector.connect(name, a).await.ok()?;
            // TLS 1.3: the server judges the client's certificate after the client is done;
            // a read shows whether it was refused.
            s.write_all(b"ping").await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(())
        });
        let server = state.handshake(Box::new(b)).await.ok();
        let server = match server {
            Some(mut s) => {
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(b"pong").await.unwrap();
                s.flush().await.unwrap();
                Some(s)
            }
            None => None,
        };
        let _ = client.await;
        let served = seen.lock().unwrap().clone();
        (server, served)
    }

    fn digest_of(s: &Stream) -> Digest {
        Digest {
            ssl_digest: s.get_ssl_digest(),
            ..Digest::default()
        }
    }

    #[tokio::test]
    async fn the_client_leaf_reaches_the_request_and_required_refuses_none() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, _) = write_pair(dir.path(), "server");
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client_cert = rcgen::CertificateParams::new(vec!["client.example".to_string()])
            .unwrap()
            .self_signed(&client_key)
            .unwrap();
        let presented = (client_cert.der().to_vec(), client_key.serialize_der());

        let optional = TlsState::new(&settings(&c, &k, ClientAuth::Optional)).unwrap();
        let (s, _) = handshake(&optional, Some(presented.clone())).await;
        let leaf = client_certificate(Some(&digest_of(&s.unwrap()))).unwrap();
        assert_eq!(leaf.der(), &presented.0[..]);
        assert!(!leaf.chain_verified());
        assert_eq!(leaf.source(), CertSource::Handshake);
        let (s, _) = handshake(&optional, None).await;
        assert!(client_certificate(Some(&digest_of(&s.unwrap()))).is_none());

        let required = TlsState::new(&settings(&c, &k, ClientAuth::Required)).unwrap();
        assert!(handshake(&required, None).await.0.is_none());
        assert!(handshake(&required, Some(presented.clone()))
            .await
            .0
            .is_some());

        let off = TlsState::new(&settings(&c, &k, ClientAuth::Off)).unwrap();
        let (s, _) = handshake(&off, Some(presented)).await;
        assert!(client_certificate(Some(&digest_of(&s.unwrap()))).is_none());
    }

    #[tokio::test]
    async fn reload_serves_a_valid_new_pair_and_keeps_the_old_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, first) = write_pair(dir.path(), "one");
        let (c2, k2, second) = write_pair(dir.path(), "two");
        let s = settings(&c, &k, ClientAuth::Off);
        let state = TlsState::new(&s).unwrap();
        assert_eq!(handshake(&state, None).await.1, first);

        // A mismatched pair (the new certificate with the old key) is refused.
        let bad = settings(&c2, &k, ClientAuth::Off);
        let e = state.reload(&bad).unwrap_err();
        assert_eq!(e.key, "server.tls.key_file");
        assert_eq!(handshake(&state, None).await.1, first);

        state.reload(&settings(&c2, &k2, ClientAuth::Off)).unwrap();
        assert_eq!(handshake(&state, None).await.1, second);
    }

    #[test]
    fn keys_fixed_at_start_up_are_named_when_a_reload_changes_them() {
        let a = settings(
            std::path::Path::new("a"),
            std::path::Path::new("b"),
            ClientAuth::Off,
        );
        let mut b = a.clone();
        b.cert_file = "c".into();
        assert!(fixed_changes(&a, &b).is_empty(), "the pair itself reloads");
        b.client_auth = ClientAuth::Required;
        b.http2 = false;
        assert_eq!(
            fixed_changes(&a, &b),
            ["server.tls.http2", "server.tls.client_auth"]
        );
    }

    #[tokio::test]
    async fn the_watcher_reloads_when_the_files_change() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, first) = write_pair(dir.path(), "live");
        let state = TlsState::new(&settings(&c, &k, ClientAuth::Off)).unwrap();
        state.reload_if_changed();
        assert_eq!(handshake(&state, None).await.1, first);
        let (c2, k2, second) = write_pair(dir.path(), "next");
        // Modification times are coarse on some file systems: make the change visible.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::copy(&k2, &k).unwrap();
        std::fs::copy(&c2, &c).unwrap();
        for f in [&c, &k] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        state.reload_if_changed();
        assert_eq!(handshake(&state, None).await.1, second);
    }
}
