//! `ciba-gateway demo`: the built-in demo OP it runs behind the gateway, and the walkthrough
//! it prints.

pub mod code_op;
pub mod op;
pub mod walkthrough;
