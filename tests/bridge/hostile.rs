//! Attempts to get past the bridge's rules, each a table row: other spellings and methods
//! of the callback, oversized and repeated parameters, another client's or a made-up id,
//! two credentials, HTTP/1.0. After each, the real callback still completes the flow once:
//! nothing was consumed, and no poll ever reached the OP.

use super::*;

/// One attempt: how it is sent.
type Send<'a> = Box<dyn Fn() -> Resp + 'a>;

/// A started request stopped before its callback: (id, callback path and query).
fn stopped(gw: &Gateway) -> (String, String) {
    let id = auth_req_id(&start(&gw.addr(), POST_CLIENT, &[]));
    let url = authorization_url(&gw.addr(), POST_CLIENT, &id);
    let cb = browse(&url, &["--stop-before-callback"]);
    (id, path_and_query(cb["callback"].as_str().unwrap()))
}

#[test]
fn other_spellings_and_methods_of_the_callback_change_nothing() {
    let (op, gw, _d) = setup("");
    let (id, callback) = stopped(&gw);
    let query = callback.split_once('?').unwrap().1.to_string();
    let long = format!("{callback}&pad={}", "a".repeat(5000));
    let addr = gw.addr();
    let rows: Vec<(&str, Send)> = vec![
        (
            "POST",
            Box::new(|| post_raw(&addr, &callback, "text/plain", b"", "")),
        ),
        (
            "trailing slash",
            Box::new(|| get(&addr, &format!("/ciba-bridge/callback/?{query}"))),
        ),
        (
            "upper case",
            Box::new(|| get(&addr, &format!("/CIBA-BRIDGE/callback?{query}"))),
        ),
        (
            "double slash",
            Box::new(|| get(&addr, &format!("/ciba-bridge//callback?{query}"))),
        ),
        (
            "encoded slash",
            Box::new(|| get(&addr, &format!("/ciba-bridge%2Fcallback?{query}"))),
        ),
        (
            "dot segment",
            Box::new(|| get(&addr, &format!("/ciba-bridge/x/../callback?{query}"))),
        ),
        ("oversized query", Box::new(|| get(&addr, &long))),
        (
            "code twice",
            Box::new(|| get(&addr, &format!("{callback}&code=other"))),
        ),
        (
            "code and error",
            Box::new(|| get(&addr, &format!("{callback}&error=access_denied"))),
        ),
        (
            "another issuer",
            Box::new(|| get(&addr, &callback.replace("iss=http", "iss=https"))),
        ),
    ];
    for (what, send) in &rows {
        let r = send();
        assert_ne!(r.status, 200, "{what}: {}", r.text());
        assert_eq!(op.token_count(), 0, "{what}: a code was exchanged");
    }
    assert_eq!(
        poll_basic(&gw.addr(), POST_CLIENT, &id).error(),
        "authorization_pending",
        "nothing changed"
    );
    let real = get(&gw.addr(), &callback);
    assert_eq!(real.status, 200, "{}", real.text());
    assert_eq!(poll_basic(&gw.addr(), POST_CLIENT, &id).status, 200);
    assert_eq!(op.token_count(), 1);
}

#[test]
fn polls_and_api_calls_that_must_not_get_through() {
    let (op, gw, _d) = setup("");
    let (id, callback) = stopped(&gw);
    assert_eq!(get(&gw.addr(), &callback).status, 200);
    let addr = gw.addr();
    let ciba = [("grant_type", CIBA_GRANT), ("auth_req_id", id.as_str())];
    let token_body = encode_form(&ciba);
    let both = encode_form(&[
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", &id),
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
    ]);
    let rows: Vec<(&str, (u16, &str), Send)> = vec![
        (
            "another client",
            (400, "invalid_grant"),
            Box::new(|| poll_basic(&addr, OTHER_CLIENT, &id)),
        ),
        (
            "the owner, the secret in the form",
            (401, "invalid_client"),
            Box::new(|| poll(&addr, POST_CLIENT, &id)),
        ),
        (
            "the owner, a wrong secret",
            (401, "invalid_client"),
            Box::new(|| poll_basic(&addr, (POST_CLIENT.0, "nope"), &id)),
        ),
        (
            "two credentials",
            (400, "invalid_request"),
            Box::new(|| {
                post_raw(
                    &addr,
                    "/token",
                    "application/x-www-form-urlencoded",
                    both.as_bytes(),
                    &format!("Authorization: {}\r\n", basic(POST_CLIENT)),
                )
            }),
        ),
        (
            "two Authorization headers",
            (400, "invalid_request"),
            Box::new(|| {
                post_raw(
                    &addr,
                    "/token",
                    "application/x-www-form-urlencoded",
                    token_body.as_bytes(),
                    &format!(
                        "Authorization: {0}\r\nAuthorization: {0}\r\n",
                        basic(POST_CLIENT)
                    ),
                )
            }),
        ),
        (
            "a repeated auth_req_id",
            (400, "invalid_request"),
            Box::new(|| {
                post_form(
                    &addr,
                    "/token",
                    &[
                        ("grant_type", CIBA_GRANT),
                        ("auth_req_id", &id),
                        ("auth_req_id", "x"),
                    ],
                    &[("Authorization", &basic(POST_CLIENT))],
                )
            }),
        ),
        (
            "a made-up id",
            (400, "invalid_grant"),
            Box::new(|| poll_basic(&addr, POST_CLIENT, "made-up-id")),
        ),
        (
            "the API, another client",
            (400, "invalid_grant"),
            Box::new(|| url_of(&addr, OTHER_CLIENT, &id)),
        ),
        (
            "the API, no client",
            (401, "invalid_client"),
            Box::new(|| {
                post_form(
                    &addr,
                    "/ciba-bridge/authorization-url",
                    &[("auth_req_id", &id)],
                    &[],
                )
            }),
        ),
    ];
    for (what, want, send) in &rows {
        assert_refused_at_edge(&op, OpCount::Token, *want, what, send);
    }
    // HTTP/1.0, as the owner: the one redemption.
    let req = format!(
        "POST /token HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nAuthorization: {}\r\n\r\n{token_body}",
        token_body.len(),
        basic(POST_CLIENT)
    );
    let tokens = raw(&addr, req.as_bytes());
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert_eq!(raw(&addr, req.as_bytes()).error(), "invalid_grant");
    assert_eq!(op.token_count(), 1, "only the callback's code exchange");
}

#[test]
fn concurrent_redemptions_on_one_replica_succeed_once() {
    let (op, gw, _d) = setup("");
    let (id, callback) = stopped(&gw);
    let returns: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| s.spawn(|| get(&gw.addr(), &callback).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        returns.iter().filter(|s| **s == 200).count(),
        1,
        "{returns:?}"
    );
    let polls: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| poll_basic(&gw.addr(), POST_CLIENT, &id).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(polls.iter().filter(|s| **s == 200).count(), 1, "{polls:?}");
    assert_eq!(op.token_count(), 1);
}
