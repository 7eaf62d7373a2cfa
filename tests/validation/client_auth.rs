//! One client authentication method per request (RFC 6749 2.3), at both endpoints.

use crate::support::*;
use base64::Engine;

fn assertion(client: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"iss":"{client}","sub":"{client}","aud":"op"}}"#
        )),
        b64("sig")
    )
}

/// Form pairs beside the endpoint's own parameters.
type Pairs = Vec<(&'static str, String)>;

/// (name, form pairs, Authorization header).
fn cases() -> Vec<(&'static str, Pairs, Option<String>)> {
    let jwt = (
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
    );
    let secret = ("client_secret", POST_CLIENT.1.to_string());
    vec![
        (
            "basic and client_secret",
            vec![secret.clone()],
            Some(basic(POST_CLIENT)),
        ),
        (
            "basic, client_id and client_secret",
            vec![("client_id", POST_CLIENT.0.into()), secret.clone()],
            Some(basic(POST_CLIENT)),
        ),
        (
            "basic and empty client_secret",
            vec![("client_secret", String::new())],
            Some(basic(POST_CLIENT)),
        ),
        (
            "client_assertion and client_secret",
            vec![
                ("client_id", POST_CLIENT.0.into()),
                secret.clone(),
                jwt.clone(),
                ("client_assertion", assertion(POST_CLIENT.0)),
            ],
            None,
        ),
        (
            "basic and client_assertion",
            vec![jwt, ("client_assertion", assertion(POST_CLIENT.0))],
            Some(basic(POST_CLIENT)),
        ),
    ]
}

fn send(
    gw: &Gateway,
    path: &str,
    own: &[(&str, &str)],
    pairs: &[(&'static str, String)],
    auth: Option<&str>,
) -> Resp {
    let mut form: Vec<(&str, &str)> = own.to_vec();
    form.extend(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    post_form(&gw.addr(), path, &form, &headers)
}

#[test]
fn two_methods_are_refused_at_both_endpoints_before_the_op() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[rate_limit]\nenabled = false\n");
    let backchannel = [("scope", "openid"), ("login_hint", "alice")];
    let token = [("grant_type", CIBA_GRANT), ("auth_req_id", "some-id")];
    for (name, pairs, auth) in cases() {
        for (path, own, seen) in [
            ("/backchannel", &backchannel[..], OpCount::Backchannel),
            ("/token", &token[..], OpCount::Token),
        ] {
            let what = format!("{name} at {path}");
            let r = assert_refused_at_edge(&op, seen, (400, "invalid_request"), &what, || {
                send(&gw, path, own, &pairs, auth.as_deref())
            });
            assert!(r.text().contains("RFC 6749 2.3"), "{name}: {}", r.text());
            assert!(
                !r.text().contains(POST_CLIENT.1),
                "{name}: echoes the secret"
            );
        }
        assert_eq!(op.backchannel_count(), 0, "{name} reached the OP");
        assert_eq!(op.token_count(), 0, "{name} reached the OP");
    }
    // A second Authorization header would let the OP read a credential the gateway
    // did not: refused, whichever comes first.
    let form = "application/x-www-form-urlencoded";
    let bodies = [
        (
            "/backchannel",
            "scope=openid&login_hint=alice",
            OpCount::Backchannel,
        ),
        (
            "/token",
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=x",
            OpCount::Token,
        ),
    ];
    let headers = [
        format!(
            "Authorization: Bearer x\r\nAuthorization: {}\r\n",
            basic(POST_CLIENT)
        ),
        format!(
            "Authorization: {}\r\nAuthorization: {}\r\n",
            basic(POST_CLIENT),
            basic(BASIC_CLIENT)
        ),
    ];
    for (path, body, seen) in bodies {
        for extra in &headers {
            assert_refused_at_edge(&op, seen, (400, "invalid_request"), path, || {
                post_raw(&gw.addr(), path, form, body.as_bytes(), extra)
            });
        }
    }
    assert_eq!(
        op.backchannel_count(),
        0,
        "two Authorization headers reached the OP"
    );
    assert_eq!(
        op.token_count(),
        0,
        "two Authorization headers reached the OP"
    );
    // One method, with an agreeing client_id beside Basic, still goes through, so the
    // counts above could move.
    let auth = basic(BASIC_CLIENT);
    let ack = send(
        &gw,
        "/backchannel",
        &backchannel,
        &[("client_id", BASIC_CLIENT.0.into())],
        Some(&auth),
    );
    assert_eq!(ack.status, 200, "{}", ack.text());
    assert_eq!(op.backchannel_count(), 1);
    let id = auth_req_id(&ack);
    let pending = send(
        &gw,
        "/token",
        &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
        &[("client_id", BASIC_CLIENT.0.into())],
        Some(&auth),
    );
    assert_eq!(
        pending.error(),
        "authorization_pending",
        "{}",
        pending.text()
    );
    assert_eq!(op.token_count(), 1);
}

/// RFC 6749 5.2: an `invalid_client` answer to a client that authenticated with the
/// `Authorization` header is a 401 with a `WWW-Authenticate` challenge in the client's
/// scheme. The gateway's own refusals carry the same challenge node-oidc-provider sends
/// (its issuer as the realm, the error and its description), so a client library reports
/// the same error whichever refused.
#[test]
fn invalid_client_answers_challenge_a_client_that_used_the_authorization_header() {
    let op = TestOp::start(&[]);
    let (gw, _d) = Gateway::with_config(&op.url(), "[rate_limit]\nenabled = false\n");
    let form = "application/x-www-form-urlencoded";
    let basic_other = basic(BASIC_CLIENT);
    let lower = basic_other.replacen("Basic", "basic", 1);
    let upper = basic_other.replacen("Basic", "BASIC", 1);
    // (what, Authorization header or none, whether a challenge is owed)
    let table: [(&str, Option<&str>, bool); 7] = [
        ("Basic naming another client", Some(&basic_other), true),
        ("basic in lower case", Some(&lower), true),
        ("BASIC in upper case", Some(&upper), true),
        (
            "Basic with a credential that is not Base64",
            Some("Basic !!"),
            true,
        ),
        ("Basic naming no client", Some("Basic Og=="), true),
        (
            "a header that is not visible ASCII",
            Some("Basic \u{e9}t\u{e9}"),
            true,
        ),
        ("no Authorization header", None, false),
    ];
    let bodies = [
        (
            "/backchannel",
            "client_id=client-post&scope=openid&login_hint=alice",
            OpCount::Backchannel,
        ),
        (
            "/token",
            "client_id=client-post&grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=x",
            OpCount::Token,
        ),
    ];
    let realm = format!("Basic realm=\"{}\", error=\"invalid_client\", ", op.url());
    for (path, body, seen) in bodies {
        for (what, auth, owed) in table {
            let what = format!("{what} at {path}");
            let extra = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            let mut body = body.to_string();
            if auth.is_none() {
                // Two client ids without the header: the form and an assertion disagree.
                body.push_str(
                    "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=",
                );
                body.push_str(&assertion(BASIC_CLIENT.0));
            }
            let r = assert_refused_at_edge(&op, seen, (401, "invalid_client"), &what, || {
                post_raw(&gw.addr(), path, form, body.as_bytes(), &extra)
            });
            let challenge = r.header("www-authenticate");
            if owed {
                let challenge = challenge.unwrap_or_else(|| panic!("{what}: no challenge"));
                assert!(challenge.starts_with(&realm), "{what}: {challenge}");
                assert!(
                    challenge.contains("error_description=\""),
                    "{what}: {challenge}"
                );
                assert!(
                    !challenge.contains(BASIC_CLIENT.1),
                    "{what}: echoes the secret"
                );
            } else {
                assert_eq!(
                    challenge, None,
                    "{what}: a challenge for no Authorization header"
                );
            }
        }
    }
    // Other framings of the same refusal: another spelling of the path (served by
    // `routing.variants = "normalize"`, through pingora's proxy app), HTTP/1.0, a query.
    let body = "client_id=client-post&scope=openid&login_hint=alice";
    let request = |path: &str, version: &str| {
        format!(
            "POST {path} HTTP/{version}\r\nHost: gw\r\nConnection: close\r\n\
             Content-Type: {form}\r\nContent-Length: {}\r\n\
             Authorization: {basic_other}\r\n\r\n{body}",
            body.len()
        )
    };
    // (what, path, HTTP version)
    let framings = [
        ("letter case", "/BACKCHANNEL", "1.1"),
        ("slashes", "//backchannel/", "1.1"),
        ("a query", "/backchannel?x=1", "1.1"),
        ("HTTP/1.0", "/backchannel", "1.0"),
    ];
    for (what, path, version) in framings {
        let r = assert_refused_at_edge(
            &op,
            OpCount::Backchannel,
            (401, "invalid_client"),
            what,
            || raw(&gw.addr(), request(path, version).as_bytes()),
        );
        let challenge = r
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no challenge"));
        assert!(challenge.starts_with(&realm), "{what}: {challenge}");
    }
    assert_eq!(op.backchannel_count(), 0);
    assert_eq!(op.token_count(), 0);

    // The OP's own refusal of a wrong secret reaches the client with the OP's challenge,
    // and its realm is the one the gateway names.
    let wrong = basic((BASIC_CLIENT.0, "wrong-secret-0123456789"));
    let r = post_raw(
        &gw.addr(),
        "/backchannel",
        form,
        b"scope=openid&login_hint=alice",
        &format!("Authorization: {wrong}\r\n"),
    );
    assert_oauth_error(
        &r,
        401,
        "invalid_client",
        "a wrong secret, refused by the OP",
    );
    assert_eq!(op.backchannel_count(), 1, "the OP judged the secret");
    let relayed = r
        .header("www-authenticate")
        .expect("the OP's challenge is relayed");
    assert!(relayed.starts_with(&realm), "{relayed}");
}
