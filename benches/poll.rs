//! Cost of the CIBA polling store at production scale.
//!
//! Run with `cargo bench --bench poll`. Before the criterion groups it prints the resident
//! memory of 1,000,000 tracked ids (from `/proc/self/status`, Linux only). Uses only the
//! store's public API, so the same file measures any revision of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};

use ciba_gateway::ciba::clock::{Clock, FakeClock, SystemClock};
use ciba_gateway::ciba::ids::{AuthReqId, ClientId};
use ciba_gateway::ciba::polling::PollPolicy;
use ciba_gateway::state::poll_store::{PollStore, StoreLimits};

const TRACKED: usize = 1_000_000;
const CLIENTS: usize = 1_000;

/// A deterministic generator, so runs are comparable and no `rand` dependency is needed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A 43-character base64url string: what 32 random bytes look like on the wire.
    fn auth_req_id(&mut self) -> AuthReqId {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut buf = [0u8; 43];
        let mut bits = 0u64;
        for (i, b) in buf.iter_mut().enumerate() {
            if i % 10 == 0 {
                bits = self.next();
            }
            *b = ALPHABET[(bits & 63) as usize];
            bits >>= 6;
        }
        AuthReqId::new(std::str::from_utf8(&buf).expect("alphabet is ASCII"))
    }
}

fn clients() -> Vec<ClientId> {
    (0..CLIENTS)
        .map(|n| ClientId::new(&format!("client-{n:04}.example.com")))
        .collect()
}

/// The `n`th id of the series `seed`, computed rather than looked up: the poll benches build
/// each request's id on the fly, as the proxy does from the request body, so the id's text is
/// in cache and only the store's own memory accesses are cold.
fn nth_id(seed: u64, n: u64) -> AuthReqId {
    // splitmix64 of (seed, n): a distinct, non-zero xorshift state per id.
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    XorShift((z ^ (z >> 31)) | 1).auth_req_id()
}

fn gen_ids(seed: u64, n: usize) -> Vec<AuthReqId> {
    (0..n as u64).map(|i| nth_id(seed, i)).collect()
}

fn store(clock: Arc<dyn Clock>) -> PollStore {
    PollStore::new(PollPolicy::default(), StoreLimits::default(), clock)
}

