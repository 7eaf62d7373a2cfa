//! `[clients."id"]`: what the gateway knows of a client's identity: how it authenticates
//! at the OP, the certificate it must present (RFC 8705) and the keys that verify what it
//! signs (request objects, `private_key_jwt` assertions).
//!
//! Only the shape is checked here; the rules that use these settings check them further.

use super::err;
use super::file::ClientSection;
use crate::ciba::cert_identity::{self, CertName, CertRule};
use crate::ciba::client_auth::AuthMethod;
use crate::ciba::config_error::ConfigError;
use crate::ciba::dn::Dn;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use std::collections::BTreeMap;

/// Every configured client, by `client_id`.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// The clients, by `client_id`.
    pub by_id: BTreeMap<String, Client>,
}

impl Clients {
    /// The client with this id, when configured.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.by_id.get(client_id)
    }
}

/// One client's identity as configured.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Its `token_endpoint_auth_method`, when configured.
    pub auth_method: Option<AuthMethod>,
    /// The certificate it must present, for the TLS methods.
    pub certificate: CertificateIdentity,
    /// Its public keys: an inline JWK Set.
    pub jwks: Option<JwkSet>,
    /// Where its public keys are published instead.
    pub jwks_uri: Option<String>,
    /// For the TLS methods: the certificate rule the edge applies (RFC 8705 2).
    pub cert_rule: Option<CertRule>,
    /// Whether the FAPI-CIBA profile covers it, when set (else `fapi.enabled`).
    pub fapi: Option<bool>,
    /// Its requests carry a unique authorization context (no `binding_message` required).
    pub request_context: bool,
    /// Its `jwks_uri` may be http and a loopback, private or link-local address.
    pub jwks_uri_allow_insecure: bool,
}

/// What identifies a client's certificate (RFC 8705 2.1.2 metadata names, and pinned
/// SHA-256 thumbprints for self-signed certificates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// `tls_client_auth_subject_dn`: the subject's distinguished name.
    pub subject_dn: Option<String>,
    /// `tls_client_auth_san_dns`: a `dNSName` SAN.
    pub san_dns: Option<String>,
    /// `tls_client_auth_san_uri`: a `uniformResourceIdentifier` SAN.
    pub san_uri: Option<String>,
    /// `tls_client_auth_san_ip`: an `iPAddress` SAN.
    pub san_ip: Option<std::net::IpAddr>,
    /// `tls_client_auth_san_email`: an `rfc822Name` SAN.
    pub san_email: Option<String>,
    /// SHA-256 thumbprints (`x5t#S256`) of pinned certificates.
    pub thumbprints: Vec<[u8; 32]>,
}

impl CertificateIdentity {
    /// How many of the `tls_client_auth_*` names are set (RFC 8705 2.1.2: exactly one).
    pub fn names_set(&self) -> usize {
        [
            self.subject_dn.is_some(),
            self.san_dns.is_some(),
            self.san_uri.is_some(),
            self.san_ip.is_some(),
            self.san_email.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count()
    }
}

/// Checks `[clients]`.
pub(super) fn validate_clients(
    file: BTreeMap<String, ClientSection>,
) -> Result<Clients, ConfigError> {
    let mut by_id = BTreeMap::new();
    for (id, c) in file {
        let key = |k: &str| format!("clients.{id}.{k}");
        if id.is_empty() {
            return Err(err("clients", "has a client with an empty id"));
        }
        let san_ip = match &c.tls_client_auth_san_ip {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|_| {
                err(
                    &key("tls_client_auth_san_ip"),
                    "is not an IPv4 or IPv6 address",
                )
            })?),
        };
        let mut thumbprints = Vec::new();
        for (i, t) in c.certificate_thumbprints.iter().enumerate() {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    err(
                        &format!("clients.{id}.certificate_thumbprints[{i}]"),
                        "is not a SHA-256 thumbprint in base64url (43 characters, as x5t#S256)",
                    )
                })?;
            thumbprints.push(bytes.try_into().expect("length checked"));
        }
        let jwks = match &c.jwks {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<JwkSet>(text)
                    .map_err(|e| err(&key("jwks"), format!("is not a JWK Set document: {e}")))?,
            ),
        };
        if jwks.is_some() && c.jwks_uri.is_some() {
            return Err(err(
                &key("jwks_uri"),
                "is set together with jwks; give the keys one way",
            ));
        }
        let certificate = CertificateIdentity {
            subject_dn: c.tls_client_auth_subject_dn,
            san_dns: c.tls_client_auth_san_dns,
            san_uri: c.tls_client_auth_san_uri,
            san_ip,
            san_email: c.tls_client_auth_san_email,
            thumbprints,
        };
        if certificate.names_set() > 1 {
            return Err(err(
                &key("tls_client_auth_subject_dn"),
                "and the tls_client_auth_san_* keys: set exactly one (RFC 8705 2.1.2)",
            ));
        }
        let cert_rule = cert_rule(
            &id,
            c.token_endpoint_auth_method,
            &certificate,
            jwks.as_ref(),
        )?;
        by_id.insert(
            id,
            Client {
                auth_method: c.token_endpoint_auth_method,
                certificate,
                jwks,
                jwks_uri: c.jwks_uri,
                cert_rule,
                fapi: c.fapi,
                request_context: c.request_context.unwrap_or(false),
                jwks_uri_allow_insecure: c.jwks_uri_allow_insecure.unwrap_or(false),
            },
        );
    }
    Ok(Clients { by_id })
}

