//! A whole CIBA flow through the TLS listener to node-oidc-provider, over HTTP/1.1 and over
//! HTTP/2: backchannel request, a pending poll, tokens, the used-up id (refused at the edge).

use super::*;

const INTERVAL: Duration = Duration::from_millis(1_100);

fn setup() -> (Pki, TestOp, Gateway, tempfile::TempDir) {
    let pki = Pki::new();
    let op = TestOp::start(&["--interval", "1"]);
    let (cert, key, _) = pki.server("server");
    let text = format!(
        "[polling]\nmin_interval_seconds = 1\n{}",
        tls_section(&cert, &key, "")
    );
    let (gw, dir) = Gateway::with_config(&op.url(), &text);
    (pki, op, gw, dir)
}

fn backchannel_pairs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("scope", "openid"),
        ("login_hint", "alice"),
    ]
}

fn poll_pairs(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", POST_CLIENT.0.to_string()),
        ("client_secret", POST_CLIENT.1.to_string()),
        ("grant_type", CIBA_GRANT.to_string()),
        ("auth_req_id", id.to_string()),
    ]
}

fn borrowed<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_whole_flow_over_http1_with_tls() {
    let (pki, op, gw, _dir) = setup();
    let cfg = client_config(&pki.ca.der(), &[b"http/1.1"], None);
    let addr = gw.addr();
    let ack = https_form(&addr, cfg.clone(), "/backchannel", &backchannel_pairs());
    let id = auth_req_id(&ack);
    let pending = https_form(&addr, cfg.clone(), "/token", &borrowed(&poll_pairs(&id)));
    assert_eq!(
        pending.error(),
        "authorization_pending",
        "{}",
        pending.text()
    );
    op.approve(&id);
    std::thread::sleep(INTERVAL);
    let tokens = https_form(&addr, cfg.clone(), "/token", &borrowed(&poll_pairs(&id)));
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(tokens.json()["access_token"].is_string());
    std::thread::sleep(INTERVAL);
    let again = https_form(&addr, cfg.clone(), "/token", &borrowed(&poll_pairs(&id)));
    assert_eq!(again.error(), "invalid_grant");
    // The used-up id was answered at the edge.
    assert_eq!((op.backchannel_count(), op.token_count()), (1, 2));
    // Discovery is read through TLS too.
    let d = https(
        &addr,
        cfg,
        format!("GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(d.status, 200);
    // Without server.public_url, the document names the gateway over https.
    assert_eq!(d.json()["token_endpoint"], format!("https://{addr}/token"));
}

#[test]
fn a_whole_flow_over_http2_on_one_connection() {
    let (pki, op, gw, _dir) = setup();
    let addr = gw.addr();
    let op_ref = &op;
    with_h2(&addr, &pki.ca.der(), None, |mut h2| async move {
        let op = op_ref;
        let ack = h2_send(&mut h2, &H2Req::form("/backchannel", &backchannel_pairs()))
            .await
            .unwrap();
        let id = auth_req_id(&ack);
        let poll = H2Req::form("/token", &borrowed(&poll_pairs(&id)));
        let pending = h2_send(&mut h2, &poll).await.unwrap();
        assert_eq!(
            pending.error(),
            "authorization_pending",
            "{}",
            pending.text()
        );
        assert_eq!(pending.header("cache-control"), Some("no-store"));
        op.approve(&id);
        tokio::time::sleep(INTERVAL).await;
        let tokens = h2_send(&mut h2, &poll).await.unwrap();
        assert_eq!(tokens.status, 200, "{}", tokens.text());
        assert!(tokens.json()["id_token"].is_string());
        tokio::time::sleep(INTERVAL).await;
        let again = h2_send(&mut h2, &poll).await.unwrap();
        assert_eq!(again.error(), "invalid_grant");
        // A passed-through path, with and without a body.
        // Over HTTP/2 the authority is :authority.
        let d = h2_send(&mut h2, &H2Req::get("/.well-known/openid-configuration"))
            .await
            .unwrap();
        assert_eq!(
            d.json()["token_endpoint"],
            "https://127.0.0.1/token",
            "{}",
            d.text()
        );
        let jwks = h2_send(&mut h2, &H2Req::get("/jwks")).await.unwrap();
        assert_eq!(jwks.status, 200);
        assert!(jwks.json()["keys"].is_array());
        let posted = h2_send(&mut h2, &H2Req::form("/elsewhere", &[("a", "b")]))
            .await
            .unwrap();
        assert_eq!(posted.status, 404, "the OP's own answer: {}", posted.text());
    });
    assert_eq!((op.backchannel_count(), op.token_count()), (1, 2));
    assert_eq!(op.stats()["by_path"]["/elsewhere"], 1);
}

#[test]
fn curl_speaks_http2_to_the_gateway() {
    let (pki, _op, gw, _dir) = setup();
    let ca = pki.ca_file();
    let out = std::process::Command::new("curl")
        .args(["-s", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!(
            "https://127.0.0.1:{}/.well-known/openid-configuration",
            gw.port
        ))
        .output()
        .expect("curl is needed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}
