//! Compact JWS (JWT) splitting and decoding, and signature checks against configured keys.
//!
//! The gateway mostly reads JWTs without verifying them: `id_token_hint`, `client_assertion`
//! and `request` are the OP's to verify, the gateway only needs them well-formed and wants to
//! read a claim or two. Only a `login_hint_token` may be verified here, with keys from the
//! configuration ([`KeyConfig`]). Nothing in this module reads a clock.

use crate::ciba::config_error::ConfigError;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Base64url that tolerates `=` padding, which JWS forbids but some libraries emit.
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which part of a compact JWT an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The JOSE header.
    Header,
    /// The claims.
    Payload,
    /// The signature.
    Signature,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        }
    }
}

/// Why a string is not a well-formed compact JWS; `Display` is a phrase that follows a
/// parameter name ("parameter `id_token_hint` has ...") and never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three dot-separated parts.
    Parts(usize),
    /// Five parts: an encrypted JWT (JWE), which the gateway cannot read.
    Encrypted,
    /// A part that is not base64url.
    Base64(Part),
    /// The header or payload is not a JSON object.
    NotJsonObject(Part),
    /// The header has no string `alg`.
    NoAlg,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Parts(n) => write!(
                f,
                "is not a JWT: it has {n} dot-separated part(s) where a compact JWS has 3"
            ),
            JwtError::Encrypted => {
                f.write_str("is an encrypted JWT (JWE), which the gateway cannot read")
            }
            JwtError::Base64(p) => write!(f, "has a JWT {} that is not base64url", p.as_str()),
            JwtError::NotJsonObject(p) => {
                write!(f, "has a JWT {} that is not a JSON object", p.as_str())
            }
            JwtError::NoAlg => f.write_str("has a JWT header without a string `alg`"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A decoded compact JWS; the raw parts are kept so the signature can be checked.
#[derive(Clone)]
pub struct Jwt<'a> {
    signing_input: &'a str,
    signature: &'a str,
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub payload: Map<String, Value>,
}

impl fmt::Debug for Jwt<'_> {
    // Claims are personal data: show only the header's algorithm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("alg", &self.alg())
            .field("payload", &"[redacted]")
            .finish()
    }
}

impl<'a> Jwt<'a> {
    /// Splits and decodes `token` without verifying anything.
    pub fn decode(token: &'a str) -> Result<Jwt<'a>, JwtError> {
        let parts = token.split('.').count();
        if parts == 5 {
            return Err(JwtError::Encrypted);
        }
        if parts != 3 {
            return Err(JwtError::Parts(parts));
        }
        let last_dot = token.rfind('.').ok_or(JwtError::Parts(1))?;
        let (signing_input, signature) = (&token[..last_dot], &token[last_dot + 1..]);
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(JwtError::Parts(parts))?;
        let header = decode_object(header_b64, Part::Header)?;
        let payload = decode_object(payload_b64, Part::Payload)?;
        B64URL
            .decode(signature)
            .map_err(|_| JwtError::Base64(Part::Signature))?;
        if !matches!(header.get("alg"), Some(Value::String(_))) {
            return Err(JwtError::NoAlg);
        }
        Ok(Jwt {
            signing_input,
            signature,
            header,
            payload,
        })
    }

    /// The header's `alg` (always present once decoded).
    pub fn alg(&self) -> &str {
        self.header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether the token claims to be unsigned (`alg: none`, any case).
    pub fn is_unsigned(&self) -> bool {
        self.alg().eq_ignore_ascii_case("none")
    }

    /// A string claim, if present and a string.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.payload.get(name).and_then(Value::as_str)
    }
}

/// Whether `s` looks like a compact JWS (three base64url parts, the first a JSON header with
/// `alg`): used to tell a JWT apart from other token encodings before committing to one.
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
        && s.split('.')
            .next()
            .and_then(|h| decode_object(h, Part::Header).ok())
            .is_some_and(|h| h.contains_key("alg"))
}

