//! Unit tests of backchannel request validation: the shared hostile-request table, each
//! parameter's rules and their per-client overrides, `login_hint_token` normalization in the
//! form, signed request objects, and the configuration's errors.

use super::*;
use crate::ciba::client_auth::claimed_client;
use crate::ciba::error::ErrorCode;
use crate::ciba::login_hint_token::{LhtRules, NestedJson, TokenFormat};
use serde::Deserialize;
use serde_json::Value;

const NOW: u64 = 1_700_000_000;

/// The pipeline's view: parse, find the client, validate.
fn run(body: &str, rules: &ValidationRules, lht: &LhtRules) -> Result<(Form, Report), OAuthError> {
    let rules = rules.clone().compile().expect("valid rules");
    let lht = lht.clone().compile().expect("valid rules");
    let mut form = Form::parse(body.as_bytes())?;
    let client = claimed_client(&form, None)?;
    let report = validate_backchannel(&mut form, client.as_ref(), &rules, &lht, NOW)?;
    Ok((form, report))
}

fn check(body: &str) -> Result<(Form, Report), OAuthError> {
    run(body, &ValidationRules::default(), &LhtRules::default())
}

fn code(body: &str) -> ErrorCode {
    check(body).map(|_| ()).unwrap_err().code
}

const C: &str = "client_id=client-post&client_secret=post-secret-0123456789";

/// Hostile and edge-case backchannel forms the gateway must refuse on its own, with the
/// expected error and HTTP status, for default rules and client `client-post` (secret
/// `post-secret-0123456789`, sent in the form). The integration tests replay the same table
/// through the gateway and check that the OP never sees a row.
const HOSTILE: &str = include_str!("../../../tests/data/hostile_backchannel.json");

/// One row of [`HOSTILE`]: `name`, `body`, `error` (the OAuth code) and `status`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostileCase {
    name: String,
    error: String,
    status: u16,
    body: String,
}

#[test]
fn hostile_table_is_refused_as_expected() {
    let cases: Vec<HostileCase> = serde_json::from_str(HOSTILE).unwrap();
    assert!(cases.len() >= 40, "{}", cases.len());
    let mut names = std::collections::HashSet::new();
    for HostileCase {
        name,
        error,
        status,
        body,
    } in cases
    {
        assert!(names.insert(name.clone()), "duplicate case name {name}");
        let e = match check(&body) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e,
        };
        assert_eq!(e.code.as_str(), error, "{name}: {}", e.description);
        assert_eq!(
            e.code.status(),
            status,
            "{name}: the table's status is the code's"
        );
        assert_eq!(e.status, status, "{name}");
        // Never echo values: none of the case's distinctive values may appear.
        for secret in ["alice", "post-secret", "8a9856e0", "mitid", "someone-else"] {
            assert!(!e.description.contains(secret), "{name}: {}", e.description);
        }
    }
}

#[test]
fn a_minimal_request_passes_untouched() {
    let body = format!(
        "{C}&scope=openid+profile&login_hint=alice&binding_message=W4SCT&requested_expiry=120"
    );
    let (form, report) = check(&body).unwrap();
    assert_eq!(report.hint, HintKind::LoginHint);
    assert!(!report.changed() && !report.repaired());
    assert_eq!(
        form.encode(),
        Form::parse(body.as_bytes()).unwrap().encode()
    );
}

#[test]
fn binding_message_counts_characters_not_bytes() {
    let ok = format!(
        "{C}&scope=openid&login_hint=a&binding_message={}",
        "%C3%A9".repeat(64)
    );
    assert!(check(&ok).is_ok());
    let emoji = format!(
        "{C}&scope=openid&login_hint=a&binding_message={}",
        "%F0%9F%98%89".repeat(64)
    );
    assert!(check(&emoji).is_ok());
    let e = check(&format!(
        "{C}&scope=openid&login_hint=a&binding_message={}",
        "%C3%A9".repeat(65)
    ))
    .unwrap_err();
    assert_eq!(
        e.description,
        "parameter `binding_message` is longer than 64 characters"
    );
    assert_eq!(e.reason, "binding_message");
}

