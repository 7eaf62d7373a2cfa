//! The routing rule: `routing::canonical_path` and `Routes::classify` never panic on any
//! request-target; a canonical form is its own canonical form; a target's canonical form
//! names the same path as the target; `refuse` and `normalize` agree on which path a target
//! names and differ only in answering a variant with a 404.
#![no_main]

use ciba_gateway::ciba::routing::{canonical_path, Decision, Outcome, Routes, Target, Variants};
use libfuzzer_sys::fuzz_target;

fn routes() -> Routes {
    Routes::new(&[
        (Target::Backchannel, "/backchannel", "/op/connect/ciba"),
        (Target::Token, "/token", "/token"),
        (
            Target::Discovery,
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration",
        ),
        (
            Target::Metadata,
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server",
        ),
    ])
}

fuzz_target!(|target: &[u8]| {
    let routes = routes();
    let decision = routes.classify(target);
    let normalize = decision.outcome(Variants::Normalize);
    let refuse = decision.outcome(Variants::Refuse);
    match decision {
        Decision::Exact(t) => {
            assert_eq!((normalize, refuse), (Outcome::Serve(t), Outcome::Serve(t)))
        }
        Decision::Variant(t) => {
            assert_eq!((normalize, refuse), (Outcome::Serve(t), Outcome::NotFound))
        }
        Decision::Refused(r) => {
            assert_eq!((normalize, refuse), (Outcome::Malformed(r), Outcome::Malformed(r)))
        }
        Decision::Other => {
            assert_eq!((normalize, refuse), (Outcome::PassThrough, Outcome::PassThrough))
        }
    }
    let Ok(canonical) = canonical_path(target) else {
        return;
    };
    assert_eq!(
        canonical_path(canonical.as_bytes()).as_ref(),
        Ok(&canonical),
        "not idempotent: {:?}",
        String::from_utf8_lossy(target)
    );
    if let Decision::Exact(t) | Decision::Variant(t) = decision {
        // The canonical form names the same endpoint.
        assert!(
            matches!(routes.classify(canonical.as_bytes()), Decision::Exact(u) | Decision::Variant(u) if u == t),
            "{:?} -> {canonical:?}",
            String::from_utf8_lossy(target)
        );
    }
});
