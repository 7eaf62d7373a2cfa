//! Encryption of what the gateway holds for ping and bridge requests, and the keyed hash
//! of a client's credential, both with keys derived from `ping.key` (or `bridge.key`: each
//! feature has its own `Sealer`).
//!
//! ChaCha20-Poly1305 (ring's, already in the build for TLS and JWTs) with a random 96-bit
//! nonce per record; the associated data binds each sealed value to its `auth_req_id` and
//! its kind, so a value cannot be moved to another record or read as another field.
//! The credential hash is HMAC-SHA256 under its own derived key, compared in constant time
//! (`ring::hmac::verify`). Every replica configured with the same `ping.key` derives the
//! same keys, so what one replica sealed another can open.

use crate::ciba::ids::{AuthReqId, Secret};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// What a sealed value holds: part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The client's credential, replayed in the gateway's polls.
    Credential,
    /// The client's `client_notification_token`.
    NotificationToken,
    /// The OP's terminal answer.
    Answer,
    /// What the gateway holds for a bridge request (credential, PKCE verifier, nonce, URL).
    BridgeRecord,
    /// The OP's token answer held for a bridge request.
    BridgeTokens,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Credential => b"credential",
            Kind::NotificationToken => b"notification_token",
            Kind::Answer => b"answer",
            Kind::BridgeRecord => b"bridge record",
            Kind::BridgeTokens => b"bridge tokens",
        }
    }
}

/// A sealed value: nonce, ciphertext and tag. `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Box<[u8]>);

impl Sealed {
    /// The bytes as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Sealed {
        Sealed(bytes.into())
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// A keyed hash of a credential (HMAC-SHA256).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialTag([u8; 32]);

impl CredentialTag {
    /// The tag as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A stored tag; `None` unless it is 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<CredentialTag> {
        Some(CredentialTag(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for CredentialTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialTag([redacted])")
    }
}

/// The keys derived from `ping.key`.
pub struct Sealer {
    aead: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

/// HKDF's salt: fixed, since the input key is already uniformly random.
const SALT: &[u8] = b"ciba-gateway ping v1";

impl Sealer {
    /// Derives the encryption and hash keys from the 32-byte master key.
    pub fn new(master: &Secret<[u8; 32]>) -> Sealer {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master.expose());
        let aead_key: UnboundKey = prk
            .expand(&[b"aead"], &CHACHA20_POLY1305)
            .expect("32 bytes is within HKDF's output limit")
            .into();
        let mac: hmac::Key = prk
            .expand(&[b"credential hash"], hmac::HMAC_SHA256)
            .expect("32 bytes is within HKDF's output limit")
            .into();
        Sealer {
            aead: LessSafeKey::new(aead_key),
            mac,
            rng: SystemRandom::new(),
        }
    }

    /// Encrypts `plain` for the record of `id`.
    pub fn seal(&self, kind: Kind, id: &AuthReqId, plain: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the operating system's random source works");
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + aead::MAX_TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(NONCE_LEN);
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, id)),
                &mut body,
            )
            .expect("a record is far below ChaCha20-Poly1305's length limit");
        out.extend_from_slice(&body);
        Sealed(out.into())
    }

    /// Decrypts a value sealed for the record of `id`; `None` when it was not (another
    /// key, another record, another kind, or altered).
    pub fn open(&self, kind: Kind, id: &AuthReqId, sealed: &Sealed) -> Option<Secret<Vec<u8>>> {
        let (nonce, body) = sealed.0.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad(kind, id)), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(Secret::new(body))
    }

    /// The keyed hash of a credential.
    pub fn tag(&self, input: &Secret<Vec<u8>>) -> CredentialTag {
        let tag = hmac::sign(&self.mac, input.expose());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        CredentialTag(out)
    }

    /// Whether `input` hashes to `tag`, compared in constant time.
    pub fn matches(&self, input: &Secret<Vec<u8>>, tag: &CredentialTag) -> bool {
        hmac::verify(&self.mac, input.expose(), &tag.0).is_ok()
    }
}

fn aad(kind: Kind, id: &AuthReqId) -> Vec<u8> {
    let mut out = Vec::with_capacity(kind.label().len() + 1 + id.as_str().len());
    out.extend_from_slice(kind.label());
    out.push(0);
    out.extend_from_slice(id.as_str().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&Secret::new([byte; 32]))
    }

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let s = sealer(1);
        let id = AuthReqId::new("id-1");
        let a = s.seal(Kind::Credential, &id, b"secret");
        let b = s.seal(Kind::Credential, &id, b"secret");
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.as_bytes().windows(6).any(|w| w == b"secret"));
        assert_eq!(
            s.open(Kind::Credential, &id, &a).unwrap().expose(),
            b"secret"
        );
        assert!(s.open(Kind::Answer, &id, &a).is_none(), "another kind");
        assert!(s
            .open(Kind::Credential, &AuthReqId::new("id-2"), &a)
            .is_none());
        assert!(
            sealer(2).open(Kind::Credential, &id, &a).is_none(),
            "another key"
        );
        let mut altered = a.as_bytes().to_vec();
        altered[NONCE_LEN] ^= 1;
        assert!(s
            .open(Kind::Credential, &id, &Sealed::from_bytes(&altered))
            .is_none());
        assert!(s
            .open(Kind::Credential, &id, &Sealed::from_bytes(b"x"))
            .is_none());
        assert_eq!(
            format!("{a:?}"),
            format!("Sealed({} bytes)", a.as_bytes().len())
        );
    }

    #[test]
    fn credential_tags_are_keyed() {
        let input = Secret::new(b"Pc\0s".to_vec());
        let t = sealer(1).tag(&input);
        assert!(
            sealer(1).matches(&input, &t),
            "the same key in another replica"
        );
        assert!(!sealer(2).matches(&input, &t));
        assert!(!sealer(1).matches(&Secret::new(b"Pc\0t".to_vec()), &t));
    }
}