fn decode_object(b64: &str, part: Part) -> Result<Map<String, Value>, JwtError> {
    let bytes = B64URL.decode(b64).map_err(|_| JwtError::Base64(part))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::NotJsonObject(part)),
    }
}

/// Keys for verifying JWT signatures, as written in the configuration.
///
/// ```toml
/// [login_hint_token.keys]
/// hmac_secrets = ["a shared secret of at least 32 bytes"]        # HS256/384/512
/// public_keys_pem = ["-----BEGIN PUBLIC KEY-----\n..."]          # RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384), Ed25519 (EdDSA)
/// jwks = '{"keys":[{"kty":"EC","crv":"P-256","x":"...","y":"...","kid":"k1"}]}'
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// Shared secrets (UTF-8 text) for the HS algorithms.
    pub hmac_secrets: Vec<String>,
    /// Public keys in PEM: SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`.
    pub public_keys_pem: Vec<String>,
    /// An inline JWK Set document; a key's `kid` is matched against the JWT header's.
    pub jwks: Option<String>,
}

impl fmt::Debug for KeyConfig {
    // Shared secrets must not reach a log through a stray `{:?}` of the configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field(
                "hmac_secrets",
                &format!("[{} redacted]", self.hmac_secrets.len()),
            )
            .field("public_keys_pem", &self.public_keys_pem.len())
            .field("jwks", &self.jwks.is_some())
            .finish()
    }
}

impl KeyConfig {
    /// Whether no key at all is configured.
    pub fn is_empty(&self) -> bool {
        self.hmac_secrets.is_empty() && self.public_keys_pem.is_empty() && self.jwks.is_none()
    }

    /// Parses every key; the error names the offending entry relative to `prefix`.
    pub fn compile(&self, prefix: &str) -> Result<KeySet, ConfigError> {
        let mut keys = Vec::new();
        for (i, secret) in self.hmac_secrets.iter().enumerate() {
            // RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
            if secret.len() < 32 {
                return Err(ConfigError::new(
                    format!("{prefix}.hmac_secrets[{i}]"),
                    "shorter than 32 bytes; use a longer random secret",
                ));
            }
            keys.push(Key {
                kid: None,
                family: Family::Hmac,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for (i, pem) in self.public_keys_pem.iter().enumerate() {
            let pem = pem.as_bytes();
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (Family::Rsa, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (Family::Ec, k)
            } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (Family::Ed, k)
            } else {
                return Err(ConfigError::new(
                    format!("{prefix}.public_keys_pem[{i}]"),
                    "not an RSA, EC or Ed25519 public key in PEM",
                ));
            };
            keys.push(Key {
                kid: None,
                family: key.0,
                key: key.1,
            });
        }
        if let Some(jwks) = &self.jwks {
            let set: JwkSet = serde_json::from_str(jwks).map_err(|e| {
                ConfigError::new(
                    format!("{prefix}.jwks"),
                    format!("not a JWK Set document: {e}"),
                )
            })?;
            for (i, jwk) in set.keys.iter().enumerate() {
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                    AlgorithmParameters::OctetKey(_) => Family::Hmac,
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                    ConfigError::new(
                        format!("{prefix}.jwks"),
                        format!("key #{i} is unusable: {e}"),
                    )
                })?;
                keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    family,
                    key,
                });
            }
        }
        Ok(KeySet { keys })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family_of(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
    }
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

/// Parsed verification keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

/// The outcome of checking a JWT's signature against a [`KeySet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// A configured key verified the signature.
    Verified,
    /// The `alg` is not one the gateway can verify (or is `none`).
    UnsupportedAlg,
    /// No configured key fits the `alg` (and `kid`, when both sides have one).
    NoMatchingKey,
    /// Keys fit, but none verified the signature.
    BadSignature,
}

