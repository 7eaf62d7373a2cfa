//! A client certificate as the edge received it: from the client's own TLS handshake, or
//! from a trusted proxy's header. What the rules need of it: its DER, its SHA-256
//! thumbprint (RFC 8705 3.1, `x5t#S256`) and whether its chain was verified.

use std::fmt;

/// Where the edge got a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// The client presented it in its TLS handshake with the gateway.
    Handshake,
    /// A trusted proxy in front of the gateway passed it on in a header.
    TrustedProxy,
}

/// A client certificate, leaf only.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Vec<u8>,
    thumbprint: [u8; 32],
    chain_verified: bool,
    source: CertSource,
}

impl ClientCertificate {
    /// A certificate from its DER; `chain_verified` says whether it chained to a configured CA.
    pub fn new(der: Vec<u8>, chain_verified: bool, source: CertSource) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        let mut thumbprint = [0u8; 32];
        thumbprint.copy_from_slice(digest.as_ref());
        ClientCertificate {
            der,
            thumbprint,
            chain_verified,
            source,
        }
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER: the `x5t#S256` a certificate-bound token carries.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// Whether its chain was verified against a configured CA bundle.
    pub fn chain_verified(&self) -> bool {
        self.chain_verified
    }

    /// Where the edge got it.
    pub fn source(&self) -> CertSource {
        self.source
    }
}

/// A request with a certificate from its TLS handshake and another from a trusted proxy's
/// header: refused, since nothing says which is the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoSources;

/// The certificate a request carries once a trusted proxy's header gave `der`: the
/// handshake's certificate is never replaced by a header's, so a request that has one
/// already is [`TwoSources`].
pub fn from_proxy(
    handshake: Option<&ClientCertificate>,
    der: Vec<u8>,
    chain_verified: bool,
) -> Result<ClientCertificate, TwoSources> {
    match handshake {
        Some(_) => Err(TwoSources),
        None => Ok(ClientCertificate::new(
            der,
            chain_verified,
            CertSource::TrustedProxy,
        )),
    }
}

impl fmt::Debug for ClientCertificate {
    // A certificate is personal data (names, e-mail addresses): logs get its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("der_bytes", &self.der.len())
            .field("chain_verified", &self.chain_verified)
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_never_replaces_the_handshake_certificate() {
        let handshake = ClientCertificate::new(vec![1, 2, 3], false, CertSource::Handshake);
        assert_eq!(from_proxy(Some(&handshake), vec![4], true), Err(TwoSources));
        let got = from_proxy(None, vec![4], true).unwrap();
        assert_eq!(got.source(), CertSource::TrustedProxy);
        assert!(got.chain_verified());
        assert_eq!(got.der(), &[4]);
    }

    #[test]
    fn debug_prints_no_certificate_bytes() {
        let c = ClientCertificate::new(b"secret-ish".to_vec(), true, CertSource::Handshake);
        let shown = format!("{c:?}");
        assert!(shown.contains("der_bytes: 10"), "{shown}");
        assert!(!shown.contains("115"), "{shown}");
    }
}
