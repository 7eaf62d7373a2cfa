//! The OAuth/CIBA error vocabulary and its wire shape.
//!
//! This is the only module that knows how an error is rendered on the wire:
//! `{"error": ..., "error_description": ...}` with `Content-Type: application/json`
//! and `Cache-Control: no-store`.

use std::borrow::Cow;
use std::fmt;

/// An error code from CIBA Core 1.0 sections 11 and 13, or RFC 6749 5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// CIBA 13 / RFC 6749 5.2: malformed or missing parameter, duplicate parameter.
    InvalidRequest,
    /// CIBA 13: the requested scope is invalid, unknown or malformed (e.g. no `openid`).
    InvalidScope,
    /// CIBA 13: the `login_hint_token` has expired.
    ExpiredLoginHintToken,
    /// CIBA 13: the OP cannot identify the end-user from the hint.
    UnknownUserId,
    /// CIBA 13: the client may not use CIBA.
    UnauthorizedClient,
    /// CIBA 13: `user_code` is required but was not sent.
    MissingUserCode,
    /// CIBA 13: `user_code` was wrong.
    InvalidUserCode,
    /// CIBA 13: `binding_message` is unacceptable.
    InvalidBindingMessage,
    /// CIBA 13 / RFC 6749 5.2: client authentication failed (HTTP 401).
    InvalidClient,
    /// CIBA 11 and 13: the end-user refused (403 at the backchannel endpoint).
    AccessDenied,
    /// CIBA 11: the end-user has not finished yet.
    AuthorizationPending,
    /// CIBA 11: polling too fast; the interval grows by at least 5 s.
    SlowDown,
    /// CIBA 11: the `auth_req_id` has expired.
    ExpiredToken,
    /// CIBA 11 / RFC 6749 5.2: unknown `auth_req_id`, or issued to another client.
    InvalidGrant,
    /// RFC 6749 5.2: the grant type is not supported.
    UnsupportedGrantType,
    /// RFC 6749 4.1.2.1: the server met an unexpected condition (used for a broken upstream).
    ServerError,
    /// RFC 6749 4.1.2.1: the server cannot handle the request now (overload, upstream down).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as it appears in the `error` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ExpiredLoginHintToken => "expired_login_hint_token",
            ErrorCode::UnknownUserId => "unknown_user_id",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::MissingUserCode => "missing_user_code",
            ErrorCode::InvalidUserCode => "invalid_user_code",
            ErrorCode::InvalidBindingMessage => "invalid_binding_message",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// Parses a code from an `error` member; `None` for codes outside the vocabulary.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The HTTP status the spec gives this code (CIBA 13 for the backchannel endpoint).
    ///
    /// At the token endpoint every code but `invalid_client` is 400 (RFC 6749 5.2);
    /// use [`ErrorCode::token_endpoint_status`] there.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::ServerError => 502,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }

    /// The HTTP status of this code in a token endpoint answer (RFC 6749 5.2).
    pub fn token_endpoint_status(self) -> u16 {
        match self {
            ErrorCode::AccessDenied => 400,
            other => other.status(),
        }
    }
}

/// Every code, for parsing and exhaustive tests.
pub const ALL: [ErrorCode; 17] = [
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidScope,
    ErrorCode::ExpiredLoginHintToken,
    ErrorCode::UnknownUserId,
    ErrorCode::UnauthorizedClient,
    ErrorCode::MissingUserCode,
    ErrorCode::InvalidUserCode,
    ErrorCode::InvalidBindingMessage,
    ErrorCode::InvalidClient,
    ErrorCode::AccessDenied,
    ErrorCode::AuthorizationPending,
    ErrorCode::SlowDown,
    ErrorCode::ExpiredToken,
    ErrorCode::InvalidGrant,
    ErrorCode::UnsupportedGrantType,
    ErrorCode::ServerError,
    ErrorCode::TemporarilyUnavailable,
];

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the gateway answers itself: a code, a human description, and an HTTP status.
///
/// Descriptions never carry parameter values: they name parameters, never echo them,
/// so that nothing a client sent ends up in a log line or a response it did not expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The spec's error code.
    pub code: ErrorCode,
    /// The `error_description`, safe to log.
    pub description: Cow<'static, str>,
    /// The HTTP status; the code's own unless overridden (413, 429, 504...).
    pub status: u16,
    /// Seconds for a `Retry-After` header, for 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// A short fixed label for metrics (`duplicate_parameter`, `binding_message`...);
    /// the code itself unless set.
    pub reason: &'static str,
}

