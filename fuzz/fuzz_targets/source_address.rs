//! `rate_limit::source_address` reads `X-Forwarded-For` and `Forwarded`, headers anyone can
//! write. It must never panic, must ignore them from an untrusted peer, and may only ever
//! answer the peer itself or an untrusted address the headers name.
#![no_main]

use ciba_gateway::state::rate_limit::source_address;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|input: (u32, u128, bool, Option<String>, Option<String>)| {
    let (v4, v6, use_v6, xff, forwarded) = input;
    let trusted: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = if use_v6 {
        IpAddr::V6(Ipv6Addr::from(v6))
    } else {
        IpAddr::V4(Ipv4Addr::from(v4))
    };
    let found = source_address(peer, xff.as_deref(), forwarded.as_deref(), &trusted);
    if !is_trusted(&peer) {
        assert_eq!(found, peer, "an untrusted peer chose its address");
    } else if found != peer {
        assert!(!is_trusted(&found), "answered a trusted proxy {found}");
        let named = found.to_string();
        let headers = format!(
            "{} {}",
            xff.unwrap_or_default(),
            forwarded.unwrap_or_default()
        );
        // IPv6 may be written in other forms; compare what can be compared cheaply.
        if found.is_ipv4() {
            assert!(headers.contains(&named), "{named} is not in the headers");
        }
    }
});
