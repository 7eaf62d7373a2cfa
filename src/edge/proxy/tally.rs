//! What a request's handling noted for the metrics, counted once, in the `logging` hook.

use super::refusal::Count;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::edge::op_client::Failure;
use crate::metrics;
use crate::state::rate_limit::KeyKind;

/// Per-request notes for the metrics; the steps set them, `logging` reads them.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// The error code when the gateway answered with an error of its own.
    pub local_error: Option<ErrorCode>,
    /// Why the OP could not be reached or answered badly (also the access log's outcome).
    pub upstream_failure: Option<Failure>,
    /// The reason of a refusal by the request checks.
    pub validation_refusal: Option<&'static str>,
    /// The key kind of a rate limit that refused the request.
    pub rate_limited: Option<KeyKind>,
    /// The OP answered, but not in a form the gateway could use.
    pub bad_answer: bool,
    /// An accepted `login_hint_token`: its format and whether it was repaired.
    pub login_hint_token: Option<(&'static str, &'static str)>,
    /// The OP's error code was outside the spec's vocabulary and the profile's map.
    pub unknown_error: bool,
    /// The body did not arrive within its deadline.
    pub body_timed_out: bool,
}

impl Tally {
    /// Notes a refusal as `count` says.
    pub fn refused(&mut self, count: Count, e: &OAuthError) {
        match count {
            Count::Plain => {}
            Count::Validation => self.validation_refusal = Some(e.reason),
            Count::RateLimited(kind) => self.rate_limited = Some(kind),
            Count::BadAnswer => self.bad_answer = true,
        }
    }

    /// Counts the notes under `endpoint`'s label (the request counter and the latency
    /// histogram are `RequestMetrics`'s).
    pub fn record(&self, endpoint: &'static str) {
        if let Some(code) = self.local_error {
            metrics::count_local_answer(endpoint, code);
        }
        if let Some(failure) = self.upstream_failure {
            metrics::UPSTREAM_FAILURES
                .with_label_values(&[failure.as_str()])
                .inc();
        }
        if self.bad_answer {
            metrics::UPSTREAM_FAILURES
                .with_label_values(&[Failure::BadResponse.as_str()])
                .inc();
        }
        if let Some(reason) = self.validation_refusal {
            metrics::VALIDATION_REFUSALS
                .with_label_values(&[endpoint, reason])
                .inc();
        }
        if let Some(kind) = self.rate_limited {
            metrics::RATE_LIMITED
                .with_label_values(&[endpoint, kind.as_str()])
                .inc();
        }
        if let Some((format, repaired)) = self.login_hint_token {
            metrics::LOGIN_HINT_TOKENS
                .with_label_values(&[format, repaired])
                .inc();
        }
        if self.unknown_error {
            metrics::UPSTREAM_UNKNOWN_ERRORS
                .with_label_values(&[endpoint])
                .inc();
        }
        if self.body_timed_out {
            metrics::CONNECTIONS_REFUSED
                .with_label_values(&["body_timeout"])
                .inc();
        }
    }
}
