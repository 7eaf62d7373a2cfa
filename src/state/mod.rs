//! Where the gateway keeps what it must remember between requests: poll state (in memory or
//! in Redis), rate-limit buckets and connection counts. Synchronous in memory; no lock is
//! held across an `.await`.

pub mod bridge_redis;
pub mod bridge_store;
pub mod conn_limit;
pub mod jwks_cache;
pub mod ping_redis;
pub mod ping_store;
pub mod pings;
pub mod poll_settings;
pub mod poll_store;
pub mod rate_limit;
pub mod redis_store;
pub mod replay;
pub mod seal;
pub mod store;
