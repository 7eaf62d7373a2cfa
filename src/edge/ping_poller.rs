//! Polls the OP for the ping requests the gateway holds, at each one's enforced interval,
//! with the client's own credential, and pings the client once the OP has answered
//! (CIBA 10.2 on behalf of an OP that only polls).
//!
//! One loop finds the polls that fall due (`PingStore::due`) and runs each in its own
//! task, at most `ping.max_concurrent_polls` at once; a poll that finds every permit taken
//! waits for one, and the ones due after it wait in the store. Each poll is one
//! `op_client::exchange` through the same checks and profile translation as a client's
//! own poll. The next poll of a request is scheduled one interval after the OP's answer
//! arrived, so the OP never sees two polls of one id closer than its interval.

use crate::ciba::error::ErrorCode;
use crate::ciba::ids::AuthReqId;
use crate::ciba::ping::{self, PollOutcome};
use crate::ciba::pipeline::{self, Endpoint, OpAnswer, Outbound};
use crate::config::Config;
use crate::edge::notify::{Delivery, Notifier, NotifyTarget};
use crate::edge::op_client::{self, Connector};
use crate::edge::proxy::OpLink;
use crate::edge::reload::Runtime;
use crate::state::ping_store::{DuePoll, PingDue, PollResult};
use crate::state::pings::Pings;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The longest the loop sleeps: a request started meanwhile falls due one interval (at
/// least a second) after its ack, so it is never found late by more than this.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// The shortest the loop sleeps, so a store full of due polls cannot spin it.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// The ping poller, a background service.
pub struct PingPoller {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    op: Arc<OpLink>,
    store: Arc<Pings>,
    notifier: Notifier,
    /// Every ping client's notification endpoint: replaced by a reload for the clients it
    /// names, kept for the ones it drops, so a request held before still gets its ping.
    targets: Mutex<HashMap<String, NotifyTarget>>,
    connector: Connector,
    permits: Arc<Semaphore>,
}

impl PingPoller {
    /// A poller for `store`, reaching the OP through `op` and clients through `notifier`,
    /// under the configuration in force (`runtime`).
    pub fn new(
        runtime: Arc<Runtime>,
        op: Arc<OpLink>,
        store: Arc<Pings>,
        notifier: Notifier,
    ) -> PingPoller {
        let cfg = runtime.current().cfg.clone();
        let permits = cfg.ping.as_ref().map_or(1, |p| p.max_concurrent_polls);
        let mut targets = HashMap::new();
        add_targets(&mut targets, &cfg);
        PingPoller {
            inner: Arc::new(Inner {
                runtime,
                op,
                store,
                notifier,
                targets: Mutex::new(targets),
                connector: Connector::new(None),
                permits: Arc::new(Semaphore::new(permits)),
            }),
        }
    }
}

impl PingPoller {
    /// Takes the notification endpoints of a reloaded configuration's ping clients; the
    /// endpoints of clients it no longer names stay for the requests already held.
    pub fn follower(&self) -> crate::edge::reload::Follower {
        let inner = self.inner.clone();
        Box::new(move |live| {
            add_targets(&mut inner.targets.lock().expect("not poisoned"), &live.cfg)
        })
    }
}

/// Adds (or replaces) `cfg`'s ping clients' notification endpoints.
fn add_targets(targets: &mut HashMap<String, NotifyTarget>, cfg: &Config) {
    let Some(p) = &cfg.ping else { return };
    for (id, c) in &p.clients {
        let target = NotifyTarget {
            url: c.endpoint.clone(),
            allow_insecure: c.allow_insecure,
        };
        targets.insert(id.clone(), target);
    }
}

#[async_trait]
impl BackgroundService for PingPoller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // With Redis, no more than can start now are claimed, so no lease waits on a permit.
            let room = self.inner.permits.available_permits();
            let (due, next) = self.inner.store.due(Instant::now(), room).await;
            for job in due {
                let permit = tokio::select! {
                    p = self.inner.permits.clone().acquire_owned() => p.expect("never closed"),
                    _ = shutdown.changed() => return,
                };
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    let ping = inner.poll(job).await;
                    drop(permit);
                    if let Some((id, ping)) = ping {
                        inner.notify(id, ping).await;
                    }
                });
            }
            let wait = next
                .map_or(MAX_WAIT, |n| n.saturating_duration_since(Instant::now()))
                .clamp(MIN_WAIT, MAX_WAIT);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Inner {
    /// One poll; the ping to send when the OP's answer was terminal.
    async fn poll(&self, job: DuePoll) -> Option<(AuthReqId, PingDue)> {
        let result = match self.store.renew_every() {
            None => self.ask_op(&job).await,
            Some(every) => self.ask_op_renewing(&job, every).await,
        };
        let ping = self.store.polled(&job.id, result, Instant::now()).await?;
        Some((job.id, ping))
    }

    /// [`Inner::ask_op`], renewing this replica's lease on the request every `every` while
    /// the poll is in flight, so no other replica takes it over meanwhile.
    async fn ask_op_renewing(&self, job: &DuePoll, every: Duration) -> PollResult {
        let ask = self.ask_op(job);
        tokio::pin!(ask);
        loop {
            tokio::select! {
                r = &mut ask => return r,
                _ = tokio::time::sleep(every) => self.store.renew(&job.id).await,
            }
        }
    }

    /// Sends the poll and reads the OP's answer as a client's poll is read.
    async fn ask_op(&self, job: &DuePoll) -> PollResult {
        let again = PollResult::Again { slow_down: false };
        let (Some(peer), Some(endpoints)) = (self.op.peer(), self.op.endpoints.get()) else {
            return again;
        };
        let live = self.runtime.current();
        let path = live.cfg.profile.to_op_path(&endpoints.token).into_owned();
        let (body, authorization) = ping::poll_request(&job.id, job.credential.expose());
        let Some(request) = self.request(&live.cfg, &path, body.expose().len(), authorization)
        else {
            return again;
        };
        let body = Bytes::from(body.into_inner());
        let answer = match op_client::exchange(
            &self.connector,
            &peer,
            request,
            body,
            op_client::deadline(&live.cfg.upstream),
        )
        .await
        {
            Ok(a) => a,
            Err(f) => {
                tracing::warn!(
                    client_id = %job.client,
                    failure = f.as_str(),
                    "a ping request's poll of the OP failed; polling again after the interval"
                );
                return again;
            }
        };
        let checked = pipeline::check_response(OpAnswer {
            endpoint: Endpoint::Token,
            status: answer.status,
            content_type: answer.content_type(),
            body: &answer.body,
        });
        let Outbound::Json(value) = checked else {
            return again;
        };
        let t = live
            .cfg
            .profile
            .translate(Endpoint::Token, answer.status, value);
        match ping::poll_outcome(t.status, &t.body) {
            PollOutcome::Pending | PollOutcome::Retry => again,
            PollOutcome::SlowDown => {
                tracing::warn!(client_id = %job.client, "the OP answered a ping request's poll with slow_down");
                PollResult::Again { slow_down: true }
            }
            PollOutcome::Terminal => PollResult::Answer {
                status: t.status,
                body: serde_json::to_vec(&t.body).expect("a JSON value serializes"),
            },
        }
    }

    /// The poll's request header: the OP's token path, `Host`, the form's length, and the
    /// client's Basic credentials when it used them (marked sensitive).
    fn request(
        &self,
        cfg: &Config,
        path: &str,
        len: usize,
        authorization: Option<crate::ciba::ids::Secret<String>>,
    ) -> Option<RequestHeader> {
        let mut req = RequestHeader::build("POST", path.as_bytes(), Some(6)).ok()?;
        req.insert_header("host", cfg.upstream.authority()).ok()?;
        req.insert_header("content-type", "application/x-www-form-urlencoded")
            .ok()?;
        req.insert_header("content-length", len.to_string()).ok()?;
        req.insert_header("accept", "application/json").ok()?;
        req.insert_header(
            "user-agent",
            concat!("ciba-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .ok()?;
        if let Some(a) = authorization {
            let mut v = HeaderValue::from_str(a.expose()).ok()?;
            v.set_sensitive(true);
            req.insert_header("authorization", v).ok()?;
        }
        Some(req)
    }

    /// Pings the client (retries are the notifier's, up to the request's expiry), then
    /// forgets its notification token.
    async fn notify(&self, id: AuthReqId, ping: PingDue) {
        // The lock is let go before the ping is sent (the clone ends the statement).
        let target = self
            .targets
            .lock()
            .expect("not poisoned")
            .get(ping.client.as_str())
            .cloned();
        let delivery = match &target {
            Some(target) => {
                self.notifier
                    .ping(target, &ping.token, &id, ping.expires_at)
                    .await
            }
            // Not configured any more: nothing to reach.
            None => Delivery::GaveUp,
        };
        self.store.notified(&id);
        match delivery {
            Delivery::Delivered => {
                tracing::info!(client_id = %ping.client, "ping delivered")
            }
            Delivery::Refused { status } => {
                tracing::warn!(client_id = %ping.client, status, "ping refused by the client's notification endpoint")
            }
            Delivery::GaveUp => {
                tracing::warn!(client_id = %ping.client, "ping not delivered before the request expired")
            }
        }
    }
}

/// The 429 for a ping client's backchannel request while the queue is full.
pub fn queue_full(retry_after: Duration) -> crate::ciba::error::OAuthError {
    crate::ciba::error::OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many ping requests are waiting for the OpenID Provider; retry later",
    )
    .with_status(429)
    .with_retry_after(retry_after.as_secs().max(1))
    .with_reason("ping_queue")
}
