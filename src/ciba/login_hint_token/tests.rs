//! Unit tests of `login_hint_token` normalization: Signaturgruppen's documented tokens, every
//! encoding and output, repairs, folds, schema rules, JWTs, hostile input, and the fast paths
//! held to the slow ones they stand in for.

use super::strict::{compact_by_walk, has_duplicate};
use super::*;
use crate::ciba::jwt::tests::{es256, hs256, unsigned, EC_PUBLIC_PEM, HMAC_SECRET};
use crate::ciba::jwt::KeyConfig;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use std::collections::BTreeMap;

/// Signaturgruppen's documented Base64 example, verbatim.
pub const SG_BASE64: &str = "eyJpZHAiOiJtaXRpZCIsImlkcF9wYXJhbXMiOiJ7InV1aWQiOiI4YTk4NTZlMC1mMTJkLTQyMTctYjMyMC1jOGEwNzZiZTkzMjAiLCAicmVmZXJlbmNlVGV4dEJvZHkiOiJUZXN0aW5nIE1pdElEIEZsZXggYXBwIPCfmIkiLCAiaXAiOiIxLjEuMS4xIn0ifQ==";
/// What it decodes to: `idp_params` holds JSON that is not escaped.
const SG_RAW: &str = "{\"idp\":\"mitid\",\"idp_params\":\"{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\", \"referenceTextBody\":\"Testing MitID Flex app \u{1F609}\", \"ip\":\"1.1.1.1\"}\"}";
const SG_INNER: &str = "{\"uuid\":\"8a9856e0-f12d-4217-b320-c8a076be9320\", \"referenceTextBody\":\"Testing MitID Flex app \u{1F609}\", \"ip\":\"1.1.1.1\"}";
const NOW: u64 = 1_700_000_000;

fn repairing() -> LhtRules {
    LhtRules {
        repair_unescaped_json: true,
        ..Default::default()
    }
}

/// The rules checked as the configuration checks them.
fn policy(rules: &LhtRules) -> LhtPolicy {
    rules.clone().compile().expect("valid rules")
}

fn norm(token: &str, rules: &LhtRules) -> Result<Normalized, OAuthError> {
    normalize(token, &[], &policy(rules), NOW)
}

fn json_of(n: &Normalized) -> Value {
    serde_json::from_str(n.token.expose()).unwrap()
}

#[test]
fn the_documented_base64_example_decodes_to_unescaped_json() {
    assert_eq!(STANDARD.decode(SG_BASE64).unwrap(), SG_RAW.as_bytes());
}

