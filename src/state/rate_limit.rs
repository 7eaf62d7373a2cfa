//! Rate limits for misbehaving clients, keyed by client and by source address (governor).
//!
//! Two limiters guard each CIBA endpoint: one per source address and one per client.
//! The address is checked first, so a flood from one address cannot create client keys.
//!
//! A client id is only *claimed* (the OP checks secrets), so keying by it alone would let
//! anyone exhaust a victim's quota by sending its id. The client key therefore includes a
//! keyed hash of the credential presented (client secret or Basic header): a caller without
//! the real secret lands in a bucket of its own. Assertion-based clients (whose assertion
//! changes per request) are keyed by id alone.
//!
//! Keyed state stays bounded: keys that look like a fresh bucket are dropped by
//! `retain_recent`, run by the sweeper and whenever a limiter grows past `max_keys`.

use crate::ciba::ids::ClientId;
use crate::ciba::pipeline::Endpoint;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::RateLimiter;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests allowed at once.
    pub burst: NonZeroU32,
}

impl Rate {
    fn quota(self) -> governor::Quota {
        governor::Quota::per_second(self.per_second).allow_burst(self.burst)
    }

    const fn new(per_second: u32, burst: u32) -> Rate {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Rate { per_second, burst },
            _ => panic!("rates are non-zero"),
        }
    }
}

/// Limits for one endpoint.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointRates {
    /// Per client (and credential).
    pub per_client: Rate,
    /// Per source address.
    pub per_address: Rate,
}

/// A client's own rates, replacing the defaults.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientRates {
    /// Backchannel rate for this client.
    pub backchannel: Option<Rate>,
    /// Token endpoint rate for this client.
    pub token: Option<Rate>,
}

/// `[rate_limit]` in the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off switch.
    pub enabled: bool,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Keys per limiter before an early clean-up.
    pub max_keys: usize,
    /// Backchannel endpoint limits.
    pub backchannel: EndpointRates,
    /// Token endpoint limits.
    pub token: EndpointRates,
    /// Per-client overrides, by client id.
    pub clients: HashMap<String, ClientRates>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            trusted_proxies: Vec::new(),
            max_keys: 100_000,
            backchannel: EndpointRates {
                per_client: Rate::new(10, 20),
                per_address: Rate::new(20, 40),
            },
            token: EndpointRates {
                per_client: Rate::new(50, 100),
                per_address: Rate::new(100, 200),
            },
            clients: HashMap::new(),
        }
    }
}

/// Which key ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The source address.
    Address,
    /// The client (and credential).
    Client,
}

impl KeyKind {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Address => "address",
            KeyKind::Client => "client",
        }
    }
}

/// A refused request: which key, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The key kind that ran out.
    pub kind: KeyKind,
    /// Time until the next request would pass.
    pub retry_after: Duration,
}

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

// Each limiter in an `Arc`, so a reloaded configuration can keep the ones whose rate it
// leaves alone, counters and all (`RateLimits::reconfigured`).
struct EndpointLimiters<C: Clock> {
    per_address: Arc<Keyed<IpAddr, C>>,
    per_client: Arc<Keyed<(ClientId, u64), C>>,
    overrides: HashMap<ClientId, Arc<Keyed<u64, C>>>,
    rates: EndpointRates,
    override_rates: HashMap<ClientId, Rate>,
}

impl<C: Clock + Clone> EndpointLimiters<C> {
    fn new(rates: EndpointRates, overrides: HashMap<ClientId, Rate>, clock: &C) -> Self {
        EndpointLimiters {
            per_address: Arc::new(RateLimiter::dashmap_with_clock(
                rates.per_address.quota(),
                clock.clone(),
            )),
            per_client: Arc::new(RateLimiter::dashmap_with_clock(
                rates.per_client.quota(),
                clock.clone(),
            )),
            overrides: overrides
                .iter()
                .map(|(id, r)| {
                    let limiter = RateLimiter::dashmap_with_clock(r.quota(), clock.clone());
                    (id.clone(), Arc::new(limiter))
                })
                .collect(),
            rates,
            override_rates: overrides,
        }
    }

