//! The ping notifier (CIBA 10.2) against a receiver on loopback: what one ping looks like,
//! which answers are retried, and that no endpoint in a refused range is ever contacted
//! (SSRF). Each test drives `Notifier` directly; names resolve through a scripted resolver,
//! so nothing leaves 127.0.0.1.

use crate::support::receiver::{Receiver, Reply};

mod tls;
use ciba_gateway::ciba::ids::{AuthReqId, Secret};
use ciba_gateway::edge::notify::{Delivery, Notifier, NotifyOptions, NotifyTarget, Resolve};
use ciba_gateway::metrics::PINGS;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "8d67dc78-7faa-4d41-aabd-67707b374255";

/// Names and their answers, one per lookup (the last repeats); any other name fails.
#[derive(Default)]
struct Names(Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>);

impl Names {
    fn with(answers: &[(&str, &[&[&str]])]) -> Arc<Names> {
        let map = answers
            .iter()
            .map(|(name, seq)| {
                let seq = seq
                    .iter()
                    .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
                    .collect();
                (name.to_string(), seq)
            })
            .collect();
        Arc::new(Names(Mutex::new(map)))
    }
}

#[async_trait::async_trait]
impl Resolve for Names {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let mut map = self.0.lock().unwrap();
        let seq = map
            .get_mut(host)
            .ok_or_else(|| io::Error::other("no such name"))?;
        let next = if seq.len() > 1 {
            seq.pop_front()
        } else {
            seq.front().cloned()
        };
        Ok(next.unwrap_or_default())
    }
}

/// Short timeouts and pauses, names from `names`.
fn notifier(names: Arc<Names>) -> Notifier {
    Notifier::new(NotifyOptions {
        connect_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        backoff_first: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
        resolver: names,
        ..NotifyOptions::default()
    })
}

fn target(url: &str, allow_insecure: bool) -> NotifyTarget {
    NotifyTarget {
        url: url.parse().unwrap(),
        allow_insecure,
    }
}

fn pings(outcome: &str) -> u64 {
    PINGS.with_label_values(&[outcome]).get()
}

/// Pings `url` for `id` with a deadline `within` from now; the outcome and how long it took.
async fn ping(n: &Notifier, t: &NotifyTarget, id: &str, within: Duration) -> (Delivery, Duration) {
    let start = Instant::now();
    let d = n
        .ping(
            t,
            &Secret::new(TOKEN.to_string()),
            &AuthReqId::new(id),
            start + within,
        )
        .await;
    (d, start.elapsed())
}

