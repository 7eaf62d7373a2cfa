//! Where a ping may go: a notification endpoint's URL read as a URL parser reads it, and
//! every address it resolves to classified, so the gateway never becomes a way into the
//! networks behind it (server-side request forgery, Keycloak CVE-2026-1518).
//!
//! Pure: the caller resolves names and hands the addresses in. The rules:
//!
//! - The URL must be `https`, with a host and no user information; `http` only with the
//!   endpoint's `allow_insecure`.
//! - The host is read as the WHATWG URL parser (browsers, most HTTP libraries) and the C
//!   resolver (`inet_aton`) read it: `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are all
//!   127.0.0.1, and a trailing dot changes nothing. A host that ends in a number but is no
//!   valid IPv4 address is refused rather than handed to a resolver that might read it
//!   otherwise.
//! - Every address is classified (IPv4-mapped, -compatible, NAT64 and 6to4 forms by the IPv4
//!   address they carry). Loopback, private, link-local, shared (CGNAT) and reserved ranges are
//!   refused unless the endpoint allows insecure delivery; cloud metadata, unspecified,
//!   "this network", multicast and broadcast addresses are refused always.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not an ordinary public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    /// 127.0.0.0/8, ::1, the name `localhost`.
    Loopback,
    /// RFC 1918, fc00::/7 (unique local), fec0::/10 (old site-local), 64:ff9b:1::/48.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// A cloud provider's instance metadata service (169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200, 168.63.129.16).
    Metadata,
    /// 0.0.0.0, `::`.
    Unspecified,
    /// 0.0.0.0/8 other than 0.0.0.0 ("this network", which Linux connects to locally).
    ThisNetwork,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 100.64.0.0/10, the carrier-grade NAT shared space (RFC 6598).
    Shared,
    /// Reserved, documentation and benchmarking ranges: no public host lives there.
    Reserved,
}

impl Range {
    /// Label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Range::Loopback => "loopback",
            Range::Private => "private",
            Range::LinkLocal => "link_local",
            Range::Metadata => "metadata",
            Range::Unspecified => "unspecified",
            Range::ThisNetwork => "this_network",
            Range::Multicast => "multicast",
            Range::Broadcast => "broadcast",
            Range::Shared => "shared",
            Range::Reserved => "reserved",
        }
    }

    /// Whether an endpoint with `allow_insecure` may be reached in this range: internal
    /// networks yes (tests, internal deployments); addresses that are never a host a client
    /// runs (metadata services, unspecified, multicast, broadcast) no.
    pub fn allowed_when_insecure(self) -> bool {
        match self {
            Range::Loopback
            | Range::Private
            | Range::LinkLocal
            | Range::Shared
            | Range::Reserved => true,
            Range::Metadata
            | Range::Unspecified
            | Range::ThisNetwork
            | Range::Multicast
            | Range::Broadcast => false,
        }
    }
}

/// The range an address belongs to, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether a ping may connect to `ip`; the refusal names the range.
pub fn check(ip: IpAddr, allow_insecure: bool) -> Result<(), Range> {
    match classify(ip) {
        None => Ok(()),
        Some(range) if allow_insecure && range.allowed_when_insecure() => Ok(()),
        Some(range) => Err(range),
    }
}

/// Metadata services, checked before the ranges that contain them.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, Oracle...
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)]; // AWS

