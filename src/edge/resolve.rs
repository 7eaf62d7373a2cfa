//! Where the OP is: its host name resolved to one socket address, and re-resolved on a timer
//! so that a DNS change (a load balancer's rotating addresses, a moved service) is followed
//! without a restart.
//!
//! A name that does not resolve is never fatal: at start-up the gateway keeps trying and
//! reports not-ready; later, it keeps the last address that worked.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::watch;

/// How long one lookup may take before it counts as a failure.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the OP's host is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpAddress {
    /// An IP literal: nothing to resolve.
    Fixed(SocketAddr),
    /// A host name, resolved through the system resolver.
    Name {
        /// The host name as configured.
        host: String,
        /// The TCP port.
        port: u16,
    },
}

impl OpAddress {
    /// The target for `upstream.url`'s host (IPv6 without brackets) and port.
    pub fn of(host: &str, port: u16) -> OpAddress {
        match host.parse::<IpAddr>() {
            Ok(ip) => OpAddress::Fixed(SocketAddr::new(ip, port)),
            Err(_) => OpAddress::Name {
                host: host.to_string(),
                port,
            },
        }
    }
}

/// The address to use from a fresh answer: the current one while the answer still lists
/// it, so pooled connections stay useful; otherwise the first, the system's preference.
pub fn choose(current: Option<SocketAddr>, resolved: &[SocketAddr]) -> Option<SocketAddr> {
    match current {
        Some(c) if resolved.contains(&c) => Some(c),
        _ => resolved.first().copied(),
    }
}

/// One lookup through the system resolver, bounded by [`LOOKUP_TIMEOUT`].
pub async fn lookup(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(addrs) => Ok(addrs?.collect()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs()),
        )),
    }
}

/// Timing of [`follow`].
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Pause between lookups once an address is known.
    pub every: Duration,
    /// Pause between lookups while no address is known yet.
    pub retry: Duration,
}

