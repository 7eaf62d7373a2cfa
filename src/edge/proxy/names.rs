//! Header names the request path uses on every request, made at compile time: a lookup or
//! an insert by `&str` parses and checks the name each time.

use http::header::HeaderName;

/// `X-Forwarded-For`.
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Request-Id`.
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `Forwarded` (RFC 7239).
pub(super) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus the ones the
/// gateway sets itself, and `Expect`: the gateway has the whole body before it writes to the
/// OP and sends it at once, so it never asks the OP for a `100 Continue` (RFC 9110 10.1.1).
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "content-length"
            | "host"
            | "accept-encoding"
            | "content-encoding"
            | "expect"
    )
}
