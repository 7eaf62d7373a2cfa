//! The client's side after initiation: its polls at the token endpoint (answered by the
//! gateway under the poll rules, the tokens once to the owner with the same credential),
//! and the API that hands the owner the authorization URL of its pending request.

use super::initiate::unavailable;
use super::{now_ms, Bridge, Held};
use crate::ciba::bridge::credential;
use crate::ciba::bridge::outcome::{invalid_grant, wrong_credential, Status};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::form::Form;
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::polling::OpVerdict;
use crate::state::bridge_store::Redeemed;
use crate::state::poll_store::Polled;
use crate::state::seal::Kind as SealKind;
use serde_json::json;

impl Bridge {
    /// A CIBA poll for `id` by `client`: the token answer's bytes (200), or the error.
    pub async fn redeem(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        form: &Form,
        authorization: Option<&str>,
    ) -> Result<Vec<u8>, OAuthError> {
        let presented = credential::presented(form, authorization)?;
        let input = presented.hash_input(client);
        let found = self
            .store
            .redeem(id, client, &input, now_ms())
            .await
            .map_err(|_| unavailable())?;
        match found {
            Redeemed::Unknown => {
                // Gone from the bridge: the poll rules may still remember its expiry.
                self.poll_rules(id, client, false).await?;
                Err(invalid_grant())
            }
            Redeemed::WrongClient | Redeemed::Used => Err(invalid_grant()),
            Redeemed::WrongCredential => Err(wrong_credential()),
            Redeemed::Expired => {
                self.polls.report(id, client, OpVerdict::Expired).await;
                Err(OAuthError::new(
                    ErrorCode::ExpiredToken,
                    "the auth_req_id has expired",
                ))
            }
            Redeemed::Pending => {
                self.poll_rules(id, client, true).await?;
                Err(Status::Pending.poll_error().expect("pending is an error"))
            }
            Redeemed::Ended(status, tokens) => {
                self.polls.report(id, client, OpVerdict::Ended).await;
                match (status, tokens) {
                    (Status::Approved, Some(sealed)) => {
                        let tokens = self
                            .store
                            .sealer()
                            .open(SealKind::BridgeTokens, id, &sealed)
                            .map(|t| t.into_inner())
                            .ok_or_else(invalid_grant)?;
                        crate::metrics::bridge_event("redeemed");
                        Ok(tokens)
                    }
                    (Status::Approved, None) => Err(invalid_grant()),
                    (other, _) => Err(other.poll_error().unwrap_or_else(invalid_grant)),
                }
            }
        }
    }

    /// The poll rules' verdict (`slow_down`, `expired_token`, `invalid_grant` after the
    /// end); an id they do not know creates no state. `live`: the bridge holds a pending
    /// record for it, so an id the poll rules lost (their store failed open) stays pending.
    async fn poll_rules(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        live: bool,
    ) -> Result<(), OAuthError> {
        match self.polls.poll(id, client, false).await {
            Ok(Polled::Decided(d)) => d.refusal().map_or(Ok(()), Err),
            Ok(Polled::Unknown) if live => Ok(()),
            Ok(Polled::Unknown) => Err(invalid_grant()),
            Ok(Polled::Full(_)) | Err(_) => Err(unavailable()),
        }
    }

    /// The API (seed 000's "authorization URL for a pending request"): `POST` with the
    /// client's credential and `auth_req_id`; the URL and the seconds left, only to the
    /// client that started the request, with the same credential.
    pub async fn authorization_url(
        &self,
        form: &Form,
        client: &ClientId,
        authorization: Option<&str>,
    ) -> Result<Vec<u8>, OAuthError> {
        let id = form
            .get("auth_req_id")
            .filter(|i| !i.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("parameter `auth_req_id` is required"))?;
        let id = AuthReqId::new(id);
        let presented = credential::presented(form, authorization)?;
        let now = now_ms();
        let Some((record, status)) = self.store.get(&id, now).await.map_err(|_| unavailable())?
        else {
            return Err(invalid_grant());
        };
        if record.client != *client {
            return Err(invalid_grant());
        }
        if !self
            .store
            .sealer()
            .matches(&presented.hash_input(client), &record.tag)
        {
            return Err(wrong_credential());
        }
        if status != Status::Pending {
            return Err(invalid_grant());
        }
        let held: Held = self
            .store
            .sealer()
            .open(SealKind::BridgeRecord, &id, &record.sealed)
            .and_then(|p| serde_json::from_slice(p.expose()).ok())
            .ok_or_else(invalid_grant)?;
        Ok(serde_json::to_vec(&json!({
            "authorization_url": held.url,
            "expires_in": record.expires_at_ms.saturating_sub(now) / 1000,
        }))
        .expect("a JSON value serializes"))
    }
}
