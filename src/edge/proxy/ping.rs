//! The CIBA steps for clients the gateway pings (CIBA 10.2 on behalf of an OP that only
//! polls): taking the notification token and the credential at initiation, starting the
//! polling once the OP acknowledged, and redeeming the held answer at the token endpoint.

use super::answer::{no_store, write_json};
use super::{header_str, Gateway, Stop};
use crate::ciba::ids::{AuthReqId, ClientId, Secret};
use crate::ciba::ping::{self, PingStart};
use crate::ciba::pipeline::{self, Accepted, Endpoint};
use crate::ciba::polling::OpVerdict;
use crate::ciba::profile::Translated;
use crate::ciba::translate;
use crate::edge::ping_poller::queue_full;
use crate::edge::reload::Live;
use crate::state::ping_store::{Redeemed, Slot};
use bytes::Bytes;
use pingora::proxy::Session;
use std::time::{Duration, Instant};

/// A ping client's backchannel request on its way to the OP: what it left with the
/// gateway, and its place in the queue.
pub(super) type Pinging = Option<(PingStart, Slot)>;

/// The OP's answer a redemption gets: status and JSON body.
pub(super) type Held = (u16, Secret<Vec<u8>>);

impl Gateway {
    /// Backchannel, a client the gateway pings: takes the notification token out of the
    /// form (the OP gets a poll-mode request) and the replayable credential (presented by
    /// the client's configured method, else `invalid_client`), and a place in the queue
    /// (429 when it is full, before the OP sees the request).
    pub(super) async fn ping_initiation(
        &self,
        live: &Live,
        session: &Session,
        endpoint: Endpoint,
        accepted: &mut Accepted,
    ) -> Result<Pinging, Stop> {
        let (Endpoint::Backchannel, Some(store), Some(client), Some(cfg)) =
            (endpoint, &self.pings, &accepted.client, &live.cfg.ping)
        else {
            return Ok(None);
        };
        let Some(registered) = cfg.clients.get(client.as_str()) else {
            return Ok(None);
        };
        let method = registered.auth_method;
        let authorization = header_str(session.req_header(), http::header::AUTHORIZATION);
        let start = ping::take_ping_request(&mut accepted.form, authorization, method)
            .map_err(Stop::validation)?;
        let slot = store
            .reserve()
            .await?
            .map_err(|_| queue_full(live.cfg.polling.policy.min_interval))?;
        Ok(Some((start, slot)))
    }

    /// After the OP's 200 acknowledgement (already rewritten with the enforced interval and
    /// expiry): the gateway starts polling for it.
    pub(super) async fn start_pinging(
        &self,
        pinging: Pinging,
        client: Option<&ClientId>,
        translated: &Translated,
    ) {
        let (Some((start, slot)), Some(store), Some(client)) = (pinging, &self.pings, client)
        else {
            return;
        };
        if translated.status != 200 {
            return;
        }
        let Ok(ack) = translate::parse_ack(&translated.body) else {
            return;
        };
        store
            .start(
                slot,
                ack.auth_req_id,
                client.clone(),
                &start.credential,
                &start.notification_token,
                Duration::from_secs(ack.interval.unwrap_or(5)),
                Duration::from_secs(ack.expires_in),
                Instant::now(),
            )
            .await;
    }

    /// Token endpoint, a CIBA poll for a ping request: answered by the gateway, never the
    /// OP. Before the OP's answer, under the poll rules (`slow_down`, `expired_token`) and
    /// otherwise `authorization_pending`; after it, the held answer, once, to the client that
    /// started the request with the same credential (`invalid_grant` for another client or
    /// a second time, `invalid_client` for another credential). `None`: not a ping request.
    pub(super) async fn ping_redemption(
        &self,
        live: &Live,
        session: &Session,
        endpoint: Endpoint,
        accepted: &Accepted,
    ) -> Result<Option<Held>, Stop> {
        let (Endpoint::Token, Some(store), Some(client)) =
            (endpoint, &self.pings, &accepted.client)
        else {
            return Ok(None);
        };
        let Some(id) = pipeline::ciba_poll(&accepted.form) else {
            return Ok(None);
        };
        let id = AuthReqId::new(id);
        let authorization = header_str(session.req_header(), http::header::AUTHORIZATION);
        let credential = ping::presented_credential(&accepted.form, authorization).ok();
        match store
            .redeem(&id, client, credential.as_ref(), Instant::now())
            .await?
        {
            Redeemed::NotPing => Ok(None),
            Redeemed::WrongClient => Err(ping::wrong_client().into()),
            Redeemed::WrongCredential => Err(ping::wrong_credential().into()),
            Redeemed::Used => Err(ping::used_up().into()),
            Redeemed::Waiting => {
                self.poll_decision(live, &id, client).await?;
                Err(ping::pending().into())
            }
            Redeemed::Answer(status, body) => {
                let value = serde_json::from_slice(body.expose()).unwrap_or_default();
                // The poll rules remember the end, for polls after the record is gone.
                let verdict = match translate::classify_token_answer(status, &value) {
                    OpVerdict::Expired => OpVerdict::Expired,
                    _ => OpVerdict::Ended,
                };
                self.store.report(&id, client, verdict).await;
                Ok(Some((status, body)))
            }
        }
    }
}

/// Writes a held answer as the OP gave it to the gateway's poll (translated), uncached.
pub(super) async fn write_held(session: &mut Session, (status, body): Held) -> Result<(), Stop> {
    let mut h = http::HeaderMap::with_capacity(4);
    no_store(&mut h);
    write_json(session, status, h, Bytes::from(body.into_inner())).await?;
    Ok(())
}
