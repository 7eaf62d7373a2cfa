//! The authentication-device notifier: one notification per request, with the URL, the
//! binding message, the hint and the expiry, to the configured service.

use super::*;
use std::time::Duration;

#[test]
fn the_notifier_gets_one_correct_notification_per_request() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _d) = setup(&format!(
        "notifier_url = \"{}\"\nnotifier_allow_insecure = true\n",
        receiver.url()
    ));
    let id = auth_req_id(&start(
        &gw.addr(),
        POST_CLIENT,
        &[("binding_message", "XY-42")],
    ));
    receiver.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "exactly one notification");
    let n = &got[0];
    assert_eq!(n.method, "POST");
    assert_eq!(n.header("content-type"), Some("application/json"));
    assert_eq!(n.header("authorization"), None);
    let body: Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(body["client_id"], POST_CLIENT.0);
    assert_eq!(body["binding_message"], "XY-42");
    assert_eq!(body["hint_type"], "login_hint");
    assert_eq!(body["hint"], "alice");
    assert_eq!(body["expires_in"], 300);
    let url = body["authorization_url"].as_str().unwrap();
    assert_eq!(url, authorization_url(&gw.addr(), POST_CLIENT, &id));
    assert!(
        !n.body.windows(id.len()).any(|w| w == id.as_bytes()),
        "no auth_req_id"
    );
    // The delivered URL completes the flow.
    assert_eq!(browse(url, &[])["status"], 200);
    assert_eq!(poll_basic(&gw.addr(), POST_CLIENT, &id).status, 200);
    assert_eq!(op.token_count(), 1);
}
