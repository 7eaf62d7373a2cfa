//! ciba-gateway: a reverse proxy that makes an OpenID Provider's CIBA endpoints behave as
//! OpenID Connect CIBA Core 1.0 says. See ARCHITECTURE.md for the map.

pub mod authorize;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod conn_limit;
pub mod demo_op;
pub mod discovery;
pub mod edge_guard;
pub mod error;
pub mod form;
pub mod header_end;
pub mod ids;
pub mod in_flight;
pub mod jwt;
pub mod login_hint_token;
pub mod metrics;
pub mod op_client;
pub mod ops;
pub mod pipeline;
pub mod poll_store;
pub mod polling;
pub mod profile;
pub mod proxy;
pub mod rate_limit;
pub mod redact;
pub mod redis_store;
pub mod request_id;
pub mod resolve;
pub mod routing;
pub mod server;
pub mod state;
pub mod translate;
