//! What operators see: metrics on their own listener (and `promtool` accepts them), health,
//! access logs in text and JSON, the Grafana dashboard, and never a secret in a log line
//! (`cancel_redaction.rs`: nor an `auth_req_id` in a cancel call's path).

mod cancel_redaction;

use crate::support::*;

#[test]
fn metrics_and_health_are_on_their_own_listener() {
    let (_op, gw) = flow_setup();
    let _ = post_raw(&gw.addr(), "/backchannel", "text/plain", b"x", "");
    assert_eq!(get(&gw.metrics_addr(), "/healthz").status, 200);
    assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 200);
    gw.metrics_containing(&[
        r#"ciba_gateway_requests_total{client="none",endpoint="backchannel",status="400"} 1"#,
        r#"ciba_gateway_local_answers_total{endpoint="backchannel",error="invalid_request"} 1"#,
        "ciba_gateway_ready 1",
    ]);
    assert_eq!(
        get(&gw.addr(), "/metrics").status,
        404,
        "the proxy port passes /metrics to the OP"
    );
}

#[test]
fn metrics_after_a_scripted_flow_match_what_happened() {
    let op = TestOp::start(&[]);
    let (gw, _d) =
        Gateway::with_config(&op.url(), "[metrics]\nclient_labels = [\"client-post\"]\n");
    let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "slow_down");
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "slow_down");
    assert_eq!(initiate(&gw.addr(), OTHER_CLIENT, "bob").status, 200);
    let dup = post_raw(
        &gw.addr(),
        "/backchannel",
        "application/x-www-form-urlencoded",
        b"scope=openid&scope=openid",
        "",
    );
    assert_eq!(dup.status, 400, "{}", dup.text());
    let expected = [
        r#"ciba_gateway_requests_total{client="client-post",endpoint="backchannel",status="200"} 1"#,
        r#"ciba_gateway_requests_total{client="other",endpoint="backchannel",status="200"} 1"#,
        r#"ciba_gateway_requests_total{client="client-post",endpoint="token",status="400"} 3"#,
        r#"ciba_gateway_requests_total{client="none",endpoint="backchannel",status="400"} 1"#,
        r#"ciba_gateway_local_answers_total{endpoint="token",error="slow_down"} 2"#,
        r#"ciba_gateway_validation_refusals_total{endpoint="backchannel",reason="duplicate_parameter"} 1"#,
        r#"ciba_gateway_upstream_duration_seconds_count{endpoint="token"} 1"#,
        r#"ciba_gateway_upstream_duration_seconds_count{endpoint="backchannel"} 2"#,
        "ciba_gateway_tracked_auth_req_ids 2",
        "ciba_gateway_ready 1",
    ];
    let m = gw.metrics_containing(&expected);
    assert!(!m.contains(&id), "no auth_req_id in any label");
    assert!(
        !m.contains("client-other"),
        "unlisted clients are grouped as other"
    );

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_never_reach_the_log() {
    let (op, gw) = flow_setup();
    let ack = initiate(&gw.addr(), POST_CLIENT, "erin-personal-hint");
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    op.approve(&id);
    let tokens = poll(&gw.addr(), POST_CLIENT, &id).json();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    let _ = post_raw(
        &gw.addr(),
        "/backchannel",
        "application/x-www-form-urlencoded",
        b"login_hint=erin-personal-hint&x=%zz",
        "",
    );
    let log = gw.log();
    assert!(
        log.contains("client-post"),
        "the access log names the client:\n{log}"
    );
    for secret in [
        POST_CLIENT.1,
        "erin-personal-hint",
        &id,
        tokens["access_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "log leaks a secret:\n{log}");
    }
}

#[test]
fn json_access_logs_carry_the_fields_and_no_secret() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[logging]\nformat = \"json\"\n");
    let auth = basic(BASIC_CLIENT);
    let ack = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("scope", "openid"),
            ("login_hint", "frank-personal"),
            ("binding_message", "BM-77"),
        ],
        &[("Authorization", &auth)],
    );
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    op.approve(&id);
    let tokens = post_form(
        &gw.addr(),
        "/token",
        &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
        &[("Authorization", &auth)],
    );
    let t = tokens.json();
    // The id the gateway made for the token request, as the OP saw it.
    let sent = op.last_hop()["x_request_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw.log().matches("\"access\"").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let access: Vec<serde_json::Value> = gw
        .log()
        .lines()
        .filter(|l| l.contains("\"access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(access.len(), 2, "{}", gw.log());
    for line in &access {
        let f = &line["fields"];
        for key in [
            "request_id",
            "endpoint",
            "client_id",
            "status",
            "outcome",
            "upstream_ms",
        ] {
            assert!(!f[key].is_null(), "{key} missing in {line}");
        }
        assert_eq!(f["client_id"], BASIC_CLIENT.0);
    }
    assert_eq!(access[1]["fields"]["status"], 200);
    // One id per request, whichever use made it: the OP's copy is the access log's.
    assert_eq!(access[1]["fields"]["request_id"], sent.as_str());
    assert_ne!(access[0]["fields"]["request_id"], sent.as_str());
    let log = gw.log();
    for secret in [
        BASIC_CLIENT.1,
        auth.trim_start_matches("Basic "),
        "frank-personal",
        &id,
        t["access_token"].as_str().unwrap(),
        t["id_token"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "the log leaks {secret}:\n{log}");
    }
}

#[test]
fn the_dashboard_has_a_panel_for_every_metric() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash = std::fs::read_to_string(root.join("conf/grafana-dashboard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).unwrap();
    let exprs: Vec<String> = v["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect();
    let src = std::fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    let names: Vec<&str> = src
        .split('"')
        .filter(|s| s.starts_with("ciba_gateway_"))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        assert!(
            exprs.iter().any(|e| e.contains(name)),
            "no panel queries {name}"
        );
    }
}