#[test]
fn binding_message_pattern_is_anchored_and_per_client() {
    let rules: ValidationRules = toml::from_str(
        r#"
        binding_message_pattern = '[A-Z0-9]+'
        [clients."client-post"]
        binding_message_max_chars = 4
        [clients."free"]
        binding_message_pattern = ""
        "#,
    )
    .unwrap();
    rules.clone().compile().unwrap();
    let lht = LhtRules::default();
    let body = |client: &str, m: &str| {
        format!("client_id={client}&scope=openid&login_hint=a&binding_message={m}")
    };
    assert!(run(&body("other", "AB12"), &rules, &lht).is_ok());
    // Anchored: a matching prefix is not enough.
    let e = run(&body("other", "AB12x"), &rules, &lht).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidBindingMessage);
    assert!(run(&body("client-post", "ABCDE"), &rules, &lht).is_err());
    assert!(run(&body("client-post", "ABCD"), &rules, &lht).is_ok());
    assert!(run(&body("free", "any+text%21"), &rules, &lht).is_ok());
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (
            "binding_message_pattern = '('",
            "validation.binding_message_pattern:",
        ),
        (
            "binding_message_max_chars = 0",
            "validation.binding_message_max_chars:",
        ),
        (
            "requested_expiry_min = 0",
            "validation.requested_expiry_min:",
        ),
        (
            "requested_expiry_min = 10\nrequested_expiry_max = 5",
            "validation.requested_expiry_max:",
        ),
        (
            "[clients.\"c\"]\nbinding_message_pattern = '['",
            "validation.clients.\"c\".binding_message_pattern:",
        ),
        (
            "[clients.\"c\"]\nrequested_expiry_max = 0",
            "validation.clients.\"c\".requested_expiry_",
        ),
    ];
    for (toml_text, prefix) in cases {
        let rules: ValidationRules = toml::from_str(toml_text).unwrap();
        let e = rules.compile().unwrap_err().to_string();
        assert!(e.starts_with(prefix), "{toml_text}: {e}");
    }
    assert!(toml::from_str::<ValidationRules>("binding_message_max = 3").is_err());
    assert!(toml::from_str::<ValidationRules>("delivery_mode = \"carrier-pigeon\"").is_err());
    assert!(toml::from_str::<ValidationRules>("[clients.c]\nfoo = 1").is_err());
    ValidationRules::default().compile().unwrap();
    // A broken pattern never reaches a request: only a compiled policy validates one.
    let e = ValidationRules {
        binding_message_pattern: Some("(".into()),
        ..Default::default()
    }
    .compile()
    .unwrap_err();
    assert_eq!(e.key, "validation.binding_message_pattern");
}

#[test]
fn requested_expiry_bounds_follow_the_client() {
    let rules: ValidationRules = toml::from_str(
        "requested_expiry_min = 30\n[clients.\"slow\"]\nrequested_expiry_max = 1800",
    )
    .unwrap();
    let lht = LhtRules::default();
    let body =
        |c: &str, e: u64| format!("client_id={c}&scope=openid&login_hint=a&requested_expiry={e}");
    assert!(run(&body("x", 29), &rules, &lht).is_err());
    assert!(run(&body("x", 30), &rules, &lht).is_ok());
    assert!(run(&body("x", 600), &rules, &lht).is_ok());
    assert!(run(&body("x", 601), &rules, &lht).is_err());
    assert!(run(&body("slow", 1800), &rules, &lht).is_ok());
    let e = run(&body("slow", 1801), &rules, &lht).unwrap_err();
    assert_eq!(
        e.description,
        "parameter `requested_expiry` must be between 30 and 1800 seconds"
    );
}

