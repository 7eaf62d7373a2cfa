//! The PAR bridge through the real binary, in front of node-oidc-provider with CIBA off and
//! PAR on (`tests/op/server.mjs --bridge`): the end user is a scripted browser
//! (`tests/op/browser.mjs`: cookies, redirects, the OP's own login and consent forms) or,
//! once, headless Chromium (`browser.rs`).

mod browser;
mod demo;
mod flows;
mod hostile;
mod id_token;
mod notifier;

use crate::support::*;
use serde_json::Value;
use std::process::Command;

/// `bridge.key` in these tests.
pub(crate) const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The OP without CIBA.
pub(crate) fn bridge_op() -> TestOp {
    TestOp::start(&["--bridge"])
}

/// A configuration with the bridge on, a 1 s interval, and `extra` lines in `[bridge]`
/// (sections may follow).
pub(crate) fn bridge_config(extra: &str) -> String {
    format!(
        "[polling]\nmin_interval_seconds = 1\nmax_interval_seconds = 3\n\
         [bridge]\nenabled = true\nkey = \"{KEY}\"\ninterval = 1\nreturn_to = \"Example Bank\"\n{extra}\n"
    )
}

/// The OP and a gateway in bridge mode in front of it.
pub(crate) fn setup(extra: &str) -> (TestOp, Gateway, tempfile::TempDir) {
    let op = bridge_op();
    let (gw, dir) = Gateway::with_config(&op.url(), &bridge_config(extra));
    (op, gw, dir)
}

/// A backchannel request authenticated with HTTP Basic, with `extra` parameters.
pub(crate) fn start(gw: &str, client: (&str, &str), extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![("scope", "openid"), ("login_hint", "alice")];
    form.extend_from_slice(extra);
    post_form(
        gw,
        "/backchannel",
        &form,
        &[("Authorization", &basic(client))],
    )
}

/// A CIBA poll authenticated with HTTP Basic.
pub(crate) fn poll_basic(gw: &str, client: (&str, &str), id: &str) -> Resp {
    post_form(
        gw,
        "/token",
        &[("grant_type", CIBA_GRANT), ("auth_req_id", id)],
        &[("Authorization", &basic(client))],
    )
}

/// The API: the authorization URL of `id`, asked with HTTP Basic.
pub(crate) fn url_of(gw: &str, client: (&str, &str), id: &str) -> Resp {
    post_form(
        gw,
        "/ciba-bridge/authorization-url",
        &[("auth_req_id", id)],
        &[("Authorization", &basic(client))],
    )
}

/// The authorization URL of a request the client just started.
pub(crate) fn authorization_url(gw: &str, client: (&str, &str), id: &str) -> String {
    let r = url_of(gw, client, id);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["authorization_url"].as_str().unwrap().to_string()
}

/// Runs the scripted browser on `url` with `args`; its one JSON line.
pub(crate) fn browse(url: &str, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/op/browser.mjs"))
        .arg(url)
        .args(args)
        .output()
        .expect("node runs the scripted browser");
    assert!(
        out.status.success(),
        "browser.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("browser.mjs prints JSON")
}

/// The path and query of an absolute URL (for `get` on the gateway).
pub(crate) fn path_and_query(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

/// Requests the OP counted on `path`.
pub(crate) fn op_count(op: &TestOp, path: &str) -> u64 {
    op.stats()["by_path"][path].as_u64().unwrap_or(0)
}

/// Asserts `id_token` verifies against the OP's published keys and names the OP and
/// the client.
pub(crate) fn assert_id_token_from_op(op: &TestOp, id_token: &str, client: &str) {
    use ciba_gateway::ciba::jwt::{Jwt, KeySet, Verification};
    let jwks = get(&op.addr(), "/jwks");
    let keys = KeySet::from_published_jwks(&jwks.body).expect("the OP's JWKS");
    let jwt = Jwt::decode(id_token).unwrap();
    assert_eq!(keys.verify(&jwt), Verification::Verified);
    assert_eq!(jwt.claim_str("iss"), Some(op.url().as_str()));
    assert_eq!(jwt.claim_str("aud"), Some(client));
    assert_eq!(jwt.claim_str("sub"), Some("alice"));
}
