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
