//! A ping over TLS through the binary: the client's endpoint is `https://localhost:<port>`
//! (the name resolves through the system's resolver to 127.0.0.1, which `allow_insecure`
//! permits), presenting a certificate for `localhost` from a private CA that
//! `ping.notify_ca_file` makes the gateway trust.

use super::{assert_one_ping, redeem, start, KEY};
use crate::support::pki::Ca;
use crate::support::*;

#[test]
fn a_ping_client_with_an_https_endpoint_is_pinged_over_tls_with_a_private_ca() {
    let ca = Ca::new("Client Root");
    let receiver = Receiver::start_tls(vec![Reply::NoContent], ca.leaf(&["localhost"]));
    let pem = tempfile::tempdir().unwrap();
    let ca_file = pem.path().join("notify-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let op = TestOp::start(&["--interval", "1"]);
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n\
         [ping]\nkey = \"{KEY}\"\nnotify_ca_file = \"{}\"\n\
         [ping.clients.\"client-post\"]\nnotification_endpoint = \"{}\"\nallow_insecure = true\n",
        ca_file.display(),
        receiver.https_url("localhost"),
    );
    let (gw, _dir) = Gateway::with_config(&op.url(), &text);
    let id = auth_req_id(&start(&gw, POST_CLIENT, &[]));
    op.approve(&id);
    assert_one_ping(&receiver, &id);
    assert_eq!(receiver.handshakes_failed(), 0);
    let tokens = redeem(&gw, POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
}
