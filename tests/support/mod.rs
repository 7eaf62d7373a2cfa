//! Test harness: the real gateway binary, node-oidc-provider as the OP, stub upstreams for
//! faults, and a small HTTP/1.1 client that sends exactly the bytes a test asks for.
//!
//! Everything listens on 127.0.0.1; every child process is killed when its handle drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

pub mod pki;
pub mod receiver;
pub use receiver::{Receiver, Reply};

/// Client credentials registered in the test OP.
pub const POST_CLIENT: (&str, &str) = ("client-post", "post-secret-0123456789");
/// Client that authenticates with HTTP Basic.
pub const BASIC_CLIENT: (&str, &str) = ("client-basic", "basic-secret-0123456789");
/// A second client_secret_post client.
pub const OTHER_CLIENT: (&str, &str) = ("client-other", "other-secret-0123456789");
/// The CIBA grant type.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An OP address where every connection is refused: port 1 (tcpmux) has no listener on a
/// test machine, and unlike a port that was free a moment ago no other test can take it.
pub fn refused_url() -> String {
    "http://127.0.0.1:1".to_string()
}

/// A port that was free a moment ago, for a process to listen on.
///
/// Taken below the kernel's ephemeral range, and never twice by this process: every
/// listener a test binds to port 0 (stub OPs, receivers) and every outgoing connection gets
/// its port from the ephemeral range, so none of them can take a port handed out here
/// between this check and the gateway's bind (which once sent a gateway's readiness probes
/// to another test's receiver). Without a usable range below it, any free port.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    const FIRST: u32 = 10_000;
    if low > FIRST + 1_000 {
        let span = low - FIRST;
        // Another test process (a second `cargo test`) starts elsewhere in the range.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = FIRST + (start + n) % span;
            let port = u16::try_from(port).expect("below the ephemeral range");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Installs the test OP's npm packages (the OP and the client library) once, if any is missing.
fn ensure_op_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = root().join("tests/op");
        let modules = dir.join("node_modules");
        if ["oidc-provider", "openid-client", "playwright-core"]
            .iter()
            .all(|m| modules.join(m).exists())
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm is needed for the test OP (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci in tests/op failed");
    });
}

/// node-oidc-provider in CIBA poll mode (tests/op/server.mjs).
pub struct TestOp {
    child: Child,
    _stdin: ChildStdin,
    /// The address it listens on (`--host`, default 127.0.0.1).
    pub host: std::net::IpAddr,
    /// Its port.
    pub port: u16,
}

impl TestOp {
    /// Starts the OP with extra CLI arguments, waiting for its READY line.
    ///
    /// The wait is bounded: an OP that has not said READY within 20 s is killed and
    /// started once more, and a second failure fails the test with the OP's stderr.
    pub fn start(args: &[&str]) -> TestOp {
        ensure_op_installed();
        let mut last_err = String::new();
        for _attempt in 0..2 {
            match Self::try_start(args) {
                Ok(op) => return op,
                Err(e) => last_err = e,
            }
        }
        panic!("test OP did not start: {last_err}");
    }

