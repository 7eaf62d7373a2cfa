//! Translation profiles: an OP's own dialect (paths, error codes, acknowledgement fields)
//! seen by clients as the spec, and every shipped profile in `conf/profiles` run as a flow.

use crate::support::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LEGACY_PROFILE: &str = r#"
[upstream]
backchannel_path = "/legacy/ciba"
token_path = "/legacy/token"
[polling]
min_interval_seconds = 1
[profile]
name = "legacy"
default_expires_in = 60
[profile.paths]
"/backchannel" = "/legacy/ciba"
"/token" = "/legacy/token"
[profile.error_codes]
pending = "authorization_pending"
denied = "access_denied"
[profile.ack_fields]
auth_req_id = "request_id"
interval = "pollInterval"
"#;

/// An OP speaking a deliberately non-standard dialect: 200 with an error body for
/// pending, an unknown error code, an HTML 500, renamed acknowledgement fields.
fn legacy_op() -> ScriptedOp {
    let polls = Arc::new(AtomicUsize::new(0));
    ScriptedOp::start(move |req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/legacy/ciba") => (
            200,
            "application/json",
            r#"{"request_id":"legacy-1","pollInterval":1}"#.into(),
        ),
        ("POST", "/legacy/token") => match req.param("auth_req_id").as_deref() {
            Some("legacy-1") if polls.fetch_add(1, Ordering::SeqCst) == 0 => {
                (200, "application/json", r#"{"error":"pending"}"#.into())
            }
            Some("legacy-1") => (
                200,
                "application/json",
                r#"{"access_token":"at-1","token_type":"Bearer","expires_in":60}"#.into(),
            ),
            Some("weird") => (
                400,
                "application/json",
                r#"{"error":"weird_thing","error_description":"vendor says no"}"#.into(),
            ),
            Some("denied") => (400, "application/json", r#"{"error":"denied"}"#.into()),
            _ => (
                500,
                "text/html",
                "<html><body>Internal Server Error</body></html>".into(),
            ),
        },
        _ => (404, "text/html", "<html>not found</html>".into()),
    })
}

