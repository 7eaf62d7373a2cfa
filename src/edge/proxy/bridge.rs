//! The proxy's side of the PAR bridge (`edge/bridge/`): at the CIBA endpoints, a
//! backchannel request and a CIBA poll are answered by the bridge, never the OP; the
//! callback and the API are the bridge's own paths, matched exactly (another spelling
//! goes to the OP, which has no such path).

use super::answer::{no_store, write_json};
use super::ciba::{read_body, single_authorization};
use super::discovery::derived_base;
use super::{header_str, Gateway, RequestCtx, Stop};
use crate::ciba::bridge::page::HEADERS;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::AuthReqId;
use crate::ciba::pipeline::{self, Accepted, Endpoint};
use crate::edge::reload::Live;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Which of the bridge's own paths a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BridgePath {
    /// The callback the OP redirects the user's browser to.
    Callback,
    /// The API that hands a client its authorization URL.
    Api,
}

impl Gateway {
    /// The bridge path the request's path is, exactly.
    pub(super) fn bridge_path(&self, session: &Session) -> Option<BridgePath> {
        let b = self.bridge.as_ref()?.settings();
        let path = session.req_header().uri.path();
        if path == b.callback_path {
            Some(BridgePath::Callback)
        } else if b.api_path.as_deref() == Some(path) {
            Some(BridgePath::Api)
        } else {
            None
        }
    }

    /// In bridge mode, answers a backchannel request or a CIBA poll (`Ok(true)`); other
    /// token requests are left to the usual steps (`Ok(false)`).
    pub(super) async fn bridge_ciba(
        &self,
        live: &Live,
        session: &mut Session,
        endpoint: Endpoint,
        accepted: &Accepted,
    ) -> Result<bool, Stop> {
        let Some(bridge) = &self.bridge else {
            return Ok(false);
        };
        let authorization = header_str(session.req_header(), http::header::AUTHORIZATION);
        let need_client = || {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the request must identify its client",
            )
            .with_status(401)
            .with_reason("client")
        };
        let body = match endpoint {
            Endpoint::Backchannel => {
                let client = accepted.client.clone().ok_or_else(need_client)?;
                self.store.admit(&client).await??;
                let base = match &live.cfg.public_url {
                    Some(u) => u.clone(),
                    None => derived_base(session.req_header(), live.cfg.tls.is_some()),
                };
                bridge
                    .initiate(accepted, &client, authorization, &base)
                    .await?
            }
            Endpoint::Token => {
                let Some(id) = pipeline::ciba_poll(&accepted.form) else {
                    return Ok(false);
                };
                let client = accepted.client.clone().ok_or_else(need_client)?;
                let id = AuthReqId::new(id);
                bridge
                    .redeem(&id, &client, &accepted.form, authorization)
                    .await?
            }
        };
        let mut h = http::HeaderMap::with_capacity(4);
        no_store(&mut h);
        write_json(session, 200, h, Bytes::from(body)).await?;
        Ok(true)
    }

    /// Serves the callback (GET) or the API (POST).
    pub(super) async fn serve_bridge_path(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        which: BridgePath,
    ) -> pingora::Result<bool> {
        let ended = match which {
            BridgePath::Callback => self.bridge_callback(session).await,
            BridgePath::Api => self.bridge_api(session, ctx).await,
        };
        super::refusal::finish(self, session, ctx, ended).await
    }

    async fn bridge_callback(&self, session: &mut Session) -> Result<(), Stop> {
        let Some(bridge) = &self.bridge else {
            return Ok(());
        };
        // GET only: a HEAD would redeem the code and show nothing.
        let page = if session.req_header().method == http::Method::GET {
            bridge.callback(session.req_header().uri.query()).await
        } else {
            return Err(Stop::validation(
                OAuthError::invalid_request("the callback accepts GET only")
                    .with_status(405)
                    .with_reason("method"),
            ));
        };
        let mut h = ResponseHeader::build(page.status, Some(HEADERS.len() + 1))?;
        for (name, value) in HEADERS {
            h.insert_header(name, value)?;
        }
        h.set_content_length(page.html.len())?;
        session.write_response_header(Box::new(h), false).await?;
        session
            .write_response_body(Some(Bytes::from(page.html)), true)
            .await?;
        Ok(())
    }

    async fn bridge_api(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
        let Some(bridge) = &self.bridge else {
            return Ok(());
        };
        if session.req_header().method != http::Method::POST {
            return Err(Stop::validation(
                OAuthError::invalid_request("this endpoint accepts POST only")
                    .with_status(405)
                    .with_reason("method"),
            ));
        }
        let live = self.live(ctx);
        let body = read_body(session, live.cfg.max_body_bytes, live.cfg.edge.body_timeout)
            .await
            .map_err(Stop::validation)?;
        let req = session.req_header();
        let authorization = single_authorization(req).map_err(Stop::validation)?;
        // The token endpoint's checks: content type, strict form, one client.
        let accepted = pipeline::check_request(
            pipeline::Inbound {
                endpoint: Endpoint::Token,
                content_type: header_str(req, http::header::CONTENT_TYPE),
                authorization,
                body: &body,
            },
            &live.cfg.rules,
            0,
        )
        .map_err(Stop::validation)?;
        let client = accepted.client.clone().ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the request must identify its client",
            )
            .with_reason("client")
        })?;
        ctx.client = Some(client.clone());
        let answer = bridge
            .authorization_url(&accepted.form, &client, authorization)
            .await?;
        let mut h = http::HeaderMap::with_capacity(4);
        no_store(&mut h);
        write_json(session, 200, h, Bytes::from(answer)).await?;
        Ok(())
    }
}
