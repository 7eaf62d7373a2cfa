//! Prometheus metrics, registered in the default registry.
//!
//! Labels only ever take values from closed sets (endpoint names, status codes, error
//! codes): nothing a client sends can create a new series.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
};

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

/// 1 once the CIBA endpoints are known.
pub static READY: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "ciba_gateway_ready",
        "1 when the gateway knows the OP's CIBA endpoints and serves them."
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

/// Constant 1 labelled with the version.
pub static BUILD_INFO: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "ciba_gateway_build_info",
        "Constant 1, labelled with the gateway version.",
        &["version"]
    )
    .expect("metric registers once")
});

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
    READY.set(0);
    TRACKED.set(0);
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