/// IPv4 ranges as (network, prefix length, range), the first match wins.
const V4_RANGES: [([u8; 4], u8, Range); 16] = [
    ([0, 0, 0, 0], 32, Range::Unspecified),
    ([0, 0, 0, 0], 8, Range::ThisNetwork),
    ([127, 0, 0, 0], 8, Range::Loopback),
    ([10, 0, 0, 0], 8, Range::Private),
    ([172, 16, 0, 0], 12, Range::Private),
    ([192, 168, 0, 0], 16, Range::Private),
    ([169, 254, 0, 0], 16, Range::LinkLocal),
    ([100, 64, 0, 0], 10, Range::Shared),
    ([255, 255, 255, 255], 32, Range::Broadcast),
    ([224, 0, 0, 0], 4, Range::Multicast),
    ([240, 0, 0, 0], 4, Range::Reserved),
    ([192, 0, 0, 0], 24, Range::Reserved), // IETF protocol assignments
    ([192, 0, 2, 0], 24, Range::Reserved), // TEST-NET-1
    ([198, 18, 0, 0], 15, Range::Reserved), // benchmarking
    ([198, 51, 100, 0], 24, Range::Reserved), // TEST-NET-2
    ([203, 0, 113, 0], 24, Range::Reserved), // TEST-NET-3
];

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    if METADATA_V4.contains(&ip) {
        return Some(Range::Metadata);
    }
    let bits = u32::from(ip);
    V4_RANGES.iter().find_map(|(net, len, range)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u32::from_be_bytes(*net)).then_some(*range)
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Range> {
    if METADATA_V6.contains(&ip) {
        return Some(Range::Metadata);
    }
    if let Some(range) = embedded_v4(ip) {
        return range;
    }
    let bits = u128::from(ip);
    let within = |net: u128, len: u32| bits & (u128::MAX << (128 - len)) == net;
    if ip.is_unspecified() {
        Some(Range::Unspecified)
    } else if ip.is_loopback() {
        Some(Range::Loopback)
    } else if within(0xff00 << 112, 8) {
        Some(Range::Multicast)
    } else if within(0xfe80 << 112, 10) {
        Some(Range::LinkLocal)
    } else if within(0xfc00 << 112, 7) || within(0xfec0 << 112, 10) {
        Some(Range::Private)
    } else if within(0x0064_ff9b_0001 << 80, 48) {
        // Local-use NAT64 (RFC 8215): a translator inside the operator's network.
        Some(Range::Private)
    } else if within(0x2001_0db8 << 96, 32)
        || within(0x3fff << 112, 20)
        || within(0x0100 << 112, 64)
        || within(0x2001 << 112, 32)
        || within(0x2001_0002 << 96, 48)
        || within(0x2001_0010 << 96, 28)
    {
        // Documentation (2001:db8::/32, 3fff::/20), discard (100::/64), Teredo (2001::/32,
        // which hides the IPv4 address it reaches), benchmarking, ORCHID.
        Some(Range::Reserved)
    } else {
        None
    }
}

/// For an IPv6 address that carries an IPv4 one (mapped, compatible, SIIT-translated, NAT64
/// well-known prefix, 6to4): `Some` with the verdict for the IPv4 address, `None` for any
/// other IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Option<Range>> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    let top96 = bits >> 32;
    if top96 == 0xffff || top96 == 0xffff_0000 {
        // ::ffff:a.b.c.d (mapped: a dual-stack socket connects to a.b.c.d) and
        // ::ffff:0:a.b.c.d (SIIT).
        return Some(classify_v4(low));
    }
    if top96 == 0 {
        // ::a.b.c.d (compatible, deprecated) and ::, ::1 themselves.
        return Some(match bits {
            0 => Some(Range::Unspecified),
            1 => Some(Range::Loopback),
            _ => Some(classify_v4(low).unwrap_or(Range::Reserved)),
        });
    }
    if top96 == 0x0064_ff9b_0000_0000_0000_0000 {
        // 64:ff9b::/96: a NAT64 translator reaches a.b.c.d.
        return Some(classify_v4(low));
    }
    if bits >> 112 == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 is relayed to AA.BB.CC.DD.
        return Some(classify_v4(Ipv4Addr::from((bits >> 80) as u32)));
    }
    None
}

/// A URL's host as it will be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address literal, in any spelling a URL parser accepts.
    Ip(IpAddr),
    /// A DNS name: lowercase, without a trailing dot.
    Name(String),
}