    /// These limiters, with `old`'s in place of each one whose rate is the same.
    fn keeping(mut self, old: &Self) -> Self {
        if self.rates.per_address == old.rates.per_address {
            self.per_address = old.per_address.clone();
        }
        if self.rates.per_client == old.rates.per_client {
            self.per_client = old.per_client.clone();
        }
        for (id, limiter) in &mut self.overrides {
            if old.override_rates.get(id) == self.override_rates.get(id) {
                if let Some(kept) = old.overrides.get(id) {
                    *limiter = kept.clone();
                }
            }
        }
        self
    }

    fn retain_recent(&self) {
        self.per_address.retain_recent();
        self.per_client.retain_recent();
        for l in self.overrides.values() {
            l.retain_recent();
        }
    }

    fn len(&self) -> usize {
        self.per_address.len()
            + self.per_client.len()
            + self.overrides.values().map(|l| l.len()).sum::<usize>()
    }
}

/// The gateway's rate limiters.
pub struct RateLimits<C: Clock = DefaultClock> {
    enabled: bool,
    rates: RateLimitConfig,
    clock: C,
    backchannel: EndpointLimiters<C>,
    token: EndpointLimiters<C>,
    max_keys: usize,
    hasher: std::collections::hash_map::RandomState,
    started: std::time::Instant,
    last_cleanup: AtomicU64,
}

impl RateLimits<DefaultClock> {
    /// Limiters on the real clock.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limiters on an injected clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(cfg: &RateLimitConfig, clock: C) -> Self {
        let pick = |f: fn(&ClientRates) -> Option<Rate>| -> HashMap<ClientId, Rate> {
            cfg.clients
                .iter()
                .filter_map(|(id, r)| f(r).map(|rate| (ClientId::new(id), rate)))
                .collect()
        };
        RateLimits {
            enabled: cfg.enabled,
            rates: cfg.clone(),
            backchannel: EndpointLimiters::new(cfg.backchannel, pick(|r| r.backchannel), &clock),
            token: EndpointLimiters::new(cfg.token, pick(|r| r.token), &clock),
            clock,
            max_keys: cfg.max_keys.max(1),
            hasher: std::collections::hash_map::RandomState::new(),
            started: std::time::Instant::now(),
            last_cleanup: AtomicU64::new(0),
        }
    }

    /// Limiters for `cfg` (a reloaded configuration) that keep this one's counters wherever
    /// a rate is unchanged: the same limiter goes on counting, and a client's credential
    /// hashes to the same key. A changed rate starts a fresh limiter.
    pub fn reconfigured(&self, cfg: &RateLimitConfig) -> Self {
        let mut new = Self::with_clock(cfg, self.clock.clone());
        new.hasher = self.hasher.clone();
        new.backchannel = new.backchannel.keeping(&self.backchannel);
        new.token = new.token.keeping(&self.token);
        new
    }

    /// Whether any limit applies (`rate_limit.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A keyed hash of the credential a request presents, never reversible to it.
    pub fn fingerprint(&self, credential: Option<&str>) -> u64 {
        match credential {
            None => 0,
            Some(c) => {
                let mut h = self.hasher.build_hasher();
                h.write(c.as_bytes());
                h.finish()
            }
        }
    }

    /// Admits or refuses one request; `client` is the claimed id with its credential fingerprint.
    pub fn check(
        &self,
        endpoint: Endpoint,
        address: IpAddr,
        client: Option<(&ClientId, u64)>,
    ) -> Result<(), Limited> {
        self.check_address(endpoint, address)?;
        match client {
            Some((id, fp)) => self.check_client(endpoint, id, fp),
            None => Ok(()),
        }
    }

    /// The per-address limit alone: checked before the body is read.
    pub fn check_address(&self, endpoint: Endpoint, address: IpAddr) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let limiters = self.limiters(endpoint);
        self.bound(limiters);
        let now = self.clock.now();
        limiters
            .per_address
            .check_key(&address)
            .map_err(|nu| Limited {
                kind: KeyKind::Address,
                retry_after: nu.wait_time_from(now),
            })
    }

    /// The per-client limit alone: checked once the form names the client.
    pub fn check_client(
        &self,
        endpoint: Endpoint,
        id: &ClientId,
        fingerprint: u64,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let limiters = self.limiters(endpoint);
        let now = self.clock.now();
        let result = match limiters.overrides.get(id) {
            Some(own) => own.check_key(&fingerprint),
            None => limiters.per_client.check_key(&(id.clone(), fingerprint)),
        };
        result.map_err(|nu| Limited {
            kind: KeyKind::Client,
            retry_after: nu.wait_time_from(now),
        })
    }

    fn limiters(&self, endpoint: Endpoint) -> &EndpointLimiters<C> {
        match endpoint {
            Endpoint::Backchannel => &self.backchannel,
            Endpoint::Token => &self.token,
        }
    }

    /// The per-address rate of an endpoint; `None` when limits are off.
    pub fn address_rate(&self, endpoint: Endpoint) -> Option<Rate> {
        let rate = match endpoint {
            Endpoint::Backchannel => self.rates.backchannel.per_address,
            Endpoint::Token => self.rates.token.per_address,
        };
        self.enabled.then_some(rate)
    }

    /// The per-client rate of an endpoint for this client; `None` when limits are off.
    pub fn client_rate(&self, endpoint: Endpoint, client: &ClientId) -> Option<Rate> {
        if !self.enabled {
            return None;
        }
        let own = self
            .rates
            .clients
            .get(client.as_str())
            .and_then(|c| match endpoint {
                Endpoint::Backchannel => c.backchannel,
                Endpoint::Token => c.token,
            });
        Some(own.unwrap_or(match endpoint {
            Endpoint::Backchannel => self.rates.backchannel.per_client,
            Endpoint::Token => self.rates.token.per_client,
        }))
    }

    /// Drops keys indistinguishable from fresh ones.
    pub fn retain_recent(&self) {
        self.backchannel.retain_recent();
        self.token.retain_recent();
    }

    /// Keys held across all limiters.
    pub fn len(&self) -> usize {
        self.backchannel.len() + self.token.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cleans up early when a limiter has grown past `max_keys`, at most once a second,
    /// so a flood of distinct keys cannot grow memory between two sweeps.
    fn bound(&self, limiters: &EndpointLimiters<C>) {
        if limiters.per_address.len() + limiters.per_client.len() <= self.max_keys {
            return;
        }
        let now_s = self.started.elapsed().as_secs() + 1;
        if self.last_cleanup.swap(now_s, Ordering::Relaxed) != now_s {
            limiters.retain_recent();
        }
    }
}

