//! `[bridge]`: CIBA served by the gateway in front of an OP that has only the
//! authorization code flow (PKCE), each backchannel request turned into a pushed
//! authorization request (RFC 9126) or a plain authorization URL.

use super::err;
use super::file::BridgeSection;
use super::ping::{check_endpoint, decode_key};
use super::upstream::OpSettings;
use crate::ciba::bridge::par::LoginHintTokenMapping;
use crate::ciba::config_error::ConfigError;
use crate::ciba::ids::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `bridge.backchannel_path` when unset.
pub const DEFAULT_BACKCHANNEL_PATH: &str = "/backchannel";
/// `bridge.callback_path` when unset.
pub const DEFAULT_CALLBACK_PATH: &str = "/ciba-bridge/callback";
/// `bridge.api_path` when unset.
pub const DEFAULT_API_PATH: &str = "/ciba-bridge/authorization-url";
/// `bridge.expires_in` when unset: five minutes.
pub const DEFAULT_EXPIRES_IN: u64 = 300;
/// `bridge.interval` when unset (CIBA 7.3's default).
pub const DEFAULT_INTERVAL: u64 = 5;
/// `bridge.return_to` when unset.
pub const DEFAULT_RETURN_TO: &str = "the application that asked you to sign in";

/// How the authorization request reaches the OP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeMode {
    /// Pushed (RFC 9126) with the client's credential: the OP authenticates the client.
    #[default]
    Par,
    /// In the authorization URL, for OPs without PAR: the gateway checks the client's
    /// secret against `bridge.clients.<id>.secret_sha256`.
    Plain,
}

/// The validated `[bridge]`.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// Pushed or plain.
    pub mode: BridgeMode,
    /// The key the sealing and credential-hash keys derive from.
    pub key: Secret<[u8; 32]>,
    /// The gateway's backchannel path.
    pub backchannel_path: String,
    /// The callback's path.
    pub callback_path: String,
    /// The API's path, or `None` when switched off.
    pub api_path: Option<String>,
    /// Longest lifetime of a request, in seconds.
    pub expires_in: u64,
    /// The announced poll interval, in seconds.
    pub interval: u64,
    /// The callback page's "return to" text.
    pub return_to: String,
    /// What a `login_hint_token` becomes.
    pub login_hint_token: LoginHintTokenMapping,
    /// Where authorization URLs are posted for delivery to the user, if anywhere.
    pub notifier: Option<(http::Uri, bool)>,
    /// Clients' secret hashes (plain mode), by `client_id`.
    pub secrets: BTreeMap<String, [u8; 32]>,
}

impl Bridge {
    /// The defaults with this key, in PAR mode (`ciba-gateway demo --bridge`).
    pub fn with_key(key: Secret<[u8; 32]>) -> Bridge {
        Bridge {
            mode: BridgeMode::Par,
            key,
            backchannel_path: DEFAULT_BACKCHANNEL_PATH.into(),
            callback_path: DEFAULT_CALLBACK_PATH.into(),
            api_path: Some(DEFAULT_API_PATH.into()),
            expires_in: DEFAULT_EXPIRES_IN,
            interval: DEFAULT_INTERVAL,
            return_to: DEFAULT_RETURN_TO.into(),
            login_hint_token: LoginHintTokenMapping::Refuse,
            notifier: None,
            secrets: BTreeMap::new(),
        }
    }
}