#[test]
fn unescaped_json_is_refused_by_default_with_a_precise_message() {
    for (token, suffix) in [(SG_RAW, ""), (SG_BASE64, " of the decoded token")] {
        let e = norm(token, &LhtRules::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(
            e.description,
            format!(
                "login_hint_token: field `idp_params` holds unescaped JSON at byte 29{suffix}; \
                 escape it as a JSON string or enable login_hint_token.repair_unescaped_json"
            )
        );
        assert!(!e.description.contains("8a9856e0"));
    }
}

#[test]
fn signaturgruppen_examples_round_trip_through_every_output() {
    let fixed = json!({"idp": "mitid", "idp_params": SG_INNER});
    let escaped = fixed.to_string();
    for (token, format, repaired) in [
        (SG_RAW, TokenFormat::Json, true),
        (SG_BASE64, TokenFormat::Base64, true),
        (escaped.as_str(), TokenFormat::Json, false),
    ] {
        for output in [
            OutputFormat::Json,
            OutputFormat::Base64,
            OutputFormat::Base64url,
        ] {
            for nested in [NestedJson::String, NestedJson::Object] {
                let rules = LhtRules {
                    output,
                    nested_json: nested,
                    ..repairing()
                };
                let n = norm(token, &rules).unwrap();
                assert_eq!(n.report.format, format);
                assert_eq!(n.report.repaired(), repaired);
                assert_eq!(n.report.output, output);
                let text = match output {
                    OutputFormat::Json => n.token.expose().clone(),
                    OutputFormat::Base64 => {
                        String::from_utf8(STANDARD.decode(n.token.expose()).unwrap()).unwrap()
                    }
                    _ => String::from_utf8(URL_SAFE_NO_PAD.decode(n.token.expose()).unwrap())
                        .unwrap(),
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                let want = match nested {
                    NestedJson::String => fixed.clone(),
                    NestedJson::Object => json!({
                        "idp": "mitid",
                        "idp_params": serde_json::from_str::<Value>(SG_INNER).unwrap()
                    }),
                };
                assert_eq!(v, want, "{format:?} {output:?} {nested:?}");
                // The output is itself accepted, unchanged in meaning, without repair.
                let again = norm(n.token.expose(), &rules).unwrap();
                assert!(!again.report.repaired());
            }
        }
    }
    let n = norm(SG_RAW, &repairing()).unwrap();
    assert_eq!(
        n.report.repairs,
        vec![RepairSite {
            field: "idp_params".into(),
            offset: 29
        }]
    );
}

#[test]
fn unchanged_forwards_exact_bytes() {
    let rules = LhtRules {
        output: OutputFormat::Unchanged,
        ..Default::default()
    };
    rules.clone().compile().unwrap();
    let token = r#" {"idp" : "mitid"} "#;
    assert_eq!(norm(token, &rules).unwrap().token.expose(), token);
    assert!(norm(SG_RAW, &rules).is_err());
    assert!(LhtRules {
        output: OutputFormat::Unchanged,
        ..repairing()
    }
    .compile()
    .unwrap_err()
    .to_string()
    .starts_with("login_hint_token.output:"));
}

#[test]
fn base64_variants_are_recognised() {
    let obj = r#"{"idp":"mitid","x":"??>>"}"#;
    let cases = [
        (STANDARD.encode(obj), TokenFormat::Base64),
        (
            STANDARD.encode(obj).trim_end_matches('=').to_string(),
            TokenFormat::Base64,
        ),
        (URL_SAFE_NO_PAD.encode(obj), TokenFormat::Base64url),
        (
            base64::engine::general_purpose::URL_SAFE.encode(obj),
            TokenFormat::Base64url,
        ),
    ];
    for (token, format) in cases {
        let n = norm(&token, &LhtRules::default()).unwrap();
        assert_eq!(n.report.format, format, "{token}");
        assert_eq!(json_of(&n), serde_json::from_str::<Value>(obj).unwrap());
    }
    let spaced = STANDARD.encode(obj).replace('+', " ");
    if spaced.contains(' ') {
        let e = norm(&spaced, &LhtRules::default()).unwrap_err();
        assert!(e.description.contains("%2B"));
    }
}

#[test]
fn malformed_tokens_are_invalid_request() {
    let deep = format!(
        "{}{}",
        "{\"a\":".repeat(9),
        "1".to_string() + &"}".repeat(9)
    );
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not a JSON object"),
        ("[1,2]".into(), "must be a JSON object"),
        ("\"s\"".into(), "must be a JSON object"),
        ("{\"a\":1".into(), "not valid JSON"),
        ("{\"a\":1,\"a\":2}".into(), "appears more than once"),
        ("{\"a\":01}".into(), "not valid JSON"),
        ("{\"a\":\"\u{1}\"}".into(), "not valid JSON"),
        (STANDARD.encode("[1]"), "not a JSON object"),
        (STANDARD.encode([0xff, 0xfe]), "not UTF-8"),
        ("a+b-c".into(), "not a JSON object"),
        ("%%%".into(), "not a JSON object"),
        (deep, "nested deeper than 8"),
        (
            "{\"a\":\"".to_string() + &"x".repeat(5000) + "\"}",
            "longer than 4096",
        ),
        ("{\"idp_params\":5}".into(), "`idp_params` must hold"),
        ("{\"idp_params\":\"nope\"}".into(), "`idp_params` must hold"),
        ("{\"idp_params\":\"1\"}".into(), "`idp_params` must hold"),
    ];
    for (token, expect) in cases {
        let e = norm(&token, &LhtRules::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{token}");
        assert!(e.description.contains(expect), "{token}: {}", e.description);
    }
}

#[test]
fn hostile_inputs_never_panic_or_blow_the_stack() {
    let rules = LhtRules {
        max_bytes: 65536,
        max_depth: 64,
        ..repairing()
    };
    let inputs = [
        "{\"a\":\"".repeat(5000),
        "{\"a\":\"{".repeat(3000),
        "[".repeat(60000),
        "{\"a\":\"[".repeat(3000) + &"]\"}".repeat(3000),
        "\"{".repeat(20000),
        "{\"a\":\"{\\".repeat(3000),
        "{".to_string() + &"\"a\":\"{\"b\":1}\",".repeat(3000) + "\"z\":1}",
    ];
    for input in inputs {
        let _ = norm(&input, &rules);
        let _ = norm(&STANDARD.encode(&input), &rules);
    }
}

#[test]
fn the_fast_parser_agrees_with_the_tolerant_one() {
    let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
    let cases = [
        r#"{"a":1,"b":[true,false,null],"c":{"d":-1.5e3,"e":"x\u00e6\n"}}"#.to_string(),
        r#" { "a" : "{\"b\":1}" } "#.to_string(),
        r#"{"a":1,"a":2}"#.to_string(),
        r#"{"a":{"b":1,"b":1}}"#.to_string(),
        r#"{"a":"{"b":1}"}"#.to_string(),
        r#"{"a":1}x"#.to_string(),
        r#"{"a":"\ud800"}"#.to_string(),
        r#"{"a":18446744073709551616}"#.to_string(),
        r#"{"a":1e999}"#.to_string(),
        r#"{"a":01}"#.to_string(),
        "{\"a\":\"\u{1}\"}".to_string(),
        deep(3),
        deep(4),
        deep(5),
        String::new(),
    ];
    for text in &cases {
        let checked = check_strict(text, 4);
        assert_eq!(
            checked,
            parse_strict(text, 4).map(|v| depth_of(&v)),
            "{text}"
        );
        let tolerant = parse_tolerant(text, 4);
        match parse_strict(text, 4) {
            Some(v) => {
                let t = tolerant.unwrap_or_else(|e| panic!("{text}: {e:?}"));
                assert!(t.repairs.is_empty(), "{text}");
                assert_eq!(v, t.value, "{text}");
            }
            // Refused by the fast path: either a repair or an error for the tolerant one.
            None => assert!(
                tolerant.as_ref().map_or(true, |p| !p.repairs.is_empty()),
                "{text}"
            ),
        }
    }
}

/// A small deterministic generator: each call gives a number below its argument.
fn generator(mut seed: u32) -> impl FnMut(u32) -> u32 {
    move |n| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 8) % n
    }
}

