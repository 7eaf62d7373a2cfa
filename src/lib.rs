//! ciba-gateway: a reverse proxy that makes an OpenID Provider's CIBA endpoints behave as
//! OpenID Connect CIBA Core 1.0 says. See ARCHITECTURE.md for the map.

pub mod ciba;
pub mod config;
pub mod demo;
pub mod edge;
pub mod metrics;
pub mod state;
