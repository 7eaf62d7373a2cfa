//! `[logging]`: the log filter and the output format.

use super::err;
use crate::ciba::config_error::ConfigError;
use serde::Deserialize;

/// `logging.level` when unset.
pub const DEFAULT_LEVEL: &str = "info";

/// Log output format (`logging.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The levels `logging.level` may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks `logging.level`: comma-separated directives, each a level or `target=level`,
/// every level one of [`LOG_LEVELS`] in any letter case. A tracing filter would take
/// `infoo` as a target name and log everything.
pub(super) fn check_log_level(value: &str) -> Result<(), ConfigError> {
    let bad = || {
        err(
            "logging.level",
            format!(
                "must be a level ({}) or comma-separated `target=level` directives, e.g. \
                 `ciba_gateway=debug,pingora=warn`",
                LOG_LEVELS.join(", ")
            ),
        )
    };
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(bad());
    }
    for directive in directives {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if target == Some("") || !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(bad());
        }
    }
    if tracing_subscriber::EnvFilter::try_new(value).is_err() {
        return Err(bad());
    }
    Ok(())
}
