//! Whole CIBA flows through the gateway in front of node-oidc-provider: discovery, the
//! backchannel request, polls until tokens or a denial, paths passed through untouched, and
//! what the OP learns about the client. The demo (`demo.rs`) runs flows too.

mod demo;

use crate::support::*;
use std::time::Duration;

/// How long a flow waits between polls: the 1 s interval of [`one_second_flow`], plus a
/// margin. (CIBA's default of 5 s, which the gateway adds when an OP sends no interval, is
/// what `polling` tests.)
const INTERVAL: Duration = Duration::from_millis(1_100);

/// The test OP announcing a 1 s interval, and a gateway that enforces 1 s, so a whole flow
/// waits a second between polls rather than five.
fn one_second_flow() -> (TestOp, Gateway, tempfile::TempDir) {
    let op = TestOp::start(&["--interval", "1"]);
    let (gw, dir) = Gateway::with_config(&op.url(), "[polling]\nmin_interval_seconds = 1\n");
    (op, gw, dir)
}

#[test]
fn discovery_points_at_the_gateway() {
    let (op, gw) = flow_setup();
    let r = get(&gw.addr(), "/.well-known/openid-configuration");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let d = r.json();
    assert_eq!(d["token_endpoint"], format!("{}/token", gw.url()));
    assert_eq!(
        d["backchannel_authentication_endpoint"],
        format!("{}/backchannel", gw.url())
    );
    assert_eq!(d["jwks_uri"], format!("{}/jwks", gw.url()));
    assert_eq!(d["issuer"], op.url(), "the issuer stays the OP's");
    assert!(d["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == CIBA_GRANT));
    assert_eq!(
        d["backchannel_token_delivery_modes_supported"],
        serde_json::json!(["poll"])
    );
}

#[test]
fn public_url_is_used_in_discovery() {
    let op = TestOp::start(&[]);
    let gw = Gateway::start(&op.url(), &["--public-url", "https://id.example.com/"]);
    let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(d["token_endpoint"], "https://id.example.com/token");
    assert_eq!(
        d["backchannel_authentication_endpoint"],
        "https://id.example.com/backchannel"
    );
}

#[test]
fn whole_flow_with_client_secret_post() {
    let (op, gw, _dir) = one_second_flow();
    let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
    assert_eq!(ack.status, 200, "{}", ack.text());
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    assert!(ack.json()["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(
        ack.json()["interval"],
        1,
        "the interval the client must wait"
    );

    let pending = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(pending.status, 400);
    assert_eq!(pending.error(), "authorization_pending");
    assert_eq!(pending.header("cache-control"), Some("no-store"));
    assert_eq!(pending.header("content-type"), Some("application/json"));

    op.approve(&id);
    // CIBA 7.3: wait the acknowledged interval before polling again.
    std::thread::sleep(INTERVAL);
    let tokens = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    let t = tokens.json();
    assert!(t["access_token"].is_string());
    assert!(t["id_token"].is_string());
    assert_eq!(tokens.header("cache-control"), Some("no-store"));

    std::thread::sleep(INTERVAL);
    let again = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(again.status, 400);
    assert_eq!(again.error(), "invalid_grant");
    assert_eq!(
        op.token_count(),
        2,
        "the used-up id was refused by the gateway"
    );
    assert_eq!(op.backchannel_count(), 1);
}

#[test]
fn whole_flow_with_client_secret_basic_and_a_denial() {
    let (op, gw, _dir) = one_second_flow();
    let auth = basic(BASIC_CLIENT);
    let ack = post_form(
        &gw.addr(),
        "/backchannel",
        &[("scope", "openid"), ("login_hint", "bob")],
        &[("Authorization", &auth)],
    );
    assert_eq!(ack.status, 200, "{}", ack.text());
    let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
    assert_eq!(
        op.last_backchannel()["authorization"],
        auth.as_str(),
        "Basic reached the OP"
    );

    let poll_basic = |id: &str| {
        post_form(
            &gw.addr(),
            "/token",
            &[("grant_type", CIBA_GRANT), ("auth_req_id", id)],
            &[("Authorization", &auth)],
        )
    };
    assert_eq!(poll_basic(&id).error(), "authorization_pending");
    op.deny(&id);
    std::thread::sleep(INTERVAL);
    let denied = poll_basic(&id);
    assert_eq!(denied.status, 400);
    assert_eq!(denied.error(), "access_denied");
}

#[test]
fn jwks_passes_through_byte_for_byte() {
    let (op, gw) = flow_setup();
    let direct = get(&op.addr(), "/jwks");
    let via = get(&gw.addr(), "/jwks");
    assert_eq!(direct.status, 200);
    assert_eq!(via.status, direct.status);
    assert_eq!(via.body, direct.body);
    assert_eq!(via.header("content-type"), direct.header("content-type"));
}

#[test]
fn the_op_learns_the_client_address_and_the_request_id() {
    let (op, gw) = flow_setup();
    let op_host = op.addr();
    let plain = |addr: &str, path: &str, extra: &str| {
        raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n")
                .as_bytes(),
        )
    };

    // Passed through: Host is the OP's, the address is appended, the id is made here.
    assert_eq!(plain(&gw.addr(), "/jwks", "").status, 200);
    let hop = op.last_hop();
    assert_eq!(hop["path"], "/jwks");
    assert_eq!(hop["host"], op_host.as_str());
    assert_eq!(hop["x_forwarded_for"], "127.0.0.1");
    let made = hop["x_request_id"].as_str().unwrap().to_string();
    let (pid, n) = made.split_once('-').expect("<pid>-<counter>");
    assert_eq!(u32::from_str_radix(pid, 16).unwrap(), gw.pid(), "{made}");
    assert!(u64::from_str_radix(n, 16).is_ok(), "{made}");

    // Each id is new.
    assert_eq!(plain(&gw.addr(), "/jwks", "").status, 200);
    assert_ne!(op.last_hop()["x_request_id"], made.as_str());

    // A client's plain id is kept; every earlier hop stays in the list, in order.
    let extra = "X-Request-Id: trace-42.a_b\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.2\r\n";
    assert_eq!(plain(&gw.addr(), "/jwks", extra).status, 200);
    let hop = op.last_hop();
    assert_eq!(hop["x_request_id"], "trace-42.a_b");
    assert_eq!(
        hop["x_forwarded_for"],
        "203.0.113.7, 198.51.100.1, 10.0.0.2, 127.0.0.1"
    );

    // With a query, and in absolute form (a target pingora keeps as the bytes received; it
    // names the OP's authority in it, to match `Host`): the same target and fields.
    let absolute = format!("http://{}/jwks", gw.addr());
    let absolute_at_op = format!("http://{op_host}/jwks");
    let targets: [(&[u8], &str); 2] = [
        (b"/jwks?probe=1", "/jwks?probe=1"),
        (absolute.as_bytes(), absolute_at_op.as_str()),
    ];
    for (target, at_op) in targets {
        let shown = String::from_utf8_lossy(target);
        let mut head = b"GET ".to_vec();
        head.extend_from_slice(target);
        head.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nx-forwarded-for: 203.0.113.7\r\nX-REQUEST-ID: kept-1\r\n\r\n",
                gw.addr()
            )
            .as_bytes(),
        );
        assert_eq!(raw(&gw.addr(), &head).status, 200, "{shown}");
        let hop = op.last_hop();
        assert_eq!(hop["path"], "/jwks", "{shown}");
        assert_eq!(hop["target"], at_op, "{shown}");
        assert_eq!(hop["host"], op_host.as_str(), "{shown}");
        assert_eq!(hop["x_forwarded_for"], "203.0.113.7, 127.0.0.1", "{shown}");
        assert_eq!(hop["x_request_id"], "kept-1", "{shown}");
    }

    // A hostile id is replaced, not forwarded.
    let extra = "X-Request-Id: a b\"c\r\n";
    assert_eq!(plain(&gw.addr(), "/jwks", extra).status, 200);
    let replaced = op.last_hop()["x_request_id"].as_str().unwrap().to_string();
    assert!(
        replaced.starts_with(&format!("{:x}-", gw.pid())),
        "{replaced}"
    );

    // The CIBA exchange the gateway makes itself carries the same headers.
    let ack = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("scope", "openid"),
            ("login_hint", "user-1"),
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
        ],
        &[("X-Request-Id", "ciba-7"), ("X-Forwarded-For", "192.0.2.9")],
    );
    assert_eq!(ack.status, 200, "{}", ack.text());
    let hop = op.last_hop();
    assert_eq!(hop["host"], op_host.as_str());
    assert_eq!(hop["x_request_id"], "ciba-7");
    assert_eq!(hop["x_forwarded_for"], "192.0.2.9, 127.0.0.1");
}

#[test]
fn configured_paths_route_without_discovery() {
    let op = TestOp::start(&[
        "--backchannel-path",
        "/op/connect/ciba",
        "--token-path",
        "/op/connect/token",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "gw.toml",
        "[upstream]\nbackchannel_path = \"/op/connect/ciba\"\ntoken_path = \"/op/connect/token\"\n",
    );
    let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);
    let dup = post_raw(
        &gw.addr(),
        "/op/connect/ciba",
        "application/x-www-form-urlencoded",
        b"scope=openid&scope=openid",
        "",
    );
    assert_eq!(dup.error(), "invalid_request");
    let ack = post_form(
        &gw.addr(),
        "/op/connect/ciba",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "dan"),
        ],
        &[],
    );
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(op.backchannel_count(), 1);
}
