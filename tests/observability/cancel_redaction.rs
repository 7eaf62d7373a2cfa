//! No `auth_req_id` in the log: a path that may be the vendor's cancel call is logged as its
//! pattern, in the access line and in pingora's error lines, whatever its spelling.

use crate::support::*;
use std::time::{Duration, Instant};

const CANCEL: &str =
    "[polling]\ncancel_method = \"DELETE\"\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n";

fn send(gw: &Gateway, method: &str, path: &str) -> Resp {
    raw(
        &gw.addr(),
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Waits until the log has `n` lines naming the redacted cancel path.
fn wait_for_lines(gw: &Gateway, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.log();
        if log.matches("/op/api/v1/ciba/{auth_req_id}").count() >= n {
            return log;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cancels a real id and sends look-alike spellings carrying recognizable ids; none of
/// the ids may appear in the log.
fn cancel_calls_leave_no_id(format: &str) {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(
        &op.url(),
        &format!("[logging]\nformat = \"{format}\"\n{CANCEL}"),
    );
    let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
    assert_eq!(
        send(&gw, "DELETE", &format!("/op/api/v1/ciba/{id}")).status,
        204
    );
    let fakes = [
        ("DELETE", "/op/api/v1/ciba/ZZFAKEID0001"),
        ("GET", "/op/api/v1/ciba/ZZFAKEID0002"),
        ("DELETE", "/OP/API/V1/CIBA/ZZFAKEID0003"),
        ("DELETE", "/op/api/v1/%63iba/ZZFAKEID0004"),
        ("DELETE", "//op/api/v1/ciba/ZZFAKEID0005"),
        ("DELETE", "/op/api/v1/ciba/ZZFAKEID0006/"),
    ];
    for (method, path) in fakes {
        let _ = send(&gw, method, path);
    }
    let log = wait_for_lines(&gw, 1 + fakes.len());
    assert!(!log.contains(&id), "the log leaks the auth_req_id:\n{log}");
    assert!(!log.contains("ZZFAKEID"), "the log leaks an id:\n{log}");
    if format == "json" {
        assert!(
            log.contains(r#""path":"/op/api/v1/ciba/{auth_req_id}""#),
            "{log}"
        );
    }
}

#[test]
fn text_logs_name_no_auth_req_id() {
    cancel_calls_leave_no_id("text");
}

#[test]
fn json_logs_name_no_auth_req_id() {
    cancel_calls_leave_no_id("json");
}

#[test]
fn a_failed_cancel_call_leaves_no_id_in_the_error_log() {
    for format in ["text", "json"] {
        let stub = Stub::start(StubMode::Reset);
        let (gw, _d) = stub_gateway(
            &stub.url(),
            &format!("[logging]\nformat = \"{format}\"\n{CANCEL}"),
        );
        let r = send(&gw, "DELETE", "/op/api/v1/ciba/ZZFAKEID0007");
        assert_oauth_error(&r, 502, "server_error", format);
        // The access line and pingora's own error line.
        let log = wait_for_lines(&gw, 2);
        assert!(!log.contains("ZZFAKEID"), "the log leaks an id:\n{log}");
    }
}
