//! Prometheus metrics, registered in the default registry.
//!
//! Labels only ever take values from closed sets (endpoint names, status codes, error
//! codes): nothing a client sends can create a new series.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};
use std::sync::OnceLock;

/// Requests by endpoint and final status.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_requests_total",
        "Requests handled, by endpoint, HTTP status and client (configured ids only, else `other`).",
        &["endpoint", "status", "client"]
    )
    .expect("metric registers once")
});

/// Answers the gateway gave itself, by endpoint and error code.
pub static LOCAL_ANSWERS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_local_answers_total",
        "Errors answered by the gateway without the OP, by endpoint and error code.",
        &["endpoint", "error"]
    )
    .expect("metric registers once")
});

/// Requests refused by a rate limit, by endpoint and key kind.
pub static RATE_LIMITED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_rate_limited_total",
        "Requests refused with 429 by a rate limit, by endpoint and key kind (client, address).",
        &["endpoint", "key"]
    )
    .expect("metric registers once")
});

/// Requests refused by validation, by endpoint and reason.
pub static VALIDATION_REFUSALS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_validation_refusals_total",
        "CIBA requests refused by the gateway's validation before the OP, by endpoint and reason.",
        &["endpoint", "reason"]
    )
    .expect("metric registers once")
});

/// `login_hint_token` inputs by format, and whether they were repaired.
pub static LOGIN_HINT_TOKENS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_login_hint_tokens_total",
        "login_hint_token values accepted, by input format (json, base64, base64url, jwt) and whether they were repaired.",
        &["format", "repaired"]
    )
    .expect("metric registers once")
});

/// OP error codes outside the spec and the profile, passed through.
pub static UPSTREAM_UNKNOWN_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_upstream_unknown_errors_total",
        "OP answers with an error code neither the spec nor the profile knows, passed through, by endpoint.",
        &["endpoint"]
    )
    .expect("metric registers once")
});

/// Time of shared-store operations, by operation.
pub static STORE_SECONDS: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "ciba_gateway_store_duration_seconds",
        "Time of operations on the shared state store (Redis), by operation.",
        &["op"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .expect("metric registers once")
});

/// Failed shared-store operations, by operation.
pub static STORE_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_store_errors_total",
        "Failed operations on the shared state store (Redis), by operation.",
        &["op"]
    )
    .expect("metric registers once")
});

/// Upstream failures by kind.
pub static UPSTREAM_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_upstream_failures_total",
        "Failed exchanges with the OP, by kind (connect, timeout, reset, bad_response).",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Upstream latency by endpoint.
pub static UPSTREAM_SECONDS: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "ciba_gateway_upstream_duration_seconds",
        "Time from the request reaching the gateway to the OP's answer header, by endpoint.",
        &["endpoint"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registers once")
});

/// Failed or empty lookups of the OP's host name.
pub static UPSTREAM_RESOLVE_FAILURES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "ciba_gateway_upstream_resolve_failures_total",
        "Lookups of upstream.url's host name that failed or gave no address (the last address is kept)."
    )
    .expect("metric registers once")
});

/// 1 once the CIBA endpoints and the OP's address are known.
pub static READY: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_ready",
        "1 when the gateway knows the OP's address and CIBA endpoints and serves them."
    )
    .expect("metric registers once")
});

/// Tracked `auth_req_id`s, read from the store at each scrape.
pub static TRACKED: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_tracked_auth_req_ids",
        "auth_req_ids whose polling the gateway enforces (tombstones included), read at scrape time."
    )
    .expect("metric registers once")
});

/// Requests being answered now, read at each scrape.
pub static IN_FLIGHT: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_requests_in_flight",
        "Requests whose header has been read and whose answer is not finished yet, read at scrape time."
    )
    .expect("metric registers once")
});

/// Constant 1 labelled with the version.
pub static BUILD_INFO: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "ciba_gateway_build_info",
        "Constant 1, labelled with the gateway version.",
        &["version"]
    )
    .expect("metric registers once")
});

