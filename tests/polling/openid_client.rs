//! The gateway driven by the client library applications use: openid-client 6
//! (tests/op/client.mjs), whose CIBA polling follows CIBA 11 to the letter (wait `interval`,
//! add 5 s after each `slow_down`) and honours `Retry-After`.
//!
//! The test OP announces a 1 s interval (`--interval 1`) and the gateway enforces
//! `min_interval_seconds = 1` with `max_interval_seconds = 3`, so a flow takes seconds.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The gateway's poll rules for these tests: the OP's 1 s interval, escalation capped at 3 s.
const POLLING: &str = "[polling]\nmin_interval_seconds = 1\nmax_interval_seconds = 3\n";
/// The gateway's default `polling.tolerance_ms`.
const TOLERANCE: Duration = Duration::from_millis(250);
/// Slack for measuring, from outside, when a poll reached the OP (sampling period and the
/// stats request's own latency).
const SAMPLING_SLACK: Duration = Duration::from_millis(60);

/// The test OP announcing a 1 s interval, and the gateway in front of it.
fn op_and_gateway() -> (TestOp, Gateway, tempfile::TempDir) {
    let op = TestOp::start(&["--interval", "1"]);
    let (gw, dir) = Gateway::with_config(&op.url(), POLLING);
    (op, gw, dir)
}

/// One run of tests/op/client.mjs: openid-client initiating and polling through the gateway.
struct RelyingParty {
    child: Child,
    events: Receiver<Value>,
    stderr: tempfile::NamedTempFile,
}

impl RelyingParty {
    /// Starts the client for `client` (client_secret_post) with an overall time limit.
    fn start(op: &TestOp, gw: &Gateway, client: (&str, &str), limit: Duration) -> RelyingParty {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/op/client.mjs"))
            .args(["--issuer", &op.url(), "--gateway", &gw.url()])
            .args(["--client-id", client.0, "--login-hint", "alice"])
            .args(["--timeout-ms", &limit.as_millis().to_string()])
            // The secret goes through the environment, never the command line.
            .env("CLIENT_SECRET", client.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .spawn()
            .expect("node is needed for the openid-client tests");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|_| Value::String(format!("not JSON: {line}")));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        RelyingParty {
            child,
            events,
            stderr,
        }
    }

    /// The next event line, failing the test if none comes within `limit`.
    fn next(&self, limit: Duration) -> Value {
        self.events.recv_timeout(limit).unwrap_or_else(|_| {
            panic!(
                "client.mjs printed nothing within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
            )
        })
    }

    /// The acknowledgement event, with its `auth_req_id`.
    fn ack(&self, limit: Duration) -> (Value, String) {
        let ack = self.next(limit);
        assert_eq!(ack["event"], "ack", "{ack}");
        let id = ack["auth_req_id"].as_str().unwrap().to_string();
        (ack, id)
    }

    /// Waits for the process to exit and returns its exit code.
    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        wait_for_exit(&mut self.child, limit).and_then(|s| s.code())
    }
}

impl Drop for RelyingParty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records, from outside, when each token request reached the OP: samples the OP's counter
/// until stopped and returns one instant per request counted.
struct OpTokenWatch {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<Instant>>,
}

