//! A reload while the gateway holds a ping request: the request is pinged and redeemed
//! though the new file drops its client from `[ping.clients]` and changes `ping.key`
//! (restart-only: what is held stays sealed with the key it was sealed with).

use super::{reload, sighup, wait_log};
use crate::support::*;
use std::time::Duration;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const TOKEN: &str = "notify-me.0123456789";

fn ping_config(key: &str, url: &str, with_post: bool) -> String {
    let post = if with_post {
        format!("[ping.clients.\"client-post\"]\nnotification_endpoint = \"{url}\"\nallow_insecure = true\n")
    } else {
        String::new()
    };
    format!(
        "[polling]\nmin_interval_seconds = 1\n\
         [ping]\nkey = \"{key}\"\n\
         [ping.clients.\"client-basic\"]\nnotification_endpoint = \"{url}\"\nallow_insecure = true\n{post}"
    )
}

#[test]
fn a_held_ping_request_survives_a_reload_that_drops_its_client() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let op = TestOp::start(&["--interval", "1"]);
    let (gw, dir) = Gateway::with_config(&op.url(), &ping_config(KEY, &receiver.url(), true));
    let file = dir.path().join("gw.toml");
    let ack = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("client_notification_token", TOKEN),
        ],
        &[],
    );
    let id = auth_req_id(&ack);

    reload(
        &gw,
        &file,
        &ping_config(OTHER_KEY, &receiver.url(), false),
        "ok",
        1,
    );
    wait_log(&gw, "ping.key changed; it needs a restart");
    op.approve(&id);
    let got = receiver.wait_for(1, Duration::from_secs(6));
    assert_eq!(got.len(), 1, "the held request is pinged: {got:?}");
    let tokens = poll(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
    // A second SIGHUP with the same file changes nothing more.
    sighup(&gw);
    gw.metrics_containing(&["ciba_gateway_config_reloads_total{result=\"ok\"} 2"]);
}

#[test]
fn turning_ping_on_is_refused_until_a_restart() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let op = TestOp::start(&[]);
    let (gw, dir) = Gateway::with_config(&op.url(), "[polling]\nmin_interval_seconds = 1\n");
    let file = dir.path().join("gw.toml");
    reload(
        &gw,
        &file,
        &ping_config(KEY, &receiver.url(), true),
        "invalid",
        1,
    );
    wait_log(
        &gw,
        "configuration error: ping.clients: turning ping delivery on needs a restart",
    );
    // Still a poll client: its requests reach the OP as before.
    assert_eq!(initiate(&gw.addr(), POST_CLIENT, "alice").status, 200);
}
