//! A bridge request's life: pending until the user's browser returns to the callback,
//! then approved (tokens held), denied, or failed; redeemed once by the client that
//! started it. The errors each state gives a poll (CIBA 11) and the callback's own.

use crate::ciba::error::{ErrorCode, OAuthError};

/// Where a bridge request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The user has not come back yet.
    Pending,
    /// The OP issued tokens and the ID token passed its checks; they are held.
    Approved,
    /// The user cancelled or refused at the OP (the callback carried an `error`).
    Denied,
    /// The code exchange or the ID token failed: the client gets no tokens.
    Failed,
}

impl Status {
    /// The one-byte form kept in the state store.
    pub fn as_byte(self) -> u8 {
        match self {
            Status::Pending => b'p',
            Status::Approved => b'a',
            Status::Denied => b'd',
            Status::Failed => b'f',
        }
    }

    /// Reads [`Status::as_byte`].
    pub fn from_byte(b: u8) -> Option<Status> {
        Some(match b {
            b'p' => Status::Pending,
            b'a' => Status::Approved,
            b'd' => Status::Denied,
            b'f' => Status::Failed,
            _ => return None,
        })
    }

    /// The poll's error in this state; `None` for [`Status::Approved`] (the tokens).
    pub fn poll_error(self) -> Option<OAuthError> {
        match self {
            Status::Pending => Some(OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the end-user has not finished authenticating",
            )),
            Status::Denied => Some(
                OAuthError::new(ErrorCode::AccessDenied, "the end-user denied the request")
                    .with_status(400),
            ),
            Status::Failed => Some(
                OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the OpenID Provider's answer for this request did not pass the gateway's checks",
                )
                .with_status(400),
            ),
            Status::Approved => None,
        }
    }

    /// Whether a poll in this state ends the request.
    pub fn is_terminal(self) -> bool {
        self != Status::Pending
    }
}

/// `invalid_grant` for an id that is unknown, used up, or another client's (CIBA 11).
pub fn invalid_grant() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidGrant,
        "auth_req_id is unknown, already redeemed, or issued to another client",
    )
    .with_reason(super::REASON)
}

/// `invalid_client` when the credential differs from the one the request was started with.
pub fn wrong_credential() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        "the client must authenticate as it did when it started the request",
    )
    .with_reason(super::REASON)
}

/// What the user's return to the callback means, from its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Return<'a> {
    /// `code` and `state`.
    Code {
        /// The authorization code.
        code: &'a str,
        /// The state.
        state: &'a str,
    },
    /// `error` and `state` (RFC 6749 4.1.2.1): the user cancelled, or the OP refused.
    Error {
        /// The state.
        state: &'a str,
    },
    /// Neither: no `state`, or both or neither of `code` and `error`, or a parameter twice.
    Malformed,
}

/// Reads the callback's query (as pairs, already decoded); the `iss` parameter (RFC 9207)
/// is returned for the caller to compare with the OP's issuer.
pub fn read_return<'a>(pairs: &'a [(String, String)]) -> (Return<'a>, Option<&'a str>) {
    let one = |name: &str| {
        let mut it = pairs.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(Some(v.as_str())),
            (None, _) => Ok(None),
            _ => Err(()),
        }
    };
    let (Ok(state), Ok(code), Ok(error), Ok(iss)) =
        (one("state"), one("code"), one("error"), one("iss"))
    else {
        return (Return::Malformed, None);
    };
    let ret = match (state.filter(|s| !s.is_empty()), code, error) {
        (Some(state), Some(code), None) if !code.is_empty() => Return::Code { code, state },
        (Some(state), None, Some(_)) => Return::Error { state },
        _ => Return::Malformed,
    };
    (ret, iss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn returns() {
        let p = pairs("code=c&state=s&iss=https%3A%2F%2Fop");
        assert_eq!(
            read_return(&p),
            (
                Return::Code {
                    code: "c",
                    state: "s"
                },
                Some("https://op")
            )
        );
        let p = pairs("error=access_denied&state=s");
        assert_eq!(read_return(&p).0, Return::Error { state: "s" });
        for q in [
            "code=c",
            "state=s",
            "code=c&error=x&state=s",
            "code=c&state=s&state=t",
            "code=&state=s",
            "code=c&state=",
        ] {
            assert_eq!(read_return(&pairs(q)).0, Return::Malformed, "{q}");
        }
    }

    #[test]
    fn statuses_round_trip_and_answer_polls() {
        for s in [
            Status::Pending,
            Status::Approved,
            Status::Denied,
            Status::Failed,
        ] {
            assert_eq!(Status::from_byte(s.as_byte()), Some(s));
        }
        assert_eq!(
            Status::Pending.poll_error().unwrap().code,
            ErrorCode::AuthorizationPending
        );
        let denied = Status::Denied.poll_error().unwrap();
        assert_eq!((denied.code, denied.status), (ErrorCode::AccessDenied, 400));
        assert!(Status::Approved.poll_error().is_none());
        assert!(!Status::Pending.is_terminal());
    }
}
