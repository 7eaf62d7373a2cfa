//! The OP's discovery document: learning the CIBA endpoints from it, and rewriting it so
//! that clients talk to the gateway.
//!
//! Pure: the document comes in as bytes, goes out as bytes. Fetching lives in `op_client`.

use serde_json::{Map, Value};

/// The CIBA grant type (CIBA 4).
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

/// The OP paths the gateway enforces CIBA on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    /// Path of the backchannel authentication endpoint, e.g. `/backchannel`.
    pub backchannel: String,
    /// Path of the token endpoint, e.g. `/token`.
    pub token: String,
    /// Path of the backchannel endpoint's mTLS alias (RFC 8705 5), when published.
    pub mtls_backchannel: Option<String>,
    /// Path of the token endpoint's mTLS alias (RFC 8705 5), when published.
    pub mtls_token: Option<String>,
}

/// RFC 8705 5: the discovery key whose object holds the mTLS aliases.
pub const MTLS_ALIASES: &str = "mtls_endpoint_aliases";

/// Reads the two CIBA endpoints from a discovery document; `configured` paths take precedence.
///
/// The document may name the OP by a host other than the one the gateway connects to (an
/// internal address behind a public name), so only the path of each URL is used.
pub fn endpoints_from(
    document: &[u8],
    configured_backchannel: Option<&str>,
    configured_token: Option<&str>,
) -> Result<Endpoints, String> {
    let doc: Value = serde_json::from_slice(document)
        .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
    let obj = doc
        .as_object()
        .ok_or("the discovery document is not a JSON object")?;
    let path_of = |key: &str| -> Result<String, String> {
        let url = obj.get(key).and_then(Value::as_str).ok_or_else(|| {
            format!("the discovery document has no `{key}`; set it in [upstream]")
        })?;
        url_path(url).ok_or_else(|| format!("`{key}` in the discovery document is not a URL"))
    };
    let backchannel = match configured_backchannel {
        Some(p) => p.to_string(),
        None => path_of("backchannel_authentication_endpoint")?,
    };
    let token = match configured_token {
        Some(p) => p.to_string(),
        None => path_of("token_endpoint")?,
    };
    let (mtls_backchannel, mtls_token) = mtls_aliases(obj)?;
    Ok(Endpoints {
        backchannel,
        token,
        mtls_backchannel,
        mtls_token,
    })
}

/// The paths of the backchannel and token endpoints' mTLS aliases (RFC 8705 5). An alias
/// that is present but not an http(s) URL is an error: a CIBA endpoint the gateway could
/// not route would be a way around every rule.
fn mtls_aliases(obj: &Map<String, Value>) -> Result<(Option<String>, Option<String>), String> {
    let Some(aliases) = obj.get(MTLS_ALIASES) else {
        return Ok((None, None));
    };
    let aliases = aliases
        .as_object()
        .ok_or_else(|| format!("`{MTLS_ALIASES}` in the discovery document is not an object"))?;
    let path_of = |key: &str| -> Result<Option<String>, String> {
        match aliases.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().and_then(url_path).map(Some).ok_or_else(|| {
                format!("`{MTLS_ALIASES}.{key}` in the discovery document is not a URL")
            }),
        }
    };
    Ok((
        path_of("backchannel_authentication_endpoint")?,
        path_of("token_endpoint")?,
    ))
}

/// The names the OP goes by, from its discovery document: its `issuer` and its own token
/// and backchannel endpoint URLs (what a FAPI client's JWTs put in `aud`). `None` without
/// a string `issuer`; a missing endpoint URL is left empty (it matches nothing).
pub fn op_names(document: &[u8]) -> Option<crate::ciba::fapi::OpNames> {
    let doc: Value = serde_json::from_slice(document).ok()?;
    let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    Some(crate::ciba::fapi::OpNames {
        issuer: s("issuer").filter(|i| !i.is_empty())?,
        token_endpoint: s("token_endpoint").unwrap_or_default(),
        backchannel_endpoint: s("backchannel_authentication_endpoint").unwrap_or_default(),
    })
}

