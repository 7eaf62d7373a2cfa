//! Client identity by certificate (RFC 8705 2): whether the certificate a request came
//! with authenticates the client it names.
//!
//! - `tls_client_auth` (2.1): the chain verifies against the configured CAs at the
//!   request's time, and the one registered name matches: the subject DN (RFC 4514
//!   semantics, [`Dn`]) or one subjectAltName entry of the registered type.
//! - `self_signed_tls_client_auth` (2.2): the certificate is one the client registered,
//!   by SHA-256 thumbprint, or the first certificate of an `x5c` in its JWK Set; no chain
//!   and no validity period are checked (the registration is the trust).
//!
//! Pure: the certificate, the rule and the time come in as arguments.

use crate::ciba::cert_chain::TrustAnchors;
use crate::ciba::dn::Dn;
use std::net::IpAddr;

/// The one name a `tls_client_auth` client is registered with (RFC 8705 2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertName {
    /// `tls_client_auth_subject_dn`.
    SubjectDn(Dn),
    /// `tls_client_auth_san_dns`: a dNSName, compared without regard to ASCII case.
    SanDns(String),
    /// `tls_client_auth_san_uri`: a uniformResourceIdentifier, compared exactly.
    SanUri(String),
    /// `tls_client_auth_san_ip`: an iPAddress, compared as an address.
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`: an rfc822Name; the domain without regard to case.
    SanEmail(String),
}

/// How a client proves its identity with a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRule {
    /// `tls_client_auth`: a verified chain and this name.
    Pki(CertName),
    /// `self_signed_tls_client_auth`: one of these SHA-256 thumbprints (pinned, or of the
    /// JWK Set's `x5c` certificates).
    SelfSigned(Vec<[u8; 32]>),
}

/// Why a certificate does not authenticate the client; each is `invalid_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// No certificate came with the request.
    Missing,
    /// The chain does not verify against the configured CAs at the request's time.
    Unverified,
    /// The registered name is not the certificate's.
    NameMismatch,
    /// The certificate is not one the client registered.
    NotRegistered,
}

impl CertRefusal {
    /// The error description.
    pub fn describe(self) -> &'static str {
        match self {
            CertRefusal::Missing => {
                "the client authenticates with a TLS client certificate and none was presented"
            }
            CertRefusal::Unverified => {
                "the client certificate does not chain to a trusted CA or is not valid now"
            }
            CertRefusal::NameMismatch => {
                "the client certificate does not carry the client's registered subject name"
            }
            CertRefusal::NotRegistered => {
                "the client certificate is not one registered for the client"
            }
        }
    }
}

/// Whether `cert` (DER and its SHA-256 thumbprint) authenticates a client under `rule` at
/// `now_unix`; `anchors` are the configured CAs (none: no chain verifies).
pub fn authenticate(
    rule: &CertRule,
    cert: Option<(&[u8], &[u8; 32])>,
    anchors: Option<&TrustAnchors>,
    now_unix: u64,
) -> Result<(), CertRefusal> {
    let Some((der, thumbprint)) = cert else {
        return Err(CertRefusal::Missing);
    };
    match rule {
        CertRule::SelfSigned(pinned) => {
            // Equal length, so a byte compare leaks nothing a thumbprint keeps secret
            // (it is public), but compare all anyway.
            if pinned.iter().any(|p| ring_eq(p, thumbprint)) {
                Ok(())
            } else {
                Err(CertRefusal::NotRegistered)
            }
        }
        CertRule::Pki(name) => {
            if !anchors.is_some_and(|a| a.verifies(der, &[], now_unix)) {
                return Err(CertRefusal::Unverified);
            }
            if name_matches(name, der) {
                Ok(())
            } else {
                Err(CertRefusal::NameMismatch)
            }
        }
    }
}

fn ring_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the certificate carries `name`.
pub fn name_matches(name: &CertName, der: &[u8]) -> bool {
    use x509_parser::extensions::GeneralName;
    if let CertName::SubjectDn(dn) = name {
        return dn.matches_certificate(der);
    }
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|g| match (name, g) {
        (CertName::SanDns(want), GeneralName::DNSName(got)) => want.eq_ignore_ascii_case(got),
        (CertName::SanUri(want), GeneralName::URI(got)) => want == got,
        (CertName::SanEmail(want), GeneralName::RFC822Name(got)) => email_eq(want, got),
        (CertName::SanIp(want), GeneralName::IPAddress(got)) => match (want, got.len()) {
            (IpAddr::V4(v4), 4) => v4.octets()[..] == got[..],
            (IpAddr::V6(v6), 16) => v6.octets()[..] == got[..],
            _ => false,
        },
        _ => false,
    })
}

