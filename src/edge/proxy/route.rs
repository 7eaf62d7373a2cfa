//! Which way a request goes: proxied untouched, a CIBA endpoint, or a metadata document.

use super::discovery::{Document, DISCOVERY_PATH, METADATA_PATH};
use crate::ciba::discovery::Endpoints;
use crate::ciba::error::OAuthError;
use crate::ciba::pipeline::Endpoint;
use crate::ciba::routing::{Outcome, Refusal, Routes, Target, Variants};
use crate::config::Config;
use pingora::http::RequestHeader;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Any path the gateway does not own: proxied untouched.
    #[default]
    PassThrough,
    /// A CIBA endpoint.
    Ciba(Endpoint),
    /// A metadata document, served rewritten.
    Discovery(Document),
}

impl Route {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::PassThrough => "other",
            Route::Ciba(e) => e.as_str(),
            Route::Discovery(_) => "discovery",
        }
    }
}

/// The gateway's paths: the CIBA endpoints (public names) and the metadata documents
/// under the upstream's base path, each also under the name the profile gives it on the OP.
pub fn routes_for(endpoints: &Endpoints, cfg: &Config) -> Routes {
    let discovery = format!("{}{}", cfg.upstream.base_path, DISCOVERY_PATH);
    let metadata = format!("{}{}", cfg.upstream.base_path, METADATA_PATH);
    let op = |p: &str| cfg.profile.to_op_path(p).into_owned();
    let mut paths = vec![
        (Target::Backchannel, endpoints.backchannel.clone()),
        (Target::Token, endpoints.token.clone()),
        (Target::Discovery, discovery),
        (Target::Metadata, metadata),
    ];
    // RFC 8705 5: the aliases are the same endpoints under other paths, so the same rule
    // routes every spelling of them into the same pipeline.
    if let Some(p) = &endpoints.mtls_backchannel {
        paths.push((Target::MtlsBackchannel, p.clone()));
    }
    if let Some(p) = &endpoints.mtls_token {
        paths.push((Target::MtlsToken, p.clone()));
    }
    let ops: Vec<String> = paths.iter().map(|(_, p)| op(p)).collect();
    let triples: Vec<(Target, &str, &str)> = paths
        .iter()
        .zip(&ops)
        .map(|((t, p), o)| (*t, p.as_str(), o.as_str()))
        .collect();
    Routes::new(&triples)
}

/// Decides the route from the request-target as received (`routing::Routes::classify`,
/// the one rule for every spelling) and the method (a metadata document is GET and HEAD
/// only); an error is answered locally.
pub fn route(
    req: &RequestHeader,
    routes: &Routes,
    variants: Variants,
) -> Result<Route, OAuthError> {
    route_and_alias(req, routes, variants).map(|(r, _)| r)
}

/// [`route`], and whether the request named an endpoint's mTLS alias (RFC 8705 5): the
/// same endpoint and pipeline, sent to the OP under the alias's path.
pub fn route_and_alias(
    req: &RequestHeader,
    routes: &Routes,
    variants: Variants,
) -> Result<(Route, bool), OAuthError> {
    let alias = |e| Ok((Route::Ciba(e), true));
    let plain = |r: Result<Route, OAuthError>| r.map(|r| (r, false));
    match routes.classify(req.raw_path()).outcome(variants) {
        Outcome::Serve(Target::MtlsBackchannel) => alias(Endpoint::Backchannel),
        Outcome::Serve(Target::MtlsToken) => alias(Endpoint::Token),
        other => plain(route_outcome(req, other)),
    }
}

fn route_outcome(req: &RequestHeader, outcome: Outcome) -> Result<Route, OAuthError> {
    match outcome {
        Outcome::PassThrough => Ok(Route::PassThrough),
        Outcome::Serve(Target::Backchannel | Target::MtlsBackchannel) => {
            Ok(Route::Ciba(Endpoint::Backchannel))
        }
        Outcome::Serve(Target::Token | Target::MtlsToken) => Ok(Route::Ciba(Endpoint::Token)),
        Outcome::Serve(Target::Discovery) => document(req, Document::OpenId),
        Outcome::Serve(Target::Metadata) => document(req, Document::OAuth),
        Outcome::NotFound => Err(OAuthError::invalid_request(
            "no such endpoint: this spelling of the path is not served; use the path from the discovery document",
        )
        .with_status(404)
        .with_reason("path_variant")),
        Outcome::Malformed(r) => Err(malformed_target(r)),
    }
}

/// A metadata document is read with GET or HEAD; any other method on its path is
/// answered at the edge, never forwarded.
fn document(req: &RequestHeader, doc: Document) -> Result<Route, OAuthError> {
    if matches!(req.method, http::Method::GET | http::Method::HEAD) {
        Ok(Route::Discovery(doc))
    } else {
        Err(
            OAuthError::invalid_request("this document accepts GET and HEAD only")
                .with_status(405)
                .with_reason("method"),
        )
    }
}

fn malformed_target(r: Refusal) -> OAuthError {
    OAuthError::invalid_request(r.describe()).with_reason("malformed_target")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;

    #[test]
    fn every_route_label_has_a_cached_metrics_slot() {
        let routes = [
            Route::PassThrough,
            Route::Ciba(Endpoint::Backchannel),
            Route::Ciba(Endpoint::Token),
            Route::Discovery(Document::OpenId),
            Route::Discovery(Document::OAuth),
        ];
        let mut labels: Vec<&str> = routes.iter().map(|r| r.as_str()).collect();
        labels.dedup();
        assert_eq!(labels, metrics::ENDPOINT_LABELS);
    }
}