/// Client connections or requests cut at the edge, by reason.
pub static CONNECTIONS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_connections_refused_total",
        "Client connections refused or cut by the edge guard, by reason (header_timeout, header_too_large, malformed_header, body_timeout, max_connections, max_connections_per_address, tls_handshake_timeout, tls_handshake_failed).",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Client connections open now.
pub static CLIENT_CONNECTIONS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_client_connections",
        "Client connections open on the proxy listener (those holding a place under server.max_connections)."
    )
    .expect("metric registers once")
});

/// CIBA ping notifications sent to clients, by outcome.
pub static PINGS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_pings_total",
        "Ping notifications to clients' endpoints (CIBA 10.2), by outcome: delivered, refused (4xx, 3xx: not retried), retried (one per try after a 5xx, timeout or connection failure), gave_up (the request expired first), blocked (the endpoint's address is refused: loopback, private, metadata...).",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Configuration reloads (`SIGHUP`), by result: `ok` (swapped in) or `invalid` (refused,
/// the running configuration stays).
pub static CONFIG_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_config_reloads_total",
        "Configuration reloads on SIGHUP, by result: ok (applied) or invalid (refused; the running configuration stays).",
        &["result"]
    )
    .expect("metric registers once")
});

/// When the configuration in force was loaded, in Unix seconds.
pub static CONFIG_LOADED: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_config_loaded_timestamp_seconds",
        "When the configuration in force was loaded (start-up or the last valid reload), in Unix seconds."
    )
    .expect("metric registers once")
});

/// The first six bytes of the SHA-256 of the configuration file in force, as a number.
pub static CONFIG_HASH: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_config_hash",
        "The first 48 bits of the SHA-256 of the configuration file in force, as a number: tells replicas' files apart."
    )
    .expect("metric registers once")
});

/// The results `CONFIG_RELOADS` counts, so every series exists from the first scrape.
pub const RELOAD_RESULTS: [&str; 2] = ["ok", "invalid"];

/// The outcomes `PINGS` counts, so every series exists from the first scrape.
pub const PING_OUTCOMES: [&str; 5] = ["delivered", "refused", "retried", "gave_up", "blocked"];

/// PAR bridge events (`[bridge]`), by event.
pub static BRIDGE_EVENTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_bridge_events_total",
        "PAR bridge events: initiated (acknowledged), op_refused (the OP refused the authorization request), approved, denied (the user cancelled or refused), failed (code exchange or ID token refused), invalid_callback (forged, replayed or expired state), redeemed (tokens handed to the client), notified and notify_failed (the authentication-device notifier).",
        &["event"]
    )
    .expect("metric registers once")
});

/// Fetches of clients' `jwks_uri` (FAPI), by outcome.
pub static JWKS_FETCHES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_jwks_fetches_total",
        "Fetches of FAPI clients' jwks_uri, by outcome: ok, failed (refused address, no answer, status, too large, too many keys, not a JWK Set).",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// The events `BRIDGE_EVENTS` counts, so every series exists from the first scrape.
pub const BRIDGE_EVENT_LABELS: [&str; 9] = [
    "initiated",
    "op_refused",
    "approved",
    "denied",
    "failed",
    "invalid_callback",
    "redeemed",
    "notified",
    "notify_failed",
];

/// Counts one bridge event (one of [`BRIDGE_EVENT_LABELS`]).
pub fn bridge_event(event: &'static str) {
    BRIDGE_EVENTS.with_label_values(&[event]).inc();
}

/// The reasons `CONNECTIONS_REFUSED` counts, so every series exists from the first scrape.
pub const REFUSAL_REASONS: [&str; 8] = [
    "header_timeout",
    "header_too_large",
    "malformed_header",
    "body_timeout",
    "max_connections",
    "max_connections_per_address",
    "tls_handshake_timeout",
    "tls_handshake_failed",
];

