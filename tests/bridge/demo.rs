//! `ciba-gateway demo --bridge`: the built-in demo OP in authorization-code mode (PAR,
//! PKCE, an ES256 ID token) behind the gateway in bridge mode; the printed walkthrough's
//! commands, pasted into `sh` as printed, run the whole flow.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn the_bridge_demo_walkthrough_works_when_pasted_into_sh() {
    let (port, metrics, op_port) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    // 1 s intervals so the walkthrough's sleep is short.
    let cfg = write_config(dir.path(), "demo.toml", &bridge_config(""));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["demo", "--bridge"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--op-listen", &format!("127.0.0.1:{op_port}")])
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    let metrics = format!("127.0.0.1:{metrics}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&metrics).is_err() || get(&metrics, "/readyz").status != 200
    {
        assert!(Instant::now() < deadline, "the demo never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let commands = ciba_gateway::demo::walkthrough::commands(&text);
    assert!(commands.len() >= 7, "{text}");
    let pasted = paste_into_sh(&commands);
    let _ = child.kill();
    let _ = child.wait();
    let (output, why) = (&pasted.output, pasted.why());
    assert!(pasted.status.is_some_and(|s| s.success()), "{why}");
    assert!(pasted.stderr.is_empty(), "{why}");
    let expected = [
        "\"interval\":1",
        "ID=",
        "authorization_pending",
        &format!("http://127.0.0.1:{op_port}/authorize?client_id=demo-client&request_uri="),
        "You are signed in",
        "\"access_token\"",
        "\"id_token\"",
        "invalid_grant",
    ];
    let mut at = 0;
    for e in expected {
        let Some(i) = output[at..].find(e) else {
            panic!("{e:?} missing after byte {at}; {why}")
        };
        at += i + e.len();
    }
    assert!(!output.contains("ID=\n"), "{why}");
}