/// Why a notification URL is refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `https` (or `http` with `allow_insecure`).
    Scheme,
    /// No host, user information (`user@host`), or a host no parser agrees on.
    Host,
    /// The host names an address in a refused range (an address literal, `localhost`).
    Range(Range),
}

impl Refusal {
    /// Label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Scheme => "scheme",
            Refusal::Host => "host",
            Refusal::Range(r) => r.as_str(),
        }
    }
}

/// Reads a URL's host (as `http::Uri::host` gives it, IPv6 in brackets).
pub fn parse_host(raw: &str) -> Result<Host, Refusal> {
    if let Some(inner) = raw.strip_prefix('[') {
        // IPv6 literal; a zone (`%25eth0`) or anything else the std parser refuses is refused.
        let inner = inner.strip_suffix(']').ok_or(Refusal::Host)?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| Refusal::Host);
    }
    // Only plain ASCII names: a percent-escape or a non-ASCII character would be decoded
    // (and IDNA-mapped, turning full-width digits into ASCII ones) by one parser and not
    // by another.
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
    if raw.is_empty() || !raw.bytes().all(ok) {
        return Err(Refusal::Host);
    }
    let lower = raw.to_ascii_lowercase();
    // One trailing dot is the root: `127.0.0.1.` and `localhost.` are the same hosts.
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(Refusal::Host);
    }
    if ends_in_a_number(name) {
        return parse_ipv4(name)
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .ok_or(Refusal::Host);
    }
    let labels_ok = name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    if !labels_ok {
        return Err(Refusal::Host);
    }
    Ok(Host::Name(name.to_string()))
}

/// Names that are loopback without asking DNS (RFC 6761 6.3; `/etc/hosts` conventions).
pub fn name_range(name: &str) -> Option<Range> {
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name == "localhost.localdomain"
        || name == "ip6-localhost"
        || name == "ip6-loopback";
    loopback.then_some(Range::Loopback)
}

/// WHATWG URL "ends in a number": the last label (after one trailing dot is dropped) is
/// all decimal digits or a `0x` hex number, so the host is parsed as IPv4 or refused.
fn ends_in_a_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// The WHATWG IPv4 parser (also `inet_aton`'s reading): one to four parts, each decimal,
/// octal (leading `0`) or hex (`0x`); the last part fills the remaining bytes.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| parse_ipv4_number(p))
        .collect::<Option<_>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let room = 8 * (5 - numbers.len() as u32); // bits the last part may fill
    if *last >= 1u64 << room {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    Some(Ipv4Addr::from(value as u32))
}

/// One IPv4 part: `0x`-prefixed hex (digits may be absent: `0x` is 0), `0`-prefixed octal,
/// or decimal. Values beyond 32 bits are refused without overflow.
fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        let d = (b as char).to_digit(radix)?;
        value = value * u64::from(radix) + u64::from(d);
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

/// A notification endpoint as it will be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`https`).
    pub tls: bool,
    /// The host: an address (already checked) or a name to resolve and check.
    pub host: Host,
    /// The TCP port (the scheme's default when the URL has none).
    pub port: u16,
    /// The name for TLS SNI and certificate verification: the host name without a trailing
    /// dot, or the address's text.
    pub server_name: String,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request target: the URL's path and query (`/` when empty).
    pub path: String,
}