/// Touches every metric so that all series families appear from the first scrape.
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Lazy::force(&REQUESTS);
    Lazy::force(&LOCAL_ANSWERS);
    Lazy::force(&UPSTREAM_FAILURES);
    Lazy::force(&RATE_LIMITED);
    Lazy::force(&VALIDATION_REFUSALS);
    Lazy::force(&LOGIN_HINT_TOKENS);
    Lazy::force(&UPSTREAM_UNKNOWN_ERRORS);
    Lazy::force(&STORE_SECONDS);
    Lazy::force(&STORE_ERRORS);
    Lazy::force(&UPSTREAM_SECONDS);
    Lazy::force(&UPSTREAM_RESOLVE_FAILURES);
    for reason in REFUSAL_REASONS {
        CONNECTIONS_REFUSED.with_label_values(&[reason]);
    }
    Lazy::force(&CLIENT_CONNECTIONS);
    for outcome in PING_OUTCOMES {
        PINGS.with_label_values(&[outcome]);
    }
    for result in RELOAD_RESULTS {
        CONFIG_RELOADS.with_label_values(&[result]);
    }
    Lazy::force(&CONFIG_LOADED);
    Lazy::force(&CONFIG_HASH);
    for outcome in TLS_RELOAD_OUTCOMES {
        TLS_RELOADS.with_label_values(&[outcome]);
    }
    for event in BRIDGE_EVENT_LABELS {
        BRIDGE_EVENTS.with_label_values(&[event]);
    }
    for outcome in ["ok", "failed"] {
        JWKS_FETCHES.with_label_values(&[outcome]);
    }
    READY.set(0);
    TRACKED.set(0);
    IN_FLIGHT.set(0);
}

/// The text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&prometheus::gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    out
}

/// Status codes with a label of their own; any other is counted by its class (`4xx`...).
const STATUS_LABELS: [(u16, &str); 19] = [
    (0, "0"),
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (303, "303"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];
const CLASS_LABELS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUS_SLOTS: usize = STATUS_LABELS.len() + CLASS_LABELS.len();
/// The `endpoint` label values, one per proxy route (a test in `proxy` holds them equal).
pub const ENDPOINT_LABELS: [&str; 4] = ["other", "backchannel", "token", "discovery"];
const CLIENT_LABELS: [&str; 2] = ["none", "other"];

/// A status's label, from a closed set, and its slot in that set.
pub fn status_label(status: u16) -> (usize, &'static str) {
    if let Some(i) = STATUS_LABELS.iter().position(|(code, _)| *code == status) {
        return (i, STATUS_LABELS[i].1);
    }
    let class = match status / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    };
    (STATUS_LABELS.len() + class, CLASS_LABELS[class])
}

/// Handles of the metrics every request updates, each resolved on first use: a
/// `with_label_values` lookup hashes the labels and takes a lock, on every request. A
/// series appears only once counted, as with the lookup.
pub struct RequestMetrics {
    /// `REQUESTS` by endpoint, status slot and client kind, for requests without a
    /// configured client id.
    counts: Vec<OnceLock<IntCounter>>,
    /// `UPSTREAM_SECONDS` by endpoint.
    upstream: [OnceLock<Histogram>; ENDPOINT_LABELS.len()],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let n = ENDPOINT_LABELS.len() * STATUS_SLOTS * CLIENT_LABELS.len();
        RequestMetrics {
            counts: (0..n).map(|_| OnceLock::new()).collect(),
            upstream: Default::default(),
        }
    }
}

impl RequestMetrics {
    /// Counts one request in `ciba_gateway_requests_total`.
    pub fn count(&self, endpoint: &'static str, status: u16, client: &str) {
        let (status_slot, status) = status_label(status);
        let slots = (
            ENDPOINT_LABELS.iter().position(|e| *e == endpoint),
            CLIENT_LABELS.iter().position(|c| *c == client),
        );
        let (Some(e), Some(c)) = slots else {
            // A configured client id: its own series, looked up each time.
            REQUESTS
                .with_label_values(&[endpoint, status, client])
                .inc();
            return;
        };
        let i = (e * STATUS_SLOTS + status_slot) * CLIENT_LABELS.len() + c;
        self.counts[i]
            .get_or_init(|| REQUESTS.with_label_values(&[endpoint, status, client]))
            .inc();
    }

