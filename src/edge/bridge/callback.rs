//! The user's browser back from the OP: `code` (or `error`) and `state` on the gateway's
//! callback. The `state` is taken once; the code is exchanged with the PKCE verifier and
//! the client's credential; the ID token is checked; the token answer is held sealed for
//! the client's poll. The browser gets a small page and nothing else.

use super::{now_ms, Bridge, Held};
use crate::ciba::bridge::id_token::{self, Expected, IdTokenError};
use crate::ciba::bridge::outcome::{read_return, Return, Status};
use crate::ciba::bridge::page::{self, Kind, Page};
use crate::ciba::bridge::par;
use crate::state::seal::Kind as SealKind;

/// The page the callback answers with: status and HTML (sent with `page::HEADERS`).
#[derive(Debug)]
pub struct CallbackPage {
    /// HTTP status.
    pub status: u16,
    /// The document.
    pub html: String,
}

/// The longest query the callback reads; a real one is a few hundred bytes.
const MAX_QUERY: usize = 4096;

impl Bridge {
    /// Handles `GET` on the callback path with this query.
    pub async fn callback(&self, query: Option<&str>) -> CallbackPage {
        let query = query.unwrap_or("");
        if query.len() > MAX_QUERY {
            return self.page(Kind::Invalid, None);
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let (ret, iss) = read_return(&pairs);
        let state = match &ret {
            Return::Code { state, .. } | Return::Error { state } => *state,
            Return::Malformed => return self.page(Kind::Invalid, None),
        };
        // RFC 9207: an `iss` on the redirect must be the OP's (a mix-up otherwise). Checked
        // before the state is taken, so such a redirect changes nothing.
        if let Some(iss) = iss {
            match self.metadata().await {
                Ok(m) if m.issuer == iss => {}
                Ok(_) => {
                    tracing::info!("bridge: a callback with another issuer");
                    return self.page(Kind::Invalid, None);
                }
                Err(_) => return self.page(Kind::Failed, None),
            }
        }
        let now = now_ms();
        let taken = match self.store.take_state(state, now).await {
            Ok(t) => t,
            Err(_) => return self.page(Kind::Failed, None),
        };
        // A forged, replayed or expired state: nothing is changed.
        let Some((id, record, Status::Pending)) = taken else {
            tracing::info!("bridge: a callback with an unknown or used state");
            return self.page(Kind::Invalid, None);
        };
        let Some(held) = self
            .store
            .sealer()
            .open(SealKind::BridgeRecord, &id, &record.sealed)
            .and_then(|p| serde_json::from_slice::<Held>(p.expose()).ok())
        else {
            let _ = self.store.finish(&id, Status::Failed, None, now).await;
            return self.page(Kind::Failed, None);
        };
        let code = match ret {
            Return::Code { code, .. } => code,
            _ => {
                let _ = self.store.finish(&id, Status::Denied, None, now).await;
                return self.page(Kind::Cancelled, None);
            }
        };
        match self.redeem_code(&held, record.client.as_str(), code).await {
            Ok(tokens) => {
                let sealed = self
                    .store
                    .sealer()
                    .seal(SealKind::BridgeTokens, &id, &tokens);
                match self
                    .store
                    .finish(&id, Status::Approved, Some(sealed), now_ms())
                    .await
                {
                    Ok(true) => self.page(Kind::Done, held.binding_message.as_deref()),
                    _ => self.page(Kind::Failed, None),
                }
            }
            Err(why) => {
                tracing::warn!(
                    check = why,
                    "bridge: the OpenID Provider's answer was refused"
                );
                let _ = self.store.finish(&id, Status::Failed, None, now_ms()).await;
                self.page(Kind::Failed, None)
            }
        }
    }

    /// The code exchange and the ID token's checks; the token answer's bytes on success,
    /// else a label for the log.
    async fn redeem_code(
        &self,
        held: &Held,
        client_id: &str,
        code: &str,
    ) -> Result<Vec<u8>, &'static str> {
        let meta = self.metadata().await.map_err(|_| "metadata")?;
        let credential = held.credential().ok_or("credential")?;
        let form = par::token_form(code, &held.redirect_uri, &held.verifier);
        let answer = self
            .post_form(&meta.token_path, form, &credential)
            .await
            .map_err(|_| "token_endpoint")?;
        let id_token = par::token_answer(answer.status, &answer.body)?;
        let want = Expected {
            issuer: &meta.issuer,
            client_id,
            nonce: &held.nonce,
        };
        let now = now_ms() / 1000;
        let keys = self.keys(false).await.map_err(|_| "jwks")?;
        match id_token::check(&id_token, &keys, want, now) {
            Ok(()) => {}
            // A key the cached set lacks: the OP may have rotated; fetch once more.
            Err(IdTokenError::Signature) => {
                let keys = self.keys(true).await.map_err(|_| "jwks")?;
                id_token::check(&id_token, &keys, want, now).map_err(IdTokenError::as_str)?;
            }
            Err(e) => return Err(e.as_str()),
        }
        Ok(answer.body.to_vec())
    }

    fn page(&self, kind: Kind, binding_message: Option<&str>) -> CallbackPage {
        crate::metrics::bridge_event(match kind {
            Kind::Done => "approved",
            Kind::Cancelled => "denied",
            Kind::Invalid => "invalid_callback",
            Kind::Failed => "failed",
        });
        CallbackPage {
            status: page::status(kind),
            html: page::render(Page {
                kind,
                return_to: &self.settings.return_to,
                binding_message,
            }),
        }
    }
}
