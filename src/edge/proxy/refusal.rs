//! How a served request stops short of the OP's answer, and the one place where that
//! becomes an answer ([`finish`]).

use super::answer::{answer_error, failure_error};
use super::{GatewayState, RequestCtx};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::edge::op_client::Failure;
use crate::state::poll_store::Full;
use crate::state::rate_limit::{KeyKind, Limited};
use crate::state::store::{Unavailable, UNAVAILABLE_RETRY};
use pingora::prelude::*;
use pingora::proxy::Session;

/// Why the steps for a CIBA endpoint or a metadata document ended early.
#[derive(Debug)]
pub(super) enum Stop {
    /// Answered by the gateway with this JSON error, counted as [`Count`] says.
    Refuse(OAuthError, Count),
    /// An I/O or internal error, left to pingora (`fail_to_proxy` answers it as JSON).
    Fail(Box<pingora::Error>),
}

/// What a refusal counts as, besides the local answer every refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// Nothing more: the store, the tracking limits, the poll rules, an unreachable OP.
    Plain,
    /// Refused by the request checks (`ciba_gateway_validation_refusals_total`).
    Validation,
    /// Over a rate limit (`ciba_gateway_rate_limited_total`).
    RateLimited(KeyKind),
    /// The OP's answer could not be used (`ciba_gateway_upstream_failures_total`,
    /// `bad_response`).
    BadAnswer,
}

impl Stop {
    /// A refusal by the request checks.
    pub(super) fn validation(e: OAuthError) -> Self {
        Stop::Refuse(e, Count::Validation)
    }

    /// A refusal because the OP's answer could not be used.
    pub(super) fn bad_answer(e: OAuthError) -> Self {
        Stop::Refuse(e, Count::BadAnswer)
    }
}

/// Writes what the steps ended with: nothing more on success (they wrote the answer), the
/// refusal as JSON (noted in the request's tally), or the failure back to pingora.
/// Returns what `request_filter` returns: answered.
pub(super) async fn finish(
    gw: &GatewayState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    ended: Result<(), Stop>,
) -> Result<bool> {
    match ended {
        Ok(()) => Ok(true),
        Err(Stop::Refuse(e, count)) => {
            ctx.tally.refused(count, &e);
            answer_error(gw, session, ctx, e).await
        }
        Err(Stop::Fail(e)) => Err(e),
    }
}

impl From<OAuthError> for Stop {
    fn from(e: OAuthError) -> Self {
        Stop::Refuse(e, Count::Plain)
    }
}

impl From<Box<pingora::Error>> for Stop {
    fn from(e: Box<pingora::Error>) -> Self {
        Stop::Fail(e)
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        failure_error(f).into()
    }
}

/// The 503 for a request the shared store could not decide, in `closed` failure mode.
impl From<Unavailable> for Stop {
    fn from(_: Unavailable) -> Self {
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the gateway's shared state is unavailable; retry shortly",
        )
        .with_retry_after(UNAVAILABLE_RETRY.as_secs())
        .with_reason("store_unavailable")
        .into()
    }
}

/// The 429 for a request over a rate limit.
impl From<Limited> for Stop {
    fn from(l: Limited) -> Self {
        let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
        let e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            format!(
                "too many requests from this {}; retry after {secs} s",
                l.kind.as_str()
            ),
        )
        .with_status(429)
        .with_retry_after(secs.max(1))
        .with_reason("rate_limited");
        Stop::Refuse(e, Count::RateLimited(l.kind))
    }
}

/// The 429 for a request whose answer the gateway would have no room to track.
impl From<Full> for Stop {
    fn from(full: Full) -> Self {
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many outstanding authentication requests; retry later",
        )
        .with_status(429)
        .with_retry_after(full.retry_after.as_secs().max(1))
        .into()
    }
}
