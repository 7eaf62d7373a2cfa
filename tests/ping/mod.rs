//! Ping delivery on behalf of a poll-only OP: node-oidc-provider in poll mode, the gateway
//! polling it for the ping clients `client-post` and `client-basic`, and a notification
//! receiver on loopback (allowed with `allow_insecure`). `client-other` stays a poll client.
//! `client-post` is configured for `client_secret_post`; `client-basic` leaves the method
//! unset (either secret method).

use crate::support::*;
use std::time::Duration;

mod tls;

/// Form parameters or headers, owned.
type Pairs = Vec<(&'static str, String)>;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "notify-me.0123456789";
/// Long enough for a 1 s interval, the gateway's poll and the ping.
const PING_WAIT: Duration = Duration::from_secs(6);

/// The test OP with a 1 s interval; the gateway enforcing 1 s, pinging the two clients at
/// `receiver`, with room for `queue` waiting requests.
fn setup(receiver: &Receiver, queue: usize) -> (TestOp, Gateway, tempfile::TempDir) {
    setup_with(receiver, queue, &[])
}

fn setup_with(
    receiver: &Receiver,
    queue: usize,
    op_args: &[&str],
) -> (TestOp, Gateway, tempfile::TempDir) {
    let mut args = vec!["--interval", "1"];
    args.extend_from_slice(op_args);
    let op = TestOp::start(&args);
    let url = receiver.url();
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n\
         [ping]\nkey = \"{KEY}\"\nqueue_capacity = {queue}\nmax_concurrent_polls = 2\n\
         [ping.clients.\"client-post\"]\nnotification_endpoint = \"{url}\"\nallow_insecure = true\n\
         token_endpoint_auth_method = \"client_secret_post\"\n\
         [ping.clients.\"client-basic\"]\nnotification_endpoint = \"{url}\"\nallow_insecure = true\n"
    );
    let (gw, dir) = Gateway::with_config(&op.url(), &text);
    (op, gw, dir)
}

/// A backchannel request of `client` (client_secret_post) with the notification token and
/// `extra` parameters.
fn start(gw: &Gateway, client: (&str, &str), extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("client_id", client.0),
        ("client_secret", client.1),
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("client_notification_token", TOKEN),
    ];
    form.extend_from_slice(extra);
    post_form(&gw.addr(), "/backchannel", &form, &[])
}

/// A poll with client_secret_post credentials `(client_id, secret)`.
fn redeem(gw: &Gateway, client: (&str, &str), id: &str) -> Resp {
    poll(&gw.addr(), client, id)
}

/// The OP's token requests: when each arrived (ms) and its error code.
fn token_log(op: &TestOp) -> Vec<(u64, Option<String>)> {
    get(&op.addr(), "/admin/token-log")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at_ms"].as_u64().unwrap(),
                e["error"].as_str().map(String::from),
            )
        })
        .collect()
}

/// Asserts the receiver got exactly one correct ping for `id` (CIBA 10.2).
fn assert_one_ping(receiver: &Receiver, id: &str) {
    let got = receiver.wait_for(1, PING_WAIT);
    assert_eq!(got.len(), 1, "one ping: {got:?}");
    let n = &got[0];
    // The registered endpoint's path and query, as configured.
    assert_eq!(
        (n.method.as_str(), n.path.as_str()),
        ("POST", "/cb?client=1")
    );
    assert_eq!(
        n.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(n.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(body, serde_json::json!({ "auth_req_id": id }));
}

#[test]
fn approved_the_client_is_pinged_once_and_redeems_once_at_the_edge() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let ack = start(&gw, POST_CLIENT, &[]);
    let id = auth_req_id(&ack);
    assert_eq!(ack.json()["interval"], 1);
    let sent = op.last_backchannel();
    assert!(
        sent["params"].get("client_notification_token").is_none()
            && !sent["raw_body"].as_str().unwrap().contains(TOKEN),
        "the OP got a poll-mode request: {sent}"
    );

    // Before the OP's answer the client's poll is answered at the edge.
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "authorization_pending"),
        "an early poll",
        || redeem(&gw, POST_CLIENT, &id),
    );
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "slow_down"),
        "a poll within the interval",
        || redeem(&gw, POST_CLIENT, &id),
    );
    op.approve(&id);
    assert_one_ping(&receiver, &id);

    let polls = op.token_count();
    assert!(polls >= 1);
    let refusals = [
        ("another client", OTHER_CLIENT, (400, "invalid_grant")),
        (
            "a wrong secret",
            (POST_CLIENT.0, "post-secret-wrong"),
            (401, "invalid_client"),
        ),
    ];
    for (what, client, want) in refusals {
        assert_refused_at_edge(&op, OpCount::Token, want, what, || redeem(&gw, client, &id));
    }
    let basic_same_secret = post_form(
        &gw.addr(),
        "/token",
        &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
        &[("Authorization", &basic(POST_CLIENT))],
    );
    assert_oauth_error(&basic_same_secret, 401, "invalid_client", "another method");

    let tokens = redeem(&gw, POST_CLIENT, &id);
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
    assert!(tokens.json()["id_token"].is_string());
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_grant"),
        "a second redemption",
        || redeem(&gw, POST_CLIENT, &id),
    );
    assert_eq!(
        op.token_count(),
        polls,
        "the OP saw only the gateway's polls"
    );

    let log = token_log(&op);
    assert_eq!(log.len() as u64, polls);
    for pair in log.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 1000,
            "the gateway polled within the interval: {log:?}"
        );
    }
    assert!(log.iter().all(|(_, e)| e.as_deref() != Some("slow_down")));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.requests().len(), 1, "still one ping");
    assert_eq!(op.token_count(), polls, "no poll after the answer");
    let log = gw.log();
    for secret in [TOKEN, POST_CLIENT.1, &id] {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
}

