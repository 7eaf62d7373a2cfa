//! A client's ping notification endpoint (CIBA 10.2) on loopback: it records every request
//! whole (method, path, headers in order, body) and answers each from a script; over plain
//! HTTP or over TLS with a given certificate (`start_tls`).

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One answer of the script.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 204 No Content (what CIBA 10.2 expects).
    NoContent,
    /// 200 with this body.
    Ok(String),
    /// This status with an empty body (401, 403, 500...).
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// Reads the request and never answers (the connection stays open).
    Hang,
    /// 200 announcing a body of 1,000 bytes, sends 10 and then nothing more.
    OkThenStall,
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// Header fields in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Received {
    /// The value of a header (name in any case), when present once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next()?;
        assert!(found.next().is_none(), "{name} sent twice");
        Some(&first.1)
    }
}

/// The receiver; stops accepting when dropped.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    handshakes_failed: Arc<AtomicUsize>,
}

/// What a TLS receiver presents: its certificate chain (leaf first) and the leaf's key.
pub struct Tls {
    /// The chain, DER.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key, PKCS#8 DER.
    pub key: Vec<u8>,
}

impl Receiver {
    /// Starts a receiver; request n gets `script[n]`, and the last reply repeats.
    pub fn start(script: Vec<Reply>) -> Receiver {
        Receiver::listen(script, None)
    }

    /// Starts a receiver that speaks TLS only, presenting `tls` (and checking nothing
    /// itself: whether the certificate is good is the client's call). A connection whose
    /// handshake fails is counted and closed before any request is read.
    pub fn start_tls(script: Vec<Reply>, tls: Tls) -> Receiver {
        let key = PrivatePkcs8KeyDer::from(tls.key).into();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls.chain, key)
        .unwrap();
        Receiver::listen(script, Some(Arc::new(config)))
    }

    fn listen(script: Vec<Reply>, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handshakes_failed = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (flag, log, conns, failed) = (
            stop.clone(),
            seen.clone(),
            connections.clone(),
            handshakes_failed.clone(),
        );
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (log, script, flag) = (log.clone(), script.clone(), flag.clone());
                let (tls, failed) = (tls.clone(), failed.clone());
                thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    match tls {
                        None => serve(s, &log, &script, &flag),
                        Some(config) => match handshake(s, config) {
                            Some(tls) => serve(tls, &log, &script, &flag),
                            None => {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                    }
                });
            }
        });
        Receiver {
            port,
            stop,
            seen,
            connections,
            handshakes_failed,
        }
    }

    /// Its https URL with `host` (which must reach 127.0.0.1), path and query as `url`'s.
    pub fn https_url(&self, host: &str) -> String {
        format!("https://{host}:{}/cb?client=1", self.port)
    }

    /// TLS connections whose handshake failed (the client refused the certificate, or left).
    pub fn handshakes_failed(&self) -> usize {
        self.handshakes_failed.load(Ordering::SeqCst)
    }

    /// Its URL for plain HTTP, with a path and query the ping must keep.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cb?client=1", self.port)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received once there are at least `n`, or when `limit` has passed.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.requests();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connections accepted so far (a request or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The server side of a TLS handshake on `s`; `None` when it failed.
fn handshake(
    mut s: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Option<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let mut conn = rustls::ServerConnection::new(config).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut s).ok()?;
    }
    Some(rustls::StreamOwned::new(conn, s))
}

/// Reads one request, records it, answers per the script (by the request's position among
/// all the receiver's requests) and closes the connection.
fn serve<S: Read + Write>(
    mut s: S,
    log: &Mutex<Vec<Received>>,
    script: &[Reply],
    stop: &AtomicBool,
) {
    let Some(req) = read(&mut s) else { return };
    let reply = {
        let mut log = log.lock().unwrap();
        log.push(req);
        script[(log.len() - 1).min(script.len() - 1)].clone()
    };
    let hold = |s: S| {
        let until = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        drop(s);
    };
    let (status, extra, body) = match reply {
        Reply::NoContent => (204, String::new(), String::new()),
        Reply::Ok(body) => (200, "Content-Type: text/plain\r\n".into(), body),
        Reply::Status(status) => (status, String::new(), String::new()),
        Reply::Redirect(to) => (302, format!("Location: {to}\r\n"), String::new()),
        Reply::Hang => return hold(s),
        Reply::OkThenStall => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
            return hold(s);
        }
    };
    let length = if status == 204 {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!("HTTP/1.1 {status} X\r\n{extra}{length}Connection: close\r\n\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let _ = s.flush();
}

/// One whole request (a `Content-Length` body), or `None` when the peer left first.
fn read(s: &mut impl Read) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let (method, path) = (req.method?.to_string(), req.path?.to_string());
            let mut body = buf[n..].to_vec();
            while body.len() < len {
                let k = s.read(&mut chunk).ok()?;
                if k == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..k]);
            }
            return Some(Received {
                method,
                path,
                headers,
                body,
            });
        }
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}
