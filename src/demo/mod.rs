//! The built-in demo OP that `ciba-gateway demo` runs behind the gateway.

pub mod op;
