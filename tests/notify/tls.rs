//! The notifier over real TLS: a loopback receiver presenting a certificate made for the
//! test, a private CA trusted through `NotifyOptions::extra_roots`. The endpoint's name
//! resolves to 127.0.0.1 through the scripted resolver, which `allow_insecure` permits;
//! the certificate is checked against the URL's name, never the address.

use super::{ping, pings, target, Names};
use crate::support::pki::{self, Ca};
use crate::support::receiver::{Receiver, Reply, Tls};
use ciba_gateway::config::pem_roots;
use ciba_gateway::edge::notify::{Delivery, Notifier, NotifyOptions};
use std::time::{Duration, Instant};

const NAME: &str = "client.test";

/// Short timeouts and pauses, `client.test` at 127.0.0.1, trusting `roots` besides the
/// system's.
fn notifier(roots: Vec<Vec<u8>>) -> Notifier {
    Notifier::new(NotifyOptions {
        connect_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        backoff_first: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
        resolver: Names::with(&[(NAME, &[&["127.0.0.1"]])]),
        extra_roots: roots,
        ..NotifyOptions::default()
    })
}

/// The CA's roots as the configuration reads them from its PEM file.
fn trusting(ca: &Ca) -> Vec<Vec<u8>> {
    let roots = pem_roots(ca.pem().as_bytes()).unwrap();
    assert_eq!(roots, vec![ca.der()]);
    roots
}

/// Waits until `rx` has counted `n` failed handshakes, or a second has passed.
fn failed_handshakes(rx: &Receiver, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(1);
    while rx.handshakes_failed() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    rx.handshakes_failed()
}

#[tokio::test]
async fn a_certificate_for_the_name_from_a_trusted_private_ca_is_delivered() {
    let ca = Ca::new("Test Root");
    let rx = Receiver::start_tls(vec![Reply::NoContent], ca.leaf(&[NAME]));
    let n = notifier(trusting(&ca));
    let url = rx.https_url(NAME);
    let (d, _) = ping(&n, &target(&url, true), "id-tls", Duration::from_secs(5)).await;
    assert_eq!(d, Delivery::Delivered);
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/cb?client=1");
    assert_eq!(
        got[0].header("host"),
        Some(format!("{NAME}:{}", rx.port).as_str())
    );
    assert_eq!(got[0].body, br#"{"auth_req_id":"id-tls"}"#);
    assert_eq!((rx.connections(), rx.handshakes_failed()), (1, 0));
}

/// Each certificate is refused at the handshake: the ping is tried until its deadline
/// (a certificate can be fixed while the request lives) and no request is ever written.
#[tokio::test]
async fn certificates_that_do_not_prove_the_name_are_refused_before_any_request() {
    let ca = Ca::new("Test Root");
    let stranger = Ca::new("Unknown Root");
    let cases: Vec<(&str, Tls, Vec<Vec<u8>>)> = vec![
        ("for another name", ca.leaf(&["other.test"]), trusting(&ca)),
        (
            "for the address only",
            ca.leaf(&["127.0.0.1"]),
            trusting(&ca),
        ),
        ("expired", ca.expired_leaf(&[NAME]), trusting(&ca)),
        ("self-signed", pki::self_signed(&[NAME]), trusting(&ca)),
        ("from an unknown CA", stranger.leaf(&[NAME]), trusting(&ca)),
        ("from a CA not configured", ca.leaf(&[NAME]), Vec::new()),
    ];
    for (what, tls, roots) in cases {
        let rx = Receiver::start_tls(vec![Reply::NoContent], tls);
        let n = notifier(roots);
        let (gave_up, retried) = (pings("gave_up"), pings("retried"));
        let url = rx.https_url(NAME);
        let (d, took) = ping(
            &n,
            &target(&url, true),
            "id-bad",
            Duration::from_millis(600),
        )
        .await;
        assert_eq!(d, Delivery::GaveUp, "{what}");
        assert!(took < Duration::from_secs(1), "{what}: {took:?}");
        let tries = n.connections_attempted() as usize;
        assert!(tries >= 2, "{what}: retried to the deadline, {tries} tries");
        assert_eq!(
            failed_handshakes(&rx, tries),
            tries,
            "{what}: every handshake failed"
        );
        assert_eq!(rx.connections(), tries, "{what}");
        assert!(rx.requests().is_empty(), "{what}: a request was read");
        assert!(
            pings("gave_up") > gave_up && pings("retried") > retried,
            "{what}"
        );
    }
}

#[tokio::test]
async fn an_address_endpoint_is_checked_against_an_ip_name() {
    let ca = Ca::new("Test Root");
    let url_of = |rx: &Receiver| format!("https://127.0.0.1:{}/cb", rx.port);
    let rx = Receiver::start_tls(vec![Reply::NoContent], ca.leaf(&["127.0.0.1"]));
    let n = notifier(trusting(&ca));
    let (d, _) = ping(
        &n,
        &target(&url_of(&rx), true),
        "id-ip",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d, Delivery::Delivered);
    assert_eq!(rx.requests().len(), 1);
    // A certificate naming only a host name does not prove an address.
    let rx = Receiver::start_tls(vec![Reply::NoContent], ca.leaf(&[NAME]));
    let n = notifier(trusting(&ca));
    let (d, _) = ping(
        &n,
        &target(&url_of(&rx), true),
        "id-ip",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(d, Delivery::GaveUp);
    assert!(rx.requests().is_empty());
}

#[test]
fn pem_roots_refuses_what_is_not_a_root_certificate() {
    let ca = Ca::new("Test Root");
    let two = format!("{}\n{}", ca.pem(), Ca::new("Second").pem());
    assert_eq!(pem_roots(two.as_bytes()).unwrap().len(), 2);
    for (pem, says) in [
        (String::new(), "no certificate"),
        ("hello".to_string(), "no certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
            "certificate 1",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_string(),
            "certificate 1",
        ),
        (
            format!("{}-----BEGIN CERTIFICATE-----\nMIIB\n", ca.pem()),
            "certificate 2",
        ),
        (
            format!(
                "{}{}",
                ca.pem(),
                rcgen::KeyPair::generate().unwrap().serialize_pem()
            ),
            "private key",
        ),
    ] {
        let e = pem_roots(pem.as_bytes()).unwrap_err();
        assert!(e.contains(says), "{pem:?}: {e}");
    }
}
