//! Client certificates at the edge (RFC 8705): read from a trusted TLS terminator's header,
//! passed on to the OP in the forwarding header, and checked as the identity of the
//! clients configured with a TLS method on the CIBA endpoints.
//!
//! The trust model: the certificate header is believed only from a peer address listed in
//! `rate_limit.trusted_proxies` (the TCP peer, never a forwarded address). From any other
//! peer it is not read, and on the way to the OP every copy of it and of the forwarding
//! header is removed, whatever the letter case and with `_` for `-` (some servers map both
//! to one name), on every path, so the OP sees a certificate only when the gateway put it
//! there.

use super::{Gateway, RequestCtx, Stop};
use crate::ciba::cert_header;
use crate::ciba::cert_identity;
use crate::ciba::client_cert;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::pipeline::Accepted;
use crate::edge::reload::Live;
use http::header::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// The `reason` of refusals about client certificates.
const REASON: &str = "client_cert";

impl Gateway {
    /// Reads the certificate a trusted proxy's header carries into `ctx.client_cert`.
    ///
    /// From a peer that is not a trusted proxy the header is ignored here (and removed on
    /// the way to the OP). From a trusted one: two copies or a malformed value are refused;
    /// an empty value is no certificate. When the connection's own TLS handshake already
    /// presented a certificate, a header certificate as well is refused: the gateway
    /// cannot tell which of the two is the client's, and never swaps one for the other.
    pub(super) fn read_proxy_certificate(
        &self,
        live: &Live,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), OAuthError> {
        let settings = &live.cfg.client_certificates;
        let Some(name) = settings.proxy_header.as_deref() else {
            return Ok(());
        };
        let mut values = session.req_header().headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Ok(());
        };
        if !peer_is_trusted_proxy(&live.cfg.rate_limit.trusted_proxies, session) {
            return Ok(());
        }
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the {name} header is sent more than once"
            ))
            .with_reason(REASON));
        }
        let der = match cert_header::parse(first.as_bytes(), settings.proxy_format) {
            Ok(Some(der)) => der,
            Ok(None) => return Ok(()),
            Err(bad) => {
                return Err(OAuthError::invalid_request(format!(
                    "the {name} header {}",
                    bad.describe()
                ))
                .with_reason(REASON))
            }
        };
        let verified = settings
            .anchors
            .as_ref()
            .is_some_and(|a| a.verifies(&der, &[], super::ciba::unix_now()));
        let cert = client_cert::from_proxy(ctx.client_cert.as_deref(), der, verified).map_err(
            |_| {
                OAuthError::invalid_request(format!(
                    "a client certificate came in the TLS handshake and in the {name} header; only one source is accepted"
                ))
                .with_reason(REASON)
            },
        )?;
        ctx.client_cert = Some(Arc::new(cert));
        Ok(())
    }

    /// Removes every copy of the certificate headers from a request to the OP, then sets
    /// the forwarding header to the request's certificate, when it has one.
    pub(super) fn forward_certificate(
        &self,
        ctx: &RequestCtx,
        req: &mut RequestHeader,
    ) -> Result<()> {
        let live = self.live(ctx);
        let settings = &live.cfg.client_certificates;
        let names = [
            Some(settings.forward_header.as_str()),
            settings.proxy_header.as_deref(),
        ];
        let doomed: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|k| names.iter().flatten().any(|n| same_field(k.as_str(), n)))
            .cloned()
            .collect();
        for name in doomed {
            req.remove_header(&name);
        }
        if let Some(cert) = &ctx.client_cert {
            let value = cert_header::encode(cert.der(), settings.forward_format);
            let value = HeaderValue::from_str(&value).map_err(|_| {
                pingora::Error::explain(ErrorType::InternalError, "certificate header")
            })?;
            req.insert_header(settings.forward_header.clone(), value)?;
        }
        Ok(())
    }

    /// RFC 8705 2: a client registered for a TLS method authenticates with its certificate
    /// and names itself with `client_id` in the form; no other method may come with it
    /// (RFC 6749 2.3). Anything else is `invalid_client` (401), answered at the edge.
    pub(super) fn certificate_identity(
        &self,
        live: &Live,
        ctx: &RequestCtx,
        accepted: &Accepted,
        authorization: bool,
    ) -> Result<(), Stop> {
        let Some(client) = &accepted.client else {
            return Ok(());
        };
        let Some(rule) = live
            .cfg
            .clients
            .get(client.as_str())
            .and_then(|c| c.cert_rule.as_ref())
        else {
            return Ok(());
        };
        let refuse = |why: &'static str| {
            Stop::validation(
                OAuthError::new(ErrorCode::InvalidClient, why)
                    .with_status(401)
                    .with_reason(REASON),
            )
        };
        if accepted.form.get("client_id") != Some(client.as_str()) {
            return Err(refuse(
                "a client that authenticates with a TLS client certificate must send client_id in the form (RFC 8705 2)",
            ));
        }
        let other_method = authorization
            || ["client_secret", "client_assertion", "client_assertion_type"]
                .iter()
                .any(|p| accepted.form.contains(p));
        if other_method {
            return Err(refuse(
                "the client authenticates with a TLS client certificate; no other method may come with it",
            ));
        }
        let cert = ctx
            .client_cert
            .as_deref()
            .map(|c| (c.der(), c.thumbprint()));
        cert_identity::authenticate(
            rule,
            cert,
            live.cfg.client_certificates.anchors.as_ref(),
            super::ciba::unix_now(),
        )
        .map_err(|r| refuse(r.describe()))
    }

    /// The credential a client's rate-limit key is made with: for a client registered for
    /// a TLS method, its certificate's thumbprint (a caller without the certificate lands
    /// in another bucket); `None` for other clients.
    pub(super) fn certificate_credential(
        &self,
        live: &Live,
        ctx: &RequestCtx,
        accepted: &Accepted,
    ) -> Option<String> {
        let client = accepted.client.as_ref()?;
        live.cfg.clients.get(client.as_str())?.cert_rule.as_ref()?;
        let thumb = ctx
            .client_cert
            .as_ref()
            .map(|c| *c.thumbprint())
            .unwrap_or([0; 32]);
        use base64::Engine;
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb))
    }
}

/// Whether the TCP peer is listed in `trusted` (`rate_limit.trusted_proxies`).
fn peer_is_trusted_proxy(trusted: &[ipnet::IpNet], session: &Session) -> bool {
    let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
    else {
        return false;
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// Whether a header field name is `name` as some server reads it: letter case ignored, and
/// `_` taken for `-` (CGI-style servers map both to one variable).
fn same_field(field: &str, name: &str) -> bool {
    field.len() == name.len()
        && field.bytes().zip(name.bytes()).all(|(a, b)| {
            let fold = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(a) == fold(b)
        })
}

#[cfg(test)]
mod tests {
    use super::same_field;

    #[test]
    fn every_spelling_of_a_certificate_header_is_the_header() {
        for f in [
            "x-ssl-client-cert",
            "x_ssl_client_cert",
            "x-ssl_client-cert",
        ] {
            assert!(same_field(f, "x-ssl-client-cert"), "{f}");
        }
        for f in ["x-ssl-client-certs", "x-ssl-client", "xx-ssl-client-cert"] {
            assert!(!same_field(f, "x-ssl-client-cert"), "{f}");
        }
    }
}
