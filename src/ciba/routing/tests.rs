//! Unit tests of the routing rule: every spelling of each endpoint, paths that are no
//! endpoint, readings routers disagree on, canonical forms, base paths and profile names, and
//! properties on generated targets.

use super::*;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const METADATA: &str = "/.well-known/oauth-authorization-server";

fn routes() -> Routes {
    Routes::new(&[
        (Target::Backchannel, "/backchannel", "/backchannel"),
        (Target::Token, "/token", "/token"),
        (Target::Discovery, DISCOVERY, DISCOVERY),
        (Target::Metadata, METADATA, METADATA),
    ])
}

/// Percent-encodes every byte of `s` that `pick` selects, with upper- or lower-case hex.
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

/// At least 40 spellings of `path` that some router sends to it.
fn spellings(path: &str) -> Vec<String> {
    let body = &path[1..];
    let (head, last) = path.rsplit_once('/').unwrap();
    let mut alt_case = String::new();
    for (i, c) in path.chars().enumerate() {
        alt_case.push(if i % 2 == 0 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    let first_letter = path.bytes().position(|b| b.is_ascii_alphabetic()).unwrap();
    vec![
        path.to_uppercase(),
        alt_case.clone(),
        format!("{path}/"),
        format!("{}/", path.to_uppercase()),
        format!("{path}//"),
        format!("/{path}"),
        format!("//{body}"),
        format!("///{body}"),
        format!("/./{body}"),
        format!("/././{body}"),
        format!("/x/../{body}"),
        format!("/x/y/../../{body}"),
        format!("/../{body}"),
        format!("{head}/./{last}"),
        format!("{head}/{last}/."),
        format!("{head}/{last}/x/.."),
        format!("{path}/x/%2e%2e"),
        format!("/%2e/{body}"),
        format!("/x/%2E%2E/{body}"),
        format!("/x/.%2e/{body}"),
        enc(path, |i, _| i == first_letter, false),
        enc(path, |i, _| i == first_letter, true),
        enc(path, |_, b| b.is_ascii_alphanumeric(), false),
        enc(path, |_, b| b.is_ascii_alphanumeric(), true),
        enc(path, |_, b| b == b'/', false),
        enc(path, |i, b| b == b'/' && i > 0, true),
        enc(
            &enc(path, |i, _| i == first_letter, false),
            |_, b| b == b'%',
            false,
        ),
        format!("{path};x=1"),
        format!("{path};"),
        format!("{head};a=b/{last}"),
        format!("/x/..;/{body}"),
        format!("{path}%00"),
        format!("{path}%00.json"),
        format!("{path}%3Fx=1"),
        format!("{path}%23frag"),
        format!("{path}."),
        format!("{path}%20"),
        format!("{path}\\"),
        format!("\\{body}"),
        format!("/x\\..\\{body}"),
        format!("{path}%5C"),
        format!("http://evil.example{path}"),
        format!("HTTP://evil.example{}", path.to_uppercase()),
        format!("https://evil.example:8443{path}/?x=1"),
        format!("http://evil.example\\{body}"),
        format!("{}?a=b", path.to_uppercase()),
        path.replace('o', "ｏ").replace('e', "ｅ"),
        path.replace('t', "ｔ").to_uppercase().replace('I', "ı"),
        path.replace('i', "ı").replace('s', "ſ"),
        path.replace('k', "\u{212A}").replace('I', "\u{130}"),
        path.replace('i', "\u{130}"),
    ]
}

fn must_match(target: Target, path: &str, extra: &[&str]) {
    let r = routes();
    let mut all = spellings(path);
    all.extend(extra.iter().map(|s| s.to_string()));
    all.sort();
    all.dedup();
    all.retain(|s| s != path);
    assert!(all.len() >= 40, "{} spellings", all.len());
    for s in all {
        let d = r.classify(s.as_bytes());
        if target_path(s.as_bytes()) == path.as_bytes() {
            // Absolute-form with the exact path.
            assert_eq!(d, Decision::Exact(target), "{s:?}");
            continue;
        }
        assert_eq!(d, Decision::Variant(target), "{s:?}");
        assert_eq!(d.outcome(Variants::Refuse), Outcome::NotFound, "{s:?}");
        assert_eq!(
            d.outcome(Variants::Normalize),
            Outcome::Serve(target),
            "{s:?}"
        );
    }
    assert_eq!(r.classify(path.as_bytes()), Decision::Exact(target));
    let with_query = format!("{path}?x=1");
    assert_eq!(r.classify(with_query.as_bytes()), Decision::Exact(target));
}

#[test]
fn token_spellings_are_the_token_endpoint() {
    must_match(
        Target::Token,
        "/token",
        &[
            "/TOKEN",
            "/Token",
            "/token/",
            "/t%6Fken",
            "/t%6fken",
            "/%2574oken",
            "/tokeN%2F",
        ],
    );
}

#[test]
fn backchannel_spellings_are_the_backchannel_endpoint() {
    must_match(
        Target::Backchannel,
        "/backchannel",
        &["/BACKCHANNEL", "/backchannel/", "/Backchannel;jsessionid=1"],
    );
}

#[test]
fn discovery_spellings_are_the_discovery_document() {
    must_match(
        Target::Discovery,
        DISCOVERY,
        &[
            "/.WELL-KNOWN/openid-configuration",
            "/.well-known/openid-configuratıon",
            "/.well-known/openıd-configuratıon",
            "/.well-known/openid-con\u{FB01}guration",
            "/.well-known/openid-con%EF%AC%81guration",
            "/.well-known//openid-configuration",
            "/.well-known/openid-configuration/",
            "/.well-known%2Fopenid-configuration",
            "/%2Ewell-known/openid-configuration",
        ],
    );
}

#[test]
fn metadata_spellings_are_the_metadata_document() {
    must_match(
        Target::Metadata,
        METADATA,
        &[
            "/.WELL-KNOWN/OAUTH-AUTHORIZATION-SERVER",
            "/.well-known/oauth-authorızation-server",
            "/.well-known//oauth-authorization-server/",
            "/.well-known/oauth-authorization-server;x=1",
            "/.well-known%2Foauth-authorization-server",
            "/.well-known/oauth-authorization-%73erver",
            "/x/../.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-ſerver",
        ],
    );
}

#[test]
fn other_paths_are_not_endpoints() {
    let r = routes();
    for s in [
        "/",
        "/jwks",
        "/tokenx",
        "/token2",
        "/xtoken",
        "/backchannelx",
        "/back-channel",
        "/token/x",
        "/token/introspection",
        "/tok",
        "/to%6B",
        "/toke%6",
        "/token%2",
        "/tok%ZZen",
        "/tokén",
        "/t0ken",
        "/token.json",
        "/token-",
        "/token_",
        "/token~",
        "/token%2Dx",
        "/api/token",
        "/x/token",
        "/backchannel/token/extra",
        "/.well-known/openid-configuration/jwks",
        "/.well-known/oauth-authorization-serverx",
        "/.well-known/oauth-authorization-server/jwks",
        "/well-known/openid-configuration",
        "/openid-configuration",
        "*",
        "/session/end",
        "/TOKE",
        "/ʼNtoken",
        "/t%C3%B6ken",
        "/to\u{212B}ken",
        "/%FF",
        "/a%00b",
        "/x/../jwks",
        "/./jwks",
        "/x;token",
        "http://token/",
        "http://host/jwks",
        "/to%20ken",
        "/to.ken",
        "/%2e%2e",
    ] {
        assert_eq!(r.classify(s.as_bytes()), Decision::Other, "{s:?}");
        assert_eq!(
            r.classify(s.as_bytes()).outcome(Variants::Refuse),
            Outcome::PassThrough
        );
    }
}

#[test]
fn readings_routers_disagree_on_are_refused() {
    let r = routes();
    for s in [
        // `..;` is `..` where parameters go first, an ordinary segment elsewhere.
        "/token/..;/..",
        // Decoded first: `/`; normalized first: `/token`.
        "/token/%2e%2e/..",
        "/token/%252e%252e/..",
        // An empty segment popped by `..` where repeated slashes are kept.
        "/token//..",
        // A NUL ends the path in C; elsewhere `..` pops the segment it is in.
        "/jwks%00/../token",
        "/token/a%00b/..",
        // `\` is a separator for browsers and IIS, a character elsewhere.
        "/token/a\\b/..",
        // Read as a network-path reference by some parsers.
        "//evil.example/token",
        "/\\evil.example/token",
        // Not origin-form: some servers read an authority into it.
        "evil.example/token",
        "http://user\\@evil.example/token",
        "http://evil.example@host/jwks/token",
        "/x/../backchannel/extra",
        // Coarse on purpose: a dot segment and an endpoint's name anywhere.
        "/token/../jwks",
        "/x/..%2F.well-known/openid-configuration/x",
    ] {
        assert_eq!(
            r.classify(s.as_bytes()),
            Decision::Refused(Refusal::Ambiguous),
            "{s:?}"
        );
    }
    assert_eq!(
        r.classify(b"/%25252574oken"),
        Decision::Refused(Refusal::TooDeeplyEncoded)
    );
    assert_eq!(
        r.classify(b"/%252574oken"),
        Decision::Variant(Target::Token)
    );
}

#[test]
fn canonical_forms_are_canonical() {
    for s in [
        "/token",
        "/a/../b/./c//d/",
        "/%2541",
        "/%zz%",
        "/x%0Ay",
        "/tok%C3en",
        "/ﬀ/ẞ/İ/ı",
        "http://h/a;b/c",
        "",
        "*",
        "/a%00b",
        "/%",
        "/%%41",
        "/ʼN",
        "/\u{1F600}",
    ] {
        let c = canonical_path(s.as_bytes()).unwrap();
        assert_eq!(canonical_path(c.as_bytes()).unwrap(), c, "{s:?} -> {c:?}");
    }
    assert_eq!(canonical_path(b"/a/../b/./c//d/").unwrap(), "/B/C/D");
    assert_eq!(canonical_path(b"").unwrap(), "/");
    assert_eq!(canonical_path(b"/%zz%").unwrap(), "/%25ZZ%25");
    assert_eq!(canonical_path(b"/tok%C3en").unwrap(), "/TOK%C3EN");
    // A literal `%` that folding turns into an escape (`%F` + full-width `ａ`): refused,
    // not given two readings (found by the routing fuzz target).
    assert_eq!(
        canonical_path("\u{81}%Fａ\u{AC}%2F2".as_bytes()),
        Err(Refusal::TooDeeplyEncoded)
    );
    assert_eq!(
        canonical_path(b"\x81%F\xef\xbd\x81\xac%2F2"),
        Err(Refusal::TooDeeplyEncoded)
    );
}

#[test]
fn a_base_path_and_profile_names_route_too() {
    let r = Routes::new(&[
        (
            Target::Backchannel,
            "/realm/backchannel",
            "/realm/legacy/ciba",
        ),
        (Target::Token, "/realm/token", "/realm/legacy/token"),
        (
            Target::Discovery,
            "/realm/.well-known/openid-configuration",
            "/realm/.well-known/openid-configuration",
        ),
    ]);
    assert_eq!(
        r.classify(b"/REALM/Token/"),
        Decision::Variant(Target::Token)
    );
    assert_eq!(
        r.classify(b"/realm/legacy/CIBA"),
        Decision::Variant(Target::Backchannel)
    );
    assert_eq!(
        r.classify(b"/realm/legacy/ciba"),
        Decision::Variant(Target::Backchannel)
    );
    assert_eq!(
        r.classify(b"/realm/backchannel"),
        Decision::Exact(Target::Backchannel)
    );
    assert_eq!(
        r.classify(b"/Realm/.well-known/openid-configuration"),
        Decision::Variant(Target::Discovery)
    );
    assert_eq!(r.classify(b"/token"), Decision::Other);
    assert_eq!(
        r.classify(b"/.well-known/openid-configuration"),
        Decision::Other
    );
    assert_eq!(r.public_path(Target::Token), Some("/realm/token"));
}

#[test]
fn template_parameters_keep_their_case() {
    let p = |t: &str| template_param("/op/api/v1/ciba/", "", t.as_bytes());
    assert_eq!(p("/op/api/v1/ciba/AbC-1").as_deref(), Some("AbC-1"));
    assert_eq!(p("/OP/api//v1/./ciba/AbC-1/").as_deref(), Some("AbC-1"));
    assert_eq!(p("/op/api/v1/ciba/%41bc").as_deref(), Some("Abc"));
    assert_eq!(p("/op/api/v1/ciba/"), None);
    assert_eq!(p("/op/api/v1/ciba/a/b"), None);
    assert_eq!(p("/other/abc"), None);
    let q = |t: &str| template_param("/c/id-", ".json", t.as_bytes());
    assert_eq!(q("/C/ID-xY.JSON").as_deref(), Some("xY"));
    assert_eq!(q("/c/id-.json"), None);
    assert_eq!(q("/c/xd-a.json"), None);
}

#[test]
fn the_mode_only_changes_variants() {
    let t = Target::Token;
    for v in [Variants::Normalize, Variants::Refuse] {
        assert_eq!(Decision::Exact(t).outcome(v), Outcome::Serve(t));
        assert_eq!(Decision::Other.outcome(v), Outcome::PassThrough);
    }
    let v: Variants = serde_json::from_str("\"refuse\"").unwrap();
    assert_eq!(v, Variants::Refuse);
    assert_eq!(Variants::default(), Variants::Normalize);
}

/// The fuzz target's properties (fuzz/fuzz_targets/routing.rs) over targets built from
/// the pieces routers disagree on, so that `cargo test` checks them too.
#[test]
fn properties_hold_on_generated_targets() {
    const PIECES: &[&str] = &[
        "/",
        "//",
        "\\",
        ".",
        "..",
        "..;",
        ";x",
        "%2e",
        "%2E%2e",
        "%2F",
        "%252F",
        "%25",
        "%00",
        "%3F",
        "%23",
        "%",
        "%4",
        "%74",
        "%6F",
        "token",
        "TOKEN",
        "backchannel",
        ".well-known",
        "openid-configuration",
        "op",
        "connect",
        "ciba",
        "ı",
        "ſ",
        "\u{FB01}",
        "İ",
        "ｔ",
        "\u{212A}",
        "ẞ",
        " ",
        "x",
        "http://h",
        "http://a@b",
        "?q",
        "#f",
        "*",
        "%C4%B1",
        "%FF",
        "%0A",
        "ʼN",
    ];
    let r = Routes::new(&[
        (Target::Backchannel, "/backchannel", "/op/connect/ciba"),
        (Target::Token, "/token", "/token"),
        (Target::Discovery, DISCOVERY, DISCOVERY),
    ]);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..60_000 {
        let mut t = String::new();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = (seed >> 60) as usize + 1;
        for k in 0..n {
            let pick = (seed >> (k * 5 % 59)) as usize % PIECES.len();
            t.push_str(PIECES[pick]);
        }
        let d = r.classify(t.as_bytes());
        let (n_out, r_out) = (d.outcome(Variants::Normalize), d.outcome(Variants::Refuse));
        match d {
            Decision::Variant(x) => {
                assert_eq!((n_out, r_out), (Outcome::Serve(x), Outcome::NotFound))
            }
            _ => assert_eq!(n_out, r_out, "{t:?}"),
        }
        let Ok(c) = canonical_path(t.as_bytes()) else {
            continue;
        };
        assert_eq!(canonical_path(c.as_bytes()).as_ref(), Ok(&c), "{t:?}");
        if let Decision::Exact(x) | Decision::Variant(x) = d {
            assert!(
                matches!(r.classify(c.as_bytes()), Decision::Exact(y) | Decision::Variant(y) if y == x),
                "{t:?} -> {c:?}"
            );
        }
    }
}

/// The plain-path shortcut gives the full rule's answer: every target over a small
/// alphabet (letters of both cases, digits, `-`, `_`, `/`, and the bytes that leave the
/// shortcut: `.`, `%`, `;`, `\`, `?`) up to five bytes after the `/`, and the endpoints'
/// own spellings with separators and letter case changed.
#[test]
fn the_plain_path_shortcut_agrees_with_the_full_rule() {
    let r = Routes::new(&[
        (Target::Backchannel, "/bc-a", "/op/bc_a"),
        (Target::Token, "/t", "/Token2"),
        (Target::Discovery, DISCOVERY, DISCOVERY),
        (Target::Metadata, METADATA, METADATA),
    ]);
    let alphabet = b"tT2-_/.%;\\?a";
    let mut targets: Vec<Vec<u8>> = vec![b"/".to_vec()];
    let mut layer: Vec<Vec<u8>> = vec![b"/".to_vec()];
    for _ in 0..5 {
        let mut next = Vec::new();
        for t in &layer {
            for &b in alphabet {
                let mut n = t.clone();
                n.push(b);
                next.push(n);
            }
        }
        targets.extend(next.iter().cloned());
        layer = next;
    }
    for t in [
        "/BC-A",
        "/bc-a/",
        "//bc-a",
        "/op/BC_A",
        "/op//bc_a/",
        "/TOKEN2",
        "/x/t",
        "/t/x",
        "/token2?x=1",
        "/BC-A?a=%2e",
        "http://evil.example@host/x/t",
        "http://h/bc-a",
        "http://h/BC-A",
        "http:\\\\h/t",
        "*",
    ] {
        targets.push(t.as_bytes().to_vec());
    }
    let mut shortcut = 0;
    for t in &targets {
        let path = target_path(t);
        let full = match r.entries.iter().find(|e| e.public.as_bytes() == path) {
            Some(e) => Decision::Exact(e.target),
            None => r.classify_full(t, path),
        };
        assert_eq!(r.classify(t), full, "{}", String::from_utf8_lossy(t));
        shortcut += usize::from(t.first() == Some(&b'/') && plain_canonical(path).is_some());
    }
    // The shortcut was taken for a good share of them, and for the endpoints' variants.
    assert!(shortcut > 10_000, "{shortcut}");
    assert_eq!(r.classify(b"/BC-A"), Decision::Variant(Target::Backchannel));
    assert_eq!(r.classify(b"/token2/"), Decision::Variant(Target::Token));
}
