//! The ping poller's cost per tracked ping request, in the memory store.
//!
//! Run with `cargo bench --bench ping`. Before the criterion groups it prints the resident
//! memory of 10,000 waiting ping requests (from `/proc/self/status`, Linux only). The groups
//! time one scheduling pass of the poller (`PingStore::due`) over 10,000 waiting requests,
//! when none is due (the poller's idle cost, paid every 10–250 ms) and when all are (a pass
//! that hands out 10,000 polls, opening each sealed credential), and recording one poll's
//! outcome (`PingStore::polled`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};

use ciba_gateway::ciba::ids::{AuthReqId, ClientId, Secret};
use ciba_gateway::ciba::ping::Credential;
use ciba_gateway::state::ping_store::{PingStore, PollResult};
use ciba_gateway::state::seal::Sealer;

const PENDING: usize = 10_000;
const INTERVAL: Duration = Duration::from_secs(5);

fn id(n: usize) -> AuthReqId {
    // 43 characters, like 32 random bytes in base64url.
    AuthReqId::new(&format!(
        "{n:0>10}-{:032x}",
        (n as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    ))
}

/// A store with `PENDING` waiting requests over 100 clients, all started at `now`.
fn filled(now: Instant) -> PingStore {
    let store = PingStore::new(Sealer::new(&Secret::new([7; 32])), PENDING);
    let token = Secret::new("a-client-notification-token-0123456789".to_string());
    for n in 0..PENDING {
        let client = ClientId::new(&format!("client-{:03}.example.com", n % 100));
        let credential = Credential::Post {
            client_id: client.as_str().into(),
            secret: "a-client-secret-of-32-characters".into(),
        };
        store.start(
            store.reserve().expect("room"),
            id(n),
            client,
            &credential,
            &token,
            INTERVAL,
            now + Duration::from_secs(600),
            now,
        );
    }
    store
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn report_rss() {
    let before = rss_kib();
    let store = filled(Instant::now());
    let after = rss_kib();
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "ping store: {} waiting requests, VmRSS {:.1} -> {:.1} MiB, {:.0} B per request",
            store.len(),
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            (a.saturating_sub(b)) as f64 * 1024.0 / PENDING as f64
        );
    }
}

fn passes(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("ping_pass");
    g.throughput(Throughput::Elements(PENDING as u64));
    g.sample_size(20);
    let idle = filled(now);
    g.bench_function("none_due_10k", |b| {
        b.iter(|| idle.due(now + Duration::from_secs(1)))
    });
    g.bench_function("all_due_10k", |b| {
        b.iter_batched(
            || filled(now),
            |s| {
                let (due, _) = s.due(now + INTERVAL);
                assert_eq!(due.len(), PENDING);
                (s, due)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("ping_poll");
    g.throughput(Throughput::Elements(1));
    let store = filled(now);
    let (due, _) = store.due(now + INTERVAL);
    let mut n = 0;
    g.bench_function("polled_pending", |b| {
        b.iter(|| {
            // Back to waiting, one interval later: the pending answer's bookkeeping.
            let job = &due[n % due.len()];
            n += 1;
            store.polled(
                &job.id,
                PollResult::Again { slow_down: false },
                now + INTERVAL,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, passes);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        report_rss();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