fn filled(clock: Arc<dyn Clock>, ids: &[AuthReqId], clients: &[ClientId]) -> PollStore {
    let st = store(clock);
    for (n, id) in ids.iter().enumerate() {
        st.record_ack(id.clone(), clients[n % CLIENTS].clone(), None, 600)
            .expect("positive expires_in");
    }
    st
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory added by tracking `TRACKED` ids, generated on the fly so only what the
/// store keeps is counted.
fn report_rss() {
    let clients = clients();
    let Some(before) = rss_kib() else {
        eprintln!("rss: /proc/self/status unavailable; skipped");
        return;
    };
    let st = store(Arc::new(SystemClock));
    let started = Instant::now();
    for n in 0..TRACKED {
        st.record_ack(nth_id(5, n as u64), clients[n % CLIENTS].clone(), None, 600)
            .expect("positive expires_in");
    }
    let took = started.elapsed();
    let after = rss_kib().unwrap_or(before);
    let added = after.saturating_sub(before);
    eprintln!(
        "rss: {TRACKED} ids ({CLIENTS} clients, 43-char ids): before {before} KiB, after {after} KiB, \
         +{added} KiB = {:.1} B/entry; inserted in {took:?}; size_of PollState {} B, AuthReqId {} B",
        added as f64 * 1024.0 / TRACKED as f64,
        std::mem::size_of::<ciba_gateway::ciba::polling::PollState>(),
        std::mem::size_of::<AuthReqId>(),
    );
    assert_eq!(st.len(), TRACKED);
}

fn poll_decisions(c: &mut Criterion) {
    let clients = clients();
    let ids = gen_ids(1, TRACKED);
    let clock = FakeClock::new();
    let st = filled(Arc::new(clock.clone()), &ids, &clients);
    // Only the first 1,024 are kept for the hot-set bench; the rest are recomputed per poll.
    let ids = ids[..1024].to_vec();
    // Every poll forwarded after the first round would need time to pass; letting the clock
    // stand still instead mixes Forward and SlowDown, and both take the same path to the state.
    let pick = |i: u64| {
        let n = i.wrapping_mul(0x9E37_79B9) % TRACKED as u64;
        (nth_id(1, n), &clients[n as usize % CLIENTS])
    };

    let mut g = c.benchmark_group("poll_1M_tracked");
    g.throughput(Throughput::Elements(1));
    // What every poll bench below spends outside the store: building the request's id.
    g.bench_function("make_id_only", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            pick(i)
        })
    });
    g.bench_function("1_thread", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (id, client) = pick(i);
            st.poll(&id, client, true)
        })
    });
    // The same store, polled over 1,024 ids that stay in cache: the cost of the decision
    // itself, as opposed to the memory latency of reaching a random entry among 1M.
    g.bench_function("1_thread_hot_1k_ids", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            st.poll(&ids[i], &clients[i % CLIENTS], true)
        })
    });
    g.bench_function("unknown_id", |b| {
        let unknown = gen_ids(2, 1024);
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 1023;
            st.poll(&unknown[i], &clients[0], false)
        })
    });
    // Time per decision as each of 2 threads sees it; aggregate throughput is twice the rate.
    g.bench_function("2_threads_per_thread", |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2u64)
                    .map(|t| {
                        let st = st.clone();
                        scope.spawn(move || {
                            let started = Instant::now();
                            for i in 0..iters {
                                let (id, client) = pick(i * 2 + t);
                                std::hint::black_box(st.poll(&id, client, true));
                            }
                            started.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("worker"))
                    .max()
                    .unwrap_or_default()
            })
        })
    });
    // Last, because it resets the states the polls above have been throttling: re-acking an
    // id already tracked among 1M (a replacement, so the table size stays put).
    g.bench_function("record_ack_replace", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (id, client) = pick(i);
            st.record_ack(id, client.clone(), None, 600)
        })
    });
    g.finish();
}

fn ack_and_sweep(c: &mut Criterion) {
    const BATCH: usize = 10_000;
    let clients = clients();
    let fresh = gen_ids(3, BATCH);

    let mut g = c.benchmark_group("ack_sweep");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("record_ack_10k_into_empty", |b| {
        b.iter_batched(
            || (store(Arc::new(SystemClock)), fresh.clone()),
            |(st, ids)| {
                for (n, id) in ids.into_iter().enumerate() {
                    let _ = st.record_ack(id, clients[n % CLIENTS].clone(), None, 600);
                }
                st
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("record_ack_10k_then_sweep_all", |b| {
        b.iter_batched(
            || {
                let clock = FakeClock::new();
                (store(Arc::new(clock.clone())), clock, fresh.clone())
            },
            |(st, clock, ids)| {
                for (n, id) in ids.into_iter().enumerate() {
                    let _ = st.record_ack(id, clients[n % CLIENTS].clone(), None, 600);
                }
                clock.advance(Duration::from_secs(600));
                assert_eq!(st.sweep(), BATCH);
                st
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // Sweeping a full store where nothing has expired: the steady-state cost of the timer.
    let big = gen_ids(4, TRACKED);
    let st = filled(Arc::new(FakeClock::new()), &big, &clients);
    let mut g = c.benchmark_group("sweep_1M_tracked");
    g.throughput(Throughput::Elements(TRACKED as u64));
    g.sample_size(10);
    g.bench_function("none_expired", |b| b.iter(|| st.sweep()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = poll_decisions, ack_and_sweep
}

fn main() {
    // `criterion_main!` would leave no room for the memory report, so main is spelled out.
    // `cargo test --benches` passes `--bench`-less args; skip the heavy report there.
    if std::env::args().any(|a| a == "--bench") {
        report_rss();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
