//! PKCE (RFC 7636) with S256, and the random handles the bridge hands out.
//!
//! Randomness comes in as bytes (the caller reads the OS source); this only encodes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Bytes of randomness behind every handle (`auth_req_id`, `state`, `nonce`, verifier):
/// 256 bits, above the 128 the brief and RFC 7636 7.1 ask for.
pub const HANDLE_BYTES: usize = 32;

/// A handle as text: base64url without padding (43 characters for 32 bytes), which is
/// also a valid PKCE `code_verifier` (RFC 7636 4.1: 43 to 128 unreserved characters).
pub fn encode(random: &[u8; HANDLE_BYTES]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The S256 `code_challenge` of a verifier: base64url(SHA-256(verifier)).
pub fn challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn handles_are_43_unreserved_characters() {
        let h = encode(&[0xff; HANDLE_BYTES]);
        assert_eq!(h.len(), 43);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
