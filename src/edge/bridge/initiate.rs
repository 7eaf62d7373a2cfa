//! A backchannel request in bridge mode: the client authenticated (by the OP at PAR, or
//! by the gateway in plain mode), an authorization request made with fresh `state`,
//! `nonce` and PKCE verifier, the record stored sealed, the acknowledgement written, and
//! the authorization URL posted to the notifier.

use super::{now_ms, Bridge, Held};
use crate::ciba::bridge::credential::{self, Credential};
use crate::ciba::bridge::par::{self, Handles};
use crate::ciba::bridge::pkce;
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::pipeline::Accepted;
use crate::config::bridge::BridgeMode;
use crate::edge::notify::NotifyTarget;
use crate::state::bridge_store::Record;
use crate::state::seal::Kind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use std::time::Duration;

impl Bridge {
    /// Answers a validated backchannel request from `client` (admitted by the poll rules'
    /// tracking limits): the acknowledgement's JSON, or the CIBA error the client sees.
    pub async fn initiate(
        &self,
        accepted: &Accepted,
        client: &ClientId,
        authorization: Option<&str>,
        public_base: &str,
    ) -> Result<Vec<u8>, OAuthError> {
        let form = &accepted.form;
        let credential = credential::presented(form, authorization)?;
        if self.settings.mode == BridgeMode::Plain {
            self.authenticate(client, &credential)?;
        }
        let meta = self.metadata().await?;
        let (id, state, nonce, verifier) =
            (self.handle(), self.handle(), self.handle(), self.handle());
        let redirect_uri = format!("{public_base}{}", self.settings.callback_path);
        let challenge = pkce::challenge(&verifier);
        let params = par::authorization_params(
            form,
            client.as_str(),
            Handles {
                redirect_uri: &redirect_uri,
                state: &state,
                nonce: &nonce,
                code_challenge: &challenge,
            },
            self.settings.login_hint_token,
        )?;
        let url = match (&self.settings.mode, &meta.par_path) {
            (BridgeMode::Par, Some(par_path)) => {
                let answer = self.post_form(par_path, params, &credential).await?;
                let (request_uri, _) = par::pushed_answer(answer.status, &answer.body)
                    .inspect_err(|e| {
                        crate::metrics::bridge_event("op_refused");
                        // The OP's status and our code only: its description may echo values.
                        tracing::warn!(
                            status = answer.status,
                            error = e.code.as_str(),
                            "bridge: the OpenID Provider refused the pushed authorization request"
                        );
                    })?;
                par::pushed_url(&meta.authorization_endpoint, client.as_str(), &request_uri)
            }
            _ => par::with_query(
                &meta.authorization_endpoint,
                &par::encode(params.iter().map(|(k, v)| (*k, v.as_str()))),
            ),
        };
        let requested = form
            .get("requested_expiry")
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|r| *r > 0);
        let expires_in = requested.map_or(self.settings.expires_in, |r| {
            r.min(self.settings.expires_in)
        });
        let auth_req_id = AuthReqId::new(&id);
        // The poll rules track the id as for any acknowledgement: slow_down, expired_token.
        let ack = self
            .polls
            .record_ack(
                auth_req_id.clone(),
                client.clone(),
                Some(self.settings.interval),
                expires_in,
            )
            .await
            .map_err(|_| super::op::op_fault("the bridge request could not be tracked"))?;
        let now = now_ms();
        let expires_at_ms = now + ms(ack.expires_in);
        let binding_message = form.get("binding_message").map(str::to_string);
        let held = Held {
            credential: URL_SAFE_NO_PAD.encode(credential.to_bytes().expose()),
            verifier,
            nonce,
            redirect_uri,
            url: url.clone(),
            binding_message: binding_message.clone(),
        };
        let plain = serde_json::to_vec(&held).expect("strings serialize");
        let sealer = self.store.sealer();
        let record = Record {
            client: client.clone(),
            tag: sealer.tag(&credential.hash_input(client)),
            sealed: sealer.seal(Kind::BridgeRecord, &auth_req_id, &plain),
            expires_at_ms,
        };
        self.store
            .create(&auth_req_id, &state, record, now)
            .await
            .map_err(|_| unavailable())?;
        self.notify(client, form, &url, binding_message, ack.expires_in);
        crate::metrics::bridge_event("initiated");
        Ok(serde_json::to_vec(&json!({
            "auth_req_id": id,
            "expires_in": ack.expires_in_secs(),
            "interval": ack.interval_secs(),
        }))
        .expect("a JSON value serializes"))
    }

    /// Plain mode: the gateway checks the client's secret against its configured hash.
    pub(super) fn authenticate(
        &self,
        client: &ClientId,
        credential: &Credential,
    ) -> Result<(), OAuthError> {
        let refused = || credential::refuse("client authentication failed");
        let (id, secret) = credential::id_and_secret(credential).ok_or_else(refused)?;
        let hash = self
            .settings
            .secrets
            .get(client.as_str())
            .ok_or_else(refused)?;
        if id != client.as_str() || !credential::secret_matches(&secret, hash) {
            return Err(refused());
        }
        Ok(())
    }

    /// Posts the authorization URL to the notifier (`bridge.notifier_url`), in the
    /// background, retried until the request expires.
    fn notify(
        &self,
        client: &ClientId,
        form: &crate::ciba::form::Form,
        url: &str,
        binding_message: Option<String>,
        expires_in: Duration,
    ) {
        let (Some(notifier), Some((target, insecure))) = (&self.notifier, &self.settings.notifier)
        else {
            return;
        };
        let hint = ["login_hint", "id_token_hint", "login_hint_token"]
            .into_iter()
            .find_map(|k| form.get(k).map(|v| (k, v.to_string())));
        let mut body = json!({
            "client_id": client.as_str(),
            "authorization_url": url,
            "binding_message": binding_message,
            "expires_in": expires_in.as_secs(),
        });
        if let Some((kind, value)) = hint {
            body["hint_type"] = json!(kind);
            body["hint"] = json!(value);
        }
        let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"));
        let target = NotifyTarget {
            url: target.clone(),
            allow_insecure: *insecure,
        };
        let notifier = notifier.clone();
        let deadline = std::time::Instant::now() + expires_in;
        tokio::spawn(async move {
            let delivered = notifier.post_json(&target, body, deadline).await;
            crate::metrics::bridge_event(match delivered {
                crate::edge::notify::Delivery::Delivered => "notified",
                _ => "notify_failed",
            });
        });
    }
}

/// The 503 when the bridge's shared store does not answer.
pub(super) fn unavailable() -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the gateway's shared state is unavailable; retry shortly",
    )
    .with_retry_after(1)
    .with_reason("store_unavailable")
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
