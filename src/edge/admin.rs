//! The metrics listener: `/metrics`, `/healthz`, `/readyz`.

use crate::edge::in_flight;
use crate::edge::proxy::OpLink;
use crate::metrics;
use crate::state::store::Store;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// Serves metrics and health on their own listener, away from client traffic.
pub struct AdminApp {
    /// Readiness comes from here.
    pub op: Arc<OpLink>,
    /// The poll store, whose size is reported at each scrape.
    pub store: Store,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => {
                if let Some(n) = self.store.tracked().await {
                    metrics::TRACKED.set(n as i64);
                }
                // Read here rather than set where readiness changes: its two parts are set
                // by different tasks, which could otherwise leave a stale value.
                metrics::READY.set(i64::from(self.op.is_ready()));
                metrics::IN_FLIGHT.set(in_flight::count() as i64);
                (200, "text/plain; version=0.0.4", metrics::render())
            }
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.op.is_ready() => (200, "text/plain", b"ready\n".to_vec()),
            "/readyz" => (
                503,
                "text/plain",
                b"not ready: the OP's address or endpoints are not known yet\n".to_vec(),
            ),
            _ => (
                404,
                "text/plain",
                b"not found; try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .expect("static parts form a valid response")
    }
}
