//! Limits at the edge: rate limits per client and per source address, and the deadlines and
//! caps that hold every client connection (`connections.rs`).

mod connections;

use crate::support::*;

#[test]
fn a_client_over_its_rate_gets_429_while_another_keeps_working() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(
        &op.url(),
        "[rate_limit.backchannel]\nper_client = { per_second = 1, burst = 2 }\nper_address = { per_second = 100, burst = 100 }\n",
    );
    assert_eq!(initiate(&gw.addr(), POST_CLIENT, "a").status, 200);
    assert_eq!(initiate(&gw.addr(), POST_CLIENT, "b").status, 200);
    let limited = (429, "temporarily_unavailable");
    let r = assert_refused_at_edge(&op, OpCount::Backchannel, limited, "third", || {
        initiate(&gw.addr(), POST_CLIENT, "c")
    });
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(op.backchannel_count(), 2);
    assert_eq!(
        initiate(&gw.addr(), OTHER_CLIENT, "d").status,
        200,
        "another client is unaffected"
    );
    gw.metrics_containing(&[
        r#"ciba_gateway_rate_limited_total{endpoint="backchannel",key="client"} 1"#,
    ]);
    // Someone claiming client-post without its secret has a bucket of their own.
    let spoof = post_form(
        &gw.addr(),
        "/backchannel",
        &[
            ("client_id", POST_CLIENT.0),
            ("client_secret", "guess"),
            ("scope", "openid"),
            ("login_hint", "e"),
        ],
        &[],
    );
    assert_eq!(
        spoof.status,
        401,
        "refused by the OP, not rate limited: {}",
        spoof.text()
    );
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let op = TestOp::start(&[]);
    let limits = "[polling]\nunknown_auth_req_id = \"reject\"\n[rate_limit.token]\nper_client = { per_second = 100, burst = 100 }\nper_address = { per_second = 1, burst = 1 }\n";
    let poll_from = |gw: &Gateway, xff: &str| {
        post_form(
            &gw.addr(),
            "/token",
            &[
                ("client_id", POST_CLIENT.0),
                ("grant_type", CIBA_GRANT),
                ("auth_req_id", "x"),
            ],
            &[("X-Forwarded-For", xff)],
        )
        .status
    };
    let (untrusting, _d1) = Gateway::with_config(&op.url(), limits);
    assert_eq!(poll_from(&untrusting, "192.0.2.1"), 400);
    assert_eq!(
        poll_from(&untrusting, "192.0.2.2"),
        429,
        "the header is ignored: same peer"
    );
    let trusted = limits.replace(
        "[rate_limit.token]",
        "[rate_limit]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[rate_limit.token]",
    );
    let (trusting, _d2) = Gateway::with_config(&op.url(), &trusted);
    assert_eq!(poll_from(&trusting, "192.0.2.1"), 400);
    assert_eq!(
        poll_from(&trusting, "192.0.2.2"),
        400,
        "a different client address behind the proxy"
    );
    assert_eq!(poll_from(&trusting, "192.0.2.1"), 429);
    assert_eq!(op.token_count(), 0);
}
