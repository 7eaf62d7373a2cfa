//! The FAPI-CIBA step (`ciba/fapi/`): for a client the profile covers, its authentication
//! (`private_key_jwt` checked, or mutual TLS left to the certificate code) at both CIBA
//! endpoints, its signed request object at the backchannel endpoint, and each JWT's `jti`
//! claimed once in the state store. The keys are the client's inline `jwks`, or its
//! `jwks_uri`'s, fetched (`edge/jwks_fetch.rs`) into a cache (`state/jwks_cache.rs`) and
//! fetched again on an unknown `kid`, at most once per `fapi.jwks_refresh_min_seconds`.

use super::ciba::unix_now;
use super::{Gateway, Stop};
use crate::ciba::error::{ErrorCode, OAuthError};
use crate::ciba::fapi::{assertion, request_object, OpNames, Refused, Replay};
use crate::ciba::ids::ClientId;
use crate::ciba::jwt::KeySet;
use crate::ciba::pipeline::{Accepted, Endpoint};
use crate::config::{Client, Config};
use crate::edge::jwks_fetch::JwksFetcher;
use crate::edge::reload::Live;
use crate::state::jwks_cache::JwksCache;
use crate::state::replay::{replay_key, Claim, Namespace, ReplayCache};
use std::sync::Arc;
use std::time::Instant;

/// What the profile keeps between requests: the in-memory `jti` cache (Redis holds them
/// when the store is Redis), fetched keys and the fetcher.
#[derive(Debug)]
pub(super) struct FapiRuntime {
    replays: ReplayCache,
    jwks: JwksCache,
    fetcher: JwksFetcher,
}

impl FapiRuntime {
    pub(super) fn new(cfg: &Config) -> Self {
        FapiRuntime {
            replays: ReplayCache::new(cfg.fapi.replay_max_entries),
            jwks: JwksCache::default(),
            fetcher: JwksFetcher::default(),
        }
    }
}

fn refusal(code: ErrorCode, msg: &'static str) -> Stop {
    let reason = match code {
        ErrorCode::InvalidClient => "fapi_client_auth",
        _ => "fapi_request_object",
    };
    Stop::validation(OAuthError::new(code, msg).with_reason(reason))
}

impl Gateway {
    /// The FAPI step: nothing for a client the profile does not cover.
    pub(super) async fn fapi_checks(
        &self,
        live: &Live,
        authorization: Option<&str>,
        endpoint: Endpoint,
        accepted: &Accepted,
    ) -> Result<(), Stop> {
        let fapi = &live.cfg.fapi;
        if !fapi.active {
            return Ok(());
        }
        // A backchannel request always names its client (validation refuses it otherwise);
        // a token request that names none is refused here when every client is covered.
        let Some(client) = &accepted.client else {
            if fapi.enabled {
                return Err(refusal(
                    ErrorCode::InvalidClient,
                    "the request must identify its client (FAPI)",
                ));
            }
            return Ok(());
        };
        if !fapi.covers(&live.cfg.clients, client.as_str()) {
            return Ok(());
        }
        let Some(configured) = live.cfg.clients.get(client.as_str()) else {
            return Err(refusal(
                ErrorCode::InvalidClient,
                "the client has no keys configured at the gateway, which FAPI needs",
            ));
        };
        let basic = authorization.is_some_and(|h| {
            h.len() >= 6 && h.is_char_boundary(6) && h[..6].eq_ignore_ascii_case("basic ")
        });
        let method = assertion::method(&accepted.form, basic, configured.auth_method)
            .map_err(Stop::validation)?;
        let names = self.fapi_op_names(live)?;
        let now = unix_now();
        let policy = &fapi.policy;
        let form = &accepted.form;
        let mut claims = Vec::with_capacity(2);
        if method == assertion::Method::PrivateKeyJwt {
            let replay = self
                .with_client_keys(live, client, configured, ErrorCode::InvalidClient, |keys| {
                    assertion::check(form, client.as_str(), endpoint, keys, policy, &names, now)
                })
                .await?;
            claims.push((Namespace::Assertion, replay, ErrorCode::InvalidClient));
        }
        if endpoint == Endpoint::Backchannel {
            let who = request_object::ForClient {
                client_id: client.as_str(),
                request_context: configured.request_context,
            };
            let replay = self
                .with_client_keys(
                    live,
                    client,
                    configured,
                    ErrorCode::InvalidRequest,
                    |keys| request_object::check(form, who, keys, policy, &names, now),
                )
                .await?;
            claims.push((Namespace::RequestObject, replay, ErrorCode::InvalidRequest));
        }
        for (ns, replay, code) in claims {
            self.claim_jti(live, ns, client, replay, now, code).await?;
        }
        Ok(())
    }