/// What discovery says of the FAPI profile the gateway enforces (FAPI-CIBA 5.2.2, CIBA 4):
/// the request-object and assertion algorithms, no push, and only the client
/// authentication methods FAPI allows.
pub fn apply_fapi(
    document: &[u8],
    request_algs: &[&str],
    assertion_algs: &[&str],
) -> Result<Vec<u8>, String> {
    let mut doc: Value = serde_json::from_slice(document)
        .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
    let obj = doc
        .as_object_mut()
        .ok_or("the discovery document is not a JSON object")?;
    let strings = |v: &[&str]| Value::Array(v.iter().map(|s| Value::String((*s).into())).collect());
    obj.insert(
        "backchannel_authentication_request_signing_alg_values_supported".into(),
        strings(request_algs),
    );
    obj.insert(
        "token_endpoint_auth_signing_alg_values_supported".into(),
        strings(assertion_algs),
    );
    if let Some(Value::Array(modes)) = obj.get_mut("backchannel_token_delivery_modes_supported") {
        modes.retain(|m| m.as_str() != Some("push"));
        if modes.is_empty() {
            modes.push(Value::String("poll".into()));
        }
    }
    const FAPI_METHODS: [&str; 3] = [
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ];
    let methods: Vec<Value> = match obj.get("token_endpoint_auth_methods_supported") {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|m| m.as_str().is_some_and(|m| FAPI_METHODS.contains(&m)))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let methods = if methods.is_empty() {
        strings(&["private_key_jwt"])
    } else {
        Value::Array(methods)
    };
    obj.insert("token_endpoint_auth_methods_supported".into(), methods);
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

/// The path of an absolute `http(s)` URL (without query).
pub fn url_path(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    match uri.scheme_str() {
        Some("http" | "https") => Some(uri.path().to_string()),
        _ => None,
    }
}

/// Rewrites a discovery document for clients of the gateway.
///
/// Every endpoint URL takes `public_base` as its origin and `public_path` of its path,
/// because every path on the OP is reachable through the gateway (under the profile's
/// public name, when it has one). `endpoints` holds the public CIBA paths. `issuer` is
/// kept: ID tokens carry it and clients compare the two. The CIBA metadata (CIBA 4) is made present and consistent:
/// the backchannel endpoint, the CIBA grant, and the delivery modes (poll when absent).
pub fn rewrite(
    document: &[u8],
    public_base: &str,
    endpoints: &Endpoints,
    public_path: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, String> {
    rewrite_with_modes(document, public_base, endpoints, public_path, &[])
}

/// [`rewrite`], with the delivery modes the gateway itself offers on top of the OP's
/// (`ping` when it pings clients on the OP's behalf).
pub fn rewrite_with_modes(
    document: &[u8],
    public_base: &str,
    endpoints: &Endpoints,
    public_path: &dyn Fn(&str) -> String,
    gateway_modes: &[&str],
) -> Result<Vec<u8>, String> {
    let mut doc: Value = serde_json::from_slice(document)
        .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
    let obj = doc
        .as_object_mut()
        .ok_or("the discovery document is not a JSON object")?;
    for (key, value) in obj.iter_mut() {
        if is_endpoint_key(key) {
            rebase_value(value, public_base, public_path);
        } else if key == MTLS_ALIASES {
            // RFC 8705 5: every alias points at the gateway too, or a client would take
            // the OP's alias around the gateway's rules.
            if let Value::Object(aliases) = value {
                for (_, v) in aliases.iter_mut() {
                    rebase_value(v, public_base, public_path);
                }
            }
        }
    }
    if let Some(Value::Object(aliases)) = obj.get_mut(MTLS_ALIASES) {
        // An alias the gateway does not route (configured paths, no alias configured)
        // points at the endpoint itself, never at a path that would pass through.
        for (key, alias, endpoint) in [
            (
                "backchannel_authentication_endpoint",
                &endpoints.mtls_backchannel,
                &endpoints.backchannel,
            ),
            ("token_endpoint", &endpoints.mtls_token, &endpoints.token),
        ] {
            if aliases.contains_key(key) {
                let path = alias.as_ref().unwrap_or(endpoint);
                aliases.insert(key.into(), Value::String(format!("{public_base}{path}")));
            }
        }
    }
    obj.insert(
        "backchannel_authentication_endpoint".into(),
        Value::String(format!("{public_base}{}", endpoints.backchannel)),
    );
    obj.insert(
        "token_endpoint".into(),
        Value::String(format!("{public_base}{}", endpoints.token)),
    );
    ensure_contains(obj, "grant_types_supported", CIBA_GRANT);
    // What the OP lacks or gets wrong is replaced by what the gateway offers: the modes it
    // knows (poll always), and a boolean user_code flag.
    let modes: Vec<Value> = match obj.get("backchannel_token_delivery_modes_supported") {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|m| matches!(m.as_str(), Some("poll" | "ping" | "push")))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let mut modes = if modes.is_empty() {
        vec![Value::String("poll".into())]
    } else {
        modes
    };
    for mode in gateway_modes {
        if !modes.iter().any(|m| m.as_str() == Some(mode)) {
            modes.push(Value::String((*mode).into()));
        }
    }
    obj.insert(
        "backchannel_token_delivery_modes_supported".into(),
        Value::Array(modes),
    );
    let user_code = match obj.get("backchannel_user_code_parameter_supported") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    obj.insert(
        "backchannel_user_code_parameter_supported".into(),
        Value::Bool(user_code),
    );
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

fn is_endpoint_key(key: &str) -> bool {
    key.ends_with("_endpoint") || key == "jwks_uri"
}

fn rebase_value(value: &mut Value, public_base: &str, public_path: &dyn Fn(&str) -> String) {
    if let Value::String(url) = value {
        if let Some(path) = rebased(url, public_base, public_path) {
            *url = path;
        }
    }
}

fn rebased(url: &str, public_base: &str, public_path: &dyn Fn(&str) -> String) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{public_base}{}{query}", public_path(uri.path())))
}

fn ensure_contains(obj: &mut Map<String, Value>, key: &str, item: &str) {
    match obj.get_mut(key) {
        Some(Value::Array(items)) => {
            if !items.iter().any(|v| v.as_str() == Some(item)) {
                items.push(Value::String(item.into()));
            }
        }
        _ => {
            obj.insert(key.into(), Value::Array(vec![Value::String(item.into())]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op_doc() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "issuer": "http://127.0.0.1:3000",
            "token_endpoint": "http://127.0.0.1:3000/token",
            "backchannel_authentication_endpoint": "http://127.0.0.1:3000/backchannel",
            "jwks_uri": "http://127.0.0.1:3000/jwks",
            "userinfo_endpoint": "http://op.internal/me?x=1",
            "grant_types_supported": ["authorization_code"],
            "scopes_supported": ["openid"],
        }))
        .unwrap()
    }

    #[test]
    fn the_gateway_s_modes_are_added_once() {
        let e = Endpoints {
            backchannel: "/bc".into(),
            token: "/token".into(),
            ..Default::default()
        };
        let same = |p: &str| p.to_string();
        let modes = |doc: &[u8], extra: &[&str]| -> Value {
            let out = rewrite_with_modes(doc, "https://gw", &e, &same, extra).unwrap();
            serde_json::from_slice::<Value>(&out).unwrap()
                ["backchannel_token_delivery_modes_supported"]
                .clone()
        };
        assert_eq!(modes(&op_doc(), &["ping"]), json!(["poll", "ping"]));
        assert_eq!(modes(&op_doc(), &[]), json!(["poll"]));
        let doc = br#"{"backchannel_token_delivery_modes_supported":["poll","ping"]}"#;
        assert_eq!(modes(doc, &["ping"]), json!(["poll", "ping"]));
    }

    #[test]
    fn fapi_metadata_is_what_the_gateway_enforces() {
        let doc = br#"{"issuer":"https://op","token_endpoint":"https://op/token",
            "backchannel_token_delivery_modes_supported":["poll","ping","push"],
            "token_endpoint_auth_methods_supported":["client_secret_basic","private_key_jwt","none"],
            "backchannel_authentication_request_signing_alg_values_supported":["RS256","none"]}"#;
        let v: Value =
            serde_json::from_slice(&apply_fapi(doc, &["PS256", "ES256"], &["ES256"]).unwrap())
                .unwrap();
        assert_eq!(
            v["backchannel_token_delivery_modes_supported"],
            json!(["poll", "ping"])
        );
        assert_eq!(
            v["backchannel_authentication_request_signing_alg_values_supported"],
            json!(["PS256", "ES256"])
        );
        assert_eq!(
            v["token_endpoint_auth_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(
            v["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        let names = op_names(doc).unwrap();
        assert_eq!(
            (
                names.issuer.as_str(),
                names.token_endpoint.as_str(),
                names.backchannel_endpoint.as_str()
            ),
            ("https://op", "https://op/token", "")
        );
        assert!(op_names(br#"{"issuer":""}"#).is_none());
        assert!(op_names(b"[]").is_none());
    }

    #[test]
    fn learns_paths_and_configured_ones_win() {
        let e = endpoints_from(&op_doc(), None, None).unwrap();
        assert_eq!(e.backchannel, "/backchannel");
        assert_eq!(e.token, "/token");
        let e = endpoints_from(&op_doc(), Some("/op/connect/ciba"), None).unwrap();
        assert_eq!(e.backchannel, "/op/connect/ciba");
    }

    #[test]
    fn missing_endpoint_is_a_clear_error() {
        let doc = br#"{"issuer":"x","token_endpoint":"http://a/token"}"#;
        let e = endpoints_from(doc, None, None).unwrap_err();
        assert!(e.contains("backchannel_authentication_endpoint"), "{e}");
        assert!(endpoints_from(b"<html>", None, None).is_err());
        assert!(endpoints_from(b"[]", None, None).is_err());
    }

    #[test]
    fn hostile_documents_are_refused_or_rewritten_safely() {
        let refused: &[&[u8]] = &[
            b"",
            b"null",
            b"\"text\"",
            br#"{"backchannel_authentication_endpoint":5,"token_endpoint":"http://a/t"}"#,
            br#"{"backchannel_authentication_endpoint":"/relative","token_endpoint":"http://a/t"}"#,
            br#"{"backchannel_authentication_endpoint":"javascript:alert(1)","token_endpoint":"http://a/t"}"#,
            br#"{"backchannel_authentication_endpoint":"ftp://a/b","token_endpoint":"http://a/t"}"#,
            br#"{"backchannel_authentication_endpoint":"http://a/b c","token_endpoint":"http://a/t"}"#,
            br#"{"backchannel_authentication_endpoint":"http://a/b","token_endpoint":null}"#,
            br#"{"backchannel_authentication_endpoint":"http://a/b","token_endpoint":"http://a/t""#,
            &[b'['; 10_000],
        ];
        for doc in refused {
            assert!(
                endpoints_from(doc, None, None).is_err(),
                "{}",
                String::from_utf8_lossy(&doc[..doc.len().min(80)])
            );
        }
        // Odd but readable: duplicate keys (the last wins, as in serde_json), queries and
        // fragments (the path alone is kept), non-string neighbours left alone.
        let odd = br#"{"token_endpoint":"http://a/x","token_endpoint":"https://a:8443/t?x=1#f",
            "backchannel_authentication_endpoint":"http://a/b","userinfo_endpoint":7,
            "backchannel_token_delivery_modes_supported":"poll","grant_types_supported":{}}"#;
        let e = endpoints_from(odd, None, None).unwrap();
        assert_eq!((e.backchannel.as_str(), e.token.as_str()), ("/b", "/t"));
        let out: Value =
            serde_json::from_slice(&rewrite(odd, "https://gw", &e, &same).unwrap()).unwrap();
        assert_eq!(out["token_endpoint"], "https://gw/t");
        assert_eq!(out["userinfo_endpoint"], 7);
        assert_eq!(
            out["backchannel_token_delivery_modes_supported"],
            serde_json::json!(["poll"])
        );
        assert!(out["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&Value::String(CIBA_GRANT.into()))));
    }

    #[test]
    fn rewrite_points_endpoints_at_the_gateway_and_keeps_issuer() {
        let e = endpoints_from(&op_doc(), None, None).unwrap();
        let out = rewrite(&op_doc(), "https://gw.example", &e, &same).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["issuer"], "http://127.0.0.1:3000");
        assert_eq!(v["token_endpoint"], "https://gw.example/token");
        assert_eq!(
            v["backchannel_authentication_endpoint"],
            "https://gw.example/backchannel"
        );
        assert_eq!(v["jwks_uri"], "https://gw.example/jwks");
        assert_eq!(v["userinfo_endpoint"], "https://gw.example/me?x=1");
        assert_eq!(v["scopes_supported"], json!(["openid"]));
        assert_eq!(
            v["grant_types_supported"],
            json!(["authorization_code", CIBA_GRANT])
        );
        assert_eq!(
            v["backchannel_token_delivery_modes_supported"],
            json!(["poll"])
        );
        assert_eq!(v["backchannel_user_code_parameter_supported"], json!(false));
    }

    fn same(p: &str) -> String {
        p.to_string()
    }

    #[test]
    fn rewrite_corrects_wrong_ciba_metadata() {
        let e = Endpoints {
            backchannel: "/bc".into(),
            token: "/token".into(),
            ..Default::default()
        };
        let doc = br#"{"issuer":"i","backchannel_token_delivery_modes_supported":"poll","backchannel_user_code_parameter_supported":"true","grant_types_supported":"x"}"#;
        let v: Value =
            serde_json::from_slice(&rewrite(doc, "http://gw", &e, &same).unwrap()).unwrap();
        assert_eq!(
            v["backchannel_token_delivery_modes_supported"],
            json!(["poll"])
        );
        assert_eq!(v["backchannel_user_code_parameter_supported"], json!(true));
        assert_eq!(v["grant_types_supported"], json!([CIBA_GRANT]));
        let doc = br#"{"issuer":"i","backchannel_token_delivery_modes_supported":["poll","carrier-pigeon","ping"]}"#;
        let v: Value =
            serde_json::from_slice(&rewrite(doc, "http://gw", &e, &same).unwrap()).unwrap();
        assert_eq!(
            v["backchannel_token_delivery_modes_supported"],
            json!(["poll", "ping"])
        );
    }

    #[test]
    fn rewrite_uses_public_paths() {
        let e = Endpoints {
            backchannel: "/backchannel".into(),
            token: "/token".into(),
            ..Default::default()
        };
        let doc =
            br#"{"issuer":"i","token_endpoint":"http://a/op/token","jwks_uri":"http://a/op/keys"}"#;
        let map = |p: &str| {
            if p == "/op/token" {
                "/token".to_string()
            } else {
                p.to_string()
            }
        };
        let v: Value =
            serde_json::from_slice(&rewrite(doc, "http://gw", &e, &map).unwrap()).unwrap();
        assert_eq!(v["token_endpoint"], "http://gw/token");
        assert_eq!(v["jwks_uri"], "http://gw/op/keys");
    }

    #[test]
    fn rewrite_adds_a_missing_backchannel_endpoint() {
        let doc = br#"{"issuer":"i","token_endpoint":"http://a/connect/token"}"#;
        let e = endpoints_from(doc, Some("/op/connect/ciba"), None).unwrap();
        let v: Value =
            serde_json::from_slice(&rewrite(doc, "http://gw", &e, &same).unwrap()).unwrap();
        assert_eq!(
            v["backchannel_authentication_endpoint"],
            "http://gw/op/connect/ciba"
        );
        assert_eq!(v["token_endpoint"], "http://gw/connect/token");
    }

    #[test]
    fn mtls_aliases_are_learned_and_pointed_at_the_gateway() {
        let doc = serde_json::to_vec(&json!({
            "token_endpoint": "http://op/token",
            "backchannel_authentication_endpoint": "http://op/backchannel",
            "mtls_endpoint_aliases": {
                "token_endpoint": "https://mtls.op/mtls/token",
                "backchannel_authentication_endpoint": "https://mtls.op/mtls/backchannel",
                "introspection_endpoint": "https://mtls.op/mtls/introspect",
                "odd": 5
            }
        }))
        .unwrap();
        let e = endpoints_from(&doc, None, None).unwrap();
        assert_eq!(e.mtls_token.as_deref(), Some("/mtls/token"));
        assert_eq!(e.mtls_backchannel.as_deref(), Some("/mtls/backchannel"));
        let out = rewrite(&doc, "https://gw", &e, &|p: &str| p.to_string()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["mtls_endpoint_aliases"],
            json!({
                "token_endpoint": "https://gw/mtls/token",
                "backchannel_authentication_endpoint": "https://gw/mtls/backchannel",
                "introspection_endpoint": "https://gw/mtls/introspect",
                "odd": 5
            })
        );
        // Aliases the gateway does not route point at the endpoints themselves.
        let plain = Endpoints {
            backchannel: "/backchannel".into(),
            token: "/token".into(),
            ..Default::default()
        };
        let out = rewrite(&doc, "https://gw", &plain, &|p: &str| p.to_string()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["mtls_endpoint_aliases"]["token_endpoint"],
            "https://gw/token"
        );
        assert_eq!(
            v["mtls_endpoint_aliases"]["backchannel_authentication_endpoint"],
            "https://gw/backchannel"
        );
        for bad in [
            json!({"token_endpoint": "http://op/t", "backchannel_authentication_endpoint": "http://op/b", "mtls_endpoint_aliases": []}),
            json!({"token_endpoint": "http://op/t", "backchannel_authentication_endpoint": "http://op/b", "mtls_endpoint_aliases": {"token_endpoint": "/relative"}}),
            json!({"token_endpoint": "http://op/t", "backchannel_authentication_endpoint": "http://op/b", "mtls_endpoint_aliases": {"backchannel_authentication_endpoint": 1}}),
        ] {
            assert!(
                endpoints_from(&serde_json::to_vec(&bad).unwrap(), None, None).is_err(),
                "{bad}"
            );
        }
    }
}
