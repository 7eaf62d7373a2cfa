//! `logging.level` follows a reload when the environment (`RUST_LOG`) does not set it.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_log_level_follows_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "gw.toml", "[logging]\nlevel = \"warn\"\n");
    let log_path = dir.path().join("stderr.log");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["--upstream", &refused_url()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &metrics])
        .arg("--config")
        .arg(&file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&metrics).is_err() {
        assert!(Instant::now() < deadline, "{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let hup = |child: &std::process::Child| {
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let reloads = |n: u32| {
        let want = format!("ciba_gateway_config_reloads_total{{result=\"ok\"}} {n}");
        while !get(&metrics, "/metrics").text().contains(&want) {
            assert!(Instant::now() < deadline, "{}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // At `warn` the reload's own info line is not written.
    hup(&child);
    reloads(1);
    assert!(!log().contains("configuration reloaded"), "{}", log());
    std::fs::write(&file, "[logging]\nlevel = \"info\"\n").unwrap();
    hup(&child);
    reloads(2);
    while !log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
