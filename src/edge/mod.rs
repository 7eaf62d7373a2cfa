//! The pingora edge: the listener's guard, the proxy hooks, the gateway's own exchanges
//! with the OP, name resolution, the admin listener and the assembly of the server. The only
//! layer that speaks to pingora.

pub mod admin;
pub mod bridge;
pub mod guard;
pub mod h2;
pub mod header_check;
pub mod header_end;
pub mod huge_pages;
pub mod in_flight;
pub mod jwks_fetch;
pub mod notify;
pub mod op_client;
pub mod own_requests;
pub mod ping_poller;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod resolve;
pub mod server;
pub mod tls;
