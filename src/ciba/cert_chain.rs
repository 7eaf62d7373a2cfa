//! Whether a client certificate chains to a configured CA and is valid at a given time
//! (RFC 8705 2.1: the PKI method's chain check), with rustls-webpki, the verifier rustls
//! itself uses. Time is an argument.

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use std::time::Duration;

/// The signature algorithms a client certificate's chain may use (webpki's ring set).
static ALGS: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The CAs client certificates may chain to.
#[derive(Clone)]
pub struct TrustAnchors(Vec<TrustAnchor<'static>>);

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustAnchors({} CAs)", self.0.len())
    }
}

impl TrustAnchors {
    /// Anchors from CA certificates (DER); an error names the certificate by its place.
    pub fn from_der(cas: &[Vec<u8>]) -> Result<TrustAnchors, String> {
        let mut out = Vec::with_capacity(cas.len());
        for (n, der) in cas.iter().enumerate() {
            let cert = CertificateDer::from(der.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| format!("certificate {} is not a usable CA: {e}", n + 1))?;
            out.push(anchor.to_owned());
        }
        Ok(TrustAnchors(out))
    }

    /// Whether `leaf` (DER) chains to one of the anchors, with `intermediates` (DER) between,
    /// is valid at `now_unix` and allows client authentication (an extended key usage, when
    /// present, must include `clientAuth`).
    pub fn verifies(&self, leaf: &[u8], intermediates: &[Vec<u8>], now_unix: u64) -> bool {
        let leaf = CertificateDer::from(leaf);
        let Ok(ee) = webpki::EndEntityCert::try_from(&leaf) else {
            return false;
        };
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        ee.verify_for_usage(
            ALGS,
            &self.0,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(now_unix)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    fn leaf(ca: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["client".to_string()]).unwrap();
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2027, 1, 1);
        edit(&mut p);
        p.signed_by(&KeyPair::generate().unwrap(), &ca.cert, &ca.key)
            .unwrap()
            .der()
            .to_vec()
    }

    const JAN_2026: u64 = 1_767_225_600;

    #[test]
    fn chain_validity_and_usage_at_the_given_time() {
        let root = ca("root");
        let other = ca("other");
        let anchors = TrustAnchors::from_der(&[root.cert.der().to_vec()]).unwrap();
        let good = leaf(&root, |_| {});
        assert!(anchors.verifies(&good, &[], JAN_2026));
        // Before and after its validity.
        assert!(!anchors.verifies(&good, &[], 1_700_000_000));
        assert!(!anchors.verifies(&good, &[], 1_900_000_000));
        // Another CA's, a self-signed one, garbage.
        assert!(!anchors.verifies(&leaf(&other, |_| {}), &[], JAN_2026));
        let key = KeyPair::generate().unwrap();
        let selfsigned = CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(!anchors.verifies(selfsigned.der(), &[], JAN_2026));
        assert!(!anchors.verifies(b"junk", &[], JAN_2026));
        // A server-only certificate is not a client certificate.
        let server = leaf(&root, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
        });
        assert!(!anchors.verifies(&server, &[], JAN_2026));
        let client = leaf(&root, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]
        });
        assert!(anchors.verifies(&client, &[], JAN_2026));
        // The CA itself is not a client.
        assert!(!anchors.verifies(root.cert.der(), &[], JAN_2026));
    }

    #[test]
    fn anchors_must_be_certificates() {
        assert!(TrustAnchors::from_der(&[b"junk".to_vec()]).is_err());
    }
}
