//! Integration tests: the real `ciba-gateway` binary on loopback in front of
//! node-oidc-provider (tests/op), plus stub upstreams for faults a real OP cannot produce.

mod edge;
mod poll_state;
mod redis_store;
mod routing;
mod support;

mod edge_rules;
mod layers;
mod openid_client;

mod core {
    use super::support::*;
    use std::time::{Duration, Instant};

    /// The interval the gateway enforces when the OP sends none, plus a margin.
    const INTERVAL: Duration = Duration::from_millis(5_100);

    fn flow_setup() -> (TestOp, Gateway) {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        (op, gw)
    }

    #[test]
    fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
        use std::io::{Read, Write};
        let op = TestOp::start(&[]);
        let (gw, _dir) =
            Gateway::with_config(&op.url(), "[server]\nkeepalive_timeout_seconds = 1\n");
        let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
        // Kept alive between requests: one served locally, one passed through.
        for path in ["/.well-known/openid-configuration", "/jwks"] {
            write!(s, "GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut s).status, 200, "{path}");
        }
        // Then idle: the gateway closes it (pingora alone would hold it open forever).
        let idle = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .expect("closed by the gateway, not timed out here");
        assert_eq!(n, 0, "unexpected bytes on an idle connection");
        assert!(
            idle.elapsed() < Duration::from_secs(5),
            "{:?}",
            idle.elapsed()
        );

        // A client that asks to close is not kept alive at all.
        let mut c = std::net::TcpStream::connect(gw.addr()).unwrap();
        write!(
            c,
            "GET /jwks HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
    }

    #[test]
    fn discovery_points_at_the_gateway() {
        let (op, gw) = flow_setup();
        let r = get(&gw.addr(), "/.well-known/openid-configuration");
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let d = r.json();
        assert_eq!(d["token_endpoint"], format!("{}/token", gw.url()));
        assert_eq!(
            d["backchannel_authentication_endpoint"],
            format!("{}/backchannel", gw.url())
        );
        assert_eq!(d["jwks_uri"], format!("{}/jwks", gw.url()));
        assert_eq!(d["issuer"], op.url(), "the issuer stays the OP's");
        assert!(d["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == CIBA_GRANT));
        assert_eq!(
            d["backchannel_token_delivery_modes_supported"],
            serde_json::json!(["poll"])
        );
    }

    #[test]
    fn public_url_is_used_in_discovery() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &["--public-url", "https://id.example.com/"]);
        let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
        assert_eq!(d["token_endpoint"], "https://id.example.com/token");
        assert_eq!(
            d["backchannel_authentication_endpoint"],
            "https://id.example.com/backchannel"
        );
    }

    #[test]
    fn whole_flow_with_client_secret_post() {
        let (op, gw) = flow_setup();
        let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_eq!(ack.status, 200, "{}", ack.text());
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        assert!(ack.json()["expires_in"].as_u64().unwrap() > 0);

        let pending = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(pending.status, 400);
        assert_eq!(pending.error(), "authorization_pending");
        assert_eq!(pending.header("cache-control"), Some("no-store"));
        assert_eq!(pending.header("content-type"), Some("application/json"));

        op.approve(&id);
        // CIBA 7.3: wait the interval (5 s, the gateway's default) before polling again.
        std::thread::sleep(INTERVAL);
        let tokens = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(tokens.status, 200, "{}", tokens.text());
        let t = tokens.json();
        assert!(t["access_token"].is_string());
        assert!(t["id_token"].is_string());
        assert_eq!(tokens.header("cache-control"), Some("no-store"));

        std::thread::sleep(INTERVAL);
        let again = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(again.status, 400);
        assert_eq!(again.error(), "invalid_grant");
        assert_eq!(
            op.token_count(),
            2,
            "the used-up id was refused by the gateway"
        );
        assert_eq!(op.backchannel_count(), 1);
    }

    #[test]
    fn whole_flow_with_client_secret_basic_and_a_denial() {
        let (op, gw) = flow_setup();
        let auth = basic(BASIC_CLIENT);
        let ack = post_form(
            &gw.addr(),
            "/backchannel",
            &[("scope", "openid"), ("login_hint", "bob")],
            &[("Authorization", &auth)],
        );
        assert_eq!(ack.status, 200, "{}", ack.text());
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        assert_eq!(
            op.last_backchannel()["authorization"],
            auth.as_str(),
            "Basic reached the OP"
        );

        let poll_basic = |id: &str| {
            post_form(
                &gw.addr(),
                "/token",
                &[("grant_type", CIBA_GRANT), ("auth_req_id", id)],
                &[("Authorization", &auth)],
            )
        };
        assert_eq!(poll_basic(&id).error(), "authorization_pending");
        op.deny(&id);
        std::thread::sleep(INTERVAL);
        let denied = poll_basic(&id);
        assert_eq!(denied.status, 400);
        assert_eq!(denied.error(), "access_denied");
    }

    #[test]
    fn jwks_passes_through_byte_for_byte() {
        let (op, gw) = flow_setup();
        let direct = get(&op.addr(), "/jwks");
        let via = get(&gw.addr(), "/jwks");
        assert_eq!(direct.status, 200);
        assert_eq!(via.status, direct.status);
        assert_eq!(via.body, direct.body);
        assert_eq!(via.header("content-type"), direct.header("content-type"));
    }

    #[test]
    fn the_op_learns_the_client_address_and_the_request_id() {
        let (op, gw) = flow_setup();
        let op_host = op.addr();
        let plain = |addr: &str, path: &str, extra: &str| {
            raw(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n")
                    .as_bytes(),
            )
        };

        // Passed through: Host is the OP's, the address is appended, the id is made here.
        assert_eq!(plain(&gw.addr(), "/jwks", "").status, 200);
        let hop = op.last_hop();
        assert_eq!(hop["path"], "/jwks");
        assert_eq!(hop["host"], op_host.as_str());
        assert_eq!(hop["x_forwarded_for"], "127.0.0.1");
        let made = hop["x_request_id"].as_str().unwrap().to_string();
        let (pid, n) = made.split_once('-').expect("<pid>-<counter>");
        assert_eq!(u32::from_str_radix(pid, 16).unwrap(), gw.pid(), "{made}");
        assert!(u64::from_str_radix(n, 16).is_ok(), "{made}");

        // Each id is new.
        assert_eq!(plain(&gw.addr(), "/jwks", "").status, 200);
        assert_ne!(op.last_hop()["x_request_id"], made.as_str());

        // A client's plain id is kept; every earlier hop stays in the list, in order.
        let extra = "X-Request-Id: trace-42.a_b\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.2\r\n";
        assert_eq!(plain(&gw.addr(), "/jwks", extra).status, 200);
        let hop = op.last_hop();
        assert_eq!(hop["x_request_id"], "trace-42.a_b");
        assert_eq!(
            hop["x_forwarded_for"],
            "203.0.113.7, 198.51.100.1, 10.0.0.2, 127.0.0.1"
        );

        // A hostile id is replaced, not forwarded.
        let extra = "X-Request-Id: a b\"c\r\n";
        assert_eq!(plain(&gw.addr(), "/jwks", extra).status, 200);
        let replaced = op.last_hop()["x_request_id"].as_str().unwrap().to_string();
        assert!(
            replaced.starts_with(&format!("{:x}-", gw.pid())),
            "{replaced}"
        );

        // The CIBA exchange the gateway makes itself carries the same headers.
        let ack = post_form(
            &gw.addr(),
            "/backchannel",
            &[
                ("scope", "openid"),
                ("login_hint", "user-1"),
                ("client_id", POST_CLIENT.0),
                ("client_secret", POST_CLIENT.1),
            ],
            &[("X-Request-Id", "ciba-7"), ("X-Forwarded-For", "192.0.2.9")],
        );
        assert_eq!(ack.status, 200, "{}", ack.text());
        let hop = op.last_hop();
        assert_eq!(hop["host"], op_host.as_str());
        assert_eq!(hop["x_request_id"], "ciba-7");
        assert_eq!(hop["x_forwarded_for"], "192.0.2.9, 127.0.0.1");
    }

    #[test]
    fn strict_form_errors_never_reach_the_op() {
        let (op, gw) = flow_setup();
        let form = "application/x-www-form-urlencoded";
        let cases: Vec<(&str, &str, Vec<u8>, &str, u16)> = vec![
            (
                "duplicate",
                form,
                b"client_id=client-post&scope=openid&scope=openid&login_hint=a".to_vec(),
                "",
                400,
            ),
            (
                "bad percent",
                form,
                b"client_id=client-post&scope=openid&login_hint=%zz".to_vec(),
                "",
                400,
            ),
            (
                "bad utf-8",
                form,
                b"client_id=client-post&scope=openid&login_hint=%ff%fe".to_vec(),
                "",
                400,
            ),
            (
                "json body",
                "application/json",
                br#"{"scope":"openid"}"#.to_vec(),
                "",
                400,
            ),
            ("too large", form, vec![b'a'; 20_000], "", 413),
            (
                "two client ids",
                form,
                b"client_id=client-post&scope=openid&login_hint=a".to_vec(),
                "Authorization: Basic Y2xpZW50LWJhc2ljOng=\r\n",
                401,
            ),
        ];
        for (name, ct, body, extra, status) in cases {
            let r = post_raw(&gw.addr(), "/backchannel", ct, &body, extra);
            assert_eq!(r.status, status, "{name}: {}", r.text());
            let expect = if status == 401 {
                "invalid_client"
            } else {
                "invalid_request"
            };
            assert_eq!(r.error(), expect, "{name}");
            assert_eq!(r.header("cache-control"), Some("no-store"), "{name}");
            assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
        }
        let get_backchannel = get(&gw.addr(), "/backchannel");
        assert_eq!(get_backchannel.status, 405);
        assert_eq!(get_backchannel.error(), "invalid_request");

        let smuggle = raw(
            &gw.addr(),
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(smuggle.status, 400);
        assert_eq!(smuggle.error(), "invalid_request");
        assert_eq!(
            op.backchannel_count(),
            0,
            "no refused request reached the OP"
        );
        assert_eq!(op.token_count(), 0);
    }

    #[test]
    fn chunked_requests_are_read_whole() {
        let (op, gw) = flow_setup();
        let body = encode_form(&[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "carol"),
        ]);
        let (a, b) = body.split_at(10);
        let req = format!(
            "POST /backchannel HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        let r = raw(&gw.addr(), req.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = op.last_backchannel();
        assert_eq!(seen["params"]["login_hint"], "carol");
        assert_eq!(seen["content_length"], body.len().to_string());
    }

    #[test]
    fn configured_paths_route_without_discovery() {
        let op = TestOp::start(&[
            "--backchannel-path",
            "/op/connect/ciba",
            "--token-path",
            "/op/connect/token",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            "gw.toml",
            "[upstream]\nbackchannel_path = \"/op/connect/ciba\"\ntoken_path = \"/op/connect/token\"\n",
        );
        let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);
        let dup = post_raw(
            &gw.addr(),
            "/op/connect/ciba",
            "application/x-www-form-urlencoded",
            b"scope=openid&scope=openid",
            "",
        );
        assert_eq!(dup.error(), "invalid_request");
        let ack = post_form(
            &gw.addr(),
            "/op/connect/ciba",
            &[
                ("client_id", POST_CLIENT.0),
                ("client_secret", POST_CLIENT.1),
                ("scope", "openid"),
                ("login_hint", "dan"),
            ],
            &[],
        );
        assert_eq!(ack.status, 200, "{}", ack.text());
        assert_eq!(op.backchannel_count(), 1);
    }

    #[test]
    fn secrets_never_reach_the_log() {
        let (op, gw) = flow_setup();
        let ack = initiate(&gw.addr(), POST_CLIENT, "erin-personal-hint");
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        op.approve(&id);
        let tokens = poll(&gw.addr(), POST_CLIENT, &id).json();
        assert!(tokens["access_token"].is_string(), "{tokens}");
        let _ = post_raw(
            &gw.addr(),
            "/backchannel",
            "application/x-www-form-urlencoded",
            b"login_hint=erin-personal-hint&x=%zz",
            "",
        );
        let log = gw.log();
        assert!(
            log.contains("client-post"),
            "the access log names the client:\n{log}"
        );
        for secret in [
            POST_CLIENT.1,
            "erin-personal-hint",
            &id,
            tokens["access_token"].as_str().unwrap(),
            tokens["id_token"].as_str().unwrap(),
        ] {
            assert!(!log.contains(secret), "log leaks a secret:\n{log}");
        }
    }

    #[test]
    fn metrics_and_health_are_on_their_own_listener() {
        let (_op, gw) = flow_setup();
        let _ = post_raw(&gw.addr(), "/backchannel", "text/plain", b"x", "");
        assert_eq!(get(&gw.metrics_addr(), "/healthz").status, 200);
        assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 200);
        gw.metrics_containing(&[
            r#"ciba_gateway_requests_total{client="none",endpoint="backchannel",status="400"} 1"#,
            r#"ciba_gateway_local_answers_total{endpoint="backchannel",error="invalid_request"} 1"#,
            "ciba_gateway_ready 1",
        ]);
        assert_eq!(
            get(&gw.addr(), "/metrics").status,
            404,
            "the proxy port passes /metrics to the OP"
        );
    }

    #[test]
    fn a_connection_stays_usable_after_a_local_error() {
        let (op, gw) = flow_setup();
        let mut conn = std::net::TcpStream::connect(gw.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let send = |conn: &mut std::net::TcpStream, body: &str| {
            use std::io::Write;
            let req = format!(
                "POST /backchannel HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(req.as_bytes()).unwrap();
            read_response(conn)
        };
        let refused = send(&mut conn, "scope=openid&scope=openid");
        assert_eq!(refused.status, 400);
        let ok = send(
            &mut conn,
            &encode_form(&[
                ("client_id", POST_CLIENT.0),
                ("client_secret", POST_CLIENT.1),
                ("scope", "openid"),
                ("login_hint", "alice"),
            ]),
        );
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(op.backchannel_count(), 1);
    }

    #[test]
    fn the_demo_runs_a_whole_flow() {
        let (port, metrics, op_port) = (free_port(), free_port(), free_port());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["demo", "--approve-after", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--op-listen", &format!("127.0.0.1:{op_port}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let gw = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_status(&format!("127.0.0.1:{metrics}"), "/readyz") != Some(200) {
            assert!(Instant::now() < deadline, "demo never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let demo = ("demo-client", "demo-secret");
        let d = get(&gw, "/.well-known/openid-configuration").json();
        assert_eq!(d["token_endpoint"], format!("http://{gw}/token"));
        let ack = initiate(&gw, demo, "alice");
        assert_eq!(ack.status, 200, "{}", ack.text());
        assert_eq!(ack.json()["interval"], 5);
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        assert_eq!(poll(&gw, demo, &id).error(), "authorization_pending");
        // The device approves after 1 s; the client keeps CIBA's 5 s interval.
        std::thread::sleep(Duration::from_millis(5_100));
        let tokens = poll(&gw, demo, &id);
        assert_eq!(tokens.status, 200, "{}", tokens.text());
        assert!(tokens.json()["id_token"].is_string());
        let denied = initiate(&gw, demo, "deny").json()["auth_req_id"]
            .as_str()
            .unwrap()
            .to_string();
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(poll(&gw, demo, &denied).error(), "access_denied");
        let _ = child.kill();
        let mut out = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = child.wait();
        assert!(
            out.contains("curl -s") && out.contains("authorization_pending"),
            "walkthrough: {out}"
        );
    }

    fn get_status(addr: &str, path: &str) -> Option<u16> {
        std::net::TcpStream::connect(addr).ok()?;
        Some(get(addr, path).status)
    }

    fn sigterm(gw: &Gateway) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    #[test]
    fn sigterm_with_nothing_in_flight_exits_without_waiting_out_the_grace_period() {
        let op = TestOp::start(&[]);
        let (mut gw, _dir) =
            Gateway::with_config(&op.url(), "[server]\nshutdown_grace_seconds = 30\n");
        // A kept-alive idle connection is not a request in flight.
        let mut idle = std::net::TcpStream::connect(gw.addr()).unwrap();
        std::io::Write::write_all(&mut idle, b"GET /jwks HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut idle).status, 200);
        let started = Instant::now();
        sigterm(&gw);
        let status = gw
            .wait_exit(Duration::from_secs(20))
            .expect("the gateway exits well within its 30 s grace period");
        assert!(status.success(), "exit status {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn sigterm_lets_a_request_in_flight_finish_then_exits() {
        use std::sync::atomic::Ordering;
        let stub = Stub::start(StubMode::Gated(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\nConnection: close\r\n\r\n{\"error\":\"authorization_pending\"}",
        ));
        let (mut gw, _dir) = Gateway::with_config(
            &stub.url(),
            "[server]\nshutdown_grace_seconds = 30\n[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\n",
        );
        let addr = gw.addr();
        let poller = std::thread::spawn(move || poll(&addr, POST_CLIENT, "some-id"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while stub.received.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the poll never reached the OP");
            std::thread::sleep(Duration::from_millis(10));
        }
        sigterm(&gw);
        while !gw.log().contains("Broadcast graceful shutdown complete") {
            assert!(Instant::now() < deadline, "no shutdown:\n{}", gw.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Shutting down, but the poll is still being answered: the process stays.
        assert!(
            gw.wait_exit(Duration::from_millis(500)).is_none(),
            "{}",
            gw.log()
        );
        stub.release.store(true, Ordering::SeqCst);
        let answer = poller.join().unwrap();
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.error(), "authorization_pending");
        let status = gw
            .wait_exit(Duration::from_secs(10))
            .expect("the gateway exits once the last request is answered");
        assert!(status.success(), "exit status {status:?}");
    }
}

mod polling {
    use super::support::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn the_ack_carries_the_enforced_interval() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_expires_in_seconds = 120\n");
        let ack = initiate(&gw.addr(), POST_CLIENT, "alice").json();
        assert_eq!(
            ack["interval"], 5,
            "node-oidc-provider sends none; the gateway adds 5"
        );
        assert_eq!(ack["expires_in"], 120, "the OP's 600 is clamped");
    }

    #[test]
    fn too_fast_polls_get_slow_down_and_never_reach_the_op() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        for expect in ["10 s", "15 s", "20 s"] {
            let r = poll(&gw.addr(), POST_CLIENT, &id);
            assert_eq!(r.status, 400);
            assert_eq!(r.error(), "slow_down");
            assert!(
                r.json()["error_description"]
                    .as_str()
                    .unwrap()
                    .contains(expect),
                "{}",
                r.text()
            );
            assert_eq!(r.header("cache-control"), Some("no-store"));
        }
        assert_eq!(op.token_count(), 1, "only the first poll reached the OP");
        gw.metrics_containing(&[
            r#"ciba_gateway_local_answers_total{endpoint="token",error="slow_down"} 3"#,
            "ciba_gateway_tracked_auth_req_ids 1",
        ]);
    }

    #[test]
    fn a_well_behaved_client_gets_its_tokens_once() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        op.approve(&id);
        let tokens = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(tokens.status, 200, "{}", tokens.text());
        assert!(tokens.json()["access_token"].is_string());
        let after = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(after.error(), "invalid_grant");
        assert_eq!(
            op.token_count(),
            1,
            "the used-up id never reached the OP again"
        );
    }

    #[test]
    fn a_denied_request_ends_its_state() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        op.deny(&id);
        assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "access_denied");
        assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "invalid_grant");
        assert_eq!(op.token_count(), 1);
    }

    #[test]
    fn an_expired_request_is_answered_locally() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_expires_in_seconds = 1\n");
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        // Expiry is a deadline the gateway enforces: wait until it has surely passed.
        std::thread::sleep(Duration::from_millis(1_200));
        let r = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), "expired_token");
        assert_eq!(op.token_count(), 0);
    }

    #[test]
    fn another_client_gets_invalid_grant_and_the_owner_is_unaffected() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        for _ in 0..3 {
            let r = poll(&gw.addr(), OTHER_CLIENT, &id);
            assert_eq!(r.status, 400);
            assert_eq!(r.error(), "invalid_grant");
        }
        let anonymous = post_form(
            &gw.addr(),
            "/token",
            &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
            &[],
        );
        // CIBA 10.1: a poll must authenticate its client; one that names none is refused.
        assert_eq!(
            (anonymous.status, anonymous.error().as_str()),
            (401, "invalid_client")
        );
        assert_eq!(op.token_count(), 0);
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        assert_eq!(op.token_count(), 1);
    }

    #[test]
    fn unknown_ids_are_forwarded_by_default() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let r = poll(&gw.addr(), POST_CLIENT, "never-issued");
        assert_eq!(r.error(), "invalid_grant");
        assert_eq!(
            op.token_count(),
            1,
            "forwarded: a restarted gateway keeps flows working"
        );
    }