#[test]
fn the_vectorized_base64_decoder_agrees_with_the_base64_crate() {
    let mut next = generator(0x1234_5678_u32);
    let check = |s: &str| {
        assert_eq!(
            decode_standard_base64(s),
            STANDARD_LENIENT.decode(s).ok(),
            "{s:?}"
        );
    };
    // Hostile text: other alphabets, padding anywhere, spaces and line breaks.
    let alphabet = b"AZagh09+/=-_ \n";
    for _ in 0..20_000 {
        let len = next(40) as usize;
        let s: String = (0..len)
            .map(|_| char::from(alphabet[next(alphabet.len() as u32) as usize]))
            .collect();
        check(&s);
    }
    // Real encodings of every length, padded, unpadded, over-padded and cut short.
    for len in 0..80 {
        let bytes: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
        let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let bare = padded.trim_end_matches('=');
        for s in [
            padded.clone(),
            bare.to_string(),
            format!("{padded}="),
            format!("{bare}="),
            padded.chars().skip(1).collect(),
        ] {
            check(&s);
        }
        if !bare.is_empty() {
            // The last character with its unused bits set.
            let mut odd = bare.to_string();
            let last = odd.pop().unwrap();
            odd.push(if last == '/' { '+' } else { '/' });
            check(&odd);
        }
    }
}

#[test]
fn duplicates_are_found_among_few_keys_and_many() {
    for n in [0usize, 1, 2, 8, 9, 40] {
        let keys: Vec<String> = (0..n).map(|k| format!("k{k}")).collect();
        assert!(!has_duplicate(&keys, |k| k), "{n} distinct");
        for (a, b) in [(0, n.saturating_sub(1)), (n / 2, n.saturating_sub(1))] {
            if a < b {
                let mut dup = keys.clone();
                dup[b] = dup[a].clone();
                assert!(has_duplicate(&dup, |k| k), "{n}: {a} and {b}");
            }
        }
    }
}