/// Checks `[bridge]`; `None` unless `enabled = true`.
pub(super) fn validate_bridge(
    b: BridgeSection,
    upstream: &OpSettings,
    pinging: bool,
) -> Result<Option<Bridge>, ConfigError> {
    if !b.enabled.unwrap_or(false) {
        return Ok(None);
    }
    if pinging {
        return Err(err(
            "bridge.enabled",
            "cannot be combined with [ping] clients: bridge requests are polled at the gateway",
        ));
    }
    if upstream.backchannel_path.is_some() {
        return Err(err(
            "upstream.backchannel_path",
            "is set with bridge.enabled; the OP has no backchannel endpoint in bridge mode, \
             set bridge.backchannel_path for the gateway's own",
        ));
    }
    let key = match (b.key, b.key_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "bridge.key_file",
                "is set together with bridge.key; keep one of them",
            ))
        }
        (Some(k), None) => decode_key("bridge.key", &k)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "bridge.key_file",
                    format!("cannot read the key file: {}", e.kind()),
                )
            })?;
            decode_key("bridge.key_file", &text)?
        }
        (None, None) => {
            return Err(err(
                "bridge.key",
                "is required with bridge.enabled (`openssl rand -base64 32`)",
            ))
        }
    };
    let path = |key: &str, value: Option<String>, default: &str| -> Result<String, ConfigError> {
        let p = value.unwrap_or_else(|| default.to_string());
        if !p.starts_with('/')
            || p.len() > 200
            || !p
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/-._~".contains(&c))
        {
            return Err(err(
                key,
                "must be a path starting with `/` made of letters, digits and `/-._~`",
            ));
        }
        Ok(p)
    };
    let backchannel_path = path(
        "bridge.backchannel_path",
        b.backchannel_path,
        DEFAULT_BACKCHANNEL_PATH,
    )?;
    let callback_path = path(
        "bridge.callback_path",
        b.callback_path,
        DEFAULT_CALLBACK_PATH,
    )?;
    let api_path = match b.api_path.as_deref() {
        Some("") => None,
        _ => Some(path("bridge.api_path", b.api_path, DEFAULT_API_PATH)?),
    };
    let mut seen = vec![&backchannel_path, &callback_path];
    if let Some(a) = &api_path {
        seen.push(a);
    }
    if upstream
        .token_path
        .as_ref()
        .is_some_and(|t| seen.contains(&t))
    {
        return Err(err(
            "bridge.backchannel_path",
            "the bridge's paths and upstream.token_path must differ",
        ));
    }
    seen.sort();
    seen.dedup();
    if seen.len() != 2 + usize::from(api_path.is_some()) {
        return Err(err(
            "bridge.callback_path",
            "bridge.backchannel_path, bridge.callback_path and bridge.api_path must differ",
        ));
    }
    let expires_in = b.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    if !(10..=3600).contains(&expires_in) {
        return Err(err(
            "bridge.expires_in",
            "must be between 10 and 3600 seconds",
        ));
    }
    let interval = b.interval.unwrap_or(DEFAULT_INTERVAL);
    if !(1..=60).contains(&interval) {
        return Err(err("bridge.interval", "must be between 1 and 60 seconds"));
    }
    let return_to = b.return_to.unwrap_or_else(|| DEFAULT_RETURN_TO.to_string());
    if return_to.is_empty() || return_to.chars().count() > 100 {
        return Err(err("bridge.return_to", "must be 1 to 100 characters"));
    }
    let allow_insecure = b.notifier_allow_insecure.unwrap_or(false);
    let notifier = b
        .notifier_url
        .map(|u| check_endpoint("bridge.notifier_url", &u, allow_insecure))
        .transpose()?
        .map(|u| (u, allow_insecure));
    let mode = b.mode.unwrap_or_default();
    let mut secrets = BTreeMap::new();
    for (id, c) in b.clients {
        let key = format!("bridge.clients.\"{id}\".secret_sha256");
        if let Some(hex) = c.secret_sha256 {
            secrets.insert(id, decode_sha256(&key, &hex)?);
        } else if mode == BridgeMode::Plain {
            return Err(err(&key, "is required with bridge.mode = \"plain\""));
        }
    }
    if mode == BridgeMode::Plain && secrets.is_empty() {
        return Err(err(
            "bridge.clients",
            "lists no client; with bridge.mode = \"plain\" the gateway authenticates clients \
             itself, by their secret_sha256",
        ));
    }
    Ok(Some(Bridge {
        mode,
        key,
        backchannel_path,
        callback_path,
        api_path,
        expires_in,
        interval,
        return_to,
        login_hint_token: b.login_hint_token.unwrap_or_default(),
        notifier,
        secrets,
    }))
}

