//! Integration tests: the real `ciba-gateway` binary on loopback in front of
//! node-oidc-provider (tests/op), plus stub upstreams for faults a real OP cannot produce.
//!
//! One test crate, one folder per topic; `support` is the harness they share.

mod support;

mod bridge;
mod fapi;
mod faults;
mod flows;
mod framing;
mod layers;
mod lifecycle;
mod limits;
mod mtls;
mod notify;
mod observability;
mod ping;
mod polling;
mod profiles;
mod reload;
mod replicas;
mod tls;
mod validation;