#[tokio::test]
async fn a_204_gets_exactly_one_ping_with_the_token_and_the_id_alone() {
    let rx = Receiver::start(vec![Reply::NoContent]);
    let n = notifier(Names::with(&[]));
    let before = pings("delivered");
    let id = r#"1c266114-a1be "quoted" \ </x>"#;
    let (d, _) = ping(&n, &target(&rx.url(), true), id, Duration::from_secs(5)).await;
    assert_eq!(d, Delivery::Delivered);
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/cb?client=1")
    );
    let body = r#"{"auth_req_id":"1c266114-a1be \"quoted\" \\ </x>"}"#;
    assert_eq!(String::from_utf8_lossy(&r.body), body);
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.sort();
    let mut want = vec![
        ("authorization", format!("Bearer {TOKEN}")),
        ("connection", "close".to_string()),
        ("content-length", body.len().to_string()),
        ("content-type", "application/json".to_string()),
        ("host", format!("127.0.0.1:{}", rx.port)),
        (
            "user-agent",
            format!("ciba-gateway/{}", env!("CARGO_PKG_VERSION")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    want.sort();
    assert_eq!(headers, want);
    assert_eq!(rx.connections(), 1);
    assert!(pings("delivered") > before);
}

#[tokio::test]
async fn a_200_with_a_body_is_delivered_and_the_body_left_unread() {
    let rx = Receiver::start(vec![Reply::Ok("x".repeat(200_000))]);
    let n = notifier(Names::with(&[]));
    let (d, took) = ping(
        &n,
        &target(&rx.url(), true),
        "id-200",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Delivered);
    assert_eq!(rx.requests().len(), 1);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_2xx_whose_body_stalls_is_delivered_within_the_read_timeout() {
    let rx = Receiver::start(vec![Reply::OkThenStall]);
    let n = notifier(Names::with(&[]));
    let (d, took) = ping(
        &n,
        &target(&rx.url(), true),
        "id-stall",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Delivered);
    assert_eq!(rx.requests().len(), 1);
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[tokio::test]
async fn a_500_then_204_is_retried_and_delivered_once() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::NoContent]);
    let n = notifier(Names::with(&[]));
    let retried = pings("retried");
    let (d, _) = ping(
        &n,
        &target(&rx.url(), true),
        "id-500",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Delivered);
    let got = rx.requests();
    assert_eq!(got.len(), 2, "one failed try, one delivery");
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(
        got[0].header("authorization"),
        got[1].header("authorization")
    );
    assert!(pings("retried") > retried);
}

#[tokio::test]
async fn server_errors_until_the_deadline_give_up() {
    let rx = Receiver::start(vec![Reply::Status(503)]);
    let n = notifier(Names::with(&[]));
    let (d, took) = ping(
        &n,
        &target(&rx.url(), true),
        "id-503",
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(d, Delivery::GaveUp);
    let tries = rx.requests().len();
    assert!((2..=25).contains(&tries), "{tries} tries");
    assert!(took <= Duration::from_millis(1100), "{took:?}");
}

#[tokio::test]
async fn a_401_or_403_or_404_is_refused_and_not_retried() {
    for status in [401, 403, 404] {
        let rx = Receiver::start(vec![Reply::Status(status), Reply::NoContent]);
        let n = notifier(Names::with(&[]));
        let t = target(&rx.url(), true);
        let (d, took) = ping(&n, &t, "id-4xx", Duration::from_secs(10)).await;
        assert_eq!(d, Delivery::Refused { status }, "{status}");
        assert_eq!(rx.requests().len(), 1, "{status} retried");
        assert!(took < Duration::from_secs(1), "{status}: {took:?}");
    }
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    let elsewhere = Receiver::start(vec![Reply::NoContent]);
    let rx = Receiver::start(vec![Reply::Redirect(elsewhere.url())]);
    let n = notifier(Names::with(&[]));
    let (d, _) = ping(
        &n,
        &target(&rx.url(), true),
        "id-302",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Refused { status: 302 });
    assert_eq!(rx.requests().len(), 1, "a redirect is not retried");
    assert_eq!(n.connections_attempted(), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_hanging_endpoint_is_bounded_by_the_deadline() {
    let rx = Receiver::start(vec![Reply::Hang]);
    let n = notifier(Names::with(&[]));
    let (d, took) = ping(
        &n,
        &target(&rx.url(), true),
        "id-hang",
        Duration::from_millis(1200),
    )
    .await;
    assert_eq!(d, Delivery::GaveUp);
    assert!(took <= Duration::from_millis(1300), "{took:?}");
    // Each try waits its read timeout (300 ms), then pauses: a few tries, no more.
    let tries = rx.requests().len();
    assert!((2..=4).contains(&tries), "{tries} tries");
}

#[tokio::test]
async fn a_deadline_already_past_sends_nothing() {
    let rx = Receiver::start(vec![Reply::NoContent]);
    let n = notifier(Names::with(&[]));
    let (d, _) = ping(&n, &target(&rx.url(), true), "id-late", Duration::ZERO).await;
    assert_eq!(d, Delivery::GaveUp);
    assert_eq!(n.connections_attempted(), 0);
    assert_eq!(rx.connections(), 0);
}

/// Endpoints refused before any connection: without `allow_insecure` every internal address
/// in any spelling, `localhost` and `http`; with it, still metadata and unspecified
/// addresses. The receiver listens on the port each URL names; nothing reaches it, and for
/// the addresses off loopback no connection is even attempted.
#[tokio::test]
async fn refused_endpoints_are_never_contacted() {
    let rx = Receiver::start(vec![Reply::NoContent]);
    let p = rx.port;
    let names = Names::with(&[
        ("loopback.test", &[&["127.0.0.1"]]),
        ("metadata.test", &[&["169.254.169.254"]]),
        ("internal.test", &[&["10.1.2.3"]]),
        ("cgnat.test", &[&["100.64.0.9"]]),
        ("mapped.test", &[&["::ffff:169.254.169.254"]]),
        ("mixed.test", &[&["93.184.216.34", "127.0.0.1"]]),
    ]);
    let n = notifier(names);
    let cases: Vec<(String, bool)> = vec![
        (format!("http://127.0.0.1:{p}/cb"), false),
        (format!("https://127.0.0.1:{p}/cb"), false),
        (format!("https://127.0.0.1.:{p}/cb"), false),
        (format!("https://2130706433:{p}/cb"), false),
        (format!("https://0177.0.0.1:{p}/cb"), false),
        (format!("https://0x7f.1:{p}/cb"), false),
        (format!("https://127.1:{p}/cb"), false),
        (format!("https://[::ffff:127.0.0.1]:{p}/cb"), false),
        (format!("https://[::1]:{p}/cb"), false),
        (format!("https://localhost:{p}/cb"), false),
        (format!("https://LOCALHOST.:{p}/cb"), false),
        (format!("http://localhost:{p}/cb"), false),
        (format!("https://loopback.test:{p}/cb"), false),
        (format!("https://mixed.test:{p}/cb"), false),
        ("https://169.254.169.254/latest/meta-data/".into(), false),
        ("https://[::ffff:a9fe:a9fe]/".into(), false),
        ("https://2852039166/".into(), false),
        ("https://metadata.test/latest/meta-data/".into(), false),
        ("https://internal.test/cb".into(), false),
        ("https://10.0.0.1/cb".into(), false),
        ("https://192.168.1.1/cb".into(), false),
        ("https://cgnat.test/cb".into(), false),
        ("https://user@client.example/cb".into(), false),
        ("http://169.254.169.254/latest/meta-data/".into(), true),
        ("http://[::ffff:a9fe:a9fe]/".into(), true),
        ("http://metadata.test/".into(), true),
        ("http://mapped.test/".into(), true),
        ("https://[fd00:ec2::254]/".into(), true),
        ("http://100.100.100.200/".into(), true),
        (format!("http://0.0.0.0:{p}/cb"), true),
        (format!("http://0:{p}/cb"), true),
    ];
    let blocked = pings("blocked");
    for (url, insecure) in &cases {
        let (d, took) = ping(
            &n,
            &target(url, *insecure),
            "id-ssrf",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(d, Delivery::GaveUp, "{url} insecure={insecure}");
        assert!(took < Duration::from_secs(1), "{url} retried: {took:?}");
        assert_eq!(n.connections_attempted(), 0, "{url} insecure={insecure}");
    }
    assert_eq!(rx.connections(), 0);
    assert!(pings("blocked") >= blocked + cases.len() as u64);
}

/// A name that answers loopback first and the metadata address next: the second try
/// resolves again, and is refused without a connection.
#[tokio::test]
async fn a_name_that_rebinds_between_tries_is_caught() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::NoContent]);
    let names = Names::with(&[("rebind.test", &[&["127.0.0.1"], &["169.254.169.254"]])]);
    let n = notifier(names);
    let url = format!("http://rebind.test:{}/cb", rx.port);
    let (d, _) = ping(&n, &target(&url, true), "id-rebind", Duration::from_secs(5)).await;
    assert_eq!(d, Delivery::GaveUp);
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(n.connections_attempted(), 1);
}

#[tokio::test]
async fn an_allowed_name_is_resolved_and_sent_with_its_own_host_header() {
    let rx = Receiver::start(vec![Reply::NoContent]);
    let n = notifier(Names::with(&[("client.test", &[&["127.0.0.1"]])]));
    let url = format!("http://Client.Test:{}/cb", rx.port);
    let (d, _) = ping(&n, &target(&url, true), "id-name", Duration::from_secs(5)).await;
    assert_eq!(d, Delivery::Delivered);
    let got = rx.requests();
    assert_eq!(
        got[0].header("host"),
        Some(format!("Client.Test:{}", rx.port).as_str())
    );
}

#[tokio::test]
async fn localhost_with_allow_insecure_uses_the_system_resolver() {
    let rx = Receiver::start(vec![Reply::NoContent]);
    let n = Notifier::new(NotifyOptions {
        connect_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        ..NotifyOptions::default()
    });
    let url = format!("http://localhost:{}/cb", rx.port);
    let (d, _) = ping(
        &n,
        &target(&url, true),
        "id-localhost",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Delivered);
    assert_eq!(rx.requests().len(), 1);
}