impl OpTokenWatch {
    fn start(op: &TestOp) -> OpTokenWatch {
        let addr = op.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let count = get(&addr, "/admin/stats").json()["token"].as_u64().unwrap();
                let now = Instant::now();
                while (seen.len() as u64) < count {
                    seen.push(now);
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        OpTokenWatch { stop, handle }
    }

    /// Stops sampling; the instants at which token requests reached the OP.
    fn finish(self) -> Vec<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Gaps between consecutive polls that reached the OP.
fn gaps(polls: &[Instant]) -> Vec<Duration> {
    polls.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Waits until the OP has seen `n` token requests; the instant it noticed.
fn wait_for_token_count(op: &TestOp, n: u64, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if op.token_count() >= n {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the OP saw {} token requests, waited for {n}",
            op.token_count()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// How many `slow_down` answers the gateway gave itself.
fn local_slow_downs(gw: &Gateway) -> u64 {
    let m = get(&gw.metrics_addr(), "/metrics").text();
    m.lines()
        .find(|l| {
            l.starts_with("ciba_gateway_local_answers_total{")
                && l.contains("endpoint=\"token\"")
                && l.contains("error=\"slow_down\"")
        })
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// The `Retry-After` of a `slow_down`, which must be whole seconds (RFC 9110 delay-seconds,
/// the only form openid-client reads besides a date).
fn retry_after(r: &Resp) -> u64 {
    assert_eq!(r.error(), "slow_down", "{}", r.text());
    let v = r
        .header("retry-after")
        .expect("slow_down without Retry-After");
    v.parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {v:?}"))
}

/// Guards the ordinary case: a client that waits the interval the gateway announced never
/// meets a `slow_down`, gets its tokens, and the OP sees no more polls than the interval
/// allows. A gateway announcing an interval it does not enforce (rounded down, measured
/// more strictly than announced) would refuse openid-client and show up in the metrics; one
/// forwarding too much would break the count bound.
#[test]
fn openid_client_completes_a_flow_through_the_gateway() {
    let (op, gw, _d) = op_and_gateway();
    let watch = OpTokenWatch::start(&op);
    let mut rp = RelyingParty::start(&op, &gw, POST_CLIENT, Duration::from_secs(15));
    let (ack, id) = rp.ack(Duration::from_secs(10));
    let acked = Instant::now();
    assert_eq!(ack["interval"], 1, "the OP's interval, as enforced: {ack}");
    assert!(ack["expires_in"].as_u64().unwrap() > 0, "{ack}");

    // Approve only once the first poll has been answered authorization_pending, so the
    // library's wait-and-poll-again path is exercised too.
    wait_for_token_count(&op, 1, Duration::from_secs(5));
    op.approve(&id);

    let outcome = rp.next(Duration::from_secs(12));
    assert_eq!(outcome["outcome"], "tokens", "{outcome}");
    assert_eq!(outcome["has_access_token"], true, "{outcome}");
    assert_eq!(rp.exit_code(Duration::from_secs(5)), Some(0));
    let elapsed = acked.elapsed();

    let polls = watch.finish();
    let count = op.token_count();
    let allowed =
        1 + (elapsed.as_secs_f64() / (Duration::from_secs(1) - TOLERANCE).as_secs_f64()) as u64;
    assert!(
        (2..=allowed).contains(&count),
        "the OP saw {count} polls in {elapsed:?}; at most {allowed} fit the interval"
    );
    for gap in gaps(&polls) {
        assert!(
            gap + SAMPLING_SLACK >= Duration::from_secs(1) - TOLERANCE,
            "two polls reached the OP {gap:?} apart: {polls:?}"
        );
    }
    assert_eq!(
        local_slow_downs(&gw),
        0,
        "a client following the announced interval was told to slow down"
    );
    // The used-up id is refused at the edge.
    assert_eq!(poll(&gw.addr(), POST_CLIENT, &id).error(), "invalid_grant");
    assert_eq!(op.token_count(), count);
}

/// Guards the case that used to lock a client out: a second instance of the client polls the
/// id once too early, so the gateway raises the interval with a `slow_down` that openid-client
/// never sees. When a refused poll restarted the clock and the escalation had no cap, every
/// later poll of openid-client (interval + 5 s after each slow_down it got) landed inside
/// a still longer interval and it got `slow_down` until the request expired. Now the interval
/// is measured from the last forwarded poll and stops at `max_interval_seconds`, so the
/// library catches up within a few seconds, and the OP still never sees polls closer than
/// the enforced interval.
#[test]
fn two_instances_polling_one_id_still_get_tokens() {
    let (op, gw, _d) = op_and_gateway();
    let watch = OpTokenWatch::start(&op);
    let mut rp = RelyingParty::start(&op, &gw, POST_CLIENT, Duration::from_secs(25));
    let (_, id) = rp.ack(Duration::from_secs(10));
    let acked = Instant::now();

    // Instance 2 polls right after instance 1's first poll reached the OP: well inside the
    // 1 s interval (less the 250 ms tolerance).
    let first = wait_for_token_count(&op, 1, Duration::from_secs(5));
    let early = poll(&gw.addr(), POST_CLIENT, &id);
    assert!(
        first.elapsed() < Duration::from_secs(1) - TOLERANCE,
        "the early poll took {:?}; too late to test anything",
        first.elapsed()
    );
    let wait = retry_after(&early);
    assert!(
        (1..=3).contains(&wait),
        "Retry-After {wait} outside 1..=max_interval_seconds"
    );
    op.approve(&id);

    let outcome = rp.next(Duration::from_secs(20));
    let elapsed = acked.elapsed();
    assert_eq!(outcome["outcome"], "tokens", "{outcome}");
    assert_eq!(outcome["has_access_token"], true, "{outcome}");
    assert!(
        elapsed < Duration::from_secs(20),
        "openid-client needed {elapsed:?}"
    );
    assert_eq!(rp.exit_code(Duration::from_secs(5)), Some(0));

    let polls = watch.finish();
    assert!(
        (2..=3).contains(&polls.len()),
        "the OP saw {} polls: {polls:?}",
        polls.len()
    );
    // After instance 2's slow_down the interval was 3 s (1 s + 5 s, capped at 3 s).
    for gap in gaps(&polls) {
        assert!(
            gap + SAMPLING_SLACK >= Duration::from_secs(3) - TOLERANCE,
            "two polls reached the OP {gap:?} apart, inside the raised interval: {polls:?}"
        );
    }
    // Instance 2's slow_down, and at least one of openid-client's own: it did poll into the
    // raised interval it had not been told about, and still got through.
    let slow_downs = local_slow_downs(&gw);
    assert!(slow_downs >= 2, "{slow_downs} slow_down answers");
}

/// Guards `Retry-After` on `slow_down`: it names the whole seconds until a poll is accepted,
/// a refused poll does not push that moment back, and hammering does not raise the interval
/// past `max_interval_seconds`. Before, `slow_down` had no `Retry-After`, every refused poll
/// restarted the clock (so waiting the advertised time was not enough), and the interval
/// grew by 5 s per refused poll without end.
#[test]
fn slow_down_retry_after_names_the_wait_until_the_next_accepted_poll() {
    let (op, gw, _d) = op_and_gateway();
    let gw = gw.addr();
    let id = auth_req_id(&initiate(&gw, POST_CLIENT, "alice"));
    assert_eq!(poll(&gw, POST_CLIENT, &id).error(), "authorization_pending");
    assert_eq!(op.token_count(), 1);

    // Too soon: the interval becomes 1 s + 5 s, capped at 3 s, counted from the poll above.
    let first = retry_after(&poll(&gw, POST_CLIENT, &id));
    let refused_at = Instant::now();
    assert!(
        (2..=3).contains(&first),
        "Retry-After {first}: expected about 3 s - tolerance, rounded up"
    );
    // Hammering neither escalates past the cap nor moves the deadline back.
    for _ in 0..3 {
        let again = retry_after(&poll(&gw, POST_CLIENT, &id));
        assert!(again <= first, "Retry-After grew from {first} to {again}");
    }
    assert_eq!(op.token_count(), 1, "no refused poll reached the OP");

    // Waiting less than Retry-After is still too soon, and the answer counts down.
    thread::sleep(Duration::from_millis(first * 1000 / 2));
    let early = poll(&gw, POST_CLIENT, &id);
    let rest = retry_after(&early);
    assert!(
        rest < first,
        "Retry-After {rest} after waiting {:?}: a refused poll restarted the clock",
        refused_at.elapsed()
    );
    assert_eq!(op.token_count(), 1);

    // Waiting exactly Retry-After gets the poll through.
    thread::sleep(Duration::from_secs(rest));
    assert_eq!(poll(&gw, POST_CLIENT, &id).error(), "authorization_pending");
    assert_eq!(
        op.token_count(),
        2,
        "the poll after Retry-After reached the OP"
    );
}
