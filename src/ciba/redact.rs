//! Request paths as the gateway prints them: never with an `auth_req_id` in them.
//!
//! The only path that carries an `auth_req_id` is the vendor cancel call
//! (`[polling] cancel_path`, e.g. `/op/api/v1/ciba/{auth_req_id}`), and an `auth_req_id` is a
//! bearer handle. So a path that could be that call is printed as the configured pattern,
//! `{auth_req_id}` in place of the id. "Could be" is judged loosely, whatever the method, on
//! the path percent-decoded, lower-cased and with empty and `.` segments dropped, and
//! anywhere in it: an odd spelling the OP might still route to the cancel call is redacted
//! too. Printing less is the safe way to be wrong.

use crate::ciba::routing::{self, CancelRoute};
use std::borrow::Cow;

/// What the placeholder prints as.
pub const PLACEHOLDER: &str = "{auth_req_id}";

/// The path as logs and error summaries print it: `path` itself, or the cancel pattern
/// with [`PLACEHOLDER`] when the path may name an `auth_req_id`.
pub fn logged_path<'a>(path: &'a str, cancel: Option<&CancelRoute>) -> Cow<'a, str> {
    match cancel {
        Some(route) if may_name_an_id(path, route) => {
            Cow::Owned(format!("{}{PLACEHOLDER}{}", route.prefix, route.suffix))
        }
        _ => Cow::Borrowed(path),
    }
}

/// Whether `path`, loosely read or read as the router reads it (`routing::canonical_path`),
/// holds the cancel call's fixed part before the id.
fn may_name_an_id(path: &str, route: &CancelRoute) -> bool {
    let holds = |prefix: &str, path: &str| {
        // The prefix ends where the id begins; keep its closing slash so `/ciba/` does not
        // match `/cibax`, and match a path that is exactly the prefix without it.
        path.contains(prefix) || path.ends_with(prefix.trim_end_matches('/'))
    };
    let canonical = |p: &str| routing::canonical_path(p.as_bytes()).ok();
    // The canonical form drops a trailing slash; the prefix's closing one goes back on.
    let canonical_prefix = canonical(&route.prefix).map(|p| {
        if route.prefix.ends_with('/') && !p.ends_with('/') {
            p + "/"
        } else {
            p
        }
    });
    holds(&loose(&route.prefix), &loose(path))
        || matches!(
            (canonical_prefix, canonical(path)),
            (Some(prefix), Some(path)) if holds(&prefix, &path)
        )
}

/// Percent-decoded (lossily), lower-cased, with empty and `.` segments dropped; a trailing
/// slash is kept.
fn loose(path: &str) -> String {
    let decoded = percent_decode(path.as_bytes());
    let text = String::from_utf8_lossy(&decoded).to_lowercase();
    let mut out = String::with_capacity(text.len() + 1);
    for segment in text.split('/').filter(|s| !s.is_empty() && *s != ".") {
        out.push('/');
        out.push_str(segment);
    }
    if text.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    out
}

/// `%XX` to its byte; anything else, malformed escapes included, as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pattern: &str) -> CancelRoute {
        let (prefix, suffix) = pattern.split_once(PLACEHOLDER).unwrap();
        CancelRoute {
            method: http::Method::DELETE,
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    #[test]
    fn the_cancel_call_prints_as_its_pattern() {
        let r = route("/op/api/v1/ciba/{auth_req_id}");
        let redacted = "/op/api/v1/ciba/{auth_req_id}";
        for path in [
            "/op/api/v1/ciba/SECRET-ID",
            "/op/api/v1/ciba/SECRET-ID/",
            "/op/api/v1/ciba/SECRET/ID",
            "/OP/API/V1/CIBA/SECRET-ID",
            "/op/api/v1/%63iba/SECRET-ID",
            "/op/api/v1/ciba%2FSECRET-ID",
            "//op//api/v1/./ciba/SECRET-ID",
            "/x/../op/api/v1/ciba/SECRET-ID",
            "/op/api/v1/ciba/",
            "/op/api/v1/ciba",
        ] {
            assert_eq!(logged_path(path, Some(&r)), redacted, "{path}");
        }
        for path in ["/op/api/v1/cibax/abc", "/token", "/", "/op/api/v1"] {
            assert_eq!(logged_path(path, Some(&r)), path, "{path}");
        }
        assert_eq!(
            logged_path("/op/api/v1/ciba/SECRET-ID", None),
            "/op/api/v1/ciba/SECRET-ID"
        );
    }

    #[test]
    fn a_suffix_is_kept_and_a_root_prefix_redacts_everything() {
        let r = route("/ciba/{auth_req_id}/cancel");
        assert_eq!(
            logged_path("/ciba/SECRET-ID/cancel", Some(&r)),
            "/ciba/{auth_req_id}/cancel"
        );
        let root = route("/{auth_req_id}");
        for path in ["/SECRET-ID", "/token", "/"] {
            assert_eq!(logged_path(path, Some(&root)), "/{auth_req_id}", "{path}");
        }
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode(b"a%41%4a%zz%4"), b"aAJ%zz%4");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%2"), b"%2");
    }
}
