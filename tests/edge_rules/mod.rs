//! Edge rules: a CIBA request reaches the OP at most once, one client authentication
//! method per request, `client_notification_token` syntax, and no `auth_req_id` in the log.

use super::support::*;
use base64::Engine;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PENDING: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"error\":\"authorization_pending\"}";

/// A gateway in front of `upstream` with the CIBA paths configured (no discovery).
fn configured(upstream: &str, extra: &str) -> (Gateway, tempfile::TempDir) {
    Gateway::with_config(
        upstream,
        &format!(
            "[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\nconnect_timeout_ms = 500\nread_timeout_ms = 800\n{extra}"
        ),
    )
}

fn assert_server_error(r: &Resp, what: &str) {
    assert_eq!(r.status, 502, "{what}: {}", r.text());
    assert_eq!(r.error(), "server_error", "{what}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
}

mod never_twice {
    use super::*;

    #[test]
    fn a_backchannel_request_the_op_read_on_a_fresh_connection_is_sent_once() {
        let stub = DroppingStub::closing_at(1, PENDING);
        let (gw, _d) = configured(&stub.url(), "");
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_server_error(&r, "fresh backchannel");
        assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_token_poll_the_op_read_on_a_fresh_connection_is_sent_once() {
        let stub = DroppingStub::closing_at(1, PENDING);
        let (gw, _d) = configured(&stub.url(), "");
        let r = poll(&gw.addr(), POST_CLIENT, "fresh-id");
        assert_server_error(&r, "fresh poll");
        assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_backchannel_request_the_op_read_on_a_pooled_connection_is_sent_once() {
        let stub = DroppingStub::closing_at(2, PENDING);
        let (gw, _d) = configured(&stub.url(), "");
        // A first exchange leaves its connection in the pool.
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, "first-id").error(),
            "authorization_pending"
        );
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_server_error(&r, "pooled backchannel");
        assert_eq!(
            stub.requests.load(Ordering::SeqCst),
            2,
            "the user's device would be asked twice"
        );
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
        // The gateway itself carries on: a next request gets a new connection.
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, "later-id").error(),
            "authorization_pending"
        );
        assert_eq!(stub.connections.load(Ordering::SeqCst), 2);
    }
}

mod one_authentication_method {
    use super::*;

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
            for (path, own) in [("/backchannel", &backchannel), ("/token", &token)] {
                let r = send(&gw, path, own, &pairs, auth.as_deref());
                assert_eq!(r.status, 400, "{name} at {path}: {}", r.text());
                assert_eq!(r.error(), "invalid_request", "{name} at {path}");
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
            ("/backchannel", "scope=openid&login_hint=alice"),
            (
                "/token",
                "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=x",
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
        for (path, body) in bodies {
            for extra in &headers {
                let r = post_raw(&gw.addr(), path, form, body.as_bytes(), extra);
                assert_eq!(r.status, 400, "{path}: {}", r.text());
                assert_eq!(r.error(), "invalid_request", "{path}");
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
}

mod notification_token {
    use super::*;

    #[test]
    fn a_token_of_exactly_1024_characters_reaches_the_op_and_1025_does_not() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(&op.url(), "[rate_limit]\nenabled = false\n");
        let send = |token: &str| {
            post_form(
                &gw.addr(),
                "/backchannel",
                &[
                    ("client_id", POST_CLIENT.0),
                    ("client_secret", POST_CLIENT.1),
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                    ("client_notification_token", token),
                ],
                &[],
            )
        };
        let long = format!("{}A", "t".repeat(1024));
        let r = send(&long);
        assert_eq!(r.error(), "invalid_request");
        assert!(
            r.text().contains("`client_notification_token`"),
            "{}",
            r.text()
        );
        assert!(!r.text().contains("tttt"), "echoes the value: {}", r.text());
        assert_eq!(op.backchannel_count(), 0);
        // Whatever the OP makes of a poll client's token, the gateway lets it through.
        let fits = format!("{}==", "t".repeat(1022));
        let _ = send(&fits);
        assert_eq!(op.backchannel_count(), 1);
    }
}

mod cancel_redaction {
    use super::*;

    const CANCEL: &str =
        "[polling]\ncancel_method = \"DELETE\"\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n";

    fn send(gw: &Gateway, method: &str, path: &str) -> Resp {
        raw(
            &gw.addr(),
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// Waits until the log has `n` lines naming the redacted cancel path.
    fn wait_for_lines(gw: &Gateway, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = gw.log();
            if log.matches("/op/api/v1/ciba/{auth_req_id}").count() >= n {
                return log;
            }
            assert!(Instant::now() < deadline, "{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cancels a real id and sends look-alike spellings carrying recognizable ids; none of
    /// the ids may appear in the log.
    fn cancel_calls_leave_no_id(format: &str) {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(
            &op.url(),
            &format!("[logging]\nformat = \"{format}\"\n{CANCEL}"),
        );
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        assert_eq!(
            send(&gw, "DELETE", &format!("/op/api/v1/ciba/{id}")).status,
            204
        );
        let fakes = [
            ("DELETE", "/op/api/v1/ciba/ZZFAKEID0001"),
            ("GET", "/op/api/v1/ciba/ZZFAKEID0002"),
            ("DELETE", "/OP/API/V1/CIBA/ZZFAKEID0003"),
            ("DELETE", "/op/api/v1/%63iba/ZZFAKEID0004"),
            ("DELETE", "//op/api/v1/ciba/ZZFAKEID0005"),
            ("DELETE", "/op/api/v1/ciba/ZZFAKEID0006/"),
        ];
        for (method, path) in fakes {
            let _ = send(&gw, method, path);
        }
        let log = wait_for_lines(&gw, 1 + fakes.len());
        assert!(!log.contains(&id), "the log leaks the auth_req_id:\n{log}");
        assert!(!log.contains("ZZFAKEID"), "the log leaks an id:\n{log}");
        if format == "json" {
            assert!(
                log.contains(r#""path":"/op/api/v1/ciba/{auth_req_id}""#),
                "{log}"
            );
        }
    }

    #[test]
    fn text_logs_name_no_auth_req_id() {
        cancel_calls_leave_no_id("text");
    }

    #[test]
    fn json_logs_name_no_auth_req_id() {
        cancel_calls_leave_no_id("json");
    }

    #[test]
    fn a_failed_cancel_call_leaves_no_id_in_the_error_log() {
        for format in ["text", "json"] {
            let stub = Stub::start(StubMode::Reset);
            let (gw, _d) = configured(
                &stub.url(),
                &format!("[logging]\nformat = \"{format}\"\n{CANCEL}"),
            );
            let r = send(&gw, "DELETE", "/op/api/v1/ciba/ZZFAKEID0007");
            assert_server_error(&r, format);
            // The access line and pingora's own error line.
            let log = wait_for_lines(&gw, 2);
            assert!(!log.contains("ZZFAKEID"), "the log leaks an id:\n{log}");
        }
    }
}