#[test]
fn the_untouched_path_agrees_with_the_tree() {
    let tokens = [
        r#"{"flow_type":"broker_oidc","idp_values":"mitid","idp_params":"{\"uuid\":\"u\",\"t\":\"a b\"}"}"#,
        r#"{"flow_type":"broker_oidc","idp_values":"mitid nemid","idp":"mitid"}"#,
        r#"{ "flow_type" : "broker_oidc" }"#,
        r#"{"flow_type":"other"}"#,
        r#"{"flow_type":1}"#,
        r#"{"idp_values":"evil"}"#,
        r#"{"idp":"mitid","idp_values":["mitid"]}"#,
        r#"{"idp_params":{"uuid":"u"}}"#,
        r#"{"idp_params":"{\"a\":{\"b\":{\"c\":{}}}}"}"#,
        r#"{"idp_params":"{\"a\":1,\"a\":2}"}"#,
        r#"{"idp_params":"not json"}"#,
        r#"{"idp_params":"[1]"}"#,
        r#"{"idp_params":"1"}"#,
        r#"{"idp_params":7}"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}"#,
        r#"{"a":1,"a":1}"#,
        r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1}"#,
        r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k1":2}"#,
        r#"{"idp_params":"{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"a\":2}"}"#,
        r#"{"a":"\u00e6\n","b":[1,2.5,null,true],"c":{}}"#,
        r#"{"a":1}	"#,
        r#"[1]"#,
        r#"{}"#,
    ];
    let schema = LhtRules {
        required_keys: vec!["flow_type".into()],
        allowed_values: BTreeMap::from([("flow_type".into(), vec!["broker_oidc".into()])]),
        allowed_idps: vec!["mitid".into(), "nemid".into()],
        ..LhtRules::default()
    };
    let variants = [
        LhtRules::default(),
        schema.clone(),
        LhtRules {
            nested_json: NestedJson::Object,
            ..LhtRules::default()
        },
        LhtRules {
            output: OutputFormat::Base64url,
            ..schema.clone()
        },
        LhtRules {
            output: OutputFormat::Base64,
            ..LhtRules::default()
        },
        LhtRules {
            output: OutputFormat::Unchanged,
            ..schema
        },
        LhtRules {
            max_depth: 3,
            ..LhtRules::default()
        },
    ];
    let mut taken = 0;
    for rules in &variants {
        for text in tokens {
            let tree = from_json_tree(text, text.trim(), TokenFormat::Json, &[], rules);
            match from_json_as_is(text, text.trim(), TokenFormat::Json, rules) {
                Ok(None) => {}
                Ok(Some(n)) => {
                    taken += 1;
                    let t = tree.unwrap_or_else(|e| panic!("{text}: tree refused: {e:?}"));
                    assert_eq!(n.token.expose(), t.token.expose(), "{text}");
                    assert_eq!(n.report, t.report, "{text}");
                }
                Err(e) => {
                    taken += 1;
                    assert_eq!(Some(e), tree.err(), "{text}");
                }
            }
        }
    }
    // Both outcomes of the untouched path are exercised, not only the hand-over.
    assert!(taken >= 20, "only {taken} cases took the untouched path");
}

