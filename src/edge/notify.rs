//! CIBA 10.2 ping notifications to a client's notification endpoint.

use crate::ciba::ids::{AuthReqId, Secret};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where and how one client is notified (built from the configuration by the poller).
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// https, or http only with `allow_insecure`.
    pub url: http::Uri,
    /// Allows http:// and loopback/private/link-local addresses.
    pub allow_insecure: bool,
}

/// The result of delivering one ping, retries included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The endpoint answered 2xx.
    Delivered,
    /// The endpoint refused it with this status.
    Refused {
        /// The endpoint's status.
        status: u16,
    },
    /// No answer before the deadline.
    GaveUp,
}

/// Timeouts for notifications.
#[derive(Debug, Clone, Default)]
pub struct NotifyOptions {
    /// Per attempt; two seconds when zero.
    pub timeout: Duration,
}

/// Sends CIBA 10.2 pings; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    opts: NotifyOptions,
}

impl Notifier {
    /// A notifier with these options.
    pub fn new(opts: NotifyOptions) -> Self {
        Notifier { opts }
    }

    /// POSTs `{"auth_req_id": ...}` with the client's bearer token to `target`.
    pub async fn ping(
        &self,
        target: &NotifyTarget,
        bearer: &Secret<String>,
        auth_req_id: &AuthReqId,
        deadline: Instant,
    ) -> Delivery {
        let timeout = if self.opts.timeout.is_zero() {
            Duration::from_secs(2)
        } else {
            self.opts.timeout
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(timeout);
        match tokio::time::timeout(left, post(target, bearer, auth_req_id)).await {
            Ok(Some(status)) if (200..300).contains(&status) => Delivery::Delivered,
            Ok(Some(status)) => Delivery::Refused { status },
            _ => Delivery::GaveUp,
        }
    }
}

async fn post(target: &NotifyTarget, bearer: &Secret<String>, id: &AuthReqId) -> Option<u16> {
    if target.url.scheme_str() != Some("http") || !target.allow_insecure {
        return None;
    }
    let host = target.url.host()?;
    let port = target.url.port_u16().unwrap_or(80);
    let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    if !ip.is_loopback() {
        return None;
    }
    let body = serde_json::json!({ "auth_req_id": id.as_str() }).to_string();
    let path = target.url.path_and_query().map_or("/", |p| p.as_str());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bearer.expose(),
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}
