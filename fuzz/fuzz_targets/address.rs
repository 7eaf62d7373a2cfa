//! `address` decides where a ping may go. It must never panic; it must read every IPv4
//! spelling a URL parser accepts as that address (so no spelling slips a private address
//! past the check as a "name"); a name it hands to the resolver must be no address in any
//! spelling; an IPv6 form that carries an IPv4 address must get that address's verdict; and
//! an endpoint accepted without `allow_insecure` must never name a refused address.
#![no_main]

use ciba_gateway::ciba::address::{self, parse_host, Host};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|input: (String, u32, bool)| {
    let (text, v4, insecure) = input;

    match parse_host(&text) {
        Ok(Host::Ip(IpAddr::V4(ip))) => {
            // Its canonical spelling reads back as itself.
            assert_eq!(parse_host(&ip.to_string()), Ok(Host::Ip(IpAddr::V4(ip))));
        }
        Ok(Host::Name(name)) => {
            assert!(!name.ends_with('.'), "{name:?}");
            assert_eq!(name, name.to_ascii_lowercase());
            assert!(name.parse::<IpAddr>().is_err(), "{name:?} is an address");
            let last = name.rsplit('.').next().unwrap();
            assert!(
                !last.bytes().all(|b| b.is_ascii_digit()),
                "{name:?} ends in a number"
            );
        }
        _ => {}
    }
    // Whatever std reads as an address, the host parser reads as the same one.
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        assert_eq!(parse_host(&text), Ok(Host::Ip(IpAddr::V4(ip))), "{text:?}");
    }
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        let bracketed = format!("[{text}]");
        assert_eq!(parse_host(&bracketed), Ok(Host::Ip(IpAddr::V6(ip))), "{text:?}");
    }

    // Every IPv4 spelling: decimal, octal and hex parts, one to four of them.
    let ip = Ipv4Addr::from(v4);
    let o = ip.octets();
    for spelling in [
        format!("{v4}"),
        format!("{v4:#x}"),
        format!("0{v4:o}"),
        format!("{}.{}", o[0], u32::from_be_bytes([0, o[1], o[2], o[3]])),
        format!("{:#x}.{:#x}.{}", o[0], o[1], u16::from_be_bytes([o[2], o[3]])),
        format!("0{:o}.0{:o}.0{:o}.0{:o}.", o[0], o[1], o[2], o[3]),
    ] {
        assert_eq!(parse_host(&spelling), Ok(Host::Ip(IpAddr::V4(ip))), "{spelling}");
    }

    // IPv4 inside IPv6 gets the IPv4 verdict.
    let verdict = address::classify(IpAddr::V4(ip));
    let v6 = |bits: u128| address::classify(IpAddr::V6(Ipv6Addr::from(bits)));
    assert_eq!(v6(0xffff_0000_0000 | u128::from(v4)), verdict, "mapped {ip}");
    assert_eq!(
        v6((0x0064_ff9b_u128 << 96) | u128::from(v4)),
        verdict,
        "nat64 {ip}"
    );
    assert_eq!(v6((0x2002_u128 << 112) | (u128::from(v4) << 80)), verdict, "6to4 {ip}");

    // An accepted endpoint never names a refused address.
    if let Ok(uri) = text.parse() {
        if let Ok(ep) = address::endpoint(&uri, insecure) {
            assert!(ep.tls || insecure);
            assert!(!ep.server_name.is_empty());
            match ep.host {
                Host::Ip(ip) => assert!(address::check(ip, insecure).is_ok(), "{text:?}"),
                Host::Name(name) => {
                    assert!(insecure || address::name_range(&name).is_none(), "{text:?}")
                }
            }
        }
    }
});
