//! Every spelling of the gateway's paths goes through the gateway's pipeline (`normalize`)
//! or is refused (`refuse`), never past it to the OP; other paths pass through untouched.
//!
//! One OP and one gateway per mode, reused across all rows: each row is one request with
//! hand-written bytes (`raw`), so the request-target reaches the gateway exactly as spelled.

use crate::support::*;
use std::collections::BTreeSet;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const METADATA: &str = "/.well-known/oauth-authorization-server";
const CONFIG: &str = "[polling]\nmin_interval_seconds = 1\n\
    [rate_limit]\nenabled = false\n";

/// How a row sends its target: origin-form over HTTP/1.1 or 1.0, or absolute-form.
#[derive(Clone)]
struct Row {
    label: String,
    target: Vec<u8>,
    version: &'static str,
    host: String,
}

fn enc(s: &str, pick: impl Fn(usize, u8) -> bool, lower: bool) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if pick(i, b) {
            let e = format!("%{b:02X}");
            out.push_str(&if lower { e.to_lowercase() } else { e });
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Spellings of `path` that some OP router sends to it (or that fold onto it), as targets.
pub(crate) fn spellings(path: &str) -> Vec<String> {
    let body = &path[1..];
    let (head, last) = path.rsplit_once('/').unwrap();
    let alt: String = path
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let first = path.bytes().position(|b| b.is_ascii_alphabetic()).unwrap();
    let mut v = vec![
        // Letter case and trailing slashes (node-oidc-provider, ASP.NET Core, httprouter).
        path.to_uppercase(),
        alt.clone(),
        format!("{path}/"),
        format!("{}/", path.to_uppercase()),
        format!("{alt}//"),
        // Repeated slashes and dot segments (RFC 3986 5.2.4, Go's CleanPath, Kestrel).
        format!("/{path}"),
        format!("///{body}"),
        format!("/./{body}"),
        format!("/x/../{body}"),
        format!("/x/y/../../{body}"),
        format!("/../{body}"),
        format!("{head}/./{last}"),
        format!("{path}/."),
        format!("{path}/x/.."),
        format!("/x/%2e%2e/{body}"),
        format!("/x/.%2E/{body}"),
        format!("/%2e/{body}"),
        // Percent-encoding (RFC 3986 6.2.2.2; decoding routers; double decoding).
        enc(path, |i, _| i == first, false),
        enc(path, |i, _| i == first, true),
        enc(path, |_, b| b.is_ascii_alphanumeric(), false),
        enc(path, |_, b| b.is_ascii_alphanumeric(), true),
        enc(
            path,
            |i, b| b == b'/' && i > 0 || i == path.len() - 1,
            false,
        ),
        enc(
            &enc(path, |i, _| i == first, false),
            |_, b| b == b'%',
            false,
        ),
        format!("{path}%2F"),
        // Path parameters, NUL, encoded delimiters, IIS trailing dots and spaces.
        format!("{path};jsessionid=1"),
        format!("{head};v=1/{last}"),
        format!("/x/..;/{body}"),
        format!("{path}%00"),
        format!("{path}%00.html"),
        format!("{path}%3Fx=1"),
        format!("{path}%23x"),
        format!("{path}."),
        format!("{path}%20"),
        // Backslashes (WHATWG URL, IIS).
        format!("{path}\\"),
        format!("\\{body}"),
        format!("/x\\..\\{body}"),
        format!("{path}%5c"),
        // Non-ASCII letters that fold to ASCII (Go, .NET, JavaScript, NFKC).
        path.replace('o', "ｏ"),
        path.replace('t', "ｔ").replace('e', "Ｅ"),
        // With a query.
        format!("{}?x=1", path.to_uppercase()),
        format!("{path}/?a=b&c"),
    ];
    if path.contains('i') {
        v.push(path.replace('i', "ı"));
        v.push(path.replace('i', "İ"));
    }
    if path.contains("fi") {
        v.push(path.replace("fi", "\u{FB01}"));
        v.push(path.replace("fi", "%EF%AC%81"));
    }
    if path.contains('k') {
        v.push(path.replace('k', "\u{212A}"));
    }
    if path.contains('s') {
        v.push(path.replace('s', "ſ"));
    }
    v.retain(|s| s != path);
    v
}

/// Every spelling in every request-target form: origin-form over HTTP/1.1 and HTTP/1.0,
/// absolute-form (any host: the gateway routes by path, as the OP would).
fn rows(path: &str, gw: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for s in spellings(path) {
        rows.push(Row {
            label: s.clone(),
            target: s.clone().into_bytes(),
            version: "HTTP/1.1",
            host: gw.to_string(),
        });
    }
    let upper = path.to_uppercase();
    let first = path.bytes().position(|b| b.is_ascii_alphabetic()).unwrap();
    for (target, version, host) in [
        (
            format!("http://any-host.example{upper}"),
            "HTTP/1.1",
            "any-host.example",
        ),
        (
            format!("http://any-host.example:8080{path}/"),
            "HTTP/1.1",
            "any-host.example:8080",
        ),
        (
            format!("HTTP://any-host.example{path}/."),
            "HTTP/1.1",
            "any-host.example",
        ),
        (
            format!(
                "https://any-host.example{}",
                enc(path, |i, _| i == first, true)
            ),
            "HTTP/1.1",
            "any-host.example",
        ),
        (format!("http://{gw}{upper}"), "HTTP/1.0", gw),
        (upper.clone(), "HTTP/1.0", gw),
        (format!("{path}//"), "HTTP/1.0", gw),
    ] {
        rows.push(Row {
            label: format!("{target} {version}"),
            target: target.into_bytes(),
            version,
            host: host.to_string(),
        });
    }
    assert!(rows.len() >= 40, "{path}: {} rows", rows.len());
    rows
}

fn send(gw: &str, method: &str, row: &Row, headers: &str, body: &str) -> Resp {
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(&row.target);
    req.extend_from_slice(
        format!(
            " {}\r\nHost: {}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            row.version,
            row.host,
            body.len()
        )
        .as_bytes(),
    );
    raw(gw, &req)
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

fn poll_body(id: &str) -> String {
    encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", id),
    ])
}

