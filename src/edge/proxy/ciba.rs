//! The two CIBA endpoints, as named steps in the order they run. Each step either passes
//! what the next needs or stops with a [`Stop`]; `finish` (in `refusal`) is the one place
//! where a stop becomes an answer, and `logging` counts what the steps noted in the
//! request's [`Tally`](super::tally::Tally).
//!
//! 1. the per-address rate limit;
//! 2. POST only, the whole body within its deadline and cap;
//! 3. the request's checks (`pipeline::check_request`: form, client, validation), and for
//!    a client registered for a TLS method its certificate (`client_cert`, RFC 8705 2);
//! 4. the per-client rate limit; the FAPI-CIBA profile's checks (`fapi`) for the clients
//!    it covers;
//!    for a client the gateway pings (`ping`): its notification token and credential taken
//!    at the backchannel endpoint, its held answer redeemed at the token endpoint;
//! 5. admission (backchannel: room to track the ack) or the poll decision (token);
//! 6. the exchange with the OP;
//! 7. the OP's answer checked (`pipeline::check_response`) and translated (the profile);
//! 8. the ack recorded and rewritten (and a ping request's polling started), or the
//!    poll's verdict reported to the store;
//! 9. the answer written.

use super::answer::{no_store, relay_headers, write_json};
use super::ping::write_held;
use super::{header_str, Gateway, RequestCtx, Stop};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::pipeline::{self, Accepted, Endpoint, OpAnswer, Outbound};
use crate::ciba::polling::{OpVerdict, PollDecision};
use crate::ciba::profile::Translated;
use crate::ciba::translate;
use crate::config::UnknownPolicy;
use crate::edge::op_client::Answer;
use crate::edge::reload::Live;
use crate::state::poll_store::Polled;
use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::time::fast_timeout::fast_timeout;
use std::sync::Arc;

/// The `reason` of the 408 for a body not received in time.
pub(super) const BODY_TIMEOUT: &str = "body_timeout";

/// A CIBA poll let through to the OP: its id, the client that owns it, and whether it went as
/// a probe of an id the store did not know, for the verdict.
type Polling = Option<(AuthReqId, ClientId, bool)>;

impl Gateway {
    /// Runs the steps for a request on a CIBA endpoint, writing the OP's translated answer;
    /// the first step that refuses ends them. `live` is the snapshot the request started
    /// with, for every step.
    pub(super) async fn ciba_steps(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
        live: Arc<Live>,
    ) -> Result<(), Stop> {
        self.address_rate_limit(&live, session, endpoint).await?;
        let body = self.read_form_body(&live, session, ctx).await?;
        let mut accepted = self.check_request(&live, session, ctx, endpoint, &body)?;
        // At most one, in visible ASCII: `check_request` refused anything else.
        let authorization = header_str(session.req_header(), http::header::AUTHORIZATION);
        self.certificate_identity(&live, ctx, &accepted, authorization.is_some())?;
        self.client_rate_limit(&live, session, ctx, endpoint, &accepted)
            .await?;
        self.fapi_checks(&live, authorization, endpoint, &accepted)
            .await?;
        // Boxed: the bridge's exchanges are KiB of future state the other requests skip.
        if self.bridge.is_some()
            && Box::pin(self.bridge_ciba(&live, session, endpoint, &accepted)).await?
        {
            return Ok(());
        }
        let pinging = self
            .ping_initiation(&live, session, endpoint, &mut accepted)
            .await?;
        if let Some(held) = self
            .ping_redemption(&live, session, endpoint, &accepted)
            .await?
        {
            return write_held(session, held).await;
        }
        let polling = self.admit_or_decide(&live, endpoint, &accepted).await?;
        let answer = self.forward(session, ctx, &accepted).await?;
        let mut translated = self.translate_answer(&live, ctx, endpoint, &answer)?;
        self.record_answer(ctx, endpoint, &mut translated, polling)
            .await?;
        self.start_pinging(pinging, ctx.client.as_ref(), &translated)
            .await;
        write_answer(session, &answer, translated).await
    }

    /// Step 1: the per-address rate limit.
    async fn address_rate_limit(
        &self,
        live: &Live,
        session: &Session,
        endpoint: Endpoint,
    ) -> Result<(), Stop> {
        if live.limits.address_rate(endpoint).is_none() {
            // Limits are off: no need to work out the address.
            return Ok(());
        }
        let address = self.source_address(live, session);
        Ok(self
            .store
            .check_address(&live.limits, endpoint, address)
            .await??)
    }