#[test]
fn denied_with_basic_the_client_gets_access_denied_once() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let auth = basic(BASIC_CLIENT);
    let ack = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("scope", "openid"),
            ("login_hint", "bob"),
            ("client_notification_token", TOKEN),
        ],
        &[("Authorization", &auth)],
    );
    let id = auth_req_id(&ack);
    op.deny(&id);
    assert_one_ping(&receiver, &id);
    let polls = op.token_count();
    let by_basic = |auth: &str| {
        post_form(
            &gw.addr(),
            "/token",
            &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
            &[("Authorization", auth)],
        )
    };
    assert_oauth_error(
        &redeem(&gw, BASIC_CLIENT, &id),
        401,
        "invalid_client",
        "the same secret in the form",
    );
    assert_oauth_error(
        &by_basic(&basic((BASIC_CLIENT.0, "nope"))),
        401,
        "invalid_client",
        "a wrong secret",
    );
    assert_oauth_error(&by_basic(&auth), 400, "access_denied", "the redemption");
    assert_oauth_error(&by_basic(&auth), 400, "invalid_grant", "a second one");
    assert_eq!(op.token_count(), polls, "redemptions never reach the OP");
}

#[test]
fn expiry_before_an_answer_sends_no_ping_and_the_poll_rules_answer() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let id = auth_req_id(&start(&gw, POST_CLIENT, &[("requested_expiry", "2")]));
    std::thread::sleep(Duration::from_millis(3_000));
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
    let polls = op.token_count();
    assert!((1..=2).contains(&polls), "{polls} polls in 2 s");
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "expired_token"),
        "a poll after expiry",
        || redeem(&gw, POST_CLIENT, &id),
    );
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(op.token_count(), polls, "no poll after expiry");
}

#[test]
fn ping_requests_the_gateway_cannot_serve_are_refused_before_the_op() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let assertion = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256"}"#),
        b64(r#"{"iss":"client-post","sub":"client-post","aud":"x","exp":4102444800}"#)
    );
    let request_object = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256"}"#),
        b64(
            r#"{"iss":"client-post","aud":"x","scope":"openid","login_hint":"a","client_notification_token":"t"}"#
        )
    );
    let base = |extra: &[(&'static str, &str)]| {
        let mut f: Vec<(&str, &str)> = vec![("scope", "openid"), ("login_hint", "alice")];
        f.extend_from_slice(extra);
        f.into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect::<Vec<_>>()
    };
    let cases: Vec<(&str, Pairs, Pairs)> = vec![
        (
            "no client_notification_token",
            base(&[
                ("client_id", "client-post"),
                ("client_secret", POST_CLIENT.1),
            ]),
            vec![],
        ),
        (
            "the token under another letter case",
            base(&[
                ("client_id", "client-post"),
                ("client_secret", POST_CLIENT.1),
                ("Client_Received_Token", TOKEN),
            ]),
            vec![],
        ),
        (
            "client_assertion (private_key_jwt)",
            base(&[
                ("client_id", "client-post"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
                ("client_notification_token", TOKEN),
            ]),
            vec![],
        ),
        (
            "no credential",
            base(&[
                ("client_id", "client-post"),
                ("client_notification_token", TOKEN),
            ]),
            vec![],
        ),
        (
            "a bearer Authorization",
            base(&[
                ("client_id", "client-post"),
                ("client_notification_token", TOKEN),
            ]),
            vec![("Authorization", "Bearer abc".to_string())],
        ),
        (
            "a signed request object",
            vec![
                ("client_id", "client-post".to_string()),
                ("client_secret", POST_CLIENT.1.to_string()),
                ("request", request_object.clone()),
            ],
            vec![],
        ),
    ];
    for (what, form, headers) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (400, "invalid_request"),
            what,
            || post_form(&gw.addr(), "/backchannel", &form, &headers),
        );
        assert!(r.text().contains("ping"), "{what}: {}", r.text());
        if what.starts_with("client_assertion") {
            assert!(r.text().contains("client_assertion"), "{}", r.text());
        }
    }
    // A poll client is not asked for a token.
    assert_eq!(initiate(&gw.addr(), OTHER_CLIENT, "alice").status, 200);
}

