//! What the gateway refuses before the OP: strict form parsing, backchannel request
//! validation (CIBA 7.1), `login_hint_token` normalization, per-client rules, one client
//! authentication method per request (`client_auth.rs`).

mod client_auth;

use crate::support::*;
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
    // The table the unit tests of `ciba::authorize` replay through the validator.
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../data/hostile_backchannel.json")).unwrap();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let body = case["body"].as_str().unwrap();
        let code = case["error"].as_str().unwrap();
        let status = u16::try_from(case["status"].as_u64().unwrap()).unwrap();
        let form = "application/x-www-form-urlencoded";
        assert_refused_at_edge(&op, OpCount::Backchannel, (status, code), name, || {
            post_raw(&gw.addr(), "/backchannel", form, body.as_bytes(), "")
        });
    }
    assert_eq!(op.backchannel_count(), 0);
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
    for (what, token, extra) in [
        (
            "two different values",
            r#"{"flow_type":"broker_oidc","prompt":"none"}"#,
            &[("prompt", "login")][..],
        ),
        ("schema: allowed values", r#"{"flow_type":"other"}"#, &[]),
        ("schema: required key", r#"{"idp":"mitid"}"#, &[]),
    ] {
        let refused = (400, "invalid_request");
        assert_refused_at_edge(&op, OpCount::Backchannel, refused, what, || {
            send(&gw, &op, token, extra).0
        });
    }
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
    let refused = (400, "invalid_binding_message");
    assert_refused_at_edge(&op, OpCount::Backchannel, refused, "13 > 10", || {
        post_form(
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
        )
    });
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
    let refused = (400, "missing_user_code");
    assert_refused_at_edge(&op, OpCount::Backchannel, refused, "no user_code", || {
        other(&[])
    });
    assert_eq!(op.backchannel_count(), 0);
    let r = other(&[("user_code", "1234")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(op.last_backchannel()["params"]["binding_message"], bm);
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
        let expect = if status == 401 {
            "invalid_client"
        } else {
            "invalid_request"
        };
        let r = assert_refused_at_edge(&op, OpCount::Backchannel, (status, expect), name, || {
            post_raw(&gw.addr(), "/backchannel", ct, &body, extra)
        });
        assert_eq!(r.header("cache-control"), Some("no-store"), "{name}");
    }
    assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (405, "invalid_request"),
        "GET",
        || get(&gw.addr(), "/backchannel"),
    );
    assert_refused_at_edge(
        &op,
        OpCount::Token,
        (400, "invalid_request"),
        "CL+TE",
        || {
            raw(
            &gw.addr(),
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        )
        },
    );
    assert_eq!(
        op.backchannel_count(),
        0,
        "no refused request reached the OP"
    );
    assert_eq!(op.token_count(), 0);
}

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
    let r = assert_refused_at_edge(
        &op,
        OpCount::Backchannel,
        (400, "invalid_request"),
        "1025",
        || send(&long),
    );
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
