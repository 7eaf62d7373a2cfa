//! The CIBA rules themselves: parsing, validation, the poll state machine, routing,
//! translation and the error shapes. Nothing here does I/O or touches pingora, tokio or a
//! store; time comes in as an argument (or through [`clock`]), so every rule is unit-tested
//! without a runtime.

pub mod address;
pub mod authorize;
pub mod bridge;
pub mod cert_chain;
pub mod cert_header;
pub mod cert_identity;
pub mod challenge;
pub mod client_auth;
pub mod client_cert;
pub mod clock;
pub mod config_error;
pub mod discovery;
pub mod dn;
pub mod error;
pub mod fapi;
pub mod form;
pub mod ids;
pub mod jwt;
pub mod login_hint_token;
pub mod notification;
pub mod ping;
pub mod pipeline;
pub mod polling;
pub mod profile;
pub mod redact;
pub mod routing;
pub mod translate;