/// Mailbox names: the local part exactly, the domain without regard to ASCII case.
fn email_eq(want: &str, got: &str) -> bool {
    match (want.rsplit_once('@'), got.rsplit_once('@')) {
        (Some((wl, wd)), Some((gl, gd))) => wl == gl && wd.eq_ignore_ascii_case(gd),
        _ => false,
    }
}

/// The SHA-256 thumbprints of the first certificate of every `x5c` in a JWK Set document's
/// keys (RFC 7517 4.7: the first certificate holds the key).
pub fn x5c_thumbprints(x5c_first: &[String]) -> Result<Vec<[u8; 32]>, String> {
    use base64::Engine;
    let mut out = Vec::new();
    for (i, b64) in x5c_first.iter().enumerate() {
        // RFC 7517 4.7: standard base64, not base64url.
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| format!("key {}: x5c[0] is not base64", i + 1))?;
        match x509_parser::parse_x509_certificate(&der) {
            Ok(([], _)) => {}
            _ => return Err(format!("key {}: x5c[0] is not an X.509 certificate", i + 1)),
        }
        let d = ring::digest::digest(&ring::digest::SHA256, &der);
        out.push(d.as_ref().try_into().expect("SHA-256 is 32 bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn self_signed(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        edit(&mut p);
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    fn thumb(der: &[u8]) -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .unwrap()
    }

    #[test]
    fn san_entries_match_by_type_and_value() {
        let der = self_signed(|p| {
            p.subject_alt_names = vec![
                SanType::DnsName("client.Example.com".try_into().unwrap()),
                SanType::URI("https://client.example/id".try_into().unwrap()),
                SanType::Rfc822Name("Ops@Example.COM".try_into().unwrap()),
                SanType::IpAddress("10.0.0.7".parse().unwrap()),
            ]
        });
        let yes = [
            CertName::SanDns("CLIENT.example.com".into()),
            CertName::SanUri("https://client.example/id".into()),
            CertName::SanEmail("Ops@example.com".into()),
            CertName::SanIp("10.0.0.7".parse().unwrap()),
        ];
        for n in &yes {
            assert!(name_matches(n, &der), "{n:?}");
        }
        let no = [
            CertName::SanDns("client.example.com.evil".into()),
            CertName::SanDns("example.com".into()),
            CertName::SanUri("https://client.example/ID".into()),
            CertName::SanUri("https://client.example/id/".into()),
            CertName::SanEmail("ops@example.com".into()),
            CertName::SanIp("10.0.0.8".parse().unwrap()),
            CertName::SanIp("::ffff:10.0.0.7".parse().unwrap()),
            // The value in another type's entry.
            CertName::SanDns("https://client.example/id".into()),
            CertName::SanUri("client.Example.com".into()),
        ];
        for n in &no {
            assert!(!name_matches(n, &der), "{n:?}");
        }
        let bare = self_signed(|_| {});
        assert!(!name_matches(&CertName::SanDns("x".into()), &bare));
    }

    #[test]
    fn self_signed_is_by_registration_and_pki_needs_a_chain() {
        let der = self_signed(|_| {});
        let t = thumb(&der);
        let rule = CertRule::SelfSigned(vec![[0; 32], t]);
        assert_eq!(authenticate(&rule, Some((&der, &t)), None, 0), Ok(()));
        let other = self_signed(|_| {});
        assert_eq!(
            authenticate(&rule, Some((&other, &thumb(&other))), None, 0),
            Err(CertRefusal::NotRegistered)
        );
        assert_eq!(
            authenticate(&rule, None, None, 0),
            Err(CertRefusal::Missing)
        );
        let pki = CertRule::Pki(CertName::SanDns("x".into()));
        // No CA configured: nothing verifies.
        assert_eq!(
            authenticate(&pki, Some((&der, &t)), None, 0),
            Err(CertRefusal::Unverified)
        );
        let anchors = TrustAnchors::from_der(std::slice::from_ref(&der)).unwrap();
        // A certificate listed in the CA file is its own anchor (webpki, like a browser's
        // pinned root): the chain passes and the name decides.
        assert_eq!(
            authenticate(&pki, Some((&der, &t)), Some(&anchors), 1_767_225_600),
            Err(CertRefusal::NameMismatch)
        );
        let elsewhere = TrustAnchors::from_der(std::slice::from_ref(&other)).unwrap();
        assert_eq!(
            authenticate(&pki, Some((&der, &t)), Some(&elsewhere), 1_767_225_600),
            Err(CertRefusal::Unverified)
        );
    }

    #[test]
    fn x5c_thumbprints_are_of_the_first_certificate() {
        use base64::Engine;
        let der = self_signed(|_| {});
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(x5c_thumbprints(&[b64]).unwrap(), vec![thumb(&der)]);
        assert!(x5c_thumbprints(&["@@".into()]).is_err());
        assert!(x5c_thumbprints(&["aGVsbG8=".into()]).is_err());
    }
}
