//! `ciba-gateway --check`: every shipped configuration passes, a bad one fails naming the key.

use crate::support::*;
use std::process::Command;

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
        .args(["--check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_passes() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    for dir in [conf.clone(), conf.join("profiles")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                let (ok, err) = check(&p);
                assert!(ok, "{}: {err}", p.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "conf/gateway.toml and the four vendor profiles");
}

#[test]
fn an_unresolvable_upstream_host_is_a_warning_not_an_error() {
    // The gateway starts with such a host (not ready, retrying), so --check passes it,
    // and says so.
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(
        dir.path(),
        "gw.toml",
        "[upstream]\nurl = \"http://no-such-host.invalid:3000\"\n",
    );
    let (ok, err) = check(&p);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: upstream.url: cannot resolve no-such-host.invalid")
            || err.contains("warning: upstream.url: no-such-host.invalid resolves to no address"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_configs_fail_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[upstream]\nurl = \"http://a\"\ntimeout = 5\n",
            "unknown field `timeout`",
        ),
        ("[upstream]\nurl = \"gopher://a\"\n", "upstream.url"),
        (
            "[server]\nlisten = \"localhost\"\n[upstream]\nurl = \"http://a\"\n",
            "server.listen",
        ),
        (
            "[server]\nthreads = 0\n[upstream]\nurl = \"http://a\"\n",
            "server.threads",
        ),
        (
            "[upstream]\nurl = \"http://a\"\nconnect_timeout_ms = -1\n",
            "connect_timeout_ms",
        ),
        ("[logging]\nlevel = \"info\"\n", "upstream.url: is required"),
        ("not toml at all [", "TOML parse error"),
        ("[upstream]\nurl = \"http://a:99999\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http://a:65536\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http://a:abc\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http://a:\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http://a:-1\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http://:8080\"\n", "upstream.url"),
        ("[upstream]\nurl = \"http:///x\"\n", "upstream.url"),
        (
            "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"verbose\"\n",
            "logging.level",
        ),
        (
            "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"infoo\"\n",
            "logging.level",
        ),
        (
            "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"ciba_gateway=loud\"\n",
            "trace, debug, info, warn, error, off",
        ),
        (
            "[upstream]\nurl = \"http://a\"\n[ping]\nkey = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n\
             [ping.clients.\"c\"]\nnotification_endpoint = \"https://c.example/cb\"\n\
             token_endpoint_auth_method = \"private_key_jwt\"\n",
            "ping.clients.\"c\".token_endpoint_auth_method: is private_key_jwt, which the gateway \
             cannot use for ping delivery",
        ),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let p = write_config(dir.path(), &format!("bad{i}.toml"), text);
        let (ok, err) = check(&p);
        assert!(!ok, "{text:?} was accepted");
        assert!(err.contains(expect), "{text:?}: {err}");
    }
}

#[test]
fn worker_threads_follow_the_cpus_the_process_may_use() {
    // Pinned to one CPU, an unset server.threads is one thread; set, it wins.
    if Command::new("taskset").arg("-V").output().is_err() {
        panic!("taskset (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let p = write_config(dir.path(), "threads.toml", text);
        let out = Command::new("taskset")
            .args(["-c", "0"])
            .arg(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["--check", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unset = run("[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
    assert!(
        unset.contains("worker threads 1 (the CPUs this process may use)"),
        "{unset}"
    );
    let set = run("[server]\nthreads = 3\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
    assert!(set.contains("worker threads 3 (server.threads)"), "{set}");
}