    fn try_start(args: &[&str]) -> Result<TestOp, String> {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("node")
            .arg(root().join("tests/op/server.mjs"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("node is needed for the test OP");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok());
        let host = args
            .iter()
            .position(|a| *a == "--host")
            .map_or([127, 0, 0, 1].into(), |i| args[i + 1].parse().unwrap());
        match port {
            Some(port) => Ok(TestOp {
                child,
                _stdin: stdin,
                host,
                port,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
                Err(format!("stdout {line:?}, stderr:\n{stderr}"))
            }
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Its address.
    pub fn addr(&self) -> String {
        std::net::SocketAddr::new(self.host, self.port).to_string()
    }

    /// `/admin/stats` as JSON: how many requests reached each endpoint.
    pub fn stats(&self) -> serde_json::Value {
        get(&self.addr(), "/admin/stats").json()
    }

    /// Requests that reached the backchannel endpoint.
    pub fn backchannel_count(&self) -> u64 {
        self.stats()["backchannel"].as_u64().unwrap()
    }

    /// Requests that reached the token endpoint.
    pub fn token_count(&self) -> u64 {
        self.stats()["token"].as_u64().unwrap()
    }

    /// What the OP last received at its backchannel endpoint.
    pub fn last_backchannel(&self) -> serde_json::Value {
        get(&self.addr(), "/admin/last-backchannel").json()
    }

    /// The forwarding headers of the last request the OP counted.
    pub fn last_hop(&self) -> serde_json::Value {
        get(&self.addr(), "/admin/last-hop").json()
    }

    /// Approves a pending request as the user.
    pub fn approve(&self, auth_req_id: &str) {
        let r = post_form(
            &self.addr(),
            "/admin/approve",
            &[("auth_req_id", auth_req_id)],
            &[],
        );
        assert_eq!(r.status, 200, "approve: {}", r.text());
    }

    /// Denies a pending request as the user.
    pub fn deny(&self, auth_req_id: &str) {
        let r = post_form(
            &self.addr(),
            "/admin/deny",
            &[("auth_req_id", auth_req_id)],
            &[],
        );
        assert_eq!(r.status, 200, "deny: {}", r.text());
    }
}

impl Drop for TestOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// node-oidc-provider with its defaults, and the gateway with its defaults in front of it.
pub fn flow_setup() -> (TestOp, Gateway) {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &[]);
    (op, gw)
}

/// The real `ciba-gateway` binary.
pub struct Gateway {
    child: Child,
    /// Proxy port.
    pub port: u16,
    /// Metrics port.
    pub metrics_port: u16,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Gateway {
    /// Starts the gateway in front of `upstream` and waits until `/readyz` says ready.
    ///
    /// The metrics port [`Gateway::spawn`] saw answer may have been another test's listener
    /// that took the port first; a gateway that then exits before it is ready is started
    /// again on fresh ports (twice at most).
    pub fn start(upstream: &str, extra: &[&str]) -> Gateway {
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut gw = Self::spawn(upstream, extra);
            if gw.until_ready() {
                return gw;
            }
            last = gw.log();
        }
        panic!("gateway exited before it was ready:\n{last}");
    }

    /// Starts the gateway and waits only until its metrics listener answers.
    ///
    /// Ports come from [`free_port`], so another test may grab one before the gateway binds
    /// it; a gateway that exits at start-up is started again on fresh ports (twice at most).
    pub fn spawn(upstream: &str, extra: &[&str]) -> Gateway {
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::try_spawn(upstream, extra) {
                Ok(gw) => return gw,
                Err(log) => last = log,
            }
        }
        panic!("gateway did not start:\n{last}");
    }

    fn try_spawn(upstream: &str, extra: &[&str]) -> Result<Gateway, String> {
        let port = free_port();
        let metrics_port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["--upstream", upstream])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut gw = Gateway {
            child,
            port,
            metrics_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(gw.metrics_addr()).is_err() {
            if gw.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                return Err(gw.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(gw)
    }

    /// Starts the gateway in front of `upstream` with this configuration file text;
    /// the directory holding the file lives as long as the returned guard.
    pub fn with_config(upstream: &str, text: &str) -> (Gateway, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "gw.toml", text);
        (
            Gateway::start(upstream, &["--config", cfg.to_str().unwrap()]),
            dir,
        )
    }

    /// Waits for `/readyz` to answer 200.
    pub fn wait_ready(&mut self) {
        assert!(self.until_ready(), "gateway exited:\n{}", self.log());
    }

    /// Waits for `/readyz` to answer 200 and the proxy port to accept; `false` when the
    /// process exits first.
    fn until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if ready_status(&self.metrics_addr()) == Some(200)
                && TcpStream::connect(self.addr()).is_ok()
            {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never became ready:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proxy address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Proxy base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Metrics address.
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port)
    }

    /// The `/metrics` text once it contains every line given.
    ///
    /// Metrics are recorded when a request is logged, just after its answer is sent, so a
    /// scrape right after an answer may miss it; this waits (up to 5 s) instead of racing.
    pub fn metrics_containing(&self, lines: &[&str]) -> String {
        self.metrics_containing_within(lines, Duration::from_secs(5))
    }

    /// [`Gateway::metrics_containing`], waiting up to `limit`.
    pub fn metrics_containing_within(&self, lines: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let m = get(&self.metrics_addr(), "/metrics").text();
            let missing: Vec<&&str> = lines.iter().filter(|l| !m.contains(**l)).collect();
            if missing.is_empty() {
                return m;
            }
            assert!(Instant::now() < deadline, "metrics lack {missing:?}:\n{m}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// The log once it contains `text`: a line written as an answer goes out reaches the
    /// pipe a moment after the client has the answer. Panics after 5 s.
    pub fn log_containing(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{log}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for_exit(&mut self.child, limit)
    }
}

/// Waits up to `limit` for a child process to exit; `None` if it is still running.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` member of a JSON body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

/// The status of `/readyz` at `addr`, or `None` when nothing answers there (yet).
fn ready_status(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let line = std::str::from_utf8(got.split(|&b| b == b'\r').next()?).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// Sends raw request bytes and reads the answer (the connection is closed after it).
pub fn raw(addr: &str, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut s)
}

/// Reads one HTTP/1.1 response, past any interim (1xx) answers before it.
pub fn read_response<S: Read + ?Sized>(s: &mut S) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed.parse(&buf).unwrap() {
            let status = parsed.code.unwrap();
            if (100..200).contains(&status) && status != 101 {
                // An interim answer (`100 Continue`): no body; the answer follows it.
                buf.drain(..head_len);
                continue;
            }
            let hs: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let mut rest = buf[head_len..].to_vec();
            let find = |n: &str| hs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let body = if let Some(cl) = find("content-length") {
                let cl: usize = cl.parse().unwrap();
                while rest.len() < cl {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "connection closed mid-body");
                    rest.extend_from_slice(&chunk[..n]);
                }
                rest.truncate(cl);
                rest
            } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                loop {
                    if let Some(body) = dechunk(&rest) {
                        break body;
                    }
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "connection closed mid-chunk");
                    rest.extend_from_slice(&chunk[..n]);
                }
            } else {
                let _ = s.read_to_end(&mut rest);
                rest
            };
            return Resp {
                status,
                headers: hs,
                body,
            };
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes form pairs.
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A GET.
pub fn get(addr: &str, path: &str) -> Resp {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A POST with a raw body and extra header lines (each ending in \r\n).
pub fn post_raw(
    addr: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    extra_headers: &str,
) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

/// A form POST with extra headers as (name, value).
pub fn post_form(addr: &str, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    post_raw(
        addr,
        path,
        "application/x-www-form-urlencoded",
        encode_form(pairs).as_bytes(),
        &extra,
    )
}

/// `Authorization: Basic` for a client.
pub fn basic(client: (&str, &str)) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1))
    )
}

