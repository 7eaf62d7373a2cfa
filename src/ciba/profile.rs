//! Translation profiles: how a legacy or vendor OP's dialect of CIBA maps onto the spec.
//!
//! A profile is configuration only (`[profile]`): public paths mapped to the OP's paths,
//! the OP's error codes mapped to the spec's, acknowledgement fields under other names,
//! and defaults for missing ones. Pure: JSON values in, JSON values out.

use crate::ciba::config_error::ConfigError;
use crate::ciba::error::ErrorCode;
use crate::ciba::pipeline::Endpoint;
use crate::ciba::routing;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// `[profile]` in the configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// A name for logs and the README (e.g. `signaturgruppen`).
    pub name: Option<String>,
    /// Public path → the OP's path, for any path (exact match).
    pub paths: BTreeMap<String, String>,
    /// The OP's error code → the spec's (CIBA 11 and 13), e.g. `pending = "authorization_pending"`.
    pub error_codes: BTreeMap<String, String>,
    /// Acknowledgement fields under other names: spec name → the OP's name,
    /// e.g. `auth_req_id = "request_id"`.
    pub ack_fields: BTreeMap<String, String>,
    /// `expires_in` in seconds when the OP's acknowledgement has none.
    pub default_expires_in: Option<u64>,
}

/// What translating one answer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The status the client gets.
    pub status: u16,
    /// The body the client gets.
    pub body: Value,
    /// An error code from the OP outside the spec's vocabulary and the profile's map,
    /// passed through as it is (and counted).
    pub unknown_error: bool,
}