/// Reads and checks a notification URL before any lookup: scheme, user information,
/// host spelling, and a host that is an address or `localhost`.
pub fn endpoint(url: &http::Uri, allow_insecure: bool) -> Result<Endpoint, Refusal> {
    let tls = match url.scheme_str() {
        Some("https") => true,
        Some("http") if allow_insecure => false,
        _ => return Err(Refusal::Scheme),
    };
    let authority = url.authority().ok_or(Refusal::Host)?;
    if authority.as_str().contains('@') {
        return Err(Refusal::Host);
    }
    let host = parse_host(authority.host())?;
    let range = match &host {
        Host::Ip(ip) => classify(*ip),
        Host::Name(name) => name_range(name),
    };
    if let Some(range) = range {
        if !(allow_insecure && range.allowed_when_insecure()) {
            return Err(Refusal::Range(range));
        }
    }
    let server_name = match &host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    };
    let path = match url.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".to_string(),
        Some(p) => p.to_string(),
    };
    Ok(Endpoint {
        tls,
        host,
        port: url.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        server_name,
        authority: authority.as_str().to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_range_and_its_edges() {
        let cases: &[(&str, Option<Range>)] = &[
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("0.0.0.0", Some(Range::Unspecified)),
            ("0.1.2.3", Some(Range::ThisNetwork)),
            ("0.255.255.255", Some(Range::ThisNetwork)),
            ("1.0.0.0", None),
            ("127.0.0.1", Some(Range::Loopback)),
            ("127.255.255.254", Some(Range::Loopback)),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("10.0.0.1", Some(Range::Private)),
            ("10.255.255.255", Some(Range::Private)),
            ("11.0.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some(Range::Private)),
            ("172.31.255.255", Some(Range::Private)),
            ("172.32.0.0", None),
            ("192.168.1.1", Some(Range::Private)),
            ("192.169.0.0", None),
            ("169.254.0.1", Some(Range::LinkLocal)),
            ("169.254.169.254", Some(Range::Metadata)),
            ("169.254.169.253", Some(Range::LinkLocal)),
            ("100.100.100.200", Some(Range::Metadata)),
            ("168.63.129.16", Some(Range::Metadata)),
            ("100.64.0.0", Some(Range::Shared)),
            ("100.127.255.255", Some(Range::Shared)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("224.0.0.1", Some(Range::Multicast)),
            ("239.255.255.255", Some(Range::Multicast)),
            ("240.0.0.1", Some(Range::Reserved)),
            ("255.255.255.254", Some(Range::Reserved)),
            ("255.255.255.255", Some(Range::Broadcast)),
            ("192.0.2.1", Some(Range::Reserved)),
            ("198.18.0.1", Some(Range::Reserved)),
            ("198.19.255.255", Some(Range::Reserved)),
            ("198.20.0.0", None),
            ("198.51.100.1", Some(Range::Reserved)),
            ("203.0.113.1", Some(Range::Reserved)),
            ("::", Some(Range::Unspecified)),
            ("::1", Some(Range::Loopback)),
            ("2606:4700:4700::1111", None),
            ("fe80::1", Some(Range::LinkLocal)),
            ("febf:ffff::1", Some(Range::LinkLocal)),
            ("fec0::1", Some(Range::Private)),
            ("fc00::1", Some(Range::Private)),
            ("fdff:ffff::1", Some(Range::Private)),
            ("fd00:ec2::254", Some(Range::Metadata)),
            ("ff02::1", Some(Range::Multicast)),
            ("2001:db8::1", Some(Range::Reserved)),
            ("2001::1", Some(Range::Reserved)),
            ("100::1", Some(Range::Reserved)),
            // IPv4 inside IPv6.
            ("::ffff:127.0.0.1", Some(Range::Loopback)),
            ("::ffff:7f00:1", Some(Range::Loopback)),
            ("::ffff:a9fe:a9fe", Some(Range::Metadata)),
            ("::ffff:10.0.0.1", Some(Range::Private)),
            ("::ffff:0.0.0.0", Some(Range::Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::ffff:0:127.0.0.1", Some(Range::Loopback)),
            ("::127.0.0.1", Some(Range::Loopback)),
            ("::169.254.169.254", Some(Range::Metadata)),
            ("::8.8.8.8", Some(Range::Reserved)),
            ("::2", Some(Range::ThisNetwork)),
            ("64:ff9b::127.0.0.1", Some(Range::Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Range::Metadata)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::8.8.8.8", Some(Range::Private)),
            ("2002:7f00:1::", Some(Range::Loopback)),
            ("2002:a9fe:a9fe::1", Some(Range::Metadata)),
            ("2002:0808:0808::1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(classify(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn allow_insecure_opens_internal_ranges_only() {
        for (addr, insecure_ok) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("169.254.1.1", true),
            ("100.64.1.1", true),
            ("::1", true),
            ("169.254.169.254", false),
            ("::ffff:169.254.169.254", false),
            ("fd00:ec2::254", false),
            ("100.100.100.200", false),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("::", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
        ] {
            assert!(check(ip(addr), false).is_err(), "{addr}");
            assert_eq!(check(ip(addr), true).is_ok(), insecure_ok, "{addr}");
        }
        assert_eq!(check(ip("8.8.8.8"), false), Ok(()));
    }

    /// Hosts as `http::Uri` hands them over, and what they are.
    #[test]
    fn hostile_host_spellings() {
        let v4 = |s: &str| Ok(Host::Ip(ip(s)));
        let cases: &[(&str, Result<Host, Refusal>)] = &[
            ("127.0.0.1", v4("127.0.0.1")),
            ("127.0.0.1.", v4("127.0.0.1")),
            ("2130706433", v4("127.0.0.1")),
            ("2130706433.", v4("127.0.0.1")),
            ("0177.0.0.1", v4("127.0.0.1")),
            ("0177.0.0.01", v4("127.0.0.1")),
            ("0x7f.0.0.1", v4("127.0.0.1")),
            ("0X7F.0.0.1", v4("127.0.0.1")),
            ("0x7f000001", v4("127.0.0.1")),
            ("0x7f.1", v4("127.0.0.1")),
            ("127.1", v4("127.0.0.1")),
            ("127.0.1", v4("127.0.0.1")),
            ("0", v4("0.0.0.0")),
            ("0x", v4("0.0.0.0")),
            ("0x.0x.0x.0x", v4("0.0.0.0")),
            ("00000000000000000177.1", v4("127.0.0.1")),
            ("2852039166", v4("169.254.169.254")),
            ("0xa9fea9fe", v4("169.254.169.254")),
            ("0251.0376.0251.0376", v4("169.254.169.254")),
            ("169.254.43518", v4("169.254.169.254")),
            ("0xa9.0xfe.0xa9.0xfe", v4("169.254.169.254")),
            ("012.1", v4("10.0.0.1")),
            ("167772161", v4("10.0.0.1")),
            ("[::ffff:127.0.0.1]", Ok(Host::Ip(ip("::ffff:127.0.0.1")))),
            (
                "[::ffff:a9fe:a9fe]",
                Ok(Host::Ip(ip("::ffff:169.254.169.254"))),
            ),
            ("[::1]", Ok(Host::Ip(ip("::1")))),
            ("[0:0:0:0:0:0:0:1]", Ok(Host::Ip(ip("::1")))),
            ("[fe80::1%25eth0]", Err(Refusal::Host)),
            ("[::1", Err(Refusal::Host)),
            ("localhost", Ok(Host::Name("localhost".into()))),
            ("LOCALHOST.", Ok(Host::Name("localhost".into()))),
            (
                "Client.Example.COM.",
                Ok(Host::Name("client.example.com".into())),
            ),
            (
                "127.0.0.1.nip.io",
                Ok(Host::Name("127.0.0.1.nip.io".into())),
            ),
            // Ends in a number but is no address: refused, never handed to a resolver.
            ("256.0.0.1", Err(Refusal::Host)),
            ("127.0.0.256", Err(Refusal::Host)),
            ("1.2.3.4.5", Err(Refusal::Host)),
            ("4294967296", Err(Refusal::Host)),
            ("0x100000000", Err(Refusal::Host)),
            ("08.0.0.1", Err(Refusal::Host)),
            ("0x7g.1", Err(Refusal::Host)),
            ("example.0x1", Err(Refusal::Host)),
            ("127.0.0.1e", Ok(Host::Name("127.0.0.1e".into()))),
            ("127.0.0.1..", Err(Refusal::Host)),
            ("..", Err(Refusal::Host)),
            (".", Err(Refusal::Host)),
            ("", Err(Refusal::Host)),
            ("%31%32%37.0.0.1", Err(Refusal::Host)),
            ("a..b", Err(Refusal::Host)),
            ("-a.example", Err(Refusal::Host)),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_host(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let ep = |url: &str, insecure: bool| endpoint(&url.parse().unwrap(), insecure);
        let blocked = |range| Err(Refusal::Range(range));
        let cases: &[(&str, bool, Result<(), Refusal>)] = &[
            ("https://client.example/cb", false, Ok(())),
            ("http://client.example/cb", false, Err(Refusal::Scheme)),
            ("http://client.example/cb", true, Ok(())),
            ("ftp://client.example/cb", true, Err(Refusal::Scheme)),
            ("/cb", true, Err(Refusal::Scheme)),
            ("https://user@client.example/cb", false, Err(Refusal::Host)),
            ("https://u:p@client.example/cb", true, Err(Refusal::Host)),
            ("https://127.0.0.1/cb", false, blocked(Range::Loopback)),
            ("https://127.0.0.1/cb", true, Ok(())),
            ("https://2130706433/", false, blocked(Range::Loopback)),
            ("https://0177.0.0.1/", false, blocked(Range::Loopback)),
            ("https://0x7f.1/", false, blocked(Range::Loopback)),
            ("https://127.0.0.1./", false, blocked(Range::Loopback)),
            (
                "https://[::ffff:127.0.0.1]/",
                false,
                blocked(Range::Loopback),
            ),
            (
                "https://[::ffff:a9fe:a9fe]/",
                true,
                blocked(Range::Metadata),
            ),
            (
                "https://169.254.169.254/latest/meta-data/",
                true,
                blocked(Range::Metadata),
            ),
            ("https://2852039166/", true, blocked(Range::Metadata)),
            ("https://10.0.0.1/", false, blocked(Range::Private)),
            ("https://localhost/", false, blocked(Range::Loopback)),
            ("https://localhost./", false, blocked(Range::Loopback)),
            ("https://LocalHost:8443/", false, blocked(Range::Loopback)),
            ("https://api.localhost/", false, blocked(Range::Loopback)),
            ("https://localhost/", true, Ok(())),
            ("https://0.0.0.0/", true, blocked(Range::Unspecified)),
            ("https://256.1.1.1/", true, Err(Refusal::Host)),
        ];
        for (url, insecure, want) in cases {
            assert_eq!(ep(url, *insecure).map(|_| ()), *want, "{url} {insecure}");
        }
    }

    #[test]
    fn an_endpoint_keeps_what_the_request_needs() {
        let e = endpoint(
            &"https://Client.Example.:8443/cb?x=1".parse().unwrap(),
            false,
        )
        .unwrap();
        assert!(e.tls);
        assert_eq!(e.host, Host::Name("client.example".into()));
        assert_eq!(e.port, 8443);
        assert_eq!(e.server_name, "client.example");
        assert_eq!(e.authority, "Client.Example.:8443");
        assert_eq!(e.path, "/cb?x=1");
        let e = endpoint(&"http://127.0.0.1".parse().unwrap(), true).unwrap();
        assert!(!e.tls);
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        assert_eq!(e.server_name, "127.0.0.1");
        let e = endpoint(&"https://[2606:4700::1]/".parse().unwrap(), false).unwrap();
        assert_eq!((e.port, e.server_name.as_str()), (443, "2606:4700::1"));
    }

    #[test]
    fn mapped_forms_share_their_ipv4_verdict() {
        for a in [
            0u32,
            0x7f00_0001,
            0x0a00_0001,
            0xa9fe_a9fe,
            0x0808_0808,
            u32::MAX,
        ] {
            let v4 = Ipv4Addr::from(a);
            let mapped = v4.to_ipv6_mapped();
            assert_eq!(
                classify(IpAddr::V6(mapped)),
                classify(IpAddr::V4(v4)),
                "{v4}"
            );
        }
    }
}
