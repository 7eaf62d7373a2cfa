//! The flows: approve, cancel, expiry, one redemption, the owner only, forged and
//! replayed `state`, refusals by the OP and at the edge, the discovery document, and
//! openid-client unchanged.

use super::*;
use std::time::Duration;

/// Waits out the 1 s interval (and the 250 ms tolerance) between two pending polls.
fn interval() {
    std::thread::sleep(Duration::from_millis(1_050));
}

#[test]
fn approved_at_the_op_the_owner_gets_verified_tokens_once() {
    let (op, gw, _d) = setup("");
    let ack = start(&gw.addr(), POST_CLIENT, &[("binding_message", "ABC-123")]);
    assert_eq!(ack.header("cache-control"), Some("no-store"));
    let ack_json = ack.json();
    let id = auth_req_id(&ack);
    assert!(id.len() >= 22, "at least 128 bits");
    assert_eq!(ack_json["interval"], 1);
    assert_eq!(ack_json["expires_in"], 300);
    assert_eq!(
        op_count(&op, "/request"),
        1,
        "one pushed authorization request"
    );
    assert_eq!(op.backchannel_count(), 0, "the OP has no CIBA");

    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    assert!(url.starts_with(&format!("{}/auth?", op.url())), "{url}");
    assert!(url.contains("request_uri="), "pushed: {url}");
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );

    let page = browse(&url, &[]);
    assert_eq!(page["status"], 200, "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(body.contains("You are signed in"), "{body}");
    assert!(body.contains("Example Bank"));
    assert!(body.contains("ABC-123"), "the binding message");
    assert!(!body.contains(&id), "no auth_req_id on the page");
    let headers = &page["headers"];
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .as_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    // Another client, then the owner with another credential: nothing is consumed.
    assert_eq!(
        poll_basic(&gw.addr(), OTHER_CLIENT, &id).error(),
        "invalid_grant"
    );
    let wrong = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(
        (wrong.status, wrong.error().as_str()),
        (401, "invalid_client")
    );

    let tokens = poll_basic(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    let t = tokens.json();
    assert!(t["access_token"].as_str().is_some());
    assert_id_token_from_op(&op, t["id_token"].as_str().unwrap(), POST_CLIENT.0);

    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "invalid_grant"
    );
    assert_eq!(
        op.token_count(),
        1,
        "one code exchange, no poll reached the OP"
    );
    assert!(!gw.log().contains(&id), "no auth_req_id in the log");
}

#[test]
fn cancelled_at_the_op_is_access_denied() {
    let (op, gw, _d) = setup("");
    let id = auth_req_id(&start(&gw.addr(), BASIC_CLIENT, &[]));
    let url = authorization_url(&gw.addr(), BASIC_CLIENT, &id);
    let page = browse(&url, &["--cancel"]);
    assert_eq!(page["status"], 200, "{page}");
    assert!(page["callback"]
        .as_str()
        .unwrap()
        .contains("error=access_denied"));
    assert!(page["body"].as_str().unwrap().contains("Sign-in cancelled"));
    let denied = poll_basic(&gw.addr(), BASIC_CLIENT, &id);
    assert_eq!(
        (denied.status, denied.error().as_str()),
        (400, "access_denied")
    );
    assert_eq!(
        poll_basic(&gw.addr(), BASIC_CLIENT, &id).error(),
        "invalid_grant"
    );
    assert_eq!(op.token_count(), 0, "no code to exchange");
}

#[test]
fn a_request_nobody_opens_expires() {
    let (op, gw, _d) = setup("");
    let id = auth_req_id(&start(
        &gw.addr(),
        POST_CLIENT,
        &[("requested_expiry", "2")],
    ));
    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "expired_token"
    );
    assert_eq!(
        url_of(&gw.addr(), POST_CLIENT, &id).error(),
        "invalid_grant"
    );
    // The user arrives late: the callback changes nothing.
    let page = browse(&url, &[]);
    assert_eq!(page["status"], 400, "{page}");
    assert!(page["body"].as_str().unwrap().contains("not valid"));
    assert_eq!(op.token_count(), 0, "a late code is not exchanged");
}