/// The address a request comes from: the peer, unless the peer is a trusted proxy, in which
/// case the rightmost address in `X-Forwarded-For` (or `Forwarded: for=`) that is not itself
/// a trusted proxy. Untrusted peers cannot choose their address by sending a header.
///
/// Walking from the right, an entry that is not an address (`unknown`, an obfuscated
/// `Forwarded` identifier, garbage) ends the walk at the peer: anything to its left was
/// written by someone the gateway cannot identify, so it may not pick the address.
pub fn source_address(
    peer: IpAddr,
    x_forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain: Vec<&str> = if let Some(xff) = x_forwarded_for {
        xff.split(',').map(str::trim).collect()
    } else if let Some(fwd) = forwarded {
        fwd.split([',', ';'])
            .filter_map(|part| {
                let (k, v) = part.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| v.trim().trim_matches('"'))
            })
            .collect()
    } else {
        Vec::new()
    };
    for entry in chain.into_iter().rev() {
        match parse_ip(entry) {
            Some(ip) if is_trusted(&ip) => continue,
            Some(ip) => return ip,
            None => return peer,
        }
    }
    peer
}

/// Parses `1.2.3.4`, `1.2.3.4:5`, `::1`, `[::1]` and `[::1]:5`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn cfg() -> RateLimitConfig {
        let mut c = RateLimitConfig::default();
        c.backchannel.per_client = Rate::new(1, 2);
        c.backchannel.per_address = Rate::new(100, 100);
        c.clients.insert(
            "vip".into(),
            ClientRates {
                backchannel: Some(Rate::new(1, 5)),
                token: None,
            },
        );
        c
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_reload_keeps_the_counters_of_unchanged_rates_and_restarts_changed_ones() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimits::with_clock(&cfg(), clock.clone());
        let (a, vip) = (ClientId::new("a"), ClientId::new("vip"));
        let fa = rl.fingerprint(Some("secret-a"));
        // `a` spends its burst of 2, `vip` its own burst of 5.
        for _ in 0..2 {
            assert!(rl.check_client(Endpoint::Backchannel, &a, fa).is_ok());
        }
        for _ in 0..5 {
            assert!(rl.check_client(Endpoint::Backchannel, &vip, 0).is_ok());
        }
        // The reload changes vip's rate and the trusted proxies, not the default rate.
        let mut next = cfg();
        next.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        next.clients.get_mut("vip").unwrap().backchannel = Some(Rate::new(1, 6));
        let re = rl.reconfigured(&next);
        assert_eq!(
            re.fingerprint(Some("secret-a")),
            fa,
            "same key for the same secret"
        );
        assert!(
            re.check_client(Endpoint::Backchannel, &a, fa).is_err(),
            "the unchanged rate kept its count"
        );
        assert!(
            re.check_client(Endpoint::Backchannel, &vip, 0).is_ok(),
            "the changed rate starts afresh"
        );
    }

    #[test]
    fn one_client_over_its_limit_does_not_slow_another() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimits::with_clock(&cfg(), clock.clone());
        let (a, b) = (ClientId::new("a"), ClientId::new("b"));
        let fa = rl.fingerprint(Some("secret-a"));
        let fb = rl.fingerprint(Some("secret-b"));
        let addr = ip("10.0.0.1");
        assert!(rl
            .check(Endpoint::Backchannel, addr, Some((&a, fa)))
            .is_ok());
        assert!(rl
            .check(Endpoint::Backchannel, addr, Some((&a, fa)))
            .is_ok());
        let limited = rl
            .check(Endpoint::Backchannel, addr, Some((&a, fa)))
            .unwrap_err();
        assert_eq!(limited.kind, KeyKind::Client);
        assert_eq!(limited.retry_after, Duration::from_secs(1));
        assert!(rl
            .check(Endpoint::Backchannel, addr, Some((&b, fb)))
            .is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(rl
            .check(Endpoint::Backchannel, addr, Some((&a, fa)))
            .is_ok());
    }

    #[test]
    fn a_spoofer_without_the_secret_cannot_drain_the_real_client() {
        let rl = RateLimits::with_clock(&cfg(), FakeRelativeClock::default());
        let victim = ClientId::new("victim");
        let real = rl.fingerprint(Some("real-secret"));
        let fake = rl.fingerprint(Some("guess"));
        for _ in 0..5 {
            let _ = rl.check(Endpoint::Backchannel, ip("10.0.0.9"), Some((&victim, fake)));
        }
        assert!(rl
            .check(Endpoint::Backchannel, ip("10.0.0.1"), Some((&victim, real)))
            .is_ok());
    }

    #[test]
    fn per_client_overrides_and_separate_endpoints() {
        let rl = RateLimits::with_clock(&cfg(), FakeRelativeClock::default());
        let vip = ClientId::new("vip");
        for _ in 0..5 {
            assert!(rl
                .check(Endpoint::Backchannel, ip("10.0.0.1"), Some((&vip, 0)))
                .is_ok());
        }
        assert!(rl
            .check(Endpoint::Backchannel, ip("10.0.0.1"), Some((&vip, 0)))
            .is_err());
        assert!(
            rl.check(Endpoint::Token, ip("10.0.0.1"), Some((&vip, 0)))
                .is_ok(),
            "token quota is separate"
        );
    }

    #[test]
    fn the_address_limit_applies_without_a_client() {
        let mut c = cfg();
        c.token.per_address = Rate::new(1, 1);
        let rl = RateLimits::with_clock(&c, FakeRelativeClock::default());
        assert!(rl.check(Endpoint::Token, ip("10.0.0.1"), None).is_ok());
        assert_eq!(
            rl.check(Endpoint::Token, ip("10.0.0.1"), None)
                .unwrap_err()
                .kind,
            KeyKind::Address
        );
        assert!(rl.check(Endpoint::Token, ip("10.0.0.2"), None).is_ok());
    }

    #[test]
    fn disabled_admits_everything() {
        let mut c = cfg();
        c.enabled = false;
        c.token.per_address = Rate::new(1, 1);
        let rl = RateLimits::with_clock(&c, FakeRelativeClock::default());
        for _ in 0..10 {
            assert!(rl.check(Endpoint::Token, ip("10.0.0.1"), None).is_ok());
        }
    }

    #[test]
    fn keyed_state_stays_bounded_under_a_flood_of_keys() {
        let clock = FakeRelativeClock::default();
        let mut c = cfg();
        c.max_keys = 1000;
        let rl = RateLimits::with_clock(&c, clock.clone());
        for i in 0..20_000u32 {
            let id = ClientId::new(&format!("spoofed-{i}"));
            let _ = rl.check(
                Endpoint::Backchannel,
                IpAddr::from(i.to_be_bytes()),
                Some((&id, 0)),
            );
            if i % 1000 == 999 {
                clock.advance(Duration::from_secs(60));
            }
        }
        rl.retain_recent();
        assert!(rl.len() <= 2 * 1000 + 2, "held {} keys", rl.len());
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer_untrusted = ip("203.0.113.7");
        assert_eq!(
            source_address(peer_untrusted, Some("1.1.1.1"), None, &trusted),
            peer_untrusted
        );
        let proxy = ip("10.1.2.3");
        assert_eq!(
            source_address(proxy, Some("1.1.1.1, 2.2.2.2, 10.9.9.9"), None, &trusted),
            ip("2.2.2.2")
        );
        assert_eq!(
            source_address(
                proxy,
                None,
                Some(r#"for="[2001:db8::1]:4711";proto=https"#),
                &trusted
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            source_address(proxy, Some("garbage"), None, &trusted),
            proxy
        );
        assert_eq!(
            source_address(proxy, Some("10.0.0.5"), None, &trusted),
            proxy
        );
    }

    #[test]
    fn hostile_forwarding_headers_never_choose_the_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ip("10.1.2.3");
        // (X-Forwarded-For, Forwarded, expected)
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (Some(""), None, "10.1.2.3"),
            (Some(",,,"), None, "10.1.2.3"),
            (Some("unknown"), None, "10.1.2.3"),
            // What is left of an unreadable entry is not believed.
            (Some("6.6.6.6, unknown"), None, "10.1.2.3"),
            (Some("6.6.6.6, garbage, 10.0.0.9"), None, "10.1.2.3"),
            (Some("6.6.6.6,"), None, "10.1.2.3"),
            (Some("1.1.1.1:8080"), None, "1.1.1.1"),
            (Some("[2001:db8::7]:443"), None, "2001:db8::7"),
            (Some("2001:db8::7"), None, "2001:db8::7"),
            (Some("[2001:db8::7"), None, "2001:db8::7"),
            (Some("1.1.1.1 , 10.0.0.1 "), None, "1.1.1.1"),
            (Some("999.1.1.1"), None, "10.1.2.3"),
            (Some("1.1.1.1\0"), None, "10.1.2.3"),
            (None, Some("for=unknown"), "10.1.2.3"),
            (None, Some("for=6.6.6.6, for=_hidden"), "10.1.2.3"),
            (
                None,
                Some("for=6.6.6.6;by=10.0.0.1, for=10.0.0.2"),
                "6.6.6.6",
            ),
            (None, Some("proto=https"), "10.1.2.3"),
            (None, Some("FOR = \"[::1]:80\""), "::1"),
            (None, Some("for"), "10.1.2.3"),
            // X-Forwarded-For wins when both are sent.
            (Some("1.1.1.1"), Some("for=2.2.2.2"), "1.1.1.1"),
        ];
        for (xff, fwd, want) in cases {
            assert_eq!(
                source_address(proxy, *xff, *fwd, &trusted),
                ip(want),
                "{xff:?} {fwd:?}"
            );
        }
    }

    #[test]
    fn rates_parse_from_toml() {
        let c: RateLimitConfig = toml::from_str(
            "trusted_proxies = [\"10.0.0.0/8\"]\n[backchannel]\nper_client = { per_second = 2, burst = 4 }\nper_address = { per_second = 9, burst = 9 }\n[clients.vip]\ntoken = { per_second = 1, burst = 1 }\n",
        )
        .unwrap();
        assert_eq!(c.backchannel.per_client, Rate::new(2, 4));
        assert_eq!(c.token, RateLimitConfig::default().token);
        assert!(toml::from_str::<RateLimitConfig>("[token]\nper_client = { per_second = 0, burst = 1 }\nper_address = { per_second = 1, burst = 1 }\n").is_err());
    }
}
