//! `ciba-gateway demo`: the built-in demo OP behind the gateway, as a new user runs it.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_a_whole_flow() {
    let (port, metrics, op_port) = (free_port(), free_port(), free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["demo", "--approve-after", "1"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--op-listen", &format!("127.0.0.1:{op_port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let gw = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_status(&format!("127.0.0.1:{metrics}"), "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "demo never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let demo = ("demo-client", "demo-secret");
    let d = get(&gw, "/.well-known/openid-configuration").json();
    assert_eq!(d["token_endpoint"], format!("http://{gw}/token"));
    let ack = initiate(&gw, demo, "alice");
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(ack.json()["interval"], 5);
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    assert_eq!(poll(&gw, demo, &id).error(), "authorization_pending");
    // The device approves after 1 s; the client keeps CIBA's 5 s interval.
    std::thread::sleep(Duration::from_millis(5_100));
    let tokens = poll(&gw, demo, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["id_token"].is_string());
    let denied = initiate(&gw, demo, "deny").json()["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(poll(&gw, demo, &denied).error(), "access_denied");
    let _ = child.kill();
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    assert!(
        out.contains("curl -s") && out.contains("authorization_pending"),
        "walkthrough: {out}"
    );
}

fn get_status(addr: &str, path: &str) -> Option<u16> {
    std::net::TcpStream::connect(addr).ok()?;
    Some(get(addr, path).status)
}