    /// The OP's names for `aud`: `fapi.issuer` when configured, else discovery's.
    fn fapi_op_names(&self, live: &Live) -> Result<OpNames, Stop> {
        let fapi = &live.cfg.fapi;
        let up = &live.cfg.upstream;
        let discovered = self.op.op_names.get();
        let issuer = match (&fapi.issuer, discovered) {
            (Some(i), _) => i.clone(),
            (None, Some(d)) => d.issuer.clone(),
            (None, None) => {
                return Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the gateway has not yet learned the OpenID Provider's issuer",
                )
                .with_retry_after(1)
                .into())
            }
        };
        let base = issuer.trim_end_matches('/').to_string();
        let url =
            |configured: &Option<String>, learned: Option<&String>| match (configured, learned) {
                (_, Some(l)) if !l.is_empty() => l.clone(),
                (Some(p), _) => format!("{base}{p}"),
                _ => String::new(),
            };
        Ok(OpNames {
            token_endpoint: url(&up.token_path, discovered.map(|d| &d.token_endpoint)),
            backchannel_endpoint: url(
                &up.backchannel_path,
                discovered.map(|d| &d.backchannel_endpoint),
            ),
            issuer,
        })
    }

    /// Runs `check` with the client's keys: inline, or from its `jwks_uri` (fetched when
    /// stale, and again once when `check` found no key for the JWT's `kid`).
    async fn with_client_keys<T>(
        &self,
        live: &Live,
        client: &ClientId,
        configured: &Client,
        code: ErrorCode,
        check: impl Fn(&KeySet) -> Result<T, Refused>,
    ) -> Result<T, Stop> {
        let fapi = &live.cfg.fapi;
        if let Some(keys) = fapi.inline_keys.get(client.as_str()) {
            return check(keys).map_err(|r| Stop::validation(r.error));
        }
        let Some(uri) = &configured.jwks_uri else {
            return Err(refusal(
                code,
                "the client has no keys configured at the gateway",
            ));
        };
        let limits = &fapi.jwks;
        let cache = &self.fapi.jwks;
        let id = client.as_str();
        let (mut keys, fresh) = cache.get(id, Instant::now(), limits.cache);
        let mut fetched = false;
        if !fresh && cache.begin_fetch(id, Instant::now(), limits.refresh_min) {
            fetched = true;
            if let Ok(k) = self
                .fapi
                .fetcher
                .fetch(uri, configured.jwks_uri_allow_insecure, limits)
                .await
            {
                keys = Some(cache.store(id, k, Instant::now()));
            }
        }
        let Some(mut keys) = keys else {
            return Err(refusal(
                code,
                "the client's keys could not be fetched from its jwks_uri",
            ));
        };
        loop {
            match check(&keys) {
                Ok(v) => return Ok(v),
                Err(r)
                    if r.unknown_key
                        && !fetched
                        && cache.begin_fetch(id, Instant::now(), limits.refresh_min) =>
                {
                    fetched = true;
                    match self
                        .fapi
                        .fetcher
                        .fetch(uri, configured.jwks_uri_allow_insecure, limits)
                        .await
                    {
                        Ok(k) => keys = cache.store(id, k, Instant::now()),
                        Err(_) => return Err(Stop::validation(r.error)),
                    }
                }
                Err(r) => return Err(Stop::validation(r.error)),
            }
        }
    }

    /// Claims a JWT's `jti` once, until its `exp` (plus the clock skew forgiven).
    async fn claim_jti(
        &self,
        live: &Live,
        ns: Namespace,
        client: &ClientId,
        replay: Replay,
        now: u64,
        code: ErrorCode,
    ) -> Result<(), Stop> {
        let key = replay_key(ns, client.as_str(), &replay.jti);
        let until = replay.exp.saturating_add(live.cfg.fapi.policy.clock_skew);
        match self.store.claim_jti(&self.fapi.replays, key, until, now).await? {
            Claim::Fresh => Ok(()),
            Claim::Replayed => Err(refusal(
                code,
                match ns {
                    Namespace::Assertion => "`client_assertion`: claim `jti` was already used; each assertion is single-use (RFC 7523 3)",
                    Namespace::RequestObject => "request object: claim `jti` was already used; each request object is single-use (FAPI-CIBA 5.2.2)",
                },
            )),
            Claim::Full => Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the gateway cannot remember more single-use JWTs right now",
            )
            .with_retry_after(1)
            .into()),
        }
    }

    /// The discovery document with the FAPI metadata, when `fapi.enabled` covers every
    /// client; a per-client profile leaves the document as it is.
    pub(super) fn fapi_metadata(&self, live: &Live, body: Vec<u8>) -> Vec<u8> {
        let fapi = &live.cfg.fapi;
        if !fapi.enabled {
            return body;
        }
        let p = &fapi.policy;
        crate::ciba::discovery::apply_fapi(
            &body,
            &p.request_algs.names(),
            &p.assertion_algs.names(),
        )
        .unwrap_or(body)
    }
}

/// The runtime, shared.
pub(super) type Shared = Arc<FapiRuntime>;