/// Starts a backchannel request for `client` (client_secret_post) and returns the answer.
pub fn initiate(gw: &str, client: (&str, &str), hint: &str) -> Resp {
    post_form(
        gw,
        "/backchannel",
        &[
            ("client_id", client.0),
            ("client_secret", client.1),
            ("scope", "openid"),
            ("login_hint", hint),
        ],
        &[],
    )
}

/// The `auth_req_id` of a 200 acknowledgement (fails the test on anything else).
pub fn auth_req_id(ack: &Resp) -> String {
    assert_eq!(ack.status, 200, "{}", ack.text());
    ack.json()["auth_req_id"].as_str().unwrap().to_string()
}

/// Polls the token endpoint for `client` (client_secret_post).
pub fn poll(gw: &str, client: (&str, &str), auth_req_id: &str) -> Resp {
    post_form(gw, "/token", &poll_pairs(client, auth_req_id), &[])
}

/// The form body of a poll by `client` (client_secret_post), for requests written by hand.
pub fn poll_body(client: (&str, &str), auth_req_id: &str) -> String {
    encode_form(&poll_pairs(client, auth_req_id))
}

/// The parameters of a poll by `client` (client_secret_post).
fn poll_pairs<'a>(client: (&'a str, &'a str), auth_req_id: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("client_id", client.0),
        ("client_secret", client.1),
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", auth_req_id),
    ]
}