/// A backchannel request the gateway refuses (no `scope`) and the OP would too.
fn invalid_backchannel_body() -> String {
    encode_form(&[
        ("client_id", POST_CLIENT.0),
        ("client_secret", POST_CLIENT.1),
        ("login_hint", "alice"),
    ])
}

fn by_path(op: &TestOp) -> BTreeSet<String> {
    op.stats()["by_path"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn normalize_sends_every_spelling_through_the_pipeline() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(
        &op.url(),
        &format!("[routing]\nvariants = \"normalize\"\n{CONFIG}"),
    );
    let addr = gw.addr();

    // An acknowledged auth_req_id, polled once (the first poll is always let through).
    let id = auth_req_id(&initiate(&addr, POST_CLIENT, "alice"));
    assert_eq!(
        poll(&addr, POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    let (bc, tk) = (op.backchannel_count(), op.token_count());
    assert_eq!((bc, tk), (1, 1));

    for row in rows("/backchannel", &addr) {
        let r = send(&addr, "POST", &row, FORM, &invalid_backchannel_body());
        assert_eq!(r.status, 400, "{}: {}", row.label, r.text());
        assert_eq!(r.error(), "invalid_request", "{}", row.label);
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("scope"),
            "{}: {}",
            row.label,
            r.text()
        );
        assert_eq!(op.backchannel_count(), bc, "{} reached the OP", row.label);
    }
    for row in rows("/token", &addr) {
        let r = send(&addr, "POST", &row, FORM, &poll_body(&id));
        assert_eq!(r.status, 400, "{}: {}", row.label, r.text());
        assert_eq!(r.error(), "slow_down", "{}: {}", row.label, r.text());
        assert_eq!(op.token_count(), tk, "{} reached the OP", row.label);
    }
    for row in rows(DISCOVERY, &addr) {
        let r = send(&addr, "GET", &row, "", "");
        assert_eq!(r.status, 200, "{}: {}", row.label, r.text());
        let doc = r.json();
        assert_eq!(
            doc["token_endpoint"],
            format!("http://{}/token", row.host),
            "{}: the OP's own document",
            row.label
        );
        assert_eq!(
            doc["backchannel_authentication_endpoint"],
            format!("http://{}/backchannel", row.host),
            "{}",
            row.label
        );
    }

    // RFC 8414 metadata, which the test OP publishes too: rewritten the same way.
    for row in rows(METADATA, &addr) {
        let r = send(&addr, "GET", &row, "", "");
        assert_eq!(r.status, 200, "{}: {}", row.label, r.text());
        assert_eq!(
            r.json()["token_endpoint"],
            format!("http://{}/token", row.host),
            "{}",
            row.label
        );
    }
    other_methods_on_the_documents_are_refused(&op, &addr, 405);

    // A variant is the endpoint all the way: the ack is tracked, the OP sees its own path.
    let ack = send(
        &addr,
        "POST",
        &Row {
            label: "ack".into(),
            target: b"/BACKCHANNEL/".to_vec(),
            version: "HTTP/1.1",
            host: addr.clone(),
        },
        FORM,
        &encode_form(&[
            ("client_id", POST_CLIENT.0),
            ("client_secret", POST_CLIENT.1),
            ("scope", "openid"),
            ("login_hint", "bob"),
        ]),
    );
    let id2 = auth_req_id(&ack);
    assert!(
        ack.json()["interval"].is_u64(),
        "the ack was rewritten: {}",
        ack.text()
    );
    let variant = |t: &str| Row {
        label: t.into(),
        target: t.as_bytes().to_vec(),
        version: "HTTP/1.1",
        host: addr.clone(),
    };
    let first = send(&addr, "POST", &variant("/%54oken"), FORM, &poll_body(&id2));
    assert_eq!(first.error(), "authorization_pending", "{}", first.text());
    let second = send(&addr, "POST", &variant("/./Token/"), FORM, &poll_body(&id2));
    assert_eq!(second.error(), "slow_down", "tracked: {}", second.text());
    assert_eq!(
        by_path(&op),
        BTreeSet::from([
            "/backchannel".to_string(),
            "/token".into(),
            DISCOVERY.into(),
            METADATA.into()
        ]),
        "the OP saw only the endpoints' own paths"
    );

    unrelated_paths_pass_through(&op, &addr);
    ambiguous_targets_are_refused(&op, &addr);
}

#[test]
fn refuse_answers_every_variant_with_a_json_404() {
    let op = TestOp::start(&[]);
    let (gw, _dir) = Gateway::with_config(
        &op.url(),
        &format!("[routing]\nvariants = \"refuse\"\n{CONFIG}"),
    );
    let addr = gw.addr();
    // The exact spellings work.
    let id = auth_req_id(&initiate(&addr, POST_CLIENT, "alice"));
    assert_eq!(
        poll(&addr, POST_CLIENT, &id).error(),
        "authorization_pending"
    );
    let doc = get(&addr, DISCOVERY).json();
    assert_eq!(doc["token_endpoint"], format!("http://{addr}/token"));
    let before = op.stats();

    for (path, method, body) in [
        ("/backchannel", "POST", invalid_backchannel_body()),
        ("/token", "POST", poll_body(&id)),
        (DISCOVERY, "GET", String::new()),
        (METADATA, "GET", String::new()),
    ] {
        for row in rows(path, &addr) {
            let r = send(&addr, method, &row, FORM, &body);
            assert_eq!(r.status, 404, "{}: {}", row.label, r.text());
            assert_eq!(r.error(), "invalid_request", "{}", row.label);
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{}",
                row.label
            );
        }
    }
    assert_eq!(op.stats(), before, "a variant reached the OP");
    other_methods_on_the_documents_are_refused(&op, &addr, 404);

    unrelated_paths_pass_through(&op, &addr);
    ambiguous_targets_are_refused(&op, &addr);
}

/// POST, PUT, DELETE, OPTIONS or PATCH on any spelling of a metadata document: a JSON 405
/// from the gateway (or the `variant` status a spelling gets), never the OP (only GET and
/// HEAD are served).
fn other_methods_on_the_documents_are_refused(op: &TestOp, addr: &str, variant: u16) {
    let before = op.stats();
    for path in [DISCOVERY, METADATA] {
        let mut all = rows(path, addr);
        all.push(Row {
            label: path.into(),
            target: path.as_bytes().to_vec(),
            version: "HTTP/1.1",
            host: addr.to_string(),
        });
        for (i, row) in all.iter().enumerate() {
            let method = ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"][i % 5];
            let r = send(addr, method, row, FORM, "a=b");
            let status = if row.target == path.as_bytes() {
                405
            } else {
                variant
            };
            assert_eq!(r.status, status, "{method} {}: {}", row.label, r.text());
            assert_eq!(r.error(), "invalid_request", "{}", row.label);
        }
    }
    assert_eq!(
        op.stats(),
        before,
        "another method on a document reached the OP"
    );
}

/// Paths that only look like the gateway's reach the OP as they were sent.
fn unrelated_paths_pass_through(op: &TestOp, addr: &str) {
    let r = get(addr, "/jwks");
    assert_eq!(r.status, 200);
    assert!(r.json()["keys"].is_array());
    for path in [
        "/tokenx",
        "/token2",
        "/backchannelx",
        "/x/token",
        "/tok%65n2",
        "/.well-known/openid-configurationx",
    ] {
        let r = post_form(addr, path, &[("a", "b")], &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(
            op.stats()["by_path"][path],
            1,
            "{path} did not reach the OP untouched"
        );
    }
}

/// Targets that routers read differently, one of them as an endpoint: a JSON 400 in both
/// modes, never the OP.
fn ambiguous_targets_are_refused(op: &TestOp, addr: &str) {
    let before = op.stats();
    for target in [
        "/token/..;/..",
        "/token/%2e%2e/..",
        "/token//..",
        "/jwks%00/../token",
        "/backchannel/a\\b/..",
        "//evil.example/token",
        "/%25252574oken",
        "/x/../.well-known/openid-configuration/x",
    ] {
        let r = raw(
            addr,
            format!("POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{FORM}Content-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        assert_eq!(r.error(), "invalid_request", "{target}");
    }
    assert_eq!(op.stats(), before, "an ambiguous target reached the OP");
}

/// An OP's RFC 8414 metadata is served rewritten like the discovery document (the OP's
/// internal URLs replaced by the gateway's), under every spelling; an OP that does not
/// publish it gets a JSON 404 in its place.
#[test]
fn authorization_server_metadata_is_rewritten_or_a_json_404() {
    let internal = r#"{"issuer":"https://op.example","token_endpoint":"http://10.0.0.7:9000/token","backchannel_authentication_endpoint":"http://10.0.0.7:9000/backchannel","jwks_uri":"http://10.0.0.7:9000/jwks"}"#;
    let path = |r: &StubRequest| r.path.split('?').next().unwrap_or("").to_string();
    for published in [true, false] {
        let op = ScriptedOp::start(move |req| match path(req).as_str() {
            DISCOVERY => (200, "application/json", internal.to_string()),
            METADATA if published => (200, "application/json", internal.to_string()),
            _ => (404, "text/html", "<html>not found</html>".into()),
        });
        let fetched = || {
            let seen = op.seen.lock().unwrap();
            seen.iter().filter(|r| path(r) == METADATA).count()
        };
        let (gw, _dir) = Gateway::with_config(&op.url(), CONFIG);
        let addr = gw.addr();
        let mut all = rows(METADATA, &addr);
        all.push(Row {
            label: METADATA.into(),
            target: METADATA.as_bytes().to_vec(),
            version: "HTTP/1.1",
            host: addr.clone(),
        });
        for row in &all {
            let r = send(&addr, "GET", row, "", "");
            assert_eq!(r.header("content-type"), Some("application/json"));
            if !published {
                assert_eq!(r.status, 404, "{}: {}", row.label, r.text());
                assert_eq!(r.error(), "invalid_request", "{}", row.label);
                continue;
            }
            assert_eq!(r.status, 200, "{}: {}", row.label, r.text());
            let doc = r.json();
            assert_eq!(doc["issuer"], "https://op.example", "{}", row.label);
            for key in [
                "token_endpoint",
                "backchannel_authentication_endpoint",
                "jwks_uri",
            ] {
                let url = doc[key].as_str().unwrap();
                assert!(
                    url.starts_with(&format!("http://{}/", row.host)),
                    "{}: {key} = {url}",
                    row.label
                );
            }
            assert!(!r.text().contains("10.0.0.7"), "{}", row.label);
        }
        assert_eq!(fetched(), all.len(), "each GET fetched the exact path");
        let r = send(&addr, "POST", &all[all.len() - 1], FORM, "a=b");
        assert_eq!(r.status, 405, "{}", r.text());
        assert_eq!(fetched(), all.len());
    }
}