#[test]
fn user_code_and_delivery_mode_per_client() {
    let rules: ValidationRules = toml::from_str(
        "[clients.\"uc\"]\nrequire_user_code = true\n[clients.\"pinger\"]\ndelivery_mode = \"ping\"\n[clients.\"pusher\"]\ndelivery_mode = \"push\"",
    )
    .unwrap();
    let lht = LhtRules::default();
    let go = |b: &str| run(b, &rules, &lht);
    let e = go("client_id=uc&scope=openid&login_hint=a").unwrap_err();
    assert_eq!(e.code, ErrorCode::MissingUserCode);
    assert_eq!(e.status, 400);
    assert!(go("client_id=uc&scope=openid&login_hint=a&user_code=1234").is_ok());
    assert!(go("client_id=other&scope=openid&login_hint=a").is_ok());
    for c in ["pinger", "pusher"] {
        let e = go(&format!("client_id={c}&scope=openid&login_hint=a")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e
            .description
            .contains("`client_notification_token` is required"));
        assert!(go(&format!(
            "client_id={c}&scope=openid&login_hint=a&client_notification_token=t"
        ))
        .is_ok());
        let long = "t".repeat(1025);
        let e = go(&format!(
            "client_id={c}&scope=openid&login_hint=a&client_notification_token={long}"
        ))
        .unwrap_err();
        assert!(e.description.contains("longer than 1024"));
        let fits = "t".repeat(1024);
        assert!(go(&format!(
            "client_id={c}&scope=openid&login_hint=a&client_notification_token={fits}"
        ))
        .is_ok());
        let e = go(&format!(
            "client_id={c}&scope=openid&login_hint=a&client_notification_token={}",
            form_urlencoded::byte_serialize("é".repeat(10).as_bytes()).collect::<String>()
        ))
        .unwrap_err();
        assert!(e.description.contains("RFC 6750"), "{}", e.description);
    }
}

#[test]
fn b64token_syntax() {
    for ok in ["t", "abc==", "aZ09-._~+/", "a=", "/", "~~~", "A+/=="] {
        assert!(is_b64token(ok), "{ok}");
    }
    for bad in [
        "", "=", "==", "=abc", "a=b", "a b", "a\tb", "é", "a%41", "a\"b", "a,b",
    ] {
        assert!(!is_b64token(bad), "{bad:?}");
    }
}

#[test]
fn client_notification_token_passes_in_any_mode_when_well_formed() {
    let exact = "t".repeat(1024);
    let padded = format!("{}==", "A".repeat(1022));
    for token in [exact.as_str(), padded.as_str(), "aZ09-._~+/", "abc="] {
        let enc = form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>();
        let body = format!("{C}&scope=openid&login_hint=a&client_notification_token={enc}");
        let (form, _) = check(&body).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(form.get("client_notification_token"), Some(token));
    }
    let e = check(&format!(
        "{C}&scope=openid&login_hint=a&client_notification_token=secret-value+x"
    ))
    .unwrap_err();
    assert!(e.description.contains("`client_notification_token`"));
    assert!(!e.description.contains("secret-value"), "{}", e.description);
}

#[test]
fn hint_errors_name_the_hints() {
    let e = check(&format!(
        "{C}&scope=openid&login_hint=a&login_hint_token=%7B%7D"
    ))
    .unwrap_err();
    assert!(
        e.description
            .ends_with("got `login_hint_token`, `login_hint`"),
        "{}",
        e.description
    );
    let e = check(&format!("{C}&scope=openid")).unwrap_err();
    assert!(e.description.contains("is required"));
    assert_eq!(
        code(&format!("{C}&login_hint=a")),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(&format!("{C}&scope=profile&login_hint=a")),
        ErrorCode::InvalidScope
    );
}

