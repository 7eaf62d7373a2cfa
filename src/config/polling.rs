//! `[polling]`: the poll rules the gateway enforces per `auth_req_id`, and its memory bounds.
//!
//! The interval and lifetime defaults are [`PollPolicy`]'s, the tracking bounds
//! [`StoreLimits`]'; only the sweep and the cancel call's method are defaulted here.

use super::err;
use super::file::PollingSection;
use crate::ciba::config_error::ConfigError;
use crate::ciba::polling::PollPolicy;
use crate::ciba::routing::CancelRoute;
use crate::state::poll_store::StoreLimits;
use serde::Deserialize;
use std::time::Duration;

/// The largest `polling.max_tracked`: the id table reserves room for it at start.
const MAX_TRACKED_CAP: usize = 100_000_000;

/// `polling.sweep_interval_seconds` when unset.
pub const DEFAULT_SWEEP_INTERVAL_SECONDS: u64 = 10;
/// `polling.cancel_method` when `polling.cancel_path` is set without it.
pub const DEFAULT_CANCEL_METHOD: &str = "DELETE";

/// What to do with a poll for an `auth_req_id` the gateway has no state for
/// (`polling.unknown_auth_req_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPolicy {
    /// Send it to the OP (default): a restarted gateway does not break flows in flight.
    #[default]
    Forward,
    /// Answer `invalid_grant` locally.
    Reject,
}

/// Poll enforcement settings.
#[derive(Debug, Clone)]
pub struct Polling {
    /// Interval, expiry and tolerance rules.
    pub policy: PollPolicy,
    /// Memory bounds.
    pub limits: StoreLimits,
    /// Polls for ids the gateway never saw.
    pub unknown: UnknownPolicy,
    /// Pause between sweeps.
    pub sweep_interval: Duration,
    /// The vendor cancel call, when configured.
    pub cancel: Option<CancelRoute>,
}

/// Checks `[polling]`; absent keys take [`PollPolicy`]'s and [`StoreLimits`]' defaults.
pub(super) fn validate_polling(p: PollingSection) -> Result<Polling, ConfigError> {
    let defaults = PollPolicy::default();
    let min_interval = p
        .min_interval_seconds
        .unwrap_or(defaults.min_interval.as_secs());
    if !(1..=3600).contains(&min_interval) {
        return Err(err(
            "polling.min_interval_seconds",
            "must be between 1 and 3600",
        ));
    }
    let max_expires = p
        .max_expires_in_seconds
        .unwrap_or(defaults.max_expires_in.as_secs());
    if !(1..=86_400).contains(&max_expires) {
        return Err(err(
            "polling.max_expires_in_seconds",
            "must be between 1 and 86400",
        ));
    }
    let tolerance = p
        .tolerance_ms
        .unwrap_or(defaults.tolerance.as_millis() as u64);
    if tolerance >= min_interval * 1000 {
        return Err(err(
            "polling.tolerance_ms",
            "must be smaller than polling.min_interval_seconds, or every poll would pass",
        ));
    }
    let max_interval = p
        .max_interval_seconds
        .unwrap_or(defaults.max_interval.as_secs());
    if !(min_interval..=3600).contains(&max_interval) {
        return Err(err(
            "polling.max_interval_seconds",
            "must be between polling.min_interval_seconds and 3600",
        ));
    }
    let grace = p
        .expired_grace_seconds
        .unwrap_or(defaults.expired_grace.as_secs());
    if grace > 86_400 {
        return Err(err(
            "polling.expired_grace_seconds",
            "must be between 0 and 86400",
        ));
    }
    let remember = p.remember_seconds.unwrap_or(defaults.remember.as_secs());
    if !(1..=86_400).contains(&remember) {
        return Err(err(
            "polling.remember_seconds",
            "must be between 1 and 86400",
        ));
    }
    let unknown = p.unknown_auth_req_id.unwrap_or_default();
    let default_limits = StoreLimits::default();
    let limits = StoreLimits {
        max_tracked: p.max_tracked.unwrap_or(default_limits.max_tracked),
        max_per_client: p
            .max_tracked_per_client
            .unwrap_or(default_limits.max_per_client),
    };
    // The id table is made with room for this many (about 120 bytes each, see
    // `state::poll_store`), so a slip of the keyboard must not ask for terabytes.
    if !(1..=MAX_TRACKED_CAP).contains(&limits.max_tracked) {
        return Err(err(
            "polling.max_tracked",
            "must be between 1 and 100000000",
        ));
    }
    if limits.max_per_client == 0 || limits.max_per_client > limits.max_tracked {
        return Err(err(
            "polling.max_tracked_per_client",
            "must be between 1 and polling.max_tracked",
        ));
    }
    let sweep = p
        .sweep_interval_seconds
        .unwrap_or(DEFAULT_SWEEP_INTERVAL_SECONDS);
    if !(1..=3600).contains(&sweep) {
        return Err(err(
            "polling.sweep_interval_seconds",
            "must be between 1 and 3600",
        ));
    }
    let cancel = match (p.cancel_method, p.cancel_path) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "polling.cancel_path",
                "is required with polling.cancel_method",
            ))
        }
        (method, Some(path)) => {
            let method = method.unwrap_or_else(|| DEFAULT_CANCEL_METHOD.into());
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| err("polling.cancel_method", "is not an HTTP method"))?;
            let (prefix, suffix) = path.split_once("{auth_req_id}").ok_or_else(|| {
                err(
                    "polling.cancel_path",
                    "must contain `{auth_req_id}`, e.g. /op/api/v1/ciba/{auth_req_id}",
                )
            })?;
            if !prefix.starts_with('/') || suffix.contains("{auth_req_id}") {
                return Err(err(
                    "polling.cancel_path",
                    "must be an absolute path with one `{auth_req_id}`",
                ));
            }
            Some(CancelRoute {
                method,
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            })
        }
    };
    Ok(Polling {
        policy: PollPolicy {
            min_interval: Duration::from_secs(min_interval),
            max_expires_in: Duration::from_secs(max_expires),
            tolerance: Duration::from_millis(tolerance),
            max_interval: Duration::from_secs(max_interval),
            expired_grace: Duration::from_secs(grace),
            remember: Duration::from_secs(remember),
            ..defaults
        },
        limits,
        unknown,
        sweep_interval: Duration::from_secs(sweep),
        cancel,
    })
}
