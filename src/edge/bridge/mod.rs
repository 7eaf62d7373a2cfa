//! The PAR bridge's edge (`[bridge]`): CIBA served by the gateway over an OP's
//! authorization code flow. The rules are in `ciba/bridge/`, the records in
//! `state/bridge_store.rs`; here is what talks to the OP and to the notifier:
//!
//! - `initiate.rs`: a backchannel request becomes a pushed (or plain) authorization
//!   request, a record, an acknowledgement, and a notification;
//! - `callback.rs`: the user's browser returns with `code` and `state`; the gateway
//!   exchanges the code (PKCE, the client's credential), checks the ID token and holds the
//!   tokens sealed;
//! - `redeem.rs`: the client's polls and the API that hands it its authorization URL;
//! - `op.rs`: the OP's metadata, its keys, and the form posts to it.

mod callback;
mod initiate;
mod op;
mod redeem;

pub use callback::CallbackPage;

use crate::ciba::bridge::credential::Credential;
use crate::config::bridge::Bridge as Settings;
use crate::config::Config;
use crate::edge::notify::Notifier;
use crate::edge::op_client::Connector;
use crate::edge::proxy::OpLink;
use crate::state::bridge_store::BridgeStore;
use crate::state::store::Store;
use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The bridge, shared by every request.
pub struct Bridge {
    cfg: Arc<Config>,
    settings: Settings,
    op: Arc<OpLink>,
    store: Arc<BridgeStore>,
    polls: Store,
    connector: Connector,
    metadata: ArcSwapOption<op::Metadata>,
    keys: ArcSwapOption<op::Keys>,
    notifier: Option<Notifier>,
    rng: SystemRandom,
}

impl Bridge {
    /// The bridge for `cfg` (which has `[bridge]`), its records in `store`, its polls
    /// under the poll rules in `polls`.
    pub fn new(
        cfg: Arc<Config>,
        op: Arc<OpLink>,
        store: Arc<BridgeStore>,
        polls: Store,
        notifier: Option<Notifier>,
    ) -> Option<Bridge> {
        let settings = cfg.bridge.clone()?;
        Some(Bridge {
            cfg,
            settings,
            op,
            store,
            polls,
            connector: Connector::new(None),
            metadata: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            notifier,
            rng: SystemRandom::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A fresh random handle (256 bits, base64url).
    fn handle(&self) -> String {
        let mut bytes = [0u8; crate::ciba::bridge::pkce::HANDLE_BYTES];
        self.rng
            .fill(&mut bytes)
            .expect("the operating system's random source works");
        crate::ciba::bridge::pkce::encode(&bytes)
    }
}

/// What is sealed in a record: everything the callback and the API need that must not be
/// readable in the store.
#[derive(Serialize, Deserialize)]
struct Held {
    /// The client's credential (`Credential::to_bytes`), base64url.
    credential: String,
    /// The PKCE verifier.
    verifier: String,
    /// The `nonce` sent.
    nonce: String,
    /// The `redirect_uri` sent.
    redirect_uri: String,
    /// The URL the user opens.
    url: String,
    /// The `binding_message`, shown on the callback page.
    binding_message: Option<String>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held([redacted])")
    }
}

impl Held {
    fn credential(&self) -> Option<Credential> {
        Credential::from_bytes(&URL_SAFE_NO_PAD.decode(&self.credential).ok()?)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
