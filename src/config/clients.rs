//! `[clients."id"]`: what the gateway knows of a client's identity: how it authenticates
//! at the OP, the certificate it must present (RFC 8705) and the keys that verify what it
//! signs (request objects, `private_key_jwt` assertions).
//!
//! Only the shape is checked here; the rules that use these settings check them further.

use super::err;
use super::file::ClientSection;
use crate::ciba::client_auth::AuthMethod;
use crate::ciba::config_error::ConfigError;
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
        by_id.insert(
            id,
            Client {
                auth_method: c.token_endpoint_auth_method,
                certificate,
                jwks,
                jwks_uri: c.jwks_uri,
                fapi: c.fapi,
                request_context: c.request_context.unwrap_or(false),
                jwks_uri_allow_insecure: c.jwks_uri_allow_insecure.unwrap_or(false),
            },
        );
    }
    Ok(Clients { by_id })
}