/// With the bridge on, a client configured (`[clients."id"]`) for a method the bridge
/// cannot present twice is refused at start-up rather than at its first request.
pub(super) fn check_clients(
    bridge: Option<&Bridge>,
    clients: &super::Clients,
) -> Result<(), ConfigError> {
    use crate::ciba::client_auth::AuthMethod;
    if bridge.is_none() {
        return Ok(());
    }
    for (id, c) in &clients.by_id {
        if let Some(m) = c.auth_method.filter(|m| {
            !matches!(
                m,
                AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic
            )
        }) {
            return Err(err(
                &format!("clients.\"{id}\".token_endpoint_auth_method"),
                format!(
                    "is {} with bridge.enabled; the bridge presents the client's credential twice \
                     (PAR, then the code exchange), which only client_secret_basic and \
                     client_secret_post allow",
                    m.name()
                ),
            ));
        }
    }
    Ok(())
}

fn decode_sha256(key: &str, hex: &str) -> Result<[u8; 32], ConfigError> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(
            key,
            "must be 64 hex digits: `printf %s \"$SECRET\" | sha256sum`",
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_file, validate, ConfigError, Overrides};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn load(text: &str) -> Result<Option<super::Bridge>, ConfigError> {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}");
        validate(parse_file(&text)?, &Overrides::default()).map(|c| c.bridge)
    }

    #[test]
    fn off_unless_enabled() {
        assert!(load("").unwrap().is_none());
        assert!(load("[bridge]\nenabled = false\n").unwrap().is_none());
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let b = load(&format!("[bridge]\nenabled = true\nkey = \"{KEY}\"\n"))
            .unwrap()
            .unwrap();
        assert_eq!(b.backchannel_path, super::DEFAULT_BACKCHANNEL_PATH);
        assert_eq!(b.api_path.as_deref(), Some(super::DEFAULT_API_PATH));
        assert_eq!((b.expires_in, b.interval), (300, 5));
        let cases = [
            ("", "bridge.key"),
            ("key = \"AAAA\"", "bridge.key"),
            (
                &format!("key = \"{KEY}\"\ncallback_path = \"x\"") as &str,
                "bridge.callback_path",
            ),
            (
                &format!("key = \"{KEY}\"\ncallback_path = \"/backchannel\""),
                "bridge.callback_path",
            ),
            (
                &format!("key = \"{KEY}\"\nexpires_in = 5"),
                "bridge.expires_in",
            ),
            (&format!("key = \"{KEY}\"\ninterval = 0"), "bridge.interval"),
            (
                &format!("key = \"{KEY}\"\nmode = \"plain\""),
                "bridge.clients",
            ),
            (
                &format!("key = \"{KEY}\"\nnotifier_url = \"http://10.0.0.1/n\""),
                "bridge.notifier_url",
            ),
            (
                &format!("key = \"{KEY}\"\n[bridge.clients.\"c\"]\nsecret_sha256 = \"xyz\""),
                "bridge.clients.\"c\".secret_sha256",
            ),
        ];
        for (body, key) in cases {
            let e = load(&format!("[bridge]\nenabled = true\n{body}\n")).unwrap_err();
            assert_eq!(e.key, key, "{body}: {e}");
        }
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\nbackchannel_path = \"/bc\"\n[bridge]\nenabled = true\nkey = \"{KEY}\"\n"
        );
        let e = validate(parse_file(&text).unwrap(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "upstream.backchannel_path");
    }

    #[test]
    fn clients_with_a_single_use_method_are_refused() {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[bridge]\nenabled = true\nkey = \"{KEY}\"\n\
             [clients.\"c\"]\ntoken_endpoint_auth_method = \"private_key_jwt\"\n"
        );
        let e = validate(parse_file(&text).unwrap(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "clients.\"c\".token_endpoint_auth_method");
        let ok = text.replace("private_key_jwt", "client_secret_basic");
        assert!(validate(parse_file(&ok).unwrap(), &Overrides::default()).is_ok());
    }

    #[test]
    fn plain_mode_takes_secret_hashes() {
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let b = load(&format!(
            "[bridge]\nenabled = true\nkey = \"{KEY}\"\nmode = \"plain\"\n[bridge.clients.\"c\"]\nsecret_sha256 = \"{hash}\"\n"
        ))
        .unwrap()
        .unwrap();
        assert!(crate::ciba::bridge::credential::secret_matches(
            "test",
            &b.secrets["c"]
        ));
    }
}