/// A stub upstream for faults no real OP produces on demand.
pub struct Stub {
    /// Its port.
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Requests read so far.
    pub received: Arc<std::sync::atomic::AtomicUsize>,
    /// For [`StubMode::Gated`]: set to let the held answers go.
    pub release: Arc<std::sync::atomic::AtomicBool>,
}

/// What a stub does with each connection.
#[derive(Clone, Copy)]
pub enum StubMode {
    /// Reads the request and answers these exact bytes.
    Answer(&'static [u8]),
    /// Reads the request and never answers.
    Hang,
    /// Reads the request and closes the connection without answering.
    Reset,
    /// Reads the request, then answers these bytes once [`Stub::release`] is set.
    Gated(&'static [u8]),
    /// Reads the request and answers these bytes one at a time, a pause before each: an OP
    /// that never lets a single read wait long, yet never finishes.
    Trickle(&'static [u8], Duration),
}

impl Stub {
    /// Starts a stub on a free port.
    pub fn start(mode: StubMode) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = release.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(200)))
                            .unwrap();
                        let mut buf = [0u8; 65536];
                        let _ = s.read(&mut buf);
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        match mode {
                            StubMode::Answer(bytes) => {
                                let _ = s.write_all(bytes);
                            }
                            StubMode::Hang => held.push(s),
                            StubMode::Reset => drop(s),
                            StubMode::Gated(bytes) => {
                                while !gate.load(std::sync::atomic::Ordering::SeqCst)
                                    && !flag.load(std::sync::atomic::Ordering::Relaxed)
                                {
                                    thread::sleep(Duration::from_millis(5));
                                }
                                let _ = s.write_all(bytes);
                            }
                            StubMode::Trickle(bytes, pause) => {
                                for b in bytes {
                                    thread::sleep(pause);
                                    if flag.load(std::sync::atomic::Ordering::Relaxed)
                                        || s.write_all(&[*b]).is_err()
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Stub {
            port,
            stop,
            received,
            release,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A stub OP that keeps connections alive but drops each one, unanswered, once it has read
/// a whole request at a given position on it (the second by default): what a pooled
/// connection looks like when the OP closes it after reading a request.
pub struct DroppingStub {
    /// Its port.
    pub port: u16,
    /// Requests read, answered or not.
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DroppingStub {
    /// Starts the stub; `answer` is the whole response to each connection's first request,
    /// and the second is read whole and left unanswered.
    pub fn start(answer: &'static [u8]) -> DroppingStub {
        DroppingStub::closing_at(2, answer)
    }

    /// Starts the stub; each connection's requests before the `nth` get `answer`, the
    /// `nth` is read whole and the connection closed without an answer.
    pub fn closing_at(nth: usize, answer: &'static [u8]) -> DroppingStub {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (flag, reqs, conns) = (stop.clone(), requests.clone(), connections.clone());
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    for n in 1..=nth {
                        if read_request(&mut s).is_none() {
                            return;
                        }
                        reqs.fetch_add(1, Ordering::SeqCst);
                        if n < nth {
                            let _ = s.write_all(answer);
                        }
                    }
                    // Dropped here: closed without an answer.
                });
            }
        });
        DroppingStub {
            port,
            requests,
            connections,
            stop,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DroppingStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes a configuration file into a temporary directory.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// One request as a scripted stub received it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Body.
    pub body: Vec<u8>,
}

impl StubRequest {
    /// A form parameter of the body.
    pub fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A stub OP whose every answer comes from a closure: for dialects no real OP speaks.
/// Each connection carries one request and is closed after the answer.
pub struct ScriptedOp {
    /// Its port.
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Requests received, in order.
    pub seen: Arc<Mutex<Vec<StubRequest>>>,
}

impl ScriptedOp {
    /// Starts the stub; `answer` returns (status, content type, body) for each request.
    pub fn start<F>(answer: F) -> ScriptedOp
    where
        F: Fn(&StubRequest) -> (u16, &'static str, String) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (stop.clone(), seen.clone());
        thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let Some(req) = read_request(&mut s) else {
                    continue;
                };
                log.lock().unwrap().push(req.clone());
                let (status, ct, body) = answer(&req);
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(body.as_bytes());
            }
        });
        ScriptedOp { port, stop, seen }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests reached `path`.
    pub fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

impl Drop for ScriptedOp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn read_request(s: &mut TcpStream) -> Option<StubRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
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
            return Some(StubRequest { method, path, body });
        }
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// Configuration for a gateway in front of a stub, which has no discovery: the CIBA paths
/// set, short OP timeouts, then `extra`.
pub fn stub_config(extra: &str) -> String {
    format!(
        "[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\nconnect_timeout_ms = 500\nread_timeout_ms = 800\n{extra}"
    )
}

/// A gateway in front of a stub at `upstream`, configured by [`stub_config`].
pub fn stub_gateway(upstream: &str, extra: &str) -> (Gateway, tempfile::TempDir) {
    Gateway::with_config(upstream, &stub_config(extra))
}

/// Asserts an answer is this OAuth error: the status, the JSON `error` code, and
/// `Content-Type: application/json`. `what` names the case in a failure.
pub fn assert_oauth_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.error(), code, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
}

/// Which of the test OP's counters a refused request must leave unchanged.
#[derive(Clone, Copy, Debug)]
pub enum OpCount {
    /// Requests to the backchannel endpoint.
    Backchannel,
    /// Requests to the token endpoint.
    Token,
    /// Every request the OP counted.
    Total,
}

impl TestOp {
    /// One of its request counters.
    pub fn count(&self, which: OpCount) -> u64 {
        let key = match which {
            OpCount::Backchannel => "backchannel",
            OpCount::Token => "token",
            OpCount::Total => "total",
        };
        self.stats()[key].as_u64().unwrap()
    }
}

/// Sends a request with `send` and asserts the gateway refused it itself: the answer is
/// the OAuth error `status` / `code` as JSON ([`assert_oauth_error`]), and the OP's `seen`
/// counter did not move. Returns the answer for further checks.
pub fn assert_refused_at_edge(
    op: &TestOp,
    seen: OpCount,
    (status, code): (u16, &str),
    what: &str,
    send: impl FnOnce() -> Resp,
) -> Resp {
    let before = op.count(seen);
    let r = send();
    assert_oauth_error(&r, status, code, what);
    assert_eq!(op.count(seen), before, "{what} reached the OP");
    r
}

/// What pasting a demo's walkthrough into `sh` printed.
pub struct Pasted {
    /// The script, its commands joined by newlines.
    pub script: String,
    /// Its standard output.
    pub output: String,
    /// Its standard error.
    pub stderr: String,
    /// How it ended, or `None` when it ran past 30 s (then it is killed).
    pub status: Option<std::process::ExitStatus>,
}

impl Pasted {
    /// Everything a failed assertion should show.
    pub fn why(&self) -> String {
        format!(
            "script:\n{}\n\noutput:\n{}\nstderr:\n{}",
            self.script, self.output, self.stderr
        )
    }
}

/// Runs a walkthrough's commands (`demo::walkthrough::commands`) in `sh`, as a user pasting
/// them would, for at most 30 s.
pub fn paste_into_sh(commands: &[&str]) -> Pasted {
    use std::io::Read;
    let script = commands.join("\n");
    let mut sh = Command::new("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut sh.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let (mut out, mut err) = (sh.stdout.take().unwrap(), sh.stderr.take().unwrap());
    let reader = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let status = wait_for_exit(&mut sh, Duration::from_secs(30));
    if status.is_none() {
        let _ = sh.kill();
    }
    let output = reader.join().unwrap();
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    Pasted {
        script,
        output,
        stderr,
        status,
    }
}
