//! The PAR bridge: CIBA for an OP that has only the authorization code flow.
//!
//! The client speaks CIBA to the gateway; the gateway turns each backchannel request into
//! a pushed authorization request (RFC 9126) or a plain authorization URL, the end user
//! opens that URL in any browser, the OP redirects to the gateway's callback, the gateway
//! redeems the code (PKCE) and holds the tokens until the client's poll. The OP only ever
//! sees an ordinary code flow.
//!
//! Pure rules only (no I/O, time as an argument): PKCE ([`pkce`]), the credential a client
//! presents ([`credential`]), the OP requests and their errors ([`par`]), the ID token's
//! checks ([`id_token`]), what a record's outcome means for a poll ([`outcome`]), and the
//! user's callback page ([`page`]).

pub mod credential;
pub mod id_token;
pub mod outcome;
pub mod page;
pub mod par;
pub mod pkce;

/// The `reason` (a metrics label) of every refusal by the bridge rules.
pub const REASON: &str = "bridge";