#[test]
fn a_forged_or_replayed_state_changes_nothing() {
    let (op, gw, _d) = setup("");
    let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    let stopped = browse(&url, &["--stop-before-callback"]);
    let callback = path_and_query(stopped["callback"].as_str().unwrap());
    assert!(
        callback.starts_with("/ciba-bridge/callback?code="),
        "{callback}"
    );
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let forged = callback.replace(state, "AAAAforgedAAAAstateAAAAforgedAAAAstateAAAAA");
    let no_state = callback.replace(&format!("state={state}"), "");
    let twice = format!("{callback}&state={state}");
    for bad in [&forged, &no_state, &twice] {
        let r = get(&gw.addr(), bad);
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.text().contains("not valid"));
    }
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    assert_eq!(op.token_count(), 0, "nothing exchanged");

    let real = get(&gw.addr(), &callback);
    assert_eq!(real.status, 200, "{}", real.text());
    let replay = get(&gw.addr(), &callback);
    assert_eq!(replay.status, 400, "a state is used once");
    assert_eq!(op.token_count(), 1, "the replay exchanged nothing");
    gw.metrics_containing(&["ciba_gateway_bridge_events_total{event=\"invalid_callback\"} 4"]);
    assert_eq!(poll_basic(&gw.addr(), POST_CLIENT, &id).status, 200);
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let log = gw.log();
    for secret in [state, code, id.as_str(), POST_CLIENT.1, "alice"] {
        assert!(!log.contains(secret), "the log shows a secret or a hint");
    }
}

#[test]
fn the_authorization_url_goes_to_the_owner_only() {
    let (_op, gw, _d) = setup("");
    let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
    assert_eq!(
        url_of(&gw.addr(), OTHER_CLIENT, &id).error(),
        "invalid_grant"
    );
    let post = post_form(
        &gw.addr(),
        "/ciba-bridge/authorization-url",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("auth_req_id", &id),
        ],
        &[],
    );
    assert_eq!(
        (post.status, post.error().as_str()),
        (401, "invalid_client")
    );
    let wrong = url_of(&gw.addr(), (POST_CLIENT.0, "not-the-secret"), &id);
    assert_eq!(wrong.error(), "invalid_client");
    assert_eq!(
        url_of(&gw.addr(), POST_CLIENT, "unknown").error(),
        "invalid_grant"
    );
    let get_api = get(&gw.addr(), "/ciba-bridge/authorization-url");
    assert_eq!(get_api.status, 405);
    let ok = url_of(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
}

#[test]
fn refusals_by_the_op_and_at_the_edge() {
    let (op, gw, _d) = setup("");
    // The OP authenticates the client at PAR.
    let r = start(&gw.addr(), (POST_CLIENT.0, "wrong-secret"), &[]);
    assert_eq!(
        (r.status, r.error().as_str()),
        (401, "invalid_client"),
        "{}",
        r.text()
    );
    assert_eq!(op_count(&op, "/request"), 1);
    // What the bridge cannot carry never reaches the OP.
    let assertion = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("client_id", POST_CLIENT.0),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjIn0.c2ln",
            ),
        ],
        &[],
    );
    assert_eq!(assertion.error(), "invalid_client", "{}", assertion.text());
    let lht = start(&gw.addr(), POST_CLIENT, &[("login_hint_token", "x")]);
    assert_eq!(lht.status, 400, "{}", lht.text());
    let no_openid = post_form(
        &gw.addr(),
        "/backchannel",
        &[("scope", "email"), ("login_hint", "alice")],
        &[("Authorization", &basic(POST_CLIENT))],
    );
    assert_eq!(no_openid.error(), "invalid_scope");
    assert_eq!(op_count(&op, "/request"), 1, "none of these reached the OP");
    // An unknown or made-up auth_req_id creates nothing and reaches nobody.
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, "made-up").error(),
        "invalid_grant"
    );
    assert_eq!(op.token_count(), 0);
}