impl KeySet {
    /// The signing keys of a JWK Set (a client's `jwks`); keys marked `"use": "enc"` are
    /// left out, and a key jsonwebtoken cannot use is an error naming its position.
    pub fn from_jwk_set(set: &JwkSet) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                // A symmetric key in a public key set proves nothing about the client.
                AlgorithmParameters::OctetKey(_) => continue,
            };
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| format!("key #{i} is unusable: {e}"))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                key,
            });
        }
        Ok(KeySet { keys })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The signing keys of a JWK Set fetched at run time (an OP's `jwks_uri`): keys that
    /// are not for signatures (`use` other than `sig`), symmetric, or unusable are left
    /// out rather than failing the whole set. `None` when the document is not a JWK Set.
    pub fn from_published_jwks(document: &[u8]) -> Option<KeySet> {
        let set: JwkSet = serde_json::from_slice(document).ok()?;
        let keys = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(&jwk.common.public_key_use, Some(u) if *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            })
            .filter_map(|jwk| {
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                    AlgorithmParameters::OctetKey(_) => return None,
                };
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    family,
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        Some(KeySet { keys })
    }

    /// Checks `jwt`'s signature with every key of the right family (and `kid`).
    pub fn verify(&self, jwt: &Jwt<'_>) -> Verification {
        let Ok(alg) = Algorithm::from_str(jwt.alg()) else {
            return Verification::UnsupportedAlg;
        };
        let family = family_of(alg);
        let kid = jwt.header.get("kid").and_then(Value::as_str);
        let mut tried = false;
        for key in &self.keys {
            // A key is only ever used with its own family: jsonwebtoken panics when, say, an
            // RSA key from a JWK is used for an HMAC or ECDSA check.
            if key.family != family {
                continue;
            }
            if let (Some(want), Some(have)) = (kid, key.kid.as_deref()) {
                if want != have {
                    continue;
                }
            }
            tried = true;
            let ok = jsonwebtoken::crypto::verify(
                jwt.signature,
                jwt.signing_input.as_bytes(),
                &key.key,
                alg,
            );
            if matches!(ok, Ok(true)) {
                return Verification::Verified;
            }
        }
        if tried {
            Verification::BadSignature
        } else {
            Verification::NoMatchingKey
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A test P-256 key pair (generated for these tests only).
    pub const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGCn/BUfQvAeETizj
ztZ+7LwwlorwObwARSLYwGob8EGhRANCAAQAkBFleBla5/K8ipegbvNZ0hqi+Zgv
BXkdhc3raZgMdTUGhA+OQPxq/SmPI/RhIVzb1oK81/D938l8G79/JCzt
-----END PRIVATE KEY-----
";
    /// The public half of [`EC_PRIVATE_PEM`].
    pub const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAJARZXgZWufyvIqXoG7zWdIaovmY
LwV5HYXN62mYDHU1BoQPjkD8av0pjyP0YSFc29aCvNfw/d/JfBu/fyQs7Q==
-----END PUBLIC KEY-----
";
    /// A 32-byte HMAC test secret.
    pub const HMAC_SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// An unsigned token with the given header and payload JSON.
    pub fn unsigned(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    /// An HS256 token over `claims`.
    pub fn hs256(claims: &Value, kid: Option<&str>) -> String {
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &h,
            claims,
            &jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET.as_bytes()),
        )
        .unwrap()
    }

    /// An ES256 token over `claims`.
    pub fn es256(claims: &Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn decodes_a_well_formed_token() {
        let t = unsigned(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#);
        let jwt = Jwt::decode(&t).unwrap();
        assert!(jwt.is_unsigned());
        assert_eq!(jwt.claim_str("sub"), Some("a"));
        assert!(looks_like_jwt(&t));
        assert!(!format!("{jwt:?}").contains("sub"));
    }

    #[test]
    fn malformed_tokens_are_named_precisely() {
        let e = |s: &str| Jwt::decode(s).unwrap_err();
        assert_eq!(e("abc"), JwtError::Parts(1));
        assert_eq!(e("a.b.c.d.e"), JwtError::Encrypted);
        assert_eq!(e("!!.e30.x"), JwtError::Base64(Part::Header));
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#);
        assert_eq!(
            e(&format!("{h}.bm90IGpzb24.c2ln")),
            JwtError::NotJsonObject(Part::Payload)
        );
        assert_eq!(
            e(&format!("{h}.WzFd.c2ln")),
            JwtError::NotJsonObject(Part::Payload)
        );
        assert_eq!(e(&format!("{h}.e30.!!")), JwtError::Base64(Part::Signature));
        assert_eq!(e("e30.e30.c2ln"), JwtError::NoAlg);
        assert!(e("abc").to_string().contains("3"));
    }

    #[test]
    fn verifies_with_the_right_key_only() {
        let claims = serde_json::json!({"sub": "x"});
        let hmac = KeyConfig {
            hmac_secrets: vec![HMAC_SECRET.into()],
            ..Default::default()
        }
        .compile("k")
        .unwrap();
        let ec = KeyConfig {
            public_keys_pem: vec![EC_PUBLIC_PEM.into()],
            ..Default::default()
        }
        .compile("k")
        .unwrap();
        let hs = hs256(&claims, None);
        let es = es256(&claims);
        let v = |ks: &KeySet, t: &str| ks.verify(&Jwt::decode(t).unwrap());
        assert_eq!(v(&hmac, &hs), Verification::Verified);
        assert_eq!(v(&ec, &es), Verification::Verified);
        assert_eq!(v(&hmac, &es), Verification::NoMatchingKey);
        assert_eq!(v(&ec, &hs), Verification::NoMatchingKey);
        let none = unsigned(r#"{"alg":"none"}"#, "{}");
        assert_eq!(v(&hmac, &none), Verification::UnsupportedAlg);
        // Tamper with the payload: the signature no longer matches.
        let parts: Vec<&str> = hs.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"y"}"#),
            parts[2]
        );
        assert_eq!(v(&hmac, &forged), Verification::BadSignature);
    }

    #[test]
    fn jwks_keys_match_by_kid_and_family() {
        let k = URL_SAFE_NO_PAD.encode(HMAC_SECRET);
        let jwks = format!(r#"{{"keys":[{{"kty":"oct","k":"{k}","kid":"one"}}]}}"#);
        let ks = KeyConfig {
            jwks: Some(jwks),
            ..Default::default()
        }
        .compile("k")
        .unwrap();
        let claims = serde_json::json!({});
        let v = |t: &str| ks.verify(&Jwt::decode(t).unwrap());
        assert_eq!(v(&hs256(&claims, Some("one"))), Verification::Verified);
        assert_eq!(v(&hs256(&claims, None)), Verification::Verified);
        assert_eq!(v(&hs256(&claims, Some("two"))), Verification::NoMatchingKey);
        // An RSA JWK must never be tried for an ES256 token (jsonwebtoken would panic).
        let rsa = r#"{"keys":[{"kty":"RSA","n":"sXch","e":"AQAB"}]}"#;
        let ks = KeyConfig {
            jwks: Some(rsa.into()),
            ..Default::default()
        }
        .compile("k")
        .unwrap();
        assert_eq!(
            ks.verify(&Jwt::decode(&es256(&claims)).unwrap()),
            Verification::NoMatchingKey
        );
        assert_eq!(
            ks.verify(&Jwt::decode(&hs256(&claims, None)).unwrap()),
            Verification::NoMatchingKey
        );
    }

    #[test]
    fn bad_key_config_names_the_entry() {
        let e = KeyConfig {
            public_keys_pem: vec!["nope".into()],
            ..Default::default()
        }
        .compile("login_hint_token.keys")
        .unwrap_err();
        assert_eq!(e.key, "login_hint_token.keys.public_keys_pem[0]", "{e}");
        let e = KeyConfig {
            hmac_secrets: vec!["short".into()],
            ..Default::default()
        }
        .compile("k")
        .unwrap_err();
        assert_eq!(e.key, "k.hmac_secrets[0]", "{e}");
        let cfg = KeyConfig {
            hmac_secrets: vec![HMAC_SECRET.into()],
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains(HMAC_SECRET));
    }
}