#[test]
fn another_method_than_the_configured_one_is_invalid_client_before_the_op() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let form = [
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("client_notification_token", TOKEN),
    ];
    let auth = basic(POST_CLIENT);
    let lower = auth.replacen("Basic", "basic", 1);
    let no_token = &form[..2];
    // client-post is configured for client_secret_post: its right secret in a Basic header,
    // under any letter case of the scheme, with or without the token, is refused.
    for (what, form, auth) in [
        ("Basic", &form[..], &auth),
        ("basic in lower case", &form[..], &lower),
        ("Basic without the token", no_token, &auth),
    ] {
        let r = assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (401, "invalid_client"),
            what,
            || post_form(&gw.addr(), "/backchannel", form, &[("Authorization", auth)]),
        );
        assert!(
            r.text().contains("client_secret_post"),
            "{what}: {}",
            r.text()
        );
    }
    assert_eq!(op.token_count(), 0, "nothing to poll for");
    // The configured method passes, and an unset one takes either.
    assert_eq!(start(&gw, POST_CLIENT, &[]).status, 200);
    let by_basic = post_form(
        &gw.addr(),
        "/backchannel",
        &form,
        &[("Authorization", &basic(BASIC_CLIENT))],
    );
    assert_eq!(by_basic.status, 200, "{}", by_basic.text());
    assert!(receiver.requests().is_empty());
}

#[test]
fn a_full_queue_answers_429_before_the_op() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 1);
    auth_req_id(&start(&gw, POST_CLIENT, &[]));
    let r = assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (429, "temporarily_unavailable"),
        "a ping request beyond the queue",
        || start(&gw, POST_CLIENT, &[]),
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(initiate(&gw.addr(), OTHER_CLIENT, "alice").status, 200);
}

#[test]
fn discovery_advertises_ping() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (_op, gw, _dir) = setup(&receiver, 10);
    let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
    assert_eq!(
        d["backchannel_token_delivery_modes_supported"],
        serde_json::json!(["poll", "ping"])
    );
}

#[test]
fn concurrent_redemptions_get_the_answer_once_and_strangers_touch_nothing() {
    let receiver = Receiver::start(vec![Reply::NoContent]);
    let (op, gw, _dir) = setup(&receiver, 100);
    let id = auth_req_id(&start(&gw, POST_CLIENT, &[]));
    // Another client's polls neither learn anything nor throttle the owner.
    for _ in 0..3 {
        assert_refused_at_edge(
            &op,
            OpCount::Token,
            (400, "invalid_grant"),
            "another client while waiting",
            || redeem(&gw, OTHER_CLIENT, &id),
        );
    }
    assert_oauth_error(
        &redeem(&gw, (POST_CLIENT.0, "wrong"), &id),
        401,
        "invalid_client",
        "a wrong secret while waiting",
    );
    assert_oauth_error(
        &redeem(&gw, POST_CLIENT, &id),
        400,
        "authorization_pending",
        "the owner, untouched by the strangers",
    );
    op.approve(&id);
    assert_one_ping(&receiver, &id);
    let polls = op.token_count();
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..8)
            .map(|_| s.spawn(|| redeem(&gw, POST_CLIENT, &id)))
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(Resp::text).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_oauth_error(r, 400, "invalid_grant", "a racing redemption");
    }
    let form = poll_body(POST_CLIENT, &id);
    let http10 = format!(
        "POST /token HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    assert_oauth_error(
        &raw(&gw.addr(), http10.as_bytes()),
        400,
        "invalid_grant",
        "again over HTTP/1.0",
    );
    assert_eq!(op.token_count(), polls, "no redemption reached the OP");
}
