//! `ciba-gateway demo`: the built-in demo OP behind the gateway, as a new user runs it: its
//! flow, openid-client's `discovery()` pointed at the gateway, and the printed walkthrough's
//! commands run through `sh` as printed.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The demo with 1 s intervals: the demo OP announces 1 s, the gateway enforces 1 s and
/// caps `slow_down` at 2 s, so a flow here waits seconds, not CIBA's default 5 s.
const SHORT_INTERVALS: &str = "[polling]\nmin_interval_seconds = 1\nmax_interval_seconds = 2\n";

/// A running `ciba-gateway demo`, killed on drop.
struct Demo {
    child: Child,
    /// The gateway's address.
    gw: String,
    /// The walkthrough's lines as they are printed.
    stdout: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo on free ports with these extra arguments and waits until it is ready.
    fn start(extra: &[&str], config: &str) -> Demo {
        let (port, metrics, op_port) = (free_port(), free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "demo.toml", config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .arg("demo")
            .args(extra)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--op-listen", &format!("127.0.0.1:{op_port}")])
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let demo = Demo {
            child,
            gw: format!("127.0.0.1:{port}"),
            stdout,
            _dir: dir,
        };
        let metrics = format!("127.0.0.1:{metrics}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_status(&metrics, "/readyz") != Some(200) {
            assert!(Instant::now() < deadline, "demo never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        demo
    }

    /// The printed walkthrough, up to its last line.
    fn walkthrough(&self) -> String {
        let mut text = String::new();
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("the walkthrough ended early:\n{text}"));
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Stop with Ctrl-C") {
                return text;
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get_status(addr: &str, path: &str) -> Option<u16> {
    std::net::TcpStream::connect(addr).ok()?;
    Some(get(addr, path).status)
}

#[test]
fn the_demo_runs_a_whole_flow() {
    let demo = Demo::start(&["--approve-after", "1"], "");
    let gw = demo.gw.clone();
    let dem = ("demo-client", "demo-secret");
    let d = get(&gw, "/.well-known/openid-configuration").json();
    assert_eq!(d["token_endpoint"], format!("http://{gw}/token"));
    let ack = initiate(&gw, dem, "alice");
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(ack.json()["interval"], 5);
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    assert_eq!(poll(&gw, dem, &id).error(), "authorization_pending");
    // The device approves after 1 s; the client keeps CIBA's 5 s interval.
    std::thread::sleep(Duration::from_millis(5_100));
    let tokens = poll(&gw, dem, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["id_token"].is_string());
    let denied = initiate(&gw, dem, "deny").json()["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(poll(&gw, dem, &denied).error(), "access_denied");
    let out = demo.walkthrough();
    assert!(
        out.contains("curl -s") && out.contains("authorization_pending"),
        "walkthrough: {out}"
    );
}

#[test]
fn openid_client_discovers_from_the_demo_gateway() {
    let demo = Demo::start(
        &["--approve-after", "1", "--op-interval", "1"],
        SHORT_INTERVALS,
    );
    let url = format!("http://{}", demo.gw);
    let d = get(&demo.gw, "/.well-known/openid-configuration").json();
    assert_eq!(d["issuer"], url.as_str(), "the issuer is the gateway's URL");
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/op/client.mjs"))
        .args(["--discover", &url, "--client-id", "demo-client"])
        .args(["--timeout-ms", "15000"])
        .env("CLIENT_SECRET", "demo-secret")
        .stdin(Stdio::null())
        .output()
        .expect("node is needed for openid-client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let why = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(events.len(), 3, "{why}");
    assert_eq!(events[0]["event"], "discovered", "{why}");
    assert_eq!(events[0]["issuer"], url.as_str());
    assert_eq!(events[1]["event"], "ack", "{why}");
    assert_eq!(events[1]["interval"], 1);
    assert_eq!(events[2]["outcome"], "tokens", "{why}");
    assert_eq!(out.status.code(), Some(0), "{why}");
}

#[test]
fn the_printed_walkthrough_works_when_pasted_into_sh() {
    let demo = Demo::start(
        &["--approve-after", "1", "--op-interval", "1"],
        SHORT_INTERVALS,
    );
    let text = demo.walkthrough();
    let commands = ciba_gateway::demo::walkthrough::commands(&text);
    assert!(commands.len() >= 10, "{text}");
    let pasted = paste_into_sh(&commands);
    let (output, why) = (&pasted.output, pasted.why());
    assert!(pasted.status.is_some_and(|s| s.success()), "{why}");
    assert!(pasted.stderr.is_empty(), "{why}");

    // What each step promises, in the order the steps print it.
    let gw = format!("http://{}", demo.gw);
    let expected = [
        format!(r#""issuer":"{gw}""#),
        r#""interval":1"#.to_string(),
        "ID=".to_string(),
        "authorization_pending".into(),
        "retry-after: 2".into(),
        "slow_down".into(),
        "HTTP/1.1 200 OK".into(),
        "access_token".into(),
        "invalid_grant".into(),
        "access_denied".into(),
        "appears more than once".into(),
        r#"ciba_gateway_local_answers_total{endpoint="token",error="slow_down"} 1"#.into(),
        "ready".into(),
    ];
    let lower = output.to_ascii_lowercase();
    let mut at = 0;
    for e in &expected {
        let found = lower[at..].find(&e.to_ascii_lowercase());
        let Some(i) = found else {
            panic!("{e:?} missing after byte {at}; {why}")
        };
        at += i + e.len();
    }
    assert!(!output.contains("ID=\n"), "an empty auth_req_id; {why}");
}