impl Profile {
    /// Checks the profile; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (public, op) in &self.paths {
            for p in [public, op] {
                if !p.starts_with('/')
                    || p.contains(['?', '#', ' '])
                    || p.parse::<http::uri::PathAndQuery>().is_err()
                {
                    return Err(ConfigError::new(
                        "profile.paths",
                        format!("`{p}` is not an absolute path without query"),
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for op in self.paths.values() {
            if !seen.insert(routing::canonical_path(op.as_bytes()).ok()) {
                return Err(ConfigError::new(
                    "profile.paths",
                    format!("two public paths map to `{op}`; the mapping must be one to one"),
                ));
            }
        }
        let mut publics = std::collections::BTreeSet::new();
        for public in self.paths.keys() {
            if !publics.insert(routing::canonical_path(public.as_bytes()).ok()) {
                return Err(ConfigError::new(
                    "profile.paths",
                    format!("`{public}` is another spelling of a public path already listed"),
                ));
            }
        }
        for (from, to) in &self.error_codes {
            if ErrorCode::parse(to).is_none() {
                return Err(ConfigError::new(
                    format!("profile.error_codes.{from}"),
                    format!("`{to}` is not a CIBA or OAuth error code"),
                ));
            }
        }
        for spec in self.ack_fields.keys() {
            if !matches!(spec.as_str(), "auth_req_id" | "expires_in" | "interval") {
                return Err(ConfigError::new(
                    format!("profile.ack_fields.{spec}"),
                    "only auth_req_id, expires_in and interval can be renamed",
                ));
            }
        }
        if self.default_expires_in == Some(0) {
            return Err(ConfigError::new(
                "profile.default_expires_in",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The OP's path for a public path, which may be spelled in any way the routing rule
    /// folds together (`routing::canonical_path`).
    pub fn to_op_path<'a>(&'a self, public: &'a str) -> Cow<'a, str> {
        match self.op_path(public) {
            Some(op) => Cow::Borrowed(op),
            None => Cow::Borrowed(public),
        }
    }

    /// The OP's path when `public` is one of the profile's public paths, in any spelling.
    pub fn op_path(&self, public: &str) -> Option<&str> {
        if self.paths.is_empty() {
            return None;
        }
        if let Some(op) = self.paths.get(public) {
            return Some(op);
        }
        let wanted = routing::canonical_path(public.as_bytes()).ok()?;
        self.paths
            .iter()
            .find(|(p, _)| routing::canonical_path(p.as_bytes()).ok().as_ref() == Some(&wanted))
            .map(|(_, op)| op.as_str())
    }

    /// The public path for one of the OP's paths, in any spelling.
    pub fn to_public_path<'a>(&'a self, op: &'a str) -> Cow<'a, str> {
        if let Some((public, _)) = self.paths.iter().find(|(_, o)| o.as_str() == op) {
            return Cow::Borrowed(public.as_str());
        }
        let wanted = routing::canonical_path(op.as_bytes()).ok();
        match self
            .paths
            .iter()
            .find(|(_, o)| wanted.is_some() && routing::canonical_path(o.as_bytes()).ok() == wanted)
        {
            Some((public, _)) => Cow::Borrowed(public.as_str()),
            None => Cow::Borrowed(op),
        }
    }

    /// Translates a JSON answer from a CIBA endpoint into the spec's form.
    ///
    /// An object with an `error` member is an error whatever its status (legacy OPs answer
    /// 200 with an error body); its code is mapped and its status becomes the spec's for
    /// that code and endpoint. A 200 acknowledgement has its fields renamed and filled.
    pub fn translate(&self, endpoint: Endpoint, status: u16, body: Value) -> Translated {
        let Value::Object(mut obj) = body else {
            return Translated {
                status,
                body,
                unknown_error: false,
            };
        };
        if let Some(op_code) = obj.get("error").and_then(Value::as_str).map(str::to_string) {
            let mapped = self
                .error_codes
                .get(&op_code)
                .map(String::as_str)
                .unwrap_or(&op_code);
            return match ErrorCode::parse(mapped) {
                Some(code) => {
                    obj.insert("error".into(), Value::String(code.as_str().into()));
                    Translated {
                        status: endpoint.status_of(code),
                        body: Value::Object(obj),
                        unknown_error: false,
                    }
                }
                None => Translated {
                    // Passed through as the OP said it, but never as a success.
                    status: if (400..600).contains(&status) {
                        status
                    } else {
                        400
                    },
                    body: Value::Object(obj),
                    unknown_error: true,
                },
            };
        }
        if endpoint == Endpoint::Backchannel && (200..300).contains(&status) {
            self.rename_ack_fields(&mut obj);
            if !obj.contains_key("expires_in") {
                if let Some(d) = self.default_expires_in {
                    obj.insert("expires_in".into(), d.into());
                }
            }
            return Translated {
                status: 200,
                body: Value::Object(obj),
                unknown_error: false,
            };
        }
        Translated {
            status,
            body: Value::Object(obj),
            unknown_error: false,
        }
    }

    fn rename_ack_fields(&self, obj: &mut Map<String, Value>) {
        for (spec, theirs) in &self.ack_fields {
            if obj.contains_key(spec) {
                continue;
            }
            if let Some(v) = obj.remove(theirs) {
                obj.insert(spec.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn legacy() -> Profile {
        toml::from_str(
            r#"
            name = "legacy"
            default_expires_in = 120
            [paths]
            "/backchannel" = "/legacy/ciba"
            "/token" = "/legacy/token"
            [error_codes]
            pending = "authorization_pending"
            too_fast = "slow_down"
            denied = "access_denied"
            bad_client = "invalid_client"
            [ack_fields]
            auth_req_id = "request_id"
            interval = "pollInterval"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn paths_map_both_ways() {
        let p = legacy();
        assert_eq!(p.to_op_path("/backchannel"), "/legacy/ciba");
        assert_eq!(p.to_op_path("/jwks"), "/jwks");
        assert_eq!(p.to_public_path("/legacy/token"), "/token");
        assert_eq!(p.to_public_path("/other"), "/other");
        assert!(p.validate().is_ok());
        // Every spelling the routing rule folds together maps the same way.
        assert_eq!(p.to_op_path("/BACKCHANNEL/"), "/legacy/ciba");
        assert_eq!(p.to_op_path("/./%74oken"), "/legacy/token");
        assert_eq!(p.to_op_path("/tokenx"), "/tokenx");
        assert_eq!(p.to_public_path("/Legacy//Token"), "/token");
    }

    #[test]
    fn errors_get_the_spec_code_and_status() {
        let p = legacy();
        let t = p.translate(Endpoint::Token, 200, json!({"error": "pending"}));
        assert_eq!(
            (t.status, t.body["error"].clone()),
            (400, json!("authorization_pending"))
        );
        let t = p.translate(
            Endpoint::Backchannel,
            400,
            json!({"error": "denied", "error_description": "no"}),
        );
        assert_eq!(
            (t.status, t.body["error"].clone()),
            (403, json!("access_denied"))
        );
        assert_eq!(t.body["error_description"], "no");
        let t = p.translate(Endpoint::Token, 400, json!({"error": "denied"}));
        assert_eq!(t.status, 400, "access_denied is 400 at the token endpoint");
        let t = p.translate(Endpoint::Token, 400, json!({"error": "bad_client"}));
        assert_eq!(t.status, 401);
        let t = p.translate(Endpoint::Token, 500, json!({"error": "invalid_grant"}));
        assert_eq!(t.status, 400, "a spec code gets the spec status");
    }

    #[test]
    fn unknown_codes_pass_through_and_are_flagged() {
        let p = legacy();
        let t = p.translate(Endpoint::Token, 418, json!({"error": "teapot"}));
        assert_eq!((t.status, t.unknown_error), (418, true));
        let t = p.translate(Endpoint::Token, 200, json!({"error": "teapot"}));
        assert_eq!(t.status, 400, "an error is never a 200");
    }

    #[test]
    fn acks_are_renamed_and_filled() {
        let p = legacy();
        let t = p.translate(
            Endpoint::Backchannel,
            200,
            json!({"request_id": "r1", "pollInterval": 7}),
        );
        assert_eq!(
            t.body,
            json!({"auth_req_id": "r1", "interval": 7, "expires_in": 120})
        );
        let t = p.translate(
            Endpoint::Backchannel,
            200,
            json!({"auth_req_id": "r2", "request_id": "x", "expires_in": 30}),
        );
        assert_eq!(t.body["auth_req_id"], "r2", "a spec field present wins");
        assert_eq!(t.body["expires_in"], 30);
    }

    #[test]
    fn tokens_pass_unchanged() {
        let p = legacy();
        let body = json!({"access_token": "t", "token_type": "Bearer"});
        let t = p.translate(Endpoint::Token, 200, body.clone());
        assert_eq!((t.status, t.body, t.unknown_error), (200, body, false));
    }

    #[test]
    fn bad_profiles_name_the_key() {
        let cases = [
            ("[paths]\n\"backchannel\" = \"/x\"\n", "profile.paths"),
            (
                "[paths]\n\"/a\" = \"/x\\u007f\"\n",
                "profile.paths: `/x\u{7f}`",
            ),
            ("[paths]\n\"/a\" = \"/x\"\n\"/b\" = \"/x\"\n", "one to one"),
            (
                "[paths]\n\"/a\" = \"/x\"\n\"/A/\" = \"/y\"\n",
                "another spelling",
            ),
            (
                "[error_codes]\npending = \"nearly_done\"\n",
                "profile.error_codes.pending",
            ),
            ("[ack_fields]\ntoken = \"t\"\n", "profile.ack_fields.token"),
            ("default_expires_in = 0\n", "profile.default_expires_in"),
        ];
        for (text, expect) in cases {
            let p: Profile = toml::from_str(text).unwrap();
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