#[test]
fn nested_repairs_and_arrays() {
    let token = r#"{"a":["{"b":"[1,2]"}"],"c":"{"d":"{"e":1}"}"}"#;
    let n = norm(
        token,
        &LhtRules {
            max_depth: 8,
            ..repairing()
        },
    )
    .unwrap();
    let fields: Vec<_> = n.report.repairs.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(fields, ["a[0]", "c", "c.d"]);
    let v = json_of(&n);
    assert_eq!(v["c"], json!(r#"{"d":"{\"e\":1}"}"#));
    // Legitimate strings that merely start with a brace are left alone.
    let ok = r#"{"a":"{","b":"[x"}"#;
    let n = norm(ok, &repairing()).unwrap();
    assert!(!n.report.repaired());
    assert_eq!(json_of(&n), json!({"a": "{", "b": "[x"}));
}

#[test]
fn a_repaired_nested_string_is_forwarded_repaired() {
    // The token itself is valid JSON; the text inside `idp_params` is not.
    let token = r#"{"idp_params":"{\"a\":\"{\"b\":1}\"}"}"#;
    assert!(norm(token, &LhtRules::default()).is_err());
    let n = norm(token, &repairing()).unwrap();
    let inner = json_of(&n)["idp_params"].as_str().unwrap().to_string();
    let parsed: Value = serde_json::from_str(&inner).expect("forwarded as valid JSON");
    assert_eq!(parsed, json!({"a": r#"{"b":1}"#}));
}

#[test]
fn compact_means_no_whitespace_outside_strings() {
    for (text, compact) in [
        (r#"{"a":"x y\"\\","b":[1,{"c":"\t"}]}"#, true),
        (r#"{"a":"\\"}"#, true),
        (r#"{"a":"\\" }"#, false),
        (r#"{"a": 1}"#, false),
        ("{\"a\":1,\n\"b\":2}", false),
        ("{\"a\":1,\t\"b\":2}", false),
        ("{\"a\":\"b \\\" c\"}", true),
        ("{\"a\":\"b, c\"}", true),
        ("{\"a\":\"b\",\"c\":[1, 2]}", false),
        (" {}", false),
        ("{} ", false),
        ("{\"a\":1}\r", false),
        ("{}", true),
    ] {
        assert_eq!(is_compact(text), compact, "{text:?}");
    }
}

#[test]
fn the_quick_compact_test_agrees_with_the_walk() {
    let mut next = generator(0x2545_f491_u32);
    // Strings full of what the quick test looks at: spaces beside structural bytes,
    // escaped quotes and backslashes.
    let pieces = [
        " ", ",", ", ", " :", "{ ", " }", "[", "]", "\"", "\\", "a", "b c",
    ];
    let value = |next: &mut dyn FnMut(u32) -> u32| -> Value {
        let text = |next: &mut dyn FnMut(u32) -> u32| -> String {
            (0..next(5)).map(|_| pieces[next(12) as usize]).collect()
        };
        let mut map = serde_json::Map::new();
        for _ in 0..next(4) + 1 {
            let v = match next(4) {
                0 => Value::String(text(next)),
                1 => json!([text(next), 1, {"k": text(next)}]),
                2 => json!({"n": null, "t": true}),
                _ => json!(-1.5),
            };
            map.insert(text(next), v);
        }
        Value::Object(map)
    };
    for _ in 0..2000 {
        let v = value(&mut next);
        let compact = serde_json::to_string(&v).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        // One space put between two tokens: outside strings, beside a structural byte.
        let mut outside = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        for (at, &b) in compact.as_bytes().iter().enumerate() {
            let structural = |b: u8| matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',');
            if !in_string && (structural(b) || at > 0 && structural(compact.as_bytes()[at - 1])) {
                outside.push(at);
            }
            if escaped {
                escaped = false;
            } else if in_string {
                escaped = b == b'\\';
                in_string = b != b'"';
            } else {
                in_string = b == b'"';
            }
        }
        let at = outside[next(outside.len() as u32) as usize];
        let spaced = format!("{} {}", &compact[..at], &compact[at..]);
        for (text, expected) in [
            (&compact, true),
            (&pretty, pretty == compact),
            (&spaced, false),
        ] {
            assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
            assert_eq!(is_compact(text), expected, "{text}");
            assert_eq!(compact_by_walk(text.as_bytes()), expected, "{text}");
        }
    }
}

#[test]
fn unchanged_compact_json_is_forwarded_as_written() {
    let compact = r#"{"z":1,"idp_params":"{\"b\":2}","a":"\u00e6"}"#;
    assert_eq!(norm(compact, &repairing()).unwrap().token.expose(), compact);
    // Whitespace outside strings, a change, or another output means serializing again.
    let spaced = r#"{ "z": 1, "a": "x y" }"#;
    assert_eq!(
        norm(spaced, &repairing()).unwrap().token.expose(),
        r#"{"a":"x y","z":1}"#
    );
    let object = LhtRules {
        nested_json: NestedJson::Object,
        ..repairing()
    };
    assert_eq!(
        norm(compact, &object).unwrap().token.expose(),
        r#"{"a":"æ","idp_params":{"b":2},"z":1}"#
    );
    // In a form, the untouched token keeps the client's percent-encoding.
    let body = format!(
        "login_hint_token={}&scope=openid",
        form_urlencoded::byte_serialize(compact.as_bytes()).collect::<String>()
    );
    let mut form = Form::parse(body.as_bytes()).unwrap();
    normalize_in_form(&mut form, &policy(&repairing()), 0).unwrap();
    assert_eq!(form.encode(), body.as_bytes());
}

#[test]
fn schema_rules_apply() {
    let rules = LhtRules {
        required_keys: vec!["flow_type".into()],
        allowed_values: [("flow_type".to_string(), vec!["broker_oidc".to_string()])].into(),
        allowed_idps: vec!["mitid".into(), "nemlogin".into()],
        ..Default::default()
    };
    rules.clone().compile().unwrap();
    let ok = r#"{"flow_type":"broker_oidc","idp_values":"mitid nemlogin","idp":"mitid"}"#;
    assert!(norm(ok, &rules).is_ok());
    for (token, expect) in [
        (r#"{"idp":"mitid"}"#, "required key `flow_type`"),
        (r#"{"flow_type":"x"}"#, "allowed: broker_oidc"),
        (r#"{"flow_type":1}"#, "not allowed"),
        (r#"{"flow_type":"broker_oidc","idp":"evil"}"#, "`idp`"),
        (
            r#"{"flow_type":"broker_oidc","idp_values":"mitid evil"}"#,
            "`idp_values`",
        ),
    ] {
        let e = norm(token, &rules).unwrap_err();
        assert!(e.description.contains(expect), "{token}: {}", e.description);
        assert!(!e.description.contains("evil"));
    }
}

#[test]
fn folding_moves_params_into_the_token() {
    let rules = LhtRules {
        fold_params: vec!["idp_values".into(), "prompt".into()],
        ..Default::default()
    };
    rules.clone().compile().unwrap();
    let mut form = Form::parse(
        b"scope=openid&idp_values=mitid&prompt=login&login_hint_token=%7B%22idp_values%22%3A%22mitid%22%7D",
    )
    .unwrap();
    let report = normalize_in_form(&mut form, &policy(&rules), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(report.folded, ["idp_values", "prompt"]);
    assert!(!form.contains("idp_values") && !form.contains("prompt"));
    let v: Value = serde_json::from_str(form.get(PARAM).unwrap()).unwrap();
    assert_eq!(v, json!({"idp_values": "mitid", "prompt": "login"}));

    let e = normalize(
        r#"{"prompt":"none"}"#,
        &[("prompt", "login")],
        &policy(&rules),
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.description.contains("`prompt` differs"));
    // Without a token there is nothing to fold into.
    let mut form = Form::parse(b"login_hint=x&prompt=login").unwrap();
    assert_eq!(
        normalize_in_form(&mut form, &policy(&rules), NOW).unwrap(),
        None
    );
    assert!(form.contains("prompt"));
    // Folding core parameters is a configuration error.
    let bad = LhtRules {
        fold_params: vec!["scope".into()],
        ..Default::default()
    };
    assert!(bad.compile().unwrap_err().message.contains("`scope`"));
}

#[test]
fn jwt_tokens_are_forwarded_unchanged_and_checked() {
    let claims = json!({"sub_id": {"format": "email"}, "exp": NOW + 60});
    let token = hs256(&claims, None);
    let n = norm(&token, &LhtRules::default()).unwrap();
    assert_eq!(n.token.expose(), &token);
    assert_eq!(n.report.format, TokenFormat::Jwt);
    assert_eq!(n.report.signature, SignatureCheck::Unverified);

    let expired = hs256(&json!({"exp": NOW - 1}), None);
    let e = norm(&expired, &LhtRules::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::ExpiredLoginHintToken);
    assert_eq!(e.status, 400);
    let lenient = LhtRules {
        leeway_seconds: 5,
        ..Default::default()
    };
    assert!(norm(&expired, &lenient).is_ok());
    let e = norm(&hs256(&json!({"exp": "soon"}), None), &LhtRules::default()).unwrap_err();
    assert!(e.description.contains("`exp`"));
    let e = norm(
        &hs256(&json!({"nbf": NOW + 100}), None),
        &LhtRules::default(),
    )
    .unwrap_err();
    assert!(e.description.contains("`nbf`"));

    let none = unsigned(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#);
    let e = norm(&none, &LhtRules::default()).unwrap_err();
    assert!(e.description.contains("allow_unsigned_jwt"));
    let allow = LhtRules {
        allow_unsigned_jwt: true,
        ..Default::default()
    };
    assert_eq!(
        norm(&none, &allow).unwrap().report.signature,
        SignatureCheck::Unsigned
    );
    let bad_payload = unsigned(r#"{"alg":"HS256"}"#, "[1]");
    assert!(norm(&bad_payload, &allow)
        .unwrap_err()
        .description
        .contains("payload"));
}

#[test]
fn jwt_signatures_are_verified_with_configured_keys() {
    let rules = LhtRules {
        require_signed: true,
        keys: KeyConfig {
            hmac_secrets: vec![HMAC_SECRET.into()],
            public_keys_pem: vec![EC_PUBLIC_PEM.into()],
            jwks: None,
        },
        ..Default::default()
    };
    rules.clone().compile().unwrap();
    let claims = json!({"sub": "x"});
    for token in [hs256(&claims, None), es256(&claims)] {
        assert_eq!(
            norm(&token, &rules).unwrap().report.signature,
            SignatureCheck::Verified
        );
    }
    let mut forged = hs256(&claims, None);
    forged.push('A');
    assert!(norm(&forged, &rules).is_err());
    let e = norm(r#"{"idp":"mitid"}"#, &rules).unwrap_err();
    assert!(e.description.contains("signed"));
    assert!(LhtRules {
        require_signed: true,
        ..Default::default()
    }
    .compile()
    .unwrap_err()
    .to_string()
    .starts_with("login_hint_token.require_signed:"));
}

#[test]
fn folding_into_a_jwt_only_drops_equal_params() {
    let rules = LhtRules {
        fold_params: vec!["idp_values".into()],
        ..Default::default()
    };
    let token = hs256(&json!({"idp_values": "mitid"}), None);
    let n = normalize(&token, &[("idp_values", "mitid")], &policy(&rules), NOW).unwrap();
    assert_eq!(n.report.folded, ["idp_values"]);
    assert_eq!(n.token.expose(), &token);
    let token = hs256(&json!({}), None);
    let e = normalize(&token, &[("idp_values", "mitid")], &policy(&rules), NOW).unwrap_err();
    assert!(e.description.contains("cannot be folded"));
}

#[test]
fn disabled_passes_anything_within_the_size_cap() {
    let rules = LhtRules {
        enabled: false,
        ..Default::default()
    };
    let n = norm("opaque-token", &rules).unwrap();
    assert_eq!(n.token.expose(), "opaque-token");
    assert_eq!(n.report.format, TokenFormat::Opaque);
    assert!(norm(&"x".repeat(5000), &rules).is_err());
}

#[test]
fn config_parses_from_toml_and_rejects_typos() {
    let rules: LhtRules = toml::from_str(
        r#"
        repair_unescaped_json = true
        output = "base64url"
        nested_json = "object"
        fold_params = ["idp_values", "prompt"]
        [allowed_values]
        flow_type = ["broker_oidc"]
        [keys]
        hmac_secrets = ["0123456789abcdef0123456789abcdef"]
        "#,
    )
    .unwrap();
    rules.clone().compile().unwrap();
    assert_eq!(rules.output, OutputFormat::Base64url);
    assert!(!format!("{rules:?}").contains("0123456789abcdef"));
    assert!(toml::from_str::<LhtRules>("repair_unescaped = true").is_err());
    assert!(toml::from_str::<LhtRules>("output = \"xml\"").is_err());
    LhtRules::default().compile().unwrap();
}

#[test]
fn debug_never_shows_the_token() {
    let n = norm(r#"{"idp":"mitid","name":"Alice"}"#, &LhtRules::default()).unwrap();
    assert!(!format!("{n:?}").contains("Alice"));
}