#[test]
fn login_hint_token_is_normalized_in_the_form() {
    let lht = LhtRules {
        repair_unescaped_json: true,
        fold_params: vec!["idp_values".into(), "prompt".into()],
        output: OutputFormat::Base64,
        nested_json: NestedJson::String,
        ..Default::default()
    };
    lht.clone().compile().unwrap();
    let sg_base64 = crate::ciba::login_hint_token::tests::SG_BASE64;
    let body = format!(
        "{C}&scope=openid&idp_values=mitid&prompt=login&login_hint_token={}",
        form_urlencoded::byte_serialize(sg_base64.as_bytes()).collect::<String>()
    );
    let (form, report) = run(&body, &ValidationRules::default(), &lht).unwrap();
    assert_eq!(report.hint, HintKind::LoginHintToken);
    assert!(report.repaired() && report.changed());
    assert_eq!(report.folded(), ["idp_values", "prompt"]);
    let r = report.login_hint_token.as_ref().unwrap();
    assert_eq!(r.format, TokenFormat::Base64);
    assert!(!form.contains("idp_values") && !form.contains("prompt"));
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(form.get("login_hint_token").unwrap())
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["idp"], "mitid");
    assert_eq!(v["idp_values"], "mitid");
    assert_eq!(v["prompt"], "login");
    let inner: Value = serde_json::from_str(v["idp_params"].as_str().unwrap()).unwrap();
    assert_eq!(inner["ip"], "1.1.1.1");
    assert!(!format!("{form:?}").contains("mitid\\\""));
}

#[test]
fn a_valid_request_object_passes_and_is_checked_inside() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = |claims: &str| {
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256"}"#),
            b64(claims),
            b64("sig")
        )
    };
    let ok = jwt(
        r#"{"iss":"client-post","aud":"op","exp":4102444800,"scope":"openid","login_hint_token":"{\"idp\":\"mitid\"}","requested_expiry":120}"#,
    );
    let (form, report) = check(&format!("{C}&request={ok}")).unwrap();
    assert!(report.request_object);
    assert_eq!(report.hint, HintKind::LoginHintToken);
    assert!(!report.changed());
    assert_eq!(form.get("request"), Some(ok.as_str()));
    // Inner checks carry a prefix so the client knows where to look.
    let bad = jwt(r#"{"scope":"openid","login_hint":"a","requested_expiry":0}"#);
    let e = check(&format!("{C}&request={bad}")).unwrap_err();
    assert!(
        e.description
            .starts_with("request object: parameter `requested_expiry`"),
        "{}",
        e.description
    );
    let repair = jwt(r#"{"scope":"openid","login_hint_token":"{\"a\":\"{\"b\":1}\"}"}"#);
    let lht = LhtRules {
        repair_unescaped_json: true,
        ..Default::default()
    };
    let e = run(
        &format!("{C}&request={repair}"),
        &ValidationRules::default(),
        &lht,
    )
    .unwrap_err();
    assert!(e.description.contains("cannot be repaired"));
    let obj = jwt(r#"{"scope":"openid","login_hint":{"x":1}}"#);
    assert_eq!(
        code(&format!("{C}&request={obj}")),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn config_embeds_in_a_larger_toml_file() {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        validation: ValidationRules,
        #[serde(default)]
        login_hint_token: LhtRules,
    }
    let f: File = toml::from_str(
        r#"
        [validation]
        binding_message_max_chars = 32
        [validation.clients."client-ping"]
        delivery_mode = "ping"
        [login_hint_token]
        repair_unescaped_json = true
        fold_params = ["idp_values", "prompt"]
        [login_hint_token.allowed_values]
        flow_type = ["broker_oidc"]
        "#,
    )
    .unwrap();
    f.validation.clone().compile().unwrap();
    f.login_hint_token.clone().compile().unwrap();
    assert_eq!(
        f.validation.clients["client-ping"].delivery_mode,
        Some(DeliveryMode::Ping)
    );
    let empty: File = toml::from_str("").unwrap();
    assert_eq!(empty.validation.binding_message_max_chars, 64);
}