    #[test]
    fn unknown_ids_can_be_rejected_locally() {
        let op = TestOp::start(&[]);
        let (gw, _d) =
            Gateway::with_config(&op.url(), "[polling]\nunknown_auth_req_id = \"reject\"\n");
        let r = poll(&gw.addr(), POST_CLIENT, "never-issued");
        assert_eq!(r.error(), "invalid_grant");
        assert_eq!(op.token_count(), 0);
    }

    #[test]
    fn simultaneous_polls_reach_the_op_once() {
        let op = TestOp::start(&[]);
        let gw = Gateway::start(&op.url(), &[]);
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (b, addr, id) = (barrier.clone(), gw.addr(), id.clone());
                std::thread::spawn(move || {
                    b.wait();
                    poll(&addr, POST_CLIENT, &id).error()
                })
            })
            .collect();
        let errors: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            errors
                .iter()
                .filter(|e| *e == "authorization_pending")
                .count(),
            1,
            "{errors:?}"
        );
        assert_eq!(
            errors.iter().filter(|e| *e == "slow_down").count(),
            n - 1,
            "{errors:?}"
        );
        assert_eq!(op.token_count(), 1);
    }

    #[test]
    fn a_client_over_its_tracking_limit_gets_429() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(&op.url(), "[polling]\nmax_tracked_per_client = 2\n");
        auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "a"));
        auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "b"));
        let r = initiate(&gw.addr(), POST_CLIENT, "c");
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.error(), "temporarily_unavailable");
        assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(op.backchannel_count(), 2);
        auth_req_id(&initiate(&gw.addr(), OTHER_CLIENT, "d"));
    }

    #[test]
    fn the_vendor_cancel_call_ends_the_state() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(
            &op.url(),
            "[polling]\nunknown_auth_req_id = \"reject\"\ncancel_method = \"DELETE\"\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n",
        );
        let id = auth_req_id(&initiate(&gw.addr(), POST_CLIENT, "alice"));
        let refused = raw(
            &gw.addr(),
            b"DELETE /op/api/v1/ciba/not-an-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(refused.status, 404, "the OP refused an unknown id");
        let cancel = raw(
            &gw.addr(),
            format!("DELETE /op/api/v1/ciba/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(cancel.status, 204);
        let r = poll(&gw.addr(), POST_CLIENT, &id);
        assert_eq!(
            r.error(),
            "invalid_grant",
            "state dropped: the id is now unknown and rejected"
        );
        assert_eq!(op.token_count(), 0);
    }
}

mod limits_and_metrics {
    use super::support::*;

    #[test]
    fn a_client_over_its_rate_gets_429_while_another_keeps_working() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(
            &op.url(),
            "[rate_limit.backchannel]\nper_client = { per_second = 1, burst = 2 }\nper_address = { per_second = 100, burst = 100 }\n",
        );
        assert_eq!(initiate(&gw.addr(), POST_CLIENT, "a").status, 200);
        assert_eq!(initiate(&gw.addr(), POST_CLIENT, "b").status, 200);
        let r = initiate(&gw.addr(), POST_CLIENT, "c");
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.error(), "temporarily_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            op.backchannel_count(),
            2,
            "the refused request never reached the OP"
        );
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

    #[test]
    fn metrics_after_a_scripted_flow_match_what_happened() {
        let op = TestOp::start(&[]);
        let (gw, _d) =
            Gateway::with_config(&op.url(), "[metrics]\nclient_labels = [\"client-post\"]\n");
        let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "slow_down");
        assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "slow_down");
        assert_eq!(initiate(&gw.addr(), OTHER_CLIENT, "bob").status, 200);
        let dup = post_raw(
            &gw.addr(),
            "/backchannel",
            "application/x-www-form-urlencoded",
            b"scope=openid&scope=openid",
            "",
        );
        assert_eq!(dup.status, 400, "{}", dup.text());
        let expected = [
            r#"ciba_gateway_requests_total{client="client-post",endpoint="backchannel",status="200"} 1"#,
            r#"ciba_gateway_requests_total{client="other",endpoint="backchannel",status="200"} 1"#,
            r#"ciba_gateway_requests_total{client="client-post",endpoint="token",status="400"} 3"#,
            r#"ciba_gateway_requests_total{client="none",endpoint="backchannel",status="400"} 1"#,
            r#"ciba_gateway_local_answers_total{endpoint="token",error="slow_down"} 2"#,
            r#"ciba_gateway_validation_refusals_total{endpoint="backchannel",reason="duplicate_parameter"} 1"#,
            r#"ciba_gateway_upstream_duration_seconds_count{endpoint="token"} 1"#,
            r#"ciba_gateway_upstream_duration_seconds_count{endpoint="backchannel"} 2"#,
            "ciba_gateway_tracked_auth_req_ids 2",
            "ciba_gateway_ready 1",
        ];
        let m = gw.metrics_containing(&expected);
        assert!(!m.contains(&id), "no auth_req_id in any label");
        assert!(
            !m.contains("client-other"),
            "unlisted clients are grouped as other"
        );

        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is needed (Debian package prometheus)");
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(m.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn json_access_logs_carry_the_fields_and_no_secret() {
        let op = TestOp::start(&[]);
        let (gw, _d) = Gateway::with_config(&op.url(), "[logging]\nformat = \"json\"\n");
        let auth = basic(BASIC_CLIENT);
        let ack = post_form(
            &gw.addr(),
            "/backchannel",
            &[
                ("scope", "openid"),
                ("login_hint", "frank-personal"),
                ("binding_message", "BM-77"),
            ],
            &[("Authorization", &auth)],
        );
        let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
        op.approve(&id);
        let tokens = post_form(
            &gw.addr(),
            "/token",
            &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
            &[("Authorization", &auth)],
        );
        let t = tokens.json();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while gw.log().matches("\"access\"").count() < 2 {
            assert!(std::time::Instant::now() < deadline, "{}", gw.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let access: Vec<serde_json::Value> = gw
            .log()
            .lines()
            .filter(|l| l.contains("\"access\""))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(access.len(), 2, "{}", gw.log());
        for line in &access {
            let f = &line["fields"];
            for key in [
                "request_id",
                "endpoint",
                "client_id",
                "status",
                "outcome",
                "upstream_ms",
            ] {
                assert!(!f[key].is_null(), "{key} missing in {line}");
            }
            assert_eq!(f["client_id"], BASIC_CLIENT.0);
        }
        assert_eq!(access[1]["fields"]["status"], 200);
        let log = gw.log();
        for secret in [
            BASIC_CLIENT.1,
            auth.trim_start_matches("Basic "),
            "frank-personal",
            &id,
            t["access_token"].as_str().unwrap(),
            t["id_token"].as_str().unwrap(),
        ] {
            assert!(!log.contains(secret), "the log leaks {secret}:\n{log}");
        }
    }

    #[test]
    fn the_dashboard_has_a_panel_for_every_metric() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dash = std::fs::read_to_string(root.join("conf/grafana-dashboard.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&dash).unwrap();
        let exprs: Vec<String> = v["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().unwrap_or("").to_string())
            .collect();
        let src = std::fs::read_to_string(root.join("src/metrics.rs")).unwrap();
        let names: Vec<&str> = src
            .split('"')
            .filter(|s| s.starts_with("ciba_gateway_"))
            .collect();
        assert!(names.len() >= 9, "{names:?}");
        for name in names {
            assert!(
                exprs.iter().any(|e| e.contains(name)),
                "no panel queries {name}"
            );
        }
    }
}

mod validation {
    use super::support::*;
    use base64::Engine;
    use serde_json::{json, Value};

    /// Signaturgruppen's documented Base64 login_hint_token, whose `idp_params` JSON is not escaped.
    const SG_BASE64: &str = "eyJpZHAiOiJtaXRpZCIsImlkcF9wYXJhbXMiOiJ7InV1aWQiOiI4YTk4NTZlMC1mMTJkLTQyMTctYjMyMC1jOGEwNzZiZTkzMjAiLCAicmVmZXJlbmNlVGV4dEJvZHkiOiJUZXN0aW5nIE1pdElEIEZsZXggYXBwIPCfmIkiLCAiaXAiOiIxLjEuMS4xIn0ifQ==";

    fn gateway(op: &TestOp, config: &str) -> (Gateway, tempfile::TempDir) {
        // Hostile tables send many requests at once; rate limits are tested elsewhere.
        Gateway::with_config(
            &op.url(),
            &format!("[rate_limit]\nenabled = false\n{config}"),
        )
    }

    #[test]
    fn every_hostile_request_is_refused_before_the_op() {
        let op = TestOp::start(&[]);
        let (gw, _d) = gateway(&op, "");
        let cases = ciba_gateway::ciba::authorize::hostile_cases();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        for (name, body, code, status) in cases {
            let r = post_raw(
                &gw.addr(),
                "/backchannel",
                "application/x-www-form-urlencoded",
                body.as_bytes(),
                "",
            );
            assert_eq!(r.status, status, "{name}: {}", r.text());
            assert_eq!(r.error(), code.as_str(), "{name}");
            assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
            assert_eq!(op.backchannel_count(), 0, "{name} reached the OP");
        }
        // And a valid one does reach it, so the count above could move.
        assert_eq!(initiate(&gw.addr(), POST_CLIENT, "alice").status, 200);
        assert_eq!(op.backchannel_count(), 1);
    }

    /// Sends a backchannel request with this token (and extra parameters), returning the
    /// gateway's answer and the form the OP received.
    fn send(gw: &Gateway, op: &TestOp, token: &str, extra: &[(&str, &str)]) -> (Resp, Value) {
        let mut form = vec![
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint_token", token),
        ];
        form.extend_from_slice(extra);
        let r = post_form(&gw.addr(), "/backchannel", &form, &[]);
        let seen = if r.status == 200 {
            op.last_backchannel()
        } else {
            Value::Null
        };
        (r, seen)
    }

    #[test]
    fn token_formats_reach_the_op_normalized() {
        let op = TestOp::start(&[]);
        let (gw, _d) = gateway(&op, "");
        let compact = r#"{"flow_type":"broker_oidc","idp_values":"mitid"}"#;
        let pretty = "{ \"idp_values\": \"mitid\",\n  \"flow_type\": \"broker_oidc\" }";
        let b64 = base64::engine::general_purpose::STANDARD.encode(pretty);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pretty);
        for (name, input) in [
            ("raw", pretty.to_string()),
            ("base64", b64),
            ("base64url", b64url),
        ] {
            let (r, seen) = send(&gw, &op, &input, &[]);
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            assert_eq!(seen["params"]["login_hint_token"], compact, "{name}");
            assert_eq!(
                seen["content_length"],
                seen["raw_body"].as_str().unwrap().len().to_string()
            );
        }
        let jwt = {
            let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            format!(
                "{}.{}.c2ln",
                b(r#"{"alg":"HS256"}"#),
                b(r#"{"sub_id":{"format":"email","email":"a@b.c"}}"#)
            )
        };
        let (r, seen) = send(&gw, &op, &jwt, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            seen["params"]["login_hint_token"],
            jwt.as_str(),
            "a JWT is forwarded as sent"
        );
        gw.metrics_containing(&[
            r#"ciba_gateway_login_hint_tokens_total{format="json",repaired="false"} 1"#,
            r#"ciba_gateway_login_hint_tokens_total{format="jwt",repaired="false"} 1"#,
        ]);
    }

    #[test]
    fn the_vendor_example_is_refused_unless_repair_is_enabled() {
        let op = TestOp::start(&[]);
        let (strict, _d1) = gateway(&op, "");
        let (r, _) = send(&strict, &op, SG_BASE64, &[]);
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), "invalid_request");
        let why = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(
            why.contains("idp_params") && why.contains("repair_unescaped_json"),
            "{why}"
        );
        assert!(!why.contains("8a9856e0"), "no value echoed: {why}");
        assert_eq!(op.backchannel_count(), 0);

        let (repairing, _d2) = gateway(&op, "[login_hint_token]\nrepair_unescaped_json = true\n");
        let (r, seen) = send(&repairing, &op, SG_BASE64, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let forwarded: Value =
            serde_json::from_str(seen["params"]["login_hint_token"].as_str().unwrap()).unwrap();
        assert_eq!(forwarded["idp"], "mitid");
        let inner: Value = serde_json::from_str(forwarded["idp_params"].as_str().unwrap()).unwrap();
        assert_eq!(inner["uuid"], "8a9856e0-f12d-4217-b320-c8a076be9320");
        assert_eq!(inner["referenceTextBody"], "Testing MitID Flex app 😉");
        repairing.metrics_containing(&[
            r#"ciba_gateway_login_hint_tokens_total{format="base64",repaired="true"} 1"#,
        ]);

        let (as_object, _d3) = gateway(
            &op,
            "[login_hint_token]\nrepair_unescaped_json = true\nnested_json = \"object\"\noutput = \"base64url\"\n",
        );
        let (r, seen) = send(&as_object, &op, SG_BASE64, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(seen["params"]["login_hint_token"].as_str().unwrap())
            .unwrap();
        let forwarded: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(
            forwarded["idp_params"]["ip"], "1.1.1.1",
            "nested JSON emitted as an object"
        );
    }

    #[test]
    fn top_level_parameters_are_folded_into_the_token() {
        let op = TestOp::start(&[]);
        let (gw, _d) = gateway(
            &op,
            "[login_hint_token]\nfold_params = [\"idp_values\", \"prompt\"]\nrequired_keys = [\"flow_type\"]\n[login_hint_token.allowed_values]\nflow_type = [\"broker_oidc\"]\n",
        );
        let (r, seen) = send(
            &gw,
            &op,
            r#"{"flow_type":"broker_oidc"}"#,
            &[("prompt", "login"), ("idp_values", "mitid")],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let token: Value =
            serde_json::from_str(seen["params"]["login_hint_token"].as_str().unwrap()).unwrap();
        assert_eq!(
            token,
            json!({"flow_type": "broker_oidc", "prompt": "login", "idp_values": "mitid"})
        );
        assert!(
            seen["params"].get("prompt").is_none(),
            "folded parameters leave the top level"
        );
        assert!(seen["params"].get("idp_values").is_none());

        let before = op.backchannel_count();
        let (r, _) = send(
            &gw,
            &op,
            r#"{"flow_type":"broker_oidc","prompt":"none"}"#,
            &[("prompt", "login")],
        );
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request".to_string()),
            "two different values"
        );
        let (r, _) = send(&gw, &op, r#"{"flow_type":"other"}"#, &[]);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request".to_string()),
            "schema: allowed values"
        );
        let (r, _) = send(&gw, &op, r#"{"idp":"mitid"}"#, &[]);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request".to_string()),
            "schema: required key"
        );
        assert_eq!(op.backchannel_count(), before);
    }

    #[test]
    fn per_client_binding_message_rules() {
        let op = TestOp::start(&[]);
        let (gw, _d) = gateway(
            &op,
            "[validation]\nbinding_message_max_chars = 10\n[validation.clients.\"client-other\"]\nbinding_message_max_chars = 20\nrequire_user_code = true\n",
        );
        let bm = "ÆØÅ-12345-ÆØÅ"; // 13 characters, 19 bytes
        let r = post_form(
            &gw.addr(),
            "/backchannel",
            &[
                ("client_id", POST_CLIENT.0),
                ("client_secret", POST_CLIENT.1),
                ("scope", "openid"),
                ("login_hint", "a"),
                ("binding_message", bm),
            ],
            &[],
        );
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_binding_message".to_string())
        );
        let other = |extra: &[(&str, &str)]| {
            let mut f = vec![
                ("client_id", OTHER_CLIENT.0),
                ("client_secret", OTHER_CLIENT.1),
                ("scope", "openid"),
                ("login_hint", "a"),
                ("binding_message", bm),
            ];
            f.extend_from_slice(extra);
            post_form(&gw.addr(), "/backchannel", &f, &[])
        };
        let r = other(&[]);
        assert_eq!(
            (r.status, r.error()),
            (400, "missing_user_code".to_string())
        );
        assert_eq!(op.backchannel_count(), 0);
        let r = other(&[("user_code", "1234")]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(op.last_backchannel()["params"]["binding_message"], bm);
    }
}

mod profiles {
    use super::support::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const LEGACY_PROFILE: &str = r#"
[upstream]
backchannel_path = "/legacy/ciba"
token_path = "/legacy/token"
[polling]
min_interval_seconds = 1
[profile]
name = "legacy"
default_expires_in = 60
[profile.paths]
"/backchannel" = "/legacy/ciba"
"/token" = "/legacy/token"
[profile.error_codes]
pending = "authorization_pending"
denied = "access_denied"
[profile.ack_fields]
auth_req_id = "request_id"
interval = "pollInterval"
"#;

    /// An OP speaking a deliberately non-standard dialect: 200 with an error body for
    /// pending, an unknown error code, an HTML 500, renamed acknowledgement fields.
    fn legacy_op() -> ScriptedOp {
        let polls = Arc::new(AtomicUsize::new(0));
        ScriptedOp::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/legacy/ciba") => (
                200,
                "application/json",
                r#"{"request_id":"legacy-1","pollInterval":1}"#.into(),
            ),
            ("POST", "/legacy/token") => match req.param("auth_req_id").as_deref() {
                Some("legacy-1") if polls.fetch_add(1, Ordering::SeqCst) == 0 => {
                    (200, "application/json", r#"{"error":"pending"}"#.into())
                }
                Some("legacy-1") => (
                    200,
                    "application/json",
                    r#"{"access_token":"at-1","token_type":"Bearer","expires_in":60}"#.into(),
                ),
                Some("weird") => (
                    400,
                    "application/json",
                    r#"{"error":"weird_thing","error_description":"vendor says no"}"#.into(),
                ),
                Some("denied") => (400, "application/json", r#"{"error":"denied"}"#.into()),
                _ => (
                    500,
                    "text/html",
                    "<html><body>Internal Server Error</body></html>".into(),
                ),
            },
            _ => (404, "text/html", "<html>not found</html>".into()),
        })
    }

    #[test]
    fn a_legacy_dialect_is_seen_as_the_spec() {
        let op = legacy_op();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "gw.toml", LEGACY_PROFILE);
        let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);

        let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_eq!(ack.status, 200, "{}", ack.text());
        let a = ack.json();
        assert_eq!(a["auth_req_id"], "legacy-1", "request_id renamed");
        assert_eq!(a["expires_in"], 60, "missing expires_in filled");
        assert_eq!(a["interval"], 1, "pollInterval renamed, then enforced");
        assert!(a.get("request_id").is_none());

        let pending = poll(&gw.addr(), POST_CLIENT, "legacy-1");
        assert_eq!(pending.status, 400, "200 with an error body becomes a 400");
        assert_eq!(pending.error(), "authorization_pending");
        assert_eq!(pending.header("cache-control"), Some("no-store"));
        // The enforced interval is 1 s here; wait it out, as a well-behaved client does.
        std::thread::sleep(Duration::from_millis(1_100));
        let tokens = poll(&gw.addr(), POST_CLIENT, "legacy-1");
        assert_eq!(tokens.status, 200, "{}", tokens.text());
        assert_eq!(tokens.json()["access_token"], "at-1");
        assert_eq!(tokens.header("cache-control"), Some("no-store"));
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, "legacy-1").error(),
            "invalid_grant"
        );
        assert_eq!(
            op.count("/legacy/token"),
            2,
            "the used-up id never reached the OP again"
        );

        let weird = poll(&gw.addr(), POST_CLIENT, "weird");
        assert_eq!(weird.status, 400);
        assert_eq!(
            weird.error(),
            "weird_thing",
            "an unknown code passes through as JSON"
        );
        assert_eq!(weird.header("content-type"), Some("application/json"));

        let denied = poll(&gw.addr(), POST_CLIENT, "denied");
        assert_eq!(
            (denied.status, denied.error()),
            (400, "access_denied".to_string())
        );

        let html = poll(&gw.addr(), POST_CLIENT, "html");
        assert_eq!(html.status, 502);
        assert_eq!(html.error(), "server_error");
        assert!(!html.text().contains("<html>"));

        gw.metrics_containing(&[
            r#"ciba_gateway_upstream_unknown_errors_total{endpoint="token"} 1"#,
        ]);
        assert_eq!(
            op.count("/backchannel"),
            0,
            "the OP only ever saw its own paths"
        );
    }

    #[test]
    fn node_oidc_provider_on_a_vendor_path_behind_a_path_mapping() {
        let op = TestOp::start(&[
            "--backchannel-path",
            "/op/connect/ciba",
            "--token-path",
            "/op/connect/token",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            "gw.toml",
            "[profile.paths]\n\"/backchannel\" = \"/op/connect/ciba\"\n\"/token\" = \"/op/connect/token\"\n",
        );
        let gw = Gateway::start(&op.url(), &["--config", cfg.to_str().unwrap()]);
        let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
        assert_eq!(
            d["backchannel_authentication_endpoint"],
            format!("{}/backchannel", gw.url())
        );
        assert_eq!(d["token_endpoint"], format!("{}/token", gw.url()));

        let id = initiate(&gw.addr(), POST_CLIENT, "alice").json()["auth_req_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            poll(&gw.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        op.approve(&id);
        std::thread::sleep(Duration::from_millis(5_100));
        assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).status, 200);
        let stats = op.stats();
        assert_eq!(stats["backchannel"], 1);
        assert_eq!(stats["token"], 2);
        assert!(stats["by_path"].get("/backchannel").is_none());
    }

    /// Each shipped profile, in front of node-oidc-provider serving that vendor's paths.
    #[test]
    fn every_shipped_profile_runs_a_flow() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/profiles");
        let lht_jwt = {
            use base64::Engine;
            let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            format!(
                "{}.{}.c2ln",
                b(r#"{"alg":"HS256","typ":"JWT"}"#),
                b(r#"{"sub_id":{"format":"email","email":"ann@example.com"}}"#)
            )
        };
        // (profile, the OP's backchannel path, its token path, vendor-specific parameters)
        type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, String)>);
        let cases: Vec<Case> = vec![
            (
                "signaturgruppen",
                "/op/connect/ciba",
                "/op/connect/token",
                vec![
                    ("login_hint_token", r#"{"flow_type":"broker_oidc"}"#.into()),
                    ("prompt", "login".into()),
                    ("idp_values", "mitid".into()),
                ],
            ),
            (
                "gravitee",
                "/my-domain/oidc/ciba/authenticate",
                "/my-domain/oauth/token",
                vec![("login_hint_token", lht_jwt)],
            ),
            (
                "bc-authorize",
                "/master/bc-authorize",
                "/master/token",
                vec![
                    ("login_hint", "user".into()),
                    ("user_code", "password".into()),
                ],
            ),
            (
                "idura",
                "/ciba/bc-authorize",
                "/oauth2/token",
                vec![
                    ("login_hint", "sub:ssn:196802020575".into()),
                    ("binding_message", "Code 1234".into()),
                ],
            ),
        ];
        let mut seen = 0;
        for (name, bc, token, params) in cases {
            let op = TestOp::start(&["--backchannel-path", bc, "--token-path", token]);
            let file = root.join(format!("{name}.toml"));
            let gw = Gateway::start(&op.url(), &["--config", file.to_str().unwrap()]);
            let d = get(&gw.addr(), "/.well-known/openid-configuration").json();
            assert_eq!(
                d["backchannel_authentication_endpoint"],
                format!("{}/backchannel", gw.url()),
                "{name}"
            );
            let mut form = vec![
                ("client_id", POST_CLIENT.0.to_string()),
                ("client_secret", POST_CLIENT.1.to_string()),
                ("scope", "openid".to_string()),
            ];
            form.extend(params);
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let ack = post_form(&gw.addr(), "/backchannel", &pairs, &[]);
            assert_eq!(ack.status, 200, "{name}: {}", ack.text());
            assert_eq!(ack.json()["interval"], 5, "{name}");
            let id = ack.json()["auth_req_id"].as_str().unwrap().to_string();
            let r = post_form(
                &gw.addr(),
                "/token",
                &[
                    ("client_id", POST_CLIENT.0),
                    ("client_secret", POST_CLIENT.1),
                    ("grant_type", CIBA_GRANT),
                    ("auth_req_id", &id),
                ],
                &[],
            );
            assert_eq!(r.error(), "authorization_pending", "{name}");
            let stats = op.stats();
            assert_eq!(stats["by_path"][bc], 1, "{name}: {stats}");
            assert_eq!(stats["by_path"][token], 1, "{name}: {stats}");
            if name == "signaturgruppen" {
                let token = op.last_backchannel()["params"]["login_hint_token"].clone();
                assert_eq!(
                    token, r#"{"flow_type":"broker_oidc","idp_values":"mitid","prompt":"login"}"#,
                    "top-level broker parameters folded into the token"
                );
                let cancel = raw(
                    &gw.addr(),
                    format!("DELETE /op/api/v1/ciba/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
                );
                assert_eq!(cancel.status, 204, "{name}: the cancel call passes through");
            }
            seen += 1;
        }
        let shipped = std::fs::read_dir(&root).unwrap().count();
        assert_eq!(seen, shipped, "every file in conf/profiles has a case here");
    }
}

mod replicas {
    use super::redis_store::RedisServer;
    use super::support::*;

    fn replica(
        op: &TestOp,
        redis: &RedisServer,
        failure_mode: &str,
    ) -> (Gateway, tempfile::TempDir) {
        let text = format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 300\nfailure_mode = \"{failure_mode}\"\n",
            redis.url()
        );
        Gateway::with_config(&op.url(), &text)
    }

    #[test]
    fn a_client_alternating_between_replicas_still_gets_slow_down() {
        let op = TestOp::start(&[]);
        let redis = RedisServer::start();
        let (a, _da) = replica(&op, &redis, "closed");
        let (b, _db) = replica(&op, &redis, "closed");
        let id = auth_req_id(&initiate(&a.addr(), POST_CLIENT, "alice"));
        assert_eq!(
            poll(&b.addr(), POST_CLIENT, &id).error(),
            "authorization_pending",
            "B knows A's ack"
        );
        assert_eq!(poll(&a.addr(), POST_CLIENT, &id).error(), "slow_down");
        assert_eq!(poll(&b.addr(), POST_CLIENT, &id).error(), "slow_down");
        assert_eq!(poll(&b.addr(), OTHER_CLIENT, &id).error(), "invalid_grant");
        assert_eq!(op.token_count(), 1, "only one poll reached the OP");
        a.metrics_containing(&["ciba_gateway_store_duration_seconds_count{op=\"poll\"}"]);
    }

    #[test]
    fn a_restarted_replica_keeps_enforcing() {
        let op = TestOp::start(&[]);
        let redis = RedisServer::start();
        let (first, d1) = replica(&op, &redis, "closed");
        let id = auth_req_id(&initiate(&first.addr(), POST_CLIENT, "alice"));
        assert_eq!(
            poll(&first.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        drop(first);
        drop(d1);
        let (second, _d2) = replica(&op, &redis, "closed");
        assert_eq!(poll(&second.addr(), POST_CLIENT, &id).error(), "slow_down");
        assert_eq!(op.token_count(), 1);
    }

    #[test]
    fn redis_down_follows_the_failure_mode_and_recovers() {
        let op = TestOp::start(&[]);
        let mut redis = RedisServer::start();
        let (closed, _dc) = replica(&op, &redis, "closed");
        let (open, _do) = replica(&op, &redis, "open");
        let id = auth_req_id(&initiate(&closed.addr(), POST_CLIENT, "alice"));
        assert_eq!(
            poll(&closed.addr(), POST_CLIENT, &id).error(),
            "authorization_pending"
        );
        redis.stop();
        let refused = poll(&closed.addr(), POST_CLIENT, &id);
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.error(), "temporarily_unavailable");
        assert!(refused.header("retry-after").is_some());
        let before = op.token_count();
        let forwarded = poll(&open.addr(), POST_CLIENT, &id);
        assert_eq!(
            forwarded.error(),
            "authorization_pending",
            "open: forwarded to the OP"
        );
        assert_eq!(op.token_count(), before + 1);
        open.metrics_containing(&["ciba_gateway_store_errors_total{op=\"poll\"}"]);
        // Redis comes back (empty: it kept nothing on disk); the gateways reconnect by themselves.
        redis.spawn();
        // Reconnection is automatic but not instant: retry, bounded, until Redis answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let ack = loop {
            let r = initiate(&closed.addr(), POST_CLIENT, "bob");
            if r.status != 503 || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let id2 = auth_req_id(&ack);
        assert_eq!(
            poll(&closed.addr(), POST_CLIENT, &id2).error(),
            "authorization_pending"
        );
        assert_eq!(poll(&open.addr(), POST_CLIENT, &id2).error(), "slow_down");
    }
}

mod faults {
    use super::support::*;
    use std::time::{Duration, Instant};

    fn configured_paths(dir: &std::path::Path, extra: &str) -> String {
        let cfg = write_config(
            dir,
            "gw.toml",
            &format!("[upstream]\nbackchannel_path = \"/backchannel\"\ntoken_path = \"/token\"\nconnect_timeout_ms = 500\nread_timeout_ms = 800\n{extra}"),
        );
        cfg.to_str().unwrap().to_string()
    }

    fn assert_json_error(r: &Resp, status: u16, code: &str) {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.error(), code);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn refused_upstream_is_a_json_503() {
        let dir = tempfile::tempdir().unwrap();
        let dead = format!("http://127.0.0.1:{}", free_port());
        let gw = Gateway::start(&dead, &["--config", &configured_paths(dir.path(), "")]);
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_json_error(&r, 503, "temporarily_unavailable");
        assert!(r.header("retry-after").is_some());
        let other = get(&gw.addr(), "/jwks");
        assert_json_error(&other, 503, "temporarily_unavailable");
    }

    #[test]
    fn a_hanging_upstream_times_out_with_a_json_504() {
        let stub = Stub::start(StubMode::Hang);
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(
            &stub.url(),
            &["--config", &configured_paths(dir.path(), "")],
        );
        for path in ["/token", "/jwks"] {
            let start = Instant::now();
            let r = if path == "/token" {
                poll(&gw.addr(), POST_CLIENT, "some-id")
            } else {
                get(&gw.addr(), path)
            };
            let took = start.elapsed();
            assert_json_error(&r, 504, "temporarily_unavailable");
            assert!(took < Duration::from_secs(5), "{path} took {took:?}");
        }
    }

    #[test]
    fn a_pooled_connection_the_op_dropped_after_reading_is_not_retried() {
        use std::sync::atomic::Ordering;
        let stub = DroppingStub::start(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"error\":\"authorization_pending\"}",
        );
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(
            &stub.url(),
            &["--config", &configured_paths(dir.path(), "")],
        );
        let first = poll(&gw.addr(), POST_CLIENT, "some-id");
        assert_json_error(&first, 400, "authorization_pending");
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
        // The second poll goes out on the pooled connection; the stub reads it whole and
        // drops the connection. The OP may have acted on it, so it is not sent again.
        let second = poll(&gw.addr(), POST_CLIENT, "other-id");
        assert_json_error(&second, 502, "server_error");
        assert_eq!(stub.requests.load(Ordering::SeqCst), 2);
        assert_eq!(stub.connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_html_500_becomes_a_json_502() {
        let stub = Stub::start(StubMode::Answer(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n<html>secret stack</html>\r\n",
        ));
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(
            &stub.url(),
            &["--config", &configured_paths(dir.path(), "")],
        );
        let r = poll(&gw.addr(), POST_CLIENT, "some-id");
        assert_json_error(&r, 502, "server_error");
        assert!(!r.text().contains("secret stack"));
    }

    #[test]
    fn a_reset_upstream_is_a_json_502() {
        let stub = Stub::start(StubMode::Reset);
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(
            &stub.url(),
            &["--config", &configured_paths(dir.path(), "")],
        );
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_json_error(&r, 502, "server_error");
    }

    #[test]
    fn without_discovery_the_gateway_is_not_ready_and_refuses() {
        let dead = format!("http://127.0.0.1:{}", free_port());
        let gw = Gateway::spawn(&dead, &[]);
        assert_eq!(get(&gw.metrics_addr(), "/healthz").status, 200);
        assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(gw.addr()).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_json_error(&r, 503, "temporarily_unavailable");
        while !gw.log().contains("discovery from") {
            assert!(
                Instant::now() < deadline,
                "no discovery warning:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_upstream_host_that_does_not_resolve_is_not_fatal() {
        // .invalid never resolves (RFC 6761). Nothing may reach an OP, so none is started:
        // the gateway must stay up, say not ready, refuse with JSON, and say why.
        let dir = tempfile::tempdir().unwrap();
        let cfg = configured_paths(dir.path(), "discovery_retry_seconds = 1\n");
        let mut gw = Gateway::spawn(
            &format!("http://no-such-host.invalid:{}", free_port()),
            &["--config", &cfg],
        );
        assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(gw.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "no proxy listener:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = poll(&gw.addr(), POST_CLIENT, "some-id");
        assert_json_error(&r, 503, "temporarily_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("host name"));
        let pass = get(&gw.addr(), "/jwks");
        assert_json_error(&pass, 503, "temporarily_unavailable");
        // At least two failed lookups: the first, then a retry on the 1 s schedule.
        while gw.log().matches("upstream.url: cannot resolve").count() < 2 {
            assert!(
                Instant::now() < deadline,
                "no retried lookup:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw.metrics_containing(&["ciba_gateway_ready 0"]);
        let m = get(&gw.metrics_addr(), "/metrics").text();
        let failures: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("ciba_gateway_upstream_resolve_failures_total "))
            .expect("the resolve failure counter is exported")
            .parse()
            .unwrap();
        assert!(failures >= 2, "{m}");
        assert!(
            gw.wait_exit(Duration::from_millis(1)).is_none(),
            "the gateway exited"
        );
        assert!(!gw.log().contains("panicked"), "{}", gw.log());
    }

    #[test]
    fn a_host_name_upstream_is_resolved() {
        // The OP listens where the system resolves `localhost` first, so the gateway's
        // lookup (the system resolver too) finds it whatever this machine's hosts file says.
        use std::net::ToSocketAddrs;
        let first = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
        let op = TestOp::start(&["--host", &first.ip().to_string()]);
        let gw = Gateway::start(&format!("http://localhost:{}", op.port), &[]);
        assert!(
            gw.log().contains("upstream.url: host resolved"),
            "{}",
            gw.log()
        );
        let ack = initiate(&gw.addr(), POST_CLIENT, "alice");
        assert_eq!(ack.status, 200, "{}", ack.text());
        assert_eq!(op.backchannel_count(), 1);
        assert_eq!(op.last_hop()["host"], format!("localhost:{}", op.port));
        gw.metrics_containing(&[
            "ciba_gateway_ready 1",
            "ciba_gateway_upstream_resolve_failures_total 0",
        ]);
    }

    #[test]
    fn a_busy_listen_address_ends_the_process_naming_the_key() {
        // pingora alone would retry for 30 s and then leave a process whose /healthz
        // passes while nothing serves the proxy port.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_addr = busy.local_addr().unwrap().to_string();
        let free = format!("127.0.0.1:{}", free_port());
        for (key, listen, metrics) in [
            ("server.listen", busy_addr.as_str(), free.as_str()),
            ("server.metrics_listen", free.as_str(), busy_addr.as_str()),
        ] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
                .args(["--upstream", "http://127.0.0.1:1"])
                .args(["--listen", listen, "--metrics-listen", metrics])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let Some(status) = wait_for_exit(&mut child, Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!("the gateway kept running with {key} busy");
            };
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("{key}: cannot listen on {busy_addr}")),
                "{stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        drop(busy);
    }

    #[test]
    fn discovery_is_retried_until_the_op_answers() {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            "gw.toml",
            "[upstream]\ndiscovery_retry_seconds = 1\n",
        );
        let gw = Gateway::spawn(
            &format!("http://127.0.0.1:{port}"),
            &["--config", cfg.to_str().unwrap()],
        );
        assert_eq!(get(&gw.metrics_addr(), "/readyz").status, 503);
        let op = TestOp::start(&["--port", &port.to_string()]);
        gw.wait_ready();
        assert_eq!(initiate(&gw.addr(), POST_CLIENT, "alice").status, 200);
        drop(op);
    }
}

mod check {
    use super::support::*;
    use std::process::Command;

    fn check(path: &std::path::Path) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ciba-gateway"))
            .args(["--check", "--config"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn every_shipped_config_passes() {
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut seen = 0;
        for dir in [conf.clone(), conf.join("profiles")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.extension().is_some_and(|e| e == "toml") {
                    let (ok, err) = check(&p);
                    assert!(ok, "{}: {err}", p.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 5, "conf/gateway.toml and the four vendor profiles");
    }

    #[test]
    fn an_unresolvable_upstream_host_is_a_warning_not_an_error() {
        // The gateway starts with such a host (not ready, retrying), so --check passes it,
        // and says so.
        let dir = tempfile::tempdir().unwrap();
        let p = write_config(
            dir.path(),
            "gw.toml",
            "[upstream]\nurl = \"http://no-such-host.invalid:3000\"\n",
        );
        let (ok, err) = check(&p);
        assert!(ok, "{err}");
        assert!(
            err.contains("warning: upstream.url: cannot resolve no-such-host.invalid")
                || err
                    .contains("warning: upstream.url: no-such-host.invalid resolves to no address"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }

    #[test]
    fn bad_configs_fail_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "[upstream]\nurl = \"http://a\"\ntimeout = 5\n",
                "unknown field `timeout`",
            ),
            ("[upstream]\nurl = \"gopher://a\"\n", "upstream.url"),
            (
                "[server]\nlisten = \"localhost\"\n[upstream]\nurl = \"http://a\"\n",
                "server.listen",
            ),
            (
                "[server]\nthreads = 0\n[upstream]\nurl = \"http://a\"\n",
                "server.threads",
            ),
            (
                "[upstream]\nurl = \"http://a\"\nconnect_timeout_ms = -1\n",
                "connect_timeout_ms",
            ),
            ("[logging]\nlevel = \"info\"\n", "upstream.url: is required"),
            ("not toml at all [", "TOML parse error"),
            ("[upstream]\nurl = \"http://a:99999\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http://a:65536\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http://a:abc\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http://a:\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http://a:-1\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http://:8080\"\n", "upstream.url"),
            ("[upstream]\nurl = \"http:///x\"\n", "upstream.url"),
            (
                "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"verbose\"\n",
                "logging.level",
            ),
            (
                "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"infoo\"\n",
                "logging.level",
            ),
            (
                "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"ciba_gateway=loud\"\n",
                "trace, debug, info, warn, error, off",
            ),
        ];
        for (i, (text, expect)) in cases.iter().enumerate() {
            let p = write_config(dir.path(), &format!("bad{i}.toml"), text);
            let (ok, err) = check(&p);
            assert!(!ok, "{text:?} was accepted");
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}