    /// Records the OP's time to answer in `ciba_gateway_upstream_duration_seconds`.
    pub fn upstream_seconds(&self, endpoint: &'static str, seconds: f64) {
        match ENDPOINT_LABELS.iter().position(|e| *e == endpoint) {
            Some(e) => self.upstream[e]
                .get_or_init(|| UPSTREAM_SECONDS.with_label_values(&[endpoint]))
                .observe(seconds),
            None => UPSTREAM_SECONDS
                .with_label_values(&[endpoint])
                .observe(seconds),
        }
    }
}

/// Counts one answer the gateway gave itself in `ciba_gateway_local_answers_total`; each
/// endpoint's series for each code is looked up once, not on every answer.
pub fn count_local_answer(endpoint: &'static str, code: crate::ciba::error::ErrorCode) {
    use crate::ciba::error::ALL;
    static SERIES: [[OnceLock<IntCounter>; ALL.len()]; ENDPOINT_LABELS.len()] =
        [const { [const { OnceLock::new() }; ALL.len()] }; ENDPOINT_LABELS.len()];
    let labels = [endpoint, code.as_str()];
    match ENDPOINT_LABELS.iter().position(|e| *e == endpoint) {
        Some(e) => SERIES[e][code as usize]
            .get_or_init(|| LOCAL_ANSWERS.with_label_values(&labels))
            .inc(),
        None => LOCAL_ANSWERS.with_label_values(&labels).inc(),
    }
}

/// Loads of a new listener certificate (rotation), by outcome.
pub static TLS_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "ciba_gateway_tls_reloads_total",
        "New listener certificate and key pairs, by outcome: loaded (in force for new handshakes), refused (invalid; the previous pair stays in force).",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// The outcomes `TLS_RELOADS` counts.
pub const TLS_RELOAD_OUTCOMES: [&str; 2] = ["loaded", "refused"];

#[cfg(test)]
mod tests {
    use super::*;

    fn count(endpoint: &str, status: &str, client: &str) -> u64 {
        REQUESTS
            .with_label_values(&[endpoint, status, client])
            .get()
    }

    #[test]
    fn every_status_has_one_closed_label() {
        for (code, label) in STATUS_LABELS {
            assert_eq!(status_label(code).1, label);
        }
        assert_eq!(status_label(418).1, "4xx");
        assert_eq!(status_label(599).1, "5xx");
        assert_eq!(status_label(999).1, "5xx");
        assert_eq!(status_label(102).1, "1xx");
        assert_eq!(status_label(207).1, "2xx");
        let mut slots: Vec<usize> = (0..1000).map(|s| status_label(s).0).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), STATUS_SLOTS);
        assert!(slots.iter().all(|&s| s < STATUS_SLOTS));
    }

    #[test]
    fn cached_counters_are_the_labelled_series() {
        let counts = RequestMetrics::default();
        // A label set no other test uses: the registry is shared by the test binary.
        let before = count("discovery", "4xx", "none");
        counts.count("discovery", 418, "none");
        counts.count("discovery", 451, "none");
        assert_eq!(count("discovery", "4xx", "none"), before + 2);

        let before = (count("token", "0", "other"), count("token", "0", "none"));
        counts.count("token", 0, "other");
        assert_eq!(count("token", "0", "other"), before.0 + 1);
        assert_eq!(count("token", "0", "none"), before.1, "a different cell");

        let samples = |e: &str| UPSTREAM_SECONDS.with_label_values(&[e]).get_sample_count();
        let before = samples("discovery");
        counts.upstream_seconds("discovery", 0.25);
        counts.upstream_seconds("discovery", 0.5);
        assert_eq!(samples("discovery"), before + 2);

        let before = count("backchannel", "503", "configured-client-7");
        counts.count("backchannel", 503, "configured-client-7");
        counts.count("backchannel", 503, "configured-client-7");
        assert_eq!(
            count("backchannel", "503", "configured-client-7"),
            before + 2
        );
    }
}
