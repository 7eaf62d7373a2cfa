//! `[client_certificates]`: where a client's certificate comes from behind a TLS
//! terminator, how it is passed on to the OP, and the CAs a `tls_client_auth` client's
//! certificate must chain to (RFC 8705).

use super::err;
use super::file::ClientCertificatesSection;
use crate::ciba::cert_chain::TrustAnchors;
use crate::ciba::cert_header::CertFormat;
use crate::ciba::config_error::ConfigError;

/// The header the OP gets the client's certificate in, unless configured.
pub const DEFAULT_FORWARD_HEADER: &str = "x-ssl-client-cert";

/// Headers the gateway sets or relies on itself, which neither certificate header may be.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "authorization",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-request-id",
];

/// The validated section.
#[derive(Debug, Clone)]
pub struct ClientCertificates {
    /// The header a trusted proxy puts the client's certificate in (lower case); unset,
    /// no header is believed.
    pub proxy_header: Option<String>,
    /// Its format.
    pub proxy_format: CertFormat,
    /// The header the OP gets the certificate in (lower case).
    pub forward_header: String,
    /// Its format.
    pub forward_format: CertFormat,
    /// The CAs `tls_client_auth` certificates chain to; unset, no chain verifies.
    pub anchors: Option<TrustAnchors>,
}

impl Default for ClientCertificates {
    fn default() -> Self {
        ClientCertificates {
            proxy_header: None,
            proxy_format: CertFormat::Pem,
            forward_header: DEFAULT_FORWARD_HEADER.into(),
            forward_format: CertFormat::Pem,
            anchors: None,
        }
    }
}

/// Checks `[client_certificates]`; `trusted_proxies` is whether `rate_limit.trusted_proxies`
/// lists any proxy.
pub(super) fn validate_client_certificates(
    file: ClientCertificatesSection,
    trusted_proxies: bool,
) -> Result<ClientCertificates, ConfigError> {
    let proxy_header = match file.proxy_header {
        None => None,
        Some(h) => Some(header_name("client_certificates.proxy_header", &h)?),
    };
    if proxy_header.is_some() && !trusted_proxies {
        return Err(err(
            "client_certificates.proxy_header",
            "is set but rate_limit.trusted_proxies lists no proxy: the header is believed only from those addresses",
        ));
    }
    let forward_header = header_name(
        "client_certificates.forward_header",
        file.forward_header
            .as_deref()
            .unwrap_or(DEFAULT_FORWARD_HEADER),
    )?;
    let anchors = match &file.ca_file {
        None => None,
        Some(path) => {
            let key = "client_certificates.ca_file";
            let pem =
                std::fs::read(path).map_err(|e| err(key, format!("cannot read {path}: {e}")))?;
            let roots = super::ping::pem_roots(&pem).map_err(|why| err(key, why))?;
            Some(TrustAnchors::from_der(&roots).map_err(|why| err(key, why))?)
        }
    };
    Ok(ClientCertificates {
        proxy_header,
        proxy_format: file.proxy_header_format.unwrap_or_default(),
        forward_header,
        forward_format: file.forward_format.unwrap_or_default(),
        anchors,
    })
}

/// A header name as HTTP writes one (RFC 9110 5.1 token), lower-cased, and not one the
/// gateway sets or relies on itself.
fn header_name(key: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(crate::ciba::challenge::is_tchar);
    if !valid {
        return Err(err(key, "is not an HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        return Err(err(
            key,
            format!("is `{lower}`, a header the gateway sets or relies on; name another"),
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> ClientCertificatesSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_names() {
        let c = validate_client_certificates(section(""), false).unwrap();
        assert_eq!(c.proxy_header, None);
        assert_eq!(c.forward_header, "x-ssl-client-cert");
        assert_eq!(c.forward_format, CertFormat::Pem);
        let c = validate_client_certificates(
            section("proxy_header = \"Client-Cert\"\nproxy_header_format = \"rfc9440\""),
            true,
        )
        .unwrap();
        assert_eq!(c.proxy_header.as_deref(), Some("client-cert"));
        assert_eq!(c.proxy_format, CertFormat::Rfc9440);
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            (
                "proxy_header = \"x-cert\"",
                false,
                "client_certificates.proxy_header",
            ),
            (
                "proxy_header = \"x cert\"",
                true,
                "client_certificates.proxy_header",
            ),
            (
                "proxy_header = \"\"",
                true,
                "client_certificates.proxy_header",
            ),
            (
                "forward_header = \"Host\"",
                true,
                "client_certificates.forward_header",
            ),
            (
                "forward_header = \"X-Forwarded-For\"",
                true,
                "client_certificates.forward_header",
            ),
            (
                "forward_header = \"proxy-x\"",
                true,
                "client_certificates.forward_header",
            ),
            (
                "ca_file = \"/nonexistent/ca.pem\"",
                true,
                "client_certificates.ca_file",
            ),
        ];
        for (text, trusted, key) in cases {
            let e = validate_client_certificates(section(text), trusted).unwrap_err();
            assert_eq!(e.key, key, "{text}");
        }
    }

    fn whole(text: &str) -> Result<crate::config::Config, ConfigError> {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}");
        crate::config::validate(crate::config::parse_file(&text)?, &Default::default())
    }

    #[test]
    fn tls_clients_are_checked_at_start_up() {
        let cases = [
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"tls_client_auth\"\n",
                "clients.a.token_endpoint_auth_method",
            ),
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a.example\"\n",
                "clients.a.token_endpoint_auth_method",
            ),
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"CN=a;O=b\"\n",
                "clients.a.tls_client_auth_subject_dn",
            ),
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"self_signed_tls_client_auth\"\n",
                "clients.a.token_endpoint_auth_method",
            ),
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"self_signed_tls_client_auth\"\njwks_uri = \"https://a.example/jwks\"\n",
                "clients.a.token_endpoint_auth_method",
            ),
            (
                "[clients.a]\ntoken_endpoint_auth_method = \"self_signed_tls_client_auth\"\njwks = '{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\",\"x5c\":[\"aGVsbG8=\"]}]}'\n",
                "clients.a.jwks",
            ),
        ];
        for (text, key) in cases {
            let e = whole(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e:?}");
        }
        let ok = "[clients.a]\ntoken_endpoint_auth_method = \"self_signed_tls_client_auth\"\ncertificate_thumbprints = [\"LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE\"]\n";
        let c = whole(ok).unwrap();
        assert!(matches!(
            c.clients.get("a").unwrap().cert_rule,
            Some(crate::ciba::cert_identity::CertRule::SelfSigned(ref t)) if t.len() == 1
        ));
    }
}