/// The certificate rule of a client registered for a TLS method: `tls_client_auth` needs
/// its one name (the DN read as RFC 4514 writes it), `self_signed_tls_client_auth` pinned
/// thumbprints or `x5c` certificates in its inline JWK Set.
fn cert_rule(
    id: &str,
    method: Option<AuthMethod>,
    c: &CertificateIdentity,
    jwks: Option<&JwkSet>,
) -> Result<Option<CertRule>, ConfigError> {
    let key = |k: &str| format!("clients.{id}.{k}");
    match method {
        Some(AuthMethod::TlsClientAuth) => {
            let name = if let Some(dn) = &c.subject_dn {
                CertName::SubjectDn(Dn::parse(dn).map_err(|why| {
                    err(
                        &key("tls_client_auth_subject_dn"),
                        format!(
                            "{why} (an RFC 4514 string, most specific first: CN=...,O=...,C=...)"
                        ),
                    )
                })?)
            } else if let Some(v) = &c.san_dns {
                CertName::SanDns(v.clone())
            } else if let Some(v) = &c.san_uri {
                CertName::SanUri(v.clone())
            } else if let Some(v) = c.san_ip {
                CertName::SanIp(v)
            } else if let Some(v) = &c.san_email {
                CertName::SanEmail(v.clone())
            } else {
                return Err(err(
                    &key("token_endpoint_auth_method"),
                    "is tls_client_auth but none of tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email is set (RFC 8705 2.1.2)",
                ));
            };
            for (set, k) in [
                (
                    c.san_dns.as_ref().is_some_and(String::is_empty),
                    "tls_client_auth_san_dns",
                ),
                (
                    c.san_uri.as_ref().is_some_and(String::is_empty),
                    "tls_client_auth_san_uri",
                ),
                (
                    c.san_email.as_ref().is_some_and(String::is_empty),
                    "tls_client_auth_san_email",
                ),
            ] {
                if set {
                    return Err(err(&key(k), "is empty"));
                }
            }
            Ok(Some(CertRule::Pki(name)))
        }
        Some(AuthMethod::SelfSignedTlsClientAuth) => {
            let x5c: Vec<String> = jwks
                .map(|set| {
                    set.keys
                        .iter()
                        .filter_map(|k| k.common.x509_chain.as_ref()?.first().cloned())
                        .collect()
                })
                .unwrap_or_default();
            let mut pinned = c.thumbprints.clone();
            pinned.extend(
                cert_identity::x5c_thumbprints(&x5c).map_err(|why| err(&key("jwks"), why))?,
            );
            if pinned.is_empty() {
                return Err(err(
                    &key("token_endpoint_auth_method"),
                    "is self_signed_tls_client_auth but neither certificate_thumbprints nor an inline jwks with x5c certificates is set (the gateway does not fetch jwks_uri)",
                ));
            }
            Ok(Some(CertRule::SelfSigned(pinned)))
        }
        _ => Ok(None),
    }
}

/// A `tls_client_auth` client needs CAs to chain to.
pub(super) fn check_certificate_sources(
    clients: &Clients,
    certs: &super::ClientCertificates,
) -> Result<(), ConfigError> {
    if certs.anchors.is_some() {
        return Ok(());
    }
    match clients
        .by_id
        .iter()
        .find(|(_, c)| matches!(c.cert_rule, Some(CertRule::Pki(_))))
    {
        Some((id, _)) => Err(err(
            &format!("clients.{id}.token_endpoint_auth_method"),
            "is tls_client_auth, which needs client_certificates.ca_file (the CAs its certificate chains to)",
        )),
        None => Ok(()),
    }
}