#[test]
fn polls_follow_the_poll_rules_and_other_grants_pass_through() {
    let (op, gw, _d) = setup("");
    let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "slow_down"
    );
    interval();
    let other_grant = post_form(
        &gw.addr(),
        "/token",
        &[("grant_type", "client_credentials")],
        &[("Authorization", &basic(POST_CLIENT))],
    );
    assert_eq!(
        op.token_count(),
        1,
        "a token request of another grant reaches the OP"
    );
    assert_ne!(other_grant.status, 200);
}

#[test]
fn the_discovery_document_advertises_ciba() {
    let (_op, gw, _d) = setup("");
    let doc = get(&gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(
        doc["backchannel_authentication_endpoint"],
        format!("{}/backchannel", gw.url())
    );
    assert!(doc["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from(CIBA_GRANT)));
    assert_eq!(
        doc["backchannel_token_delivery_modes_supported"],
        serde_json::json!(["poll"])
    );
}

#[test]
fn openid_client_works_unchanged() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let (op, gw, _d) = setup("");
    let mut child = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/op/client.mjs"))
        .args(["--issuer", &op.url(), "--gateway", &gw.url()])
        .args(["--client-id", POST_CLIENT.0, "--timeout-ms", "20000"])
        .env("CLIENT_SECRET", POST_CLIENT.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ack: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(ack["event"], "ack", "{ack}");
    let id = ack["auth_req_id"].as_str().unwrap();
    // The client's backend asks for the URL with the credential it started with.
    let r = post_form(
        &gw.addr(),
        "/ciba-bridge/authorization-url",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("auth_req_id", id),
        ],
        &[],
    );
    let url = r.json()["authorization_url"].as_str().unwrap().to_string();
    assert_eq!(browse(&url, &[])["status"], 200);
    let outcome: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(outcome["outcome"], "tokens", "{outcome}");
    assert_eq!(
        wait_for_exit(&mut child, Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn plain_mode_checks_the_secret_at_the_gateway() {
    // SHA-256 of "post-secret-0123456789".
    let hash = {
        use std::fmt::Write;
        let d = ring::digest::digest(&ring::digest::SHA256, POST_CLIENT.1.as_bytes());
        d.as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let (op, gw, _d) = setup(&format!(
        "mode = \"plain\"\n[bridge.clients.\"client-post\"]\nsecret_sha256 = \"{hash}\"\n"
    ));
    let wrong = start(&gw.addr(), (POST_CLIENT.0, "wrong"), &[]);
    assert_eq!(
        (wrong.status, wrong.error().as_str()),
        (401, "invalid_client")
    );
    let other = start(&gw.addr(), OTHER_CLIENT, &[]);
    assert_eq!(other.error(), "invalid_client", "a client without a hash");
    let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert_eq!(op_count(&op, "/request"), 0, "no PAR in plain mode");
    assert_eq!(browse(&url, &[])["status"], 200);
    let tokens = poll_basic(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_id_token_from_op(
        &op,
        tokens.json()["id_token"].as_str().unwrap(),
        POST_CLIENT.0,
    );
}

#[test]
fn a_callback_the_op_does_not_know_is_refused_and_said_so() {
    // The OP registers another callback path than the gateway's; node-oidc-provider answers
    // the pushed request with invalid_request.
    let op = TestOp::start(&["--bridge", "--bridge-callback-path", "/elsewhere"]);
    let (gw, _d) = Gateway::with_config(&op.url(), &bridge_config(""));
    let r = start(&gw.addr(), POST_CLIENT, &[]);
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "invalid_request"),
        "{}",
        r.text()
    );
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("callback if that is not registered"));
    gw.log_containing("refused the pushed authorization request");
    gw.metrics_containing(&["ciba_gateway_bridge_events_total{event=\"op_refused\"} 1"]);
}
