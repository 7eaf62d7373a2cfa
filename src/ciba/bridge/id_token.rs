//! The checks on the ID token the OP returns from the code exchange (OpenID Connect Core
//! 3.1.3.7): signature by a key of the OP's JWKS with RS256, PS256 or ES256, `iss` the
//! OP's issuer, `aud` containing the client (and `azp` the client when there are several
//! audiences), `nonce` the one the gateway sent, `exp` in the future. Time is an argument.

use crate::ciba::jwt::{Jwt, KeySet, Verification};
use serde_json::Value;

/// The algorithms the bridge accepts.
pub const ALGORITHMS: [&str; 3] = ["RS256", "PS256", "ES256"];

/// Seconds of clock difference tolerated on `exp` and `iat`.
pub const LEEWAY: u64 = 60;

/// What the token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The OP's `issuer`.
    pub issuer: &'a str,
    /// The client the request was for.
    pub client_id: &'a str,
    /// The `nonce` the gateway sent.
    pub nonce: &'a str,
}

/// Why an ID token was refused; `as_str` is safe to log (it names a claim, no value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenError {
    /// Not a compact JWS.
    Malformed,
    /// `alg` is not RS256, PS256 or ES256.
    Algorithm,
    /// No key of the OP's set verified it.
    Signature,
    /// `iss` is not the OP's issuer.
    Issuer,
    /// `aud` (or `azp`) does not name the client.
    Audience,
    /// `nonce` is not the gateway's.
    Nonce,
    /// `exp` is absent or past.
    Expired,
    /// `iat` is absent or in the future.
    IssuedAt,
}

impl IdTokenError {
    /// A label naming the failed check.
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenError::Malformed => "malformed",
            IdTokenError::Algorithm => "alg",
            IdTokenError::Signature => "signature",
            IdTokenError::Issuer => "iss",
            IdTokenError::Audience => "aud",
            IdTokenError::Nonce => "nonce",
            IdTokenError::Expired => "exp",
            IdTokenError::IssuedAt => "iat",
        }
    }
}

/// Checks `token` against `keys` and `want` at `now_unix`. `Signature` also when no key
/// fits: the caller may fetch the OP's keys again once (a rotated key) and retry.
pub fn check(
    token: &str,
    keys: &KeySet,
    want: Expected<'_>,
    now_unix: u64,
) -> Result<(), IdTokenError> {
    let jwt = Jwt::decode(token).map_err(|_| IdTokenError::Malformed)?;
    if !ALGORITHMS.contains(&jwt.alg()) {
        return Err(IdTokenError::Algorithm);
    }
    if keys.verify(&jwt) != Verification::Verified {
        return Err(IdTokenError::Signature);
    }
    if jwt.claim_str("iss") != Some(want.issuer) {
        return Err(IdTokenError::Issuer);
    }
    let audiences: Vec<&str> = match jwt.payload.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&want.client_id) {
        return Err(IdTokenError::Audience);
    }
    if audiences.len() > 1 && jwt.claim_str("azp") != Some(want.client_id) {
        return Err(IdTokenError::Audience);
    }
    if jwt.claim_str("nonce") != Some(want.nonce) {
        return Err(IdTokenError::Nonce);
    }
    let number = |k: &str| jwt.payload.get(k).and_then(Value::as_u64);
    match number("exp") {
        Some(exp) if exp + LEEWAY > now_unix => {}
        _ => return Err(IdTokenError::Expired),
    }
    match number("iat") {
        Some(iat) if iat <= now_unix + LEEWAY => {}
        _ => return Err(IdTokenError::IssuedAt),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ciba::jwt::tests::{EC_PRIVATE_PEM, EC_PUBLIC_PEM};
    use crate::ciba::jwt::KeyConfig;
    use serde_json::json;

    fn keys() -> KeySet {
        KeyConfig {
            public_keys_pem: vec![EC_PUBLIC_PEM.into()],
            ..KeyConfig::default()
        }
        .compile("k")
        .unwrap()
    }

    fn sign(claims: Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .unwrap()
    }

    const WANT: Expected<'static> = Expected {
        issuer: "https://op",
        client_id: "c1",
        nonce: "n1",
    };

    fn good() -> Value {
        json!({"iss": "https://op", "aud": "c1", "nonce": "n1", "exp": 2000, "iat": 1000, "sub": "u"})
    }

    #[test]
    fn a_good_token_passes() {
        assert_eq!(check(&sign(good()), &keys(), WANT, 1500), Ok(()));
        let mut multi = good();
        multi["aud"] = json!(["c1", "other"]);
        multi["azp"] = json!("c1");
        assert_eq!(check(&sign(multi), &keys(), WANT, 1500), Ok(()));
    }

    #[test]
    fn each_claim_is_checked() {
        let cases: Vec<(Value, IdTokenError)> = vec![
            (json!({"iss": "https://op2"}), IdTokenError::Issuer),
            (json!({"aud": "c2"}), IdTokenError::Audience),
            (json!({"aud": ["c1", "c2"]}), IdTokenError::Audience),
            (json!({"nonce": "n2"}), IdTokenError::Nonce),
            (json!({"nonce": null}), IdTokenError::Nonce),
            (json!({"exp": 1400}), IdTokenError::Expired),
            (json!({"exp": null}), IdTokenError::Expired),
            (json!({"iat": 1600}), IdTokenError::IssuedAt),
        ];
        for (patch, want) in cases {
            let mut claims = good();
            for (k, v) in patch.as_object().unwrap() {
                claims[k] = v.clone();
            }
            assert_eq!(
                check(&sign(claims), &keys(), WANT, 1500),
                Err(want),
                "{patch}"
            );
        }
    }

    #[test]
    fn signatures_and_algorithms() {
        let token = sign(good());
        // Another character in the middle of the signature: still valid base64url.
        let mut forged = token.clone().into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            check(&forged, &keys(), WANT, 1500),
            Err(IdTokenError::Signature)
        );
        assert_eq!(
            check(&token, &KeySet::default(), WANT, 1500),
            Err(IdTokenError::Signature)
        );
        let hs = crate::ciba::jwt::tests::hs256(&good(), None);
        assert_eq!(
            check(&hs, &keys(), WANT, 1500),
            Err(IdTokenError::Algorithm)
        );
        let none = crate::ciba::jwt::tests::unsigned(r#"{"alg":"none"}"#, &good().to_string());
        assert_eq!(
            check(&none, &keys(), WANT, 1500),
            Err(IdTokenError::Algorithm)
        );
        assert_eq!(
            check("x", &keys(), WANT, 1500),
            Err(IdTokenError::Malformed)
        );
    }

    #[test]
    fn published_sets_keep_only_signing_keys() {
        let doc = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","use":"enc","x":"AJARZXgZWufyvIqXoG7zWdIaovmYLwV5HYXN62mYDHU","y":"BoQPjkD8av0pjyP0YSFc29aCvNfw_d_JfBu_fyQs7Q"}]}"#;
        let set = KeySet::from_published_jwks(doc).unwrap();
        assert!(set.is_empty());
        assert!(KeySet::from_published_jwks(b"[]").is_none());
    }
}