    /// Step 2: POST only; the whole body, within its deadline and cap.
    async fn read_form_body(
        &self,
        live: &Live,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Bytes, Stop> {
        if session.req_header().method != http::Method::POST {
            return Err(Stop::validation(
                OAuthError::invalid_request("this endpoint accepts POST only")
                    .with_status(405)
                    .with_reason("method"),
            ));
        }
        read_body(session, live.cfg.max_body_bytes, live.cfg.edge.body_timeout)
            .await
            .map_err(|e| {
                ctx.tally.body_timed_out = e.reason == BODY_TIMEOUT;
                Stop::validation(e)
            })
    }

    /// Step 3: the request's checks (one `Authorization`, then form, client, validation),
    /// noting the client and the `login_hint_token` it carried.
    fn check_request(
        &self,
        live: &Live,
        session: &Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<Accepted, Stop> {
        let req = session.req_header();
        let authorization = single_authorization(req).map_err(Stop::validation)?;
        let inbound = pipeline::Inbound {
            endpoint,
            content_type: header_str(req, http::header::CONTENT_TYPE),
            authorization,
            body,
        };
        // Only the backchannel's checks read the time: a poll does not pay for the clock.
        let now = match endpoint {
            Endpoint::Backchannel => unix_now(),
            Endpoint::Token => 0,
        };
        let accepted =
            pipeline::check_request(inbound, &live.cfg.rules, now).map_err(Stop::validation)?;
        ctx.client = accepted.client.clone();
        ctx.tally.login_hint_token = accepted
            .report
            .as_ref()
            .and_then(|r| r.login_hint_token.as_ref())
            .map(|lht| {
                let repaired = if lht.repaired() { "true" } else { "false" };
                (lht.format.as_str(), repaired)
            });
        Ok(accepted)
    }

    /// Step 4: the per-client rate limit, keyed by the client and its credential (for a
    /// client registered for a TLS method, its certificate's thumbprint).
    async fn client_rate_limit(
        &self,
        live: &Live,
        session: &Session,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        accepted: &Accepted,
    ) -> Result<(), Stop> {
        let Some(client) = &accepted.client else {
            return Ok(());
        };
        if !live.limits.enabled() {
            // Limits are off: no need to fingerprint the credential.
            return Ok(());
        }
        let certificate = self.certificate_credential(live, ctx, accepted);
        let credential = certificate.as_deref().or_else(|| {
            accepted
                .form
                .get("client_secret")
                .or_else(|| header_str(session.req_header(), http::header::AUTHORIZATION))
        });
        let fingerprint = live.limits.fingerprint(credential);
        Ok(self
            .store
            .check_client(&live.limits, endpoint, client, fingerprint)
            .await??)
    }

    /// Step 5: a backchannel request needs room to track its ack; a CIBA poll needs the
    /// poll rules' leave (CIBA 11).
    async fn admit_or_decide(
        &self,
        live: &Live,
        endpoint: Endpoint,
        accepted: &Accepted,
    ) -> Result<Polling, Stop> {
        match endpoint {
            Endpoint::Backchannel => {
                if let Some(client) = &accepted.client {
                    self.store.admit(client).await??;
                }
                Ok(None)
            }
            Endpoint::Token => {
                let Some(id) = pipeline::ciba_poll(&accepted.form) else {
                    return Ok(None);
                };
                // CIBA 10.1: the client authenticates at the token endpoint. A poll that
                // names no client could be neither owned nor throttled.
                let Some(client) = accepted.client.clone() else {
                    return Err(Stop::validation(
                        OAuthError::new(
                            ErrorCode::InvalidClient,
                            "a CIBA token request must identify its client",
                        )
                        .with_status(401)
                        .with_reason("client"),
                    ));
                };
                let id = AuthReqId::new(id);
                let probe = self.poll_decision(live, &id, &client).await?;
                Ok(Some((id, client, probe)))
            }
        }
    }

    /// The poll rules' decision for a token request; `Ok(true)` when the poll goes to the
    /// OP as a probe.
    ///
    /// An id the gateway does not know is forwarded once to learn what the OP thinks of it
    /// (`unknown_auth_req_id = "forward"`), or refused (`"reject"`).
    pub(super) async fn poll_decision(
        &self,
        live: &Live,
        id: &AuthReqId,
        client: &ClientId,
    ) -> Result<bool, Stop> {
        let learn = live.cfg.polling.unknown == UnknownPolicy::Forward;
        match self.store.poll(id, client, learn).await? {
            Polled::Decided(PollDecision::Probe) => Ok(true),
            Polled::Decided(decision) => decision.refusal().map_or(Ok(false), |e| Err(e.into())),
            // Only when the shared store failed open (or the id is too long to store): the
            // OP still enforces its own rules.
            Polled::Unknown if learn => Ok(false),
            Polled::Unknown => {
                Err(OAuthError::new(ErrorCode::InvalidGrant, "unknown auth_req_id").into())
            }
            Polled::Full(full) => Err(full.into()),
        }
    }

    /// Step 6: the re-encoded form to the OP, under the endpoint's own path.
    async fn forward(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        accepted: &Accepted,
    ) -> Result<Answer, Stop> {
        let body = Bytes::from(accepted.form.encode());
        let len = body.len();
        let request = self.upstream_request(session, ctx, len)?;
        let again = |ctx: &RequestCtx| self.upstream_request(session, ctx, len).ok();
        Ok(self.exchange(ctx, request, again, body).await?)
    }

    /// Step 7: the OP's answer must be a JSON object; the profile maps its dialect onto
    /// the spec.
    fn translate_answer(
        &self,
        live: &Live,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
        answer: &Answer,
    ) -> Result<Translated, Stop> {
        let checked = pipeline::check_response(OpAnswer {
            endpoint,
            status: answer.status,
            content_type: answer.content_type(),
            body: &answer.body,
        });
        let value = match checked {
            Outbound::Json(v) => v,
            Outbound::Replace(e) => return Err(Stop::bad_answer(e)),
        };
        let translated = live.cfg.profile.translate(endpoint, answer.status, value);
        ctx.tally.unknown_error = translated.unknown_error;
        Ok(translated)
    }

    /// Step 8: a backchannel 200 is recorded and rewritten with the enforced interval and
    /// expiry; the OP's verdict on a poll is reported to the store.
    async fn record_answer(
        &self,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        translated: &mut Translated,
        polling: Polling,
    ) -> Result<(), Stop> {
        match endpoint {
            Endpoint::Backchannel if translated.status == 200 => self
                .track_ack(&mut translated.body, ctx.client.clone())
                .await
                .map_err(Stop::bad_answer),
            Endpoint::Token => {
                if let Some((id, client, probe)) = &polling {
                    let verdict =
                        translate::classify_token_answer(translated.status, &translated.body);
                    match verdict {
                        OpVerdict::Unclear => {}
                        _ if *probe => self.store.report_probe(id, client, verdict).await,
                        _ => self.store.report(id, client, verdict).await,
                    }
                }
                Ok(())
            }
            Endpoint::Backchannel => Ok(()),
        }
    }

    /// Records a 200 acknowledgement and rewrites it in place with the enforced interval
    /// and expiry; an ack for a request that named no client is left as the OP sent it.
    async fn track_ack(
        &self,
        ack: &mut serde_json::Value,
        client: Option<ClientId>,
    ) -> Result<(), OAuthError> {
        let invalid = |why: String| {
            OAuthError::new(
                ErrorCode::ServerError,
                format!("the OpenID Provider sent an invalid acknowledgement: {why}"),
            )
        };
        let op_ack = translate::parse_ack(ack).map_err(invalid)?;
        let Some(client) = client else {
            tracing::warn!(
                "an acknowledgement for a request that named no client cannot be tracked"
            );
            return Ok(());
        };
        let enforced = self
            .store
            .record_ack(
                op_ack.auth_req_id,
                client,
                op_ack.interval,
                op_ack.expires_in,
            )
            .await
            .map_err(|e| invalid(e.to_string()))?;
        translate::rewrite_ack(ack, &enforced);
        Ok(())
    }
}

/// Step 9: the translated answer, with the OP's end-to-end headers and no caching.
async fn write_answer(
    session: &mut Session,
    answer: &Answer,
    translated: Translated,
) -> Result<(), Stop> {
    let body = Bytes::from(serde_json::to_vec(&translated.body).expect("a JSON value serializes"));
    let mut h = relay_headers(answer);
    no_store(&mut h);
    write_json(session, translated.status, h, body).await?;
    Ok(())
}

/// Seconds since the Unix epoch, for JWT expiry and certificate validity checks.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads the whole body within `deadline` (408 after it), refusing more than `limit` bytes
/// without buffering them.
///
/// pingora's own client read timeout is per read, so a body trickled a byte at a time
/// would hold the connection for as long as the client likes; the deadline is for the
/// whole body, from the end of the header.
pub(super) async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, OAuthError> {
    // Boxed before the timer wraps it, so the timer moves a pointer, not the read's state.
    // pingora's timer wheel, armed only if the body is not there at once: an armed tokio
    // timer wakes the runtime's own driver through its eventfd (see `edge/guard.rs`).
    let read = fast_timeout(deadline, Box::pin(read_body_unbounded(session, limit)));
    match read.await {
        Ok(read) => read,
        Err(_) => Err(body_timeout()),
    }
}

/// The 408 for a body not received in time (counted as an edge refusal in `logging`).
pub(super) fn body_timeout() -> OAuthError {
    OAuthError::invalid_request("the request body was not received in time")
        .with_status(408)
        .with_reason(BODY_TIMEOUT)
}

/// Reads the whole body, refusing more than `limit` bytes without buffering them.
async fn read_body_unbounded(session: &mut Session, limit: usize) -> Result<Bytes, OAuthError> {
    let too_large = || {
        OAuthError::invalid_request(format!("the request body exceeds {limit} bytes"))
            .with_status(413)
    };
    let declared = header_str(session.req_header(), http::header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    if expects_continue(session.req_header()) && !session.is_body_done() {
        // The client waits for this before it sends the body (RFC 9110 10.1.1); pingora
        // leaves it to the application. A refusal above answers instead.
        session
            .write_continue_response()
            .await
            .map_err(|e| read_failed(&e))?;
    }
    let first = match session
        .read_request_body()
        .await
        .map_err(|e| read_failed(&e))?
    {
        Some(chunk) if chunk.len() > limit => return Err(too_large()),
        Some(chunk) => chunk,
        None => return Ok(Bytes::new()),
    };
    if session.is_body_done() {
        // The whole body came in one piece, as it nearly always does: no copy.
        return Ok(first);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    buf.extend_from_slice(&first);
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| read_failed(&e))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Whether an HTTP/1.1 request asks for `100 Continue` before it sends its body (an
/// HTTP/1.0 request's expectation is ignored, RFC 9110 10.1.1).
fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get_all(http::header::EXPECT)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The error for a body pingora could not read.
fn read_failed(e: &pingora::Error) -> OAuthError {
    // pingora's per-read timeout (`server.client_body_timeout_seconds` too).
    if e.etype() == &ErrorType::ReadTimedout {
        body_timeout()
    } else {
        OAuthError::invalid_request("the request body could not be read")
    }
}

/// The one `Authorization` header of a CIBA request. Two of them, or one that is not
/// visible ASCII, are refused: the gateway would read one credential and the OP another,
/// past the client-identity and one-method checks.
pub(super) fn single_authorization(req: &RequestHeader) -> Result<Option<&str>, OAuthError> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(
            OAuthError::invalid_request("the Authorization header is sent more than once")
                .with_reason("client_auth_methods"),
        );
    }
    first.to_str().map(Some).map_err(|_| {
        OAuthError::new(
            ErrorCode::InvalidClient,
            "the Authorization header is not visible ASCII",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_plain_authorization_header_at_most() {
        let req = |values: &[&[u8]]| {
            let mut r = RequestHeader::build("POST", b"/token", None).unwrap();
            for v in values {
                r.append_header("authorization", http::HeaderValue::from_bytes(v).unwrap())
                    .unwrap();
            }
            r
        };
        assert_eq!(single_authorization(&req(&[])).unwrap(), None);
        assert_eq!(
            single_authorization(&req(&[b"Basic YTpi"])).unwrap(),
            Some("Basic YTpi")
        );
        let two = single_authorization(&req(&[b"Bearer x", b"Basic YTpi"])).unwrap_err();
        assert_eq!((two.code, two.status), (ErrorCode::InvalidRequest, 400));
        let opaque = single_authorization(&req(&[b"Basic \xe9"])).unwrap_err();
        assert_eq!(opaque.code, ErrorCode::InvalidClient);
    }
}