impl OAuthError {
    /// An error with the code's own status.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            status: code.status(),
            retry_after: None,
            reason: code.as_str(),
        }
    }

    /// Sets the metrics label saying why the request was refused.
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// Shorthand for `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// Overrides the HTTP status (e.g. 413 for an oversized body, 504 for a timeout).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a `Retry-After` value in seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body: `{"error": ..., "error_description": ...}`.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct rather than a `json!` map: no tree is built for a two-field answer.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
        }
        const HEAD: &[u8] = b"{\"error\":\"";
        const MID: &[u8] = b"\",\"error_description\":\"";
        const TAIL: &[u8] = b"\"}";
        let (code, description) = (self.code.as_str(), self.description.as_bytes());
        // The usual description needs no escape (JSON escapes only `"`, `\` and control
        // characters); written as it stands, it is byte for byte what serde_json writes,
        // without its per-character escape table (about 1k instructions an answer).
        if !description
            .iter()
            .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
        {
            // Sized exactly: `Bytes` takes a full vector over without allocating again.
            let mut out = Vec::with_capacity(
                HEAD.len() + code.len() + MID.len() + description.len() + TAIL.len(),
            );
            out.extend_from_slice(HEAD);
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(MID);
            out.extend_from_slice(description);
            out.extend_from_slice(TAIL);
            return out;
        }
        let mut out = Vec::with_capacity(48 + description.len());
        serde_json::to_writer(
            &mut out,
            &Body {
                error: code,
                error_description: &self.description,
            },
        )
        .expect("two strings always serialize");
        out
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_at_its_own_index() {
        for (i, code) in ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "{code}");
        }
    }

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("made_up"), None);
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(ErrorCode::InvalidClient.status(), 401);
        assert_eq!(ErrorCode::AccessDenied.status(), 403);
        assert_eq!(ErrorCode::AccessDenied.token_endpoint_status(), 400);
        assert_eq!(ErrorCode::InvalidClient.token_endpoint_status(), 401);
        assert_eq!(ErrorCode::SlowDown.status(), 400);
        assert_eq!(ErrorCode::InvalidBindingMessage.status(), 400);
    }

    #[test]
    fn the_plain_description_path_writes_what_serde_json_writes() {
        let descriptions = [
            "",
            "parameter `scope` appears twice",
            "polled too soon; wait at least 10 s between polls of this auth_req_id",
            "non-ASCII: ø, 日本, 🙂, and DEL \u{7f}",
            "a quote \" inside",
            "a backslash \\ inside",
            "a newline\nand a tab\t",
            "a NUL \u{0} and \u{1f}",
            "</script> & <b>",
            "\\\"",
        ];
        for code in ALL {
            for d in descriptions {
                let e = OAuthError::new(code, d);
                let expected = serde_json::to_vec(&serde_json::json!({
                    "error": code.as_str(),
                    "error_description": d,
                }))
                .unwrap();
                assert_eq!(
                    String::from_utf8(e.to_json()).unwrap(),
                    String::from_utf8(expected).unwrap(),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn json_shape_is_error_and_description() {
        let e = OAuthError::invalid_request("parameter `scope` appears twice");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["error_description"], "parameter `scope` appears twice");
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(e.status, 400);
        assert_eq!(e.clone().with_status(413).status, 413);
    }
}
