//! TLS at the listener, through the real binary: the handshake (versions, suites, ALPN,
//! its deadline, client certificates), CIBA over HTTP/1.1 and HTTP/2 to node-oidc-provider,
//! HTTP/2's own attacks, certificate rotation under load, and a TLS OP that requires the
//! gateway's client certificate.
//!
//! Certificates are made per test (`support::pki`); clients are rustls (HTTP/1.1 by hand,
//! HTTP/2 with the `h2` crate, and raw HTTP/2 frames for what that crate will not send).

mod flows;
mod h2_edge;
mod identity;
mod listener;
mod raw_h2;
mod rotation;
mod upstream;

use crate::support::pki::Ca;
use crate::support::receiver::Tls;
use crate::support::*;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A private CA and a directory for the files made from it.
pub struct Pki {
    /// Holds the PEM files.
    pub dir: tempfile::TempDir,
    /// The CA.
    pub ca: Ca,
}

impl Pki {
    /// A new CA in a new directory.
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("ciba-gateway test CA"),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, written as `name`.pem and
    /// `name`-key.pem; returns the paths and the pair.
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf, Tls) {
        let tls = self.ca.leaf(&["127.0.0.1", "localhost"]);
        let (c, k) = self.write(name, &tls);
        (c, k, tls)
    }

    /// Writes a pair as PEM files.
    pub fn write(&self, name: &str, tls: &Tls) -> (PathBuf, PathBuf) {
        let c = self.dir.path().join(format!("{name}.pem"));
        let k = self.dir.path().join(format!("{name}-key.pem"));
        let chain: String = tls.chain.iter().map(|d| pem("CERTIFICATE", d)).collect();
        std::fs::write(&c, chain).unwrap();
        std::fs::write(&k, pem("PRIVATE KEY", &tls.key)).unwrap();
        (c, k)
    }

    /// The CA certificate as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        std::fs::write(&p, self.ca.pem()).unwrap();
        p
    }
}

/// DER as a PEM block.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The `[server.tls]` section for a pair, with `extra` keys.
pub fn tls_section(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
        cert.display(),
        key.display()
    )
}

/// A rustls client trusting `ca`, offering `alpn`, presenting `client` if given.
pub fn client_config(ca: &[u8], alpn: &[&[u8]], client: Option<&Tls>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some(t) => b
            .with_client_auth_cert(
                t.chain.clone(),
                PrivateKeyDer::try_from(t.key.clone()).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection a full handshake: a resumed session shows the certificate it was
    // first made with, not the one the gateway serves now.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// A finished TLS connection to the gateway.
pub type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake (and, for TLS 1.3, the server's verdict on a
/// client certificate: the first read after it).
pub fn connect(addr: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsConn> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("127.0.0.1").unwrap())
        .map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The certificate the gateway presented on `s`, DER.
pub fn served_leaf(s: &TlsConn) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTP/1.1 request over a new TLS connection (closed after the answer).
pub fn https(addr: &str, cfg: Arc<rustls::ClientConfig>, request: &[u8]) -> std::io::Result<Resp> {
    let mut s = connect(addr, cfg)?;
    s.write_all(request)?;
    s.flush()?;
    // The request closes the connection: read it all, then parse.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(read_response(&mut std::io::Cursor::new(buf)))
}

/// A metric's value (0 when absent).
pub fn metric(gw: &Gateway, series: &str) -> u64 {
    let text = get(&gw.metrics_addr(), "/metrics").text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse::<f64>().unwrap_or(0.0))
        })
        .unwrap_or(0.0) as u64
}

/// A form POST over HTTP/1.1 and TLS.
pub fn https_form(
    addr: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    pairs: &[(&str, &str)],
) -> Resp {
    let body = encode_form(pairs);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    https(addr, cfg, req.as_bytes()).unwrap()
}

/// One HTTP/2 request to send.
#[derive(Clone, Debug)]
pub struct H2Req {
    /// Method.
    pub method: &'static str,
    /// `:path` (and query).
    pub path: String,
    /// Header fields besides the pseudo-headers.
    pub headers: Vec<(String, String)>,
    /// The body, sent in one DATA frame with END_STREAM.
    pub body: Vec<u8>,
}

impl H2Req {
    /// A form POST.
    pub fn form(path: &str, pairs: &[(&str, &str)]) -> H2Req {
        H2Req {
            method: "POST",
            path: path.to_string(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: encode_form(pairs).into_bytes(),
        }
    }

    /// A GET.
    pub fn get(path: &str) -> H2Req {
        H2Req {
            method: "GET",
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// The HTTP/2 client's handle on one connection.
pub type H2 = h2::client::SendRequest<Bytes>;

/// Opens an HTTP/2 connection over TLS (ALPN h2) and runs `work` on it.
pub fn with_h2<T, F, Fut>(addr: &str, ca: &[u8], client: Option<&Tls>, work: F) -> T
where
    F: FnOnce(H2) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let cfg = client_config(ca, &[b"h2"], client);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let send = send.ready().await.unwrap();
        work(send).await
    })
}

/// Sends one request on an HTTP/2 connection and reads the whole answer; `Err` when the
/// stream or the connection was reset.
pub async fn h2_send(send: &mut H2, req: &H2Req) -> Result<Resp, String> {
    let mut b = http::Request::builder()
        .method(req.method)
        .uri(format!("https://127.0.0.1{}", req.path));
    for (n, v) in &req.headers {
        b = b.header(n.as_str(), v.as_str());
    }
    let request = b.body(()).map_err(|e| format!("not sendable: {e}"))?;
    let mut send = send.clone().ready().await.map_err(|e| e.to_string())?;
    let (answer, mut body) = send
        .send_request(request, req.body.is_empty())
        .map_err(|e| e.to_string())?;
    if !req.body.is_empty() {
        body.send_data(Bytes::from(req.body.clone()), true)
            .map_err(|e| e.to_string())?;
    }
    read_h2_answer(answer).await
}

/// Reads an answer's header and whole body.
pub async fn read_h2_answer(answer: h2::client::ResponseFuture) -> Result<Resp, String> {
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, mut recv) = answer.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
    })
}

/// node-oidc-provider, and the gateway in front of it listening with TLS (`tls_extra`
/// under `[server.tls]`, `extra` elsewhere in the file).
pub fn tls_setup(pki: &Pki, tls_extra: &str, extra: &str) -> (TestOp, Gateway, tempfile::TempDir) {
    let op = TestOp::start(&[]);
    let (cert, key, _) = pki.server("server");
    let text = format!("{extra}\n{}", tls_section(&cert, &key, tls_extra));
    let (gw, dir) = Gateway::with_config(&op.url(), &text);
    (op, gw, dir)
}
