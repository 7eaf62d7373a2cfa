//! `[state]`: where poll state and rate-limit counters live.

use super::err;
use super::file::StateSection;
use super::upstream::millis;
use crate::ciba::config_error::ConfigError;
use crate::state::redis_store::RedisConfig;
use serde::Deserialize;

/// `state.redis_connections` when unset.
pub const DEFAULT_REDIS_CONNECTIONS: usize = 2;

/// `state.backend` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In this process (default).
    #[default]
    Memory,
    /// In Redis, shared by replicas.
    Redis,
}

/// Where poll state and rate-limit counters live.
#[derive(Debug, Clone)]
pub enum StateBackend {
    /// In this process.
    Memory,
    /// In Redis, shared by replicas.
    Redis {
        /// Connection settings.
        redis: RedisConfig,
        /// Multiplexed connections.
        connections: usize,
    },
}

/// Checks `[state]`; the Redis settings' defaults are [`RedisConfig`]'s.
pub(super) fn validate_state(s: StateSection) -> Result<StateBackend, ConfigError> {
    match s.backend.unwrap_or_default() {
        BackendKind::Memory => {
            if s.redis_url.is_some() {
                return Err(err(
                    "state.redis_url",
                    "is set but state.backend is not `redis`",
                ));
            }
            Ok(StateBackend::Memory)
        }
        BackendKind::Redis => {
            let url = s.redis_url.ok_or_else(|| {
                err(
                    "state.redis_url",
                    "is required with state.backend = \"redis\"",
                )
            })?;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(err(
                    "state.redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
            let defaults = RedisConfig::default();
            let timeout = millis(
                "state.redis_timeout_ms",
                s.redis_timeout_ms,
                defaults.timeout.as_millis() as u64,
            )?;
            let connections = s.redis_connections.unwrap_or(DEFAULT_REDIS_CONNECTIONS);
            if !(1..=64).contains(&connections) {
                return Err(err("state.redis_connections", "must be between 1 and 64"));
            }
            Ok(StateBackend::Redis {
                redis: RedisConfig {
                    url,
                    key_prefix: s.redis_key_prefix.unwrap_or(defaults.key_prefix),
                    timeout,
                    failure_mode: s.failure_mode.unwrap_or(defaults.failure_mode),
                },
                connections,
            })
        }
    }
}