/// Resolves `host:port` now and then on `schedule`, calling `apply` with each new address,
/// until `shutdown` changes. `on_failure` runs on each failed or empty lookup.
///
/// `lookup` is a parameter so tests can script the answers.
pub async fn follow<L, Fut>(
    host: &str,
    port: u16,
    schedule: Schedule,
    mut lookup: L,
    mut apply: impl FnMut(SocketAddr),
    mut on_failure: impl FnMut(),
    mut shutdown: watch::Receiver<bool>,
) where
    L: FnMut(String, u16) -> Fut,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
{
    let mut current: Option<SocketAddr> = None;
    loop {
        let outcome = lookup(host.to_string(), port).await;
        let failure = match &outcome {
            Ok(addrs) => match choose(current, addrs) {
                Some(addr) => {
                    if current != Some(addr) {
                        match current {
                            None => tracing::info!(%host, %addr, "upstream.url: host resolved"),
                            Some(old) => tracing::info!(
                                %host, from = %old, to = %addr,
                                "upstream.url: host now resolves elsewhere; new connections go to the new address"
                            ),
                        }
                        apply(addr);
                        current = Some(addr);
                    }
                    None
                }
                None => Some("the answer holds no address".to_string()),
            },
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            on_failure();
            match current {
                None => tracing::warn!(
                    %host,
                    "upstream.url: cannot resolve the host ({why}); not ready, retrying in {} s",
                    schedule.retry.as_secs()
                ),
                Some(addr) => tracing::warn!(
                    %host, %addr,
                    "upstream.url: cannot resolve the host ({why}); keeping the last address, retrying in {} s",
                    schedule.every.as_secs()
                ),
            }
        }
        let pause = if current.is_some() {
            schedule.every
        } else {
            schedule.retry
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_literals_are_fixed_and_names_are_resolved() {
        assert_eq!(
            OpAddress::of("127.0.0.1", 3000),
            OpAddress::Fixed(addr("127.0.0.1:3000"))
        );
        assert_eq!(
            OpAddress::of("::1", 443),
            OpAddress::Fixed(addr("[::1]:443"))
        );
        assert_eq!(
            OpAddress::of("op.internal", 8443),
            OpAddress::Name {
                host: "op.internal".into(),
                port: 8443
            }
        );
        // Not an address: a name that happens to look numeric is left to the resolver.
        assert!(matches!(OpAddress::of("1.2.3", 80), OpAddress::Name { .. }));
    }

    #[test]
    fn choose_keeps_the_current_address_while_dns_lists_it() {
        let a = addr("10.0.0.1:443");
        let b = addr("10.0.0.2:443");
        let c = addr("10.0.0.3:443");
        let cases: &[(Option<SocketAddr>, &[SocketAddr], Option<SocketAddr>)] = &[
            (None, &[], None),
            (None, &[a, b], Some(a)),
            (Some(b), &[a, b], Some(b)),
            (Some(c), &[a, b], Some(a)),
            (Some(a), &[], None),
        ];
        for (current, resolved, want) in cases {
            assert_eq!(
                choose(*current, resolved),
                *want,
                "{current:?} {resolved:?}"
            );
        }
    }

    /// Runs [`follow`] against scripted answers, one per lookup, and returns what it applied
    /// and how many failures it reported once the script is used up.
    async fn run(script: Vec<io::Result<Vec<SocketAddr>>>) -> (Vec<SocketAddr>, usize, usize) {
        let steps = script.len();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let applied = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(0));
        let lookups = Arc::new(Mutex::new(0));
        let (stop, shutdown) = watch::channel(false);
        let (s, a, f, l) = (
            script.clone(),
            applied.clone(),
            failures.clone(),
            lookups.clone(),
        );
        let task = tokio::spawn(async move {
            follow(
                "op.internal",
                443,
                Schedule {
                    every: Duration::from_secs(30),
                    retry: Duration::from_secs(5),
                },
                move |host, port| {
                    assert_eq!((host.as_str(), port), ("op.internal", 443));
                    *l.lock().unwrap() += 1;
                    let next = s.lock().unwrap().pop_front();
                    async move { next.unwrap_or_else(|| Ok(Vec::new())) }
                },
                move |addr| a.lock().unwrap().push(addr),
                move || *f.lock().unwrap() += 1,
                shutdown,
            )
            .await
        });
        // Time is paused: each advance lets exactly the due lookups run.
        while *lookups.lock().unwrap() < steps {
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let applied = applied.lock().unwrap().clone();
        let failures = *failures.lock().unwrap();
        let lookups = *lookups.lock().unwrap();
        (applied, failures, lookups)
    }

    fn refused() -> io::Error {
        io::Error::other("Name or service not known")
    }

    #[tokio::test(start_paused = true)]
    async fn an_unresolvable_name_is_retried_until_it_resolves() {
        let a = addr("10.0.0.1:443");
        let (applied, failures, _) = run(vec![Err(refused()), Ok(vec![]), Ok(vec![a])]).await;
        assert_eq!(applied, vec![a]);
        assert_eq!(failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_keeps_the_last_address_and_a_change_is_followed() {
        let a = addr("10.0.0.1:443");
        let b = addr("10.0.0.2:443");
        let (applied, failures, _) = run(vec![
            Ok(vec![a]),
            Err(refused()),
            Ok(vec![b, a]), // still listed: kept
            Ok(vec![b]),    // gone: moved
        ])
        .await;
        assert_eq!(applied, vec![a, b]);
        assert_eq!(failures, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_follow_the_schedule() {
        let a = addr("10.0.0.1:443");
        let start = tokio::time::Instant::now();
        // Two failures at the retry pace (0 s, 5 s), then a success (10 s), then the
        // steady pace (40 s).
        let (_, _, lookups) = run(vec![
            Err(refused()),
            Err(refused()),
            Ok(vec![a]),
            Ok(vec![a]),
        ])
        .await;
        assert_eq!(lookups, 4);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(40) && elapsed < Duration::from_secs(42),
            "{elapsed:?}"
        );
    }
}
