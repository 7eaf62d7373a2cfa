//! Once, a real browser: headless Chromium opens the authorization URL, completes the OP's
//! login and consent forms, and lands on the gateway's callback page, whose screenshot the
//! docs show (docs/images/bridge-callback.png).

use super::*;

#[test]
fn a_real_browser_completes_the_flow_and_lands_on_the_callback_page() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is needed for this test (apt-get install chromium)"
    );
    let (op, gw, _d) = setup("");
    let id = auth_req_id(&start(
        &gw.addr(),
        POST_CLIENT,
        &[("binding_message", "ABC-123")],
    ));
    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    let shot = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/images/bridge-callback.png"
    );
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/op/chromium.mjs"
        ))
        .args([url.as_str(), shot])
        .output()
        .expect("node runs the Chromium script");
    assert!(
        out.status.success(),
        "chromium.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        page["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/ciba-bridge/callback?", gw.url())),
        "{page}"
    );
    assert_eq!(page["title"], "You are signed in");
    assert!(page["text"].as_str().unwrap().contains("ABC-123"));
    assert!(
        std::fs::metadata(shot).unwrap().len() > 1000,
        "a screenshot"
    );
    let tokens = poll_basic(&gw.addr(), POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_id_token_from_op(
        &op,
        tokens.json()["id_token"].as_str().unwrap(),
        POST_CLIENT.0,
    );
}