#[test]
fn a_legacy_dialect_is_seen_as_the_spec() {
    let op = legacy_op();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "gw.toml", LEGACY_PROFILE);
    let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);

    let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_eq!(ack.status, 200, "{}", ack.text());
    let a = ack.json();
    assert_eq!(a["auth_req_id"], "legacy-1", "request_id renamed");
    assert_eq!(a["expires_in"], 60, "missing expires_in filled");
    assert_eq!(a["interval"], 1, "pollInterval renamed, then enforced");
    assert!(a.get("request_id").is_none());

    let pending = poll(&gw.addr(), POST_CLIENT, "legacy-1");
    assert_eq!(pending.status, 400, "200 with an error body becomes a 400");
    assert_eq!(pending.error(), "authorization_pending");
    assert_eq!(pending.header("cache-control"), Some("no-store"));
    // The enforced interval is 1 s here; wait it out, as a well-behaved client does.
    std::thread::sleep(Duration::from_millis(1_100));
    let tokens = poll(&gw.addr(), POST_CLIENT, "legacy-1");
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_eq!(tokens.json()["access_token"], "at-1");
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, "legacy-1").error(),
        "invalid_grant"
    );
    assert_eq!(
        op.count("/legacy/token"),
        2,
        "the used-up id never reached the OP again"
    );

    let weird = poll(&gw.addr(), POST_CLIENT, "weird");
    assert_eq!(weird.status, 400);
    assert_eq!(
        weird.error(),
        "weird_thing",
        "an unknown code passes through as JSON"
    );
    assert_eq!(weird.header("content-type"), Some("application/json"));

    let denied = poll(&gw.addr(), POST_CLIENT, "denied");
    assert_eq!(
        (denied.status, denied.error()),
        (400, "access_denied".to_string())
    );

    let html = poll(&gw.addr(), POST_CLIENT, "html");
    assert_eq!(html.status, 502);
    assert_eq!(html.error(), "server_error");
    assert!(!html.text().contains("<html>"));

    gw.metrics_containing(&[r#"ciba_gateway_upstream_unknown_errors_total{endpoint="token"} 1"#]);
    assert_eq!(
        op.count("/backchannel"),
        0,
        "the OP only ever saw its own paths"
    );
}

#[test]
fn node_oidc_provider_on_a_vendor_path_behind_a_path_mapping() {
    // A 1 s interval (announced and enforced) so the flow below waits 1 s, not 5.
    let op = TestOp::start(&[
        "--backchannel-path",
        "/op/connect/ciba",
        "--token-path",
        "/op/connect/token",
        "--interval",
        "1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "gw.toml",
        "[polling]\nmin_interval_seconds = 1\n[profile.paths]\n\"/backchannel\" = \"/op/connect/ciba\"\n\"/token\" = \"/op/connect/token\"\n",
    );
    let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);
    let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(
        d["backchannel_authentication_endpoint"],
        format!("{}/backchannel", gw.url())
    );
    assert_eq!(d["token_endpoint"], format!("{}/token", gw.url()));

    let id = initiate(&gw.addr(), POST_CLIENT, "alice").json()["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        poll(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    op.approve(&id);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).status, 200);
    let stats = op.stats();
    assert_eq!(stats["backchannel"], 1);
    assert_eq!(stats["token"], 2);
    assert!(stats["by_path"].get("/backchannel").is_none());
}

/// Each shipped profile, in front of node-oidc-provider serving that vendor's paths.
#[test]
fn every_shipped_profile_runs_a_flow() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/profiles");
    let lht_jwt = {
        use base64::Engine;
        let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.c2ln",
            b(r#"{"alg":"HS256","typ":"JWT"}"#),
            b(r#"{"sub_id":{"format":"email","email":"ann@example.com"}}"#)
        )
    };
    // (profile, the OP's backchannel path, its token path, vendor-specific parameters)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (
            "signaturgruppen",
            "/op/connect/ciba",
            "/op/connect/token",
            vec![
                ("login_hint_token", r#"{"flow_type":"broker_oidc"}"#.into()),
                ("prompt", "login".into()),
                ("idp_values", "mitid".into()),
            ],
        ),
        (
            "gravitee",
            "/my-domain/oidc/ciba/authenticate",
            "/my-domain/oauth/token",
            vec![("login_hint_token", lht_jwt)],
        ),
        (
            "bc-authorize",
            "/master/bc-authorize",
            "/master/token",
            vec![
                ("login_hint", "user".into()),
                ("user_code", "password".into()),
            ],
        ),
        (
            "idura",
            "/ciba/bc-authorize",
            "/oauth2/token",
            vec![
                ("login_hint", "sub:ssn:196802020575".into()),
                ("binding_message", "Code 1234".into()),
            ],
        ),
    ];
    let mut seen = 0;
    for (name, bc, token, params) in cases {
        let op = TestOp::start(&["--backchannel-path", bc, "--token-path", token]);
        let file = root.join(format!("{name}.toml"));
        let gw = Gateway::start(&op.url(), &["--config", file.to_str().unwrap()]);
        let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
        assert_eq!(
            d["backchannel_authentication_endpoint"],
            format!("{}/backchannel", gw.url()),
            "{name}"
        );
        let mut form = vec![
            ("client_id", POST_CLIENT.0.to_string()),
            ("client_secret", POST_CLIENT.1.to_string()),
            ("scope", "openid".to_string()),
        ];
        form.extend(params);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ack = post_form(&gw.addr(), "/backchannel", &pairs, &[]);
        assert_eq!(ack.status, 200, "{name}: {}", ack.text());
        assert_eq!(ack.json()["interval"], 5, "{name}");
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        let r = post_form(
            &gw.addr(),
            "/token",
            &[
                ("client_id", POST_CLIENT.0),
                ("client_secret", POST_CLIENT.1),
                ("grant_type", CIBA_GRANT),
                ("auth_req_id", &id),
            ],
            &[],
        );
        assert_eq!(r.error(), "authorization_pending", "{name}");
        let stats = op.stats();
        assert_eq!(stats["by_path"][bc], 1, "{name}: {stats}");
        assert_eq!(stats["by_path"][token], 1, "{name}: {stats}");
        if name == "signaturgruppen" {
            let token = op.last_backchannel()["params"]["login_hint_token"].clone();
            assert_eq!(
                token, r#"{"flow_type":"broker_oidc","idp_values":"mitid","prompt":"login"}"#,
                "top-level broker parameters folded into the token"
            );
            let cancel = raw(
                &gw.addr(),
                format!(
                    "DELETE /op/api/v1/ciba/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            assert_eq!(cancel.status, 204, "{name}: the cancel call passes through");
        }
        seen += 1;
    }
    let shipped = std::fs::read_dir(&root).unwrap().count();
    assert_eq!(seen, shipped, "every file in conf/profiles has a case here");
}
