//! Which of the gateway's paths a request names: the rule every route decision goes through.
//!
//! An OP's router, not a string compare, decides what reaches its token endpoint, so the
//! gateway recognizes every spelling that a common OP router sends to an endpoint, and
//! more (a superset: a spelling no router accepts costs nothing when recognized; one that
//! a router accepts and the gateway misses is a way around every rule). What the routers do:
//!
//! - node-oidc-provider (`lib/helpers/router.js`): matches the *undecoded* path (koa's
//!   `ctx.path`, from `parseurl`) after upper-casing it, then retries without one trailing
//!   `/`. Its `fold` keeps a non-ASCII letter whose upper case is ASCII (`ı`, `ſ`, `ﬀ`), but
//!   a router upper-casing with plain `toUpperCase` or a `/i` regex does not. It accepts
//!   absolute-form targets and routes them by path.
//! - Ory Hydra (Go `net/http` + julienschmidt/httprouter): routes `URL.Path`, which is
//!   percent-decoded (`%2F` included); `RedirectFixedPath` cleans the path (dot segments,
//!   repeated slashes) and looks it up case-insensitively (Go's `unicode.ToUpper`/`ToLower`:
//!   `ı` → `I`, `ſ` → `S`, `K` (Kelvin) → `k`); `RedirectTrailingSlash` adds or drops a `/`.
//! - Keycloak (Quarkus, RESTEasy, Vert.x): decodes, removes dot segments, strips matrix
//!   parameters (`;x=y`) from every segment, and tolerates a trailing `/`. Servlet
//!   containers strip `;` parameters before resolving `..` (`/a/..;/token`).
//! - Duende IdentityServer (ASP.NET Core, Kestrel): decodes (but `%2F`), removes dot segments,
//!   compares `OrdinalIgnoreCase` (per-character simple upper case, `İ` → `I`) and tolerates a
//!   trailing `/`; behind IIS, `\` is a `/` and trailing dots and spaces of a segment go.
//! - RFC 3986 6.2.2: case of percent-encodings, percent-encoded unreserved characters, dot
//!   segments; the WHATWG URL parser also reads `\` as `/` and `%2e` as a dot.
//!
//! So [`canonical_path`] folds all of these at once: it takes the path of an origin- or
//! absolute-form target, percent-decodes it repeatedly (double encoding included), cuts it
//! at a decoded NUL, `?` or `#`, splits it on `/` and `\`, strips each segment's `;`
//! parameters and trailing dots and spaces, drops empty segments (repeated and trailing
//! slashes), resolves `.` and `..`, and folds letter case (ASCII, any character whose upper
//! or lower case is ASCII, full-width letters and digits). Two spellings name the same path
//! when their canonical forms are equal.
//!
//! One canonical form cannot follow every router where routers disagree about dot
//! segments: `/token/..;/..` is `/` where `;` parameters go first and `/token` where
//! `..;` is an ordinary segment; `/token/%2e%2e/..` is `/` decoded first and `/token`
//! normalized first. A request the gateway routes to an endpoint is safe whatever other
//! routers think, because the OP then receives the endpoint's own path; a request passed
//! through untouched is not. So [`Routes::classify`] refuses (as [`Refusal::Ambiguous`]) a
//! target that contains a dot segment in any spelling (or starts like an authority) and
//! names an endpoint's last segment anywhere, unless its canonical form is an endpoint.

use serde::Deserialize;

/// What the gateway does with a spelling of one of its paths that is not the exact one
/// (`[routing] variants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variants {
    /// Treat it as the endpoint: the whole pipeline, and the OP receives the exact path.
    #[default]
    Normalize,
    /// Answer it with a JSON 404 `invalid_request`; it never reaches the OP.
    Refuse,
}

/// The paths the gateway owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The backchannel authentication endpoint.
    Backchannel,
    /// The token endpoint.
    Token,
    /// The discovery document (OpenID Connect Discovery 1.0).
    Discovery,
    /// The authorization server metadata (RFC 8414).
    Metadata,
    /// The backchannel endpoint's mTLS alias (RFC 8705 5), when the OP publishes one.
    MtlsBackchannel,
    /// The token endpoint's mTLS alias (RFC 8705 5), when the OP publishes one.
    MtlsToken,
}

/// Why a request-target is refused whatever its method and the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Still percent-encoded after [`MAX_DECODINGS`] decodings.
    TooDeeplyEncoded,
    /// Routers disagree about it and one of them could reach an endpoint.
    Ambiguous,
}

impl Refusal {
    /// The error description a client sees.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::TooDeeplyEncoded => "the request path is percent-encoded too many times",
            Refusal::Ambiguous => {
                "the request path has dot segments that routers resolve differently"
            }
        }
    }
}

/// What a request-target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Exactly a gateway path.
    Exact(Target),
    /// Another spelling of a gateway path (or the OP's own name for it).
    Variant(Target),
    /// A malformed or ambiguous target.
    Refused(Refusal),
    /// Any other path: passed through untouched.
    Other,
}

/// The answer to a [`Decision`] in a [`Variants`] mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Through the gateway's pipeline for this path.
    Serve(Target),
    /// A JSON 404: a variant in `refuse` mode.
    NotFound,
    /// A JSON 400.
    Malformed(Refusal),
    /// Proxied untouched.
    PassThrough,
}

impl Decision {
    /// Applies the mode: `refuse` turns every variant into a 404, nothing else changes.
    pub fn outcome(self, variants: Variants) -> Outcome {
        match (self, variants) {
            (Decision::Exact(t), _) | (Decision::Variant(t), Variants::Normalize) => {
                Outcome::Serve(t)
            }
            (Decision::Variant(_), Variants::Refuse) => Outcome::NotFound,
            (Decision::Refused(r), _) => Outcome::Malformed(r),
            (Decision::Other, _) => Outcome::PassThrough,
        }
    }
}

/// Percent-decodings applied before a target counts as [`Refusal::TooDeeplyEncoded`]:
/// double decoding is a known router bug; nothing decodes four times.
pub const MAX_DECODINGS: usize = 3;

/// The canonical form of a request-target's path (see the module documentation): two
/// targets that some router sends to the same handler have equal canonical forms.
///
/// `/TOKEN`, `/token/`, `/./token`, `//token`, `/%74oken`, `/%2574oken`, `/token;x=1`,
/// `/a/../token`, `/tok%C4%B1n`... `\token`, `http://any-host/Token?x` all give `/TOKEN`.
pub fn canonical_path(target: &[u8]) -> Result<String, Refusal> {
    let out = canonical_once(target)?;
    // Folding can spell a new escape: a literal `%` (kept as `%25`) before `F` and a
    // full-width `ａ` reads `%FA` once folded, which a router that folds before it decodes
    // would take for a byte. Such a path has no one reading, and a canonical form must be
    // its own canonical form; only a form with an escape in it can fail that.
    if out.contains('%') && canonical_once(out.as_bytes()).as_deref() != Ok(out.as_str()) {
        return Err(Refusal::TooDeeplyEncoded);
    }
    Ok(out)
}

/// The canonical form of a plain origin-form path (`/`, ASCII letters, digits, `-` and `_`
/// only, not starting `//`), `None` for any other: such a path has nothing to decode, no
/// dot segment, parameter or escape, and nothing the rule finds suspicious, so its form is
/// its non-empty segments in upper case.
fn plain_canonical(path: &[u8]) -> Option<String> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_');
    if path.first() != Some(&b'/') || path.get(1) == Some(&b'/') || !path.iter().all(plain) {
        return None;
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.extend(segment.iter().map(|b| char::from(b.to_ascii_uppercase())));
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// One pass of [`canonical_path`]'s rule.
fn canonical_once(target: &[u8]) -> Result<String, Refusal> {
    let segments = segments(target)?;
    let mut out = String::with_capacity(target.len() + 1);
    for s in &segments {
        out.push('/');
        fold_into(s, &mut out);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The segments of a target's path as [`canonical_path`] resolves them, letter case kept
/// (a path parameter such as an `auth_req_id` is case-sensitive).
pub fn segments(target: &[u8]) -> Result<Vec<String>, Refusal> {
    let decoded = decode(target_path(target))?;
    let end = decoded
        .iter()
        .position(|b| matches!(b, 0 | b'?' | b'#'))
        .unwrap_or(decoded.len());
    let mut out: Vec<String> = Vec::new();
    for raw in decoded[..end].split(|b| matches!(b, b'/' | b'\\')) {
        let raw = match raw.iter().position(|&b| b == b';') {
            Some(i) => &raw[..i],
            None => raw,
        };
        if is_dots(raw) {
            if raw.iter().filter(|&&b| b == b'.').count() == 2 {
                out.pop();
            }
            continue;
        }
        let trimmed = trim_dots_spaces(raw);
        if !trimmed.is_empty() {
            out.push(text(trimmed));
        }
    }
    Ok(out)
}

/// The path of a request-target: origin-form as it is, absolute-form without its scheme
/// and authority (which ends at `/` or, as browsers read it, `\`); query and fragment cut.
pub fn target_path(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(target.len());
    let t = &target[..end];
    if t.first() == Some(&b'/') {
        return t;
    }
    match absolute_form(t) {
        Some((_, path)) => path,
        None => t,
    }
}

/// Splits an absolute-form target into its authority and path.
fn absolute_form(t: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = t.windows(3).position(|w| w == b"://")?;
    let scheme = &t[..i];
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return None;
    }
    let rest = &t[i + 3..];
    let a = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'\\'))
        .unwrap_or(rest.len());
    Some((&rest[..a], &rest[a..]))
}

/// Decodes `%XX` until none is left, at most [`MAX_DECODINGS`] times.
fn decode(path: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut cur = path.to_vec();
    for _ in 0..MAX_DECODINGS {
        match decode_once(&cur) {
            Some(next) => cur = next,
            None => return Ok(cur),
        }
    }
    match decode_once(&cur) {
        Some(_) => Err(Refusal::TooDeeplyEncoded),
        None => Ok(cur),
    }
}

/// One percent-decoding pass, or `None` when there is nothing to decode. An invalid
/// escape stays as it is (as `decodeURIComponent`-tolerant routers leave it).
fn decode_once(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// A segment made only of dots and spaces, with a dot: `.`, `..`, and what Windows reads
/// as one (`...`, `. `).
fn is_dots(s: &[u8]) -> bool {
    s.contains(&b'.') && s.iter().all(|b| matches!(b, b'.' | b' '))
}

fn trim_dots_spaces(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b'.' | b' '))
        .map_or(0, |i| i + 1);
    &s[..end]
}

/// A decoded segment as text: UTF-8 kept, `%` and bytes that are not printable text
/// (controls, invalid UTF-8) percent-encoded, so that the canonical form decodes to itself.
fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' || c.is_control() && c.is_ascii() {
                push_escape(&mut out, c as u8);
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_escape(&mut out, b);
        }
    }
    out
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Appends `s` with its letter case folded, as loosely as any router folds it.
fn fold_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else if let Some(ascii) = ascii_fold(c) {
            out.push_str(&ascii);
        } else {
            out.extend(c.to_uppercase());
        }
    }
}

/// The ASCII letters and digits a non-ASCII character folds to in some router, if any:
/// `ı` → `I` and `ſ` → `S` (upper case), `K` (Kelvin) → `K` (lower case), `ﬀ` → `FF`,
/// `ẞ` → `SS` (full mappings), `İ` → `I` (.NET's simple lower case), `ｔ` → `T` (NFKC).
fn ascii_fold(c: char) -> Option<String> {
    let ascii =
        |s: String| (s.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| s.to_ascii_uppercase());
    let u = c as u32;
    if c == '\u{130}' {
        return Some("I".into());
    }
    if (0xFF10..=0xFF19).contains(&u)
        || (0xFF21..=0xFF3A).contains(&u)
        || (0xFF41..=0xFF5A).contains(&u)
    {
        let a = char::from_u32(u - 0xFEE0)?;
        return Some(a.to_ascii_uppercase().to_string());
    }
    let upper: String = c.to_uppercase().collect();
    let lower: String = c.to_lowercase().collect();
    let upper_of_lower: String = lower.chars().flat_map(char::to_uppercase).collect();
    ascii(upper)
        .or_else(|| ascii(lower))
        .or_else(|| ascii(upper_of_lower))
}

/// Whether some router could read a dot segment, or an authority, into this target: a
/// piece (split on `/`, `\`, `;`, NUL, `?`, `#`) of its decoded path that is only dots and
/// spaces, a path that starts with two separators, a target that is neither origin- nor
/// absolute-form, or an authority with characters some parser reads as a path.
fn suspicious(target: &[u8], decoded: &[u8]) -> bool {
    let origin = target.first() == Some(&b'/');
    if !origin && target != b"*" {
        if absolute_form(target).is_none() {
            return true;
        }
        // The authority as RFC 3986 delimits it (up to `/`): a `\` or `@` in it moves the
        // path for some parser.
        let rest = &target[target.windows(3).position(|w| w == b"://").unwrap_or(0) + 3..];
        let authority = &rest[..rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())];
        if !authority
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_~".contains(b))
        {
            return true;
        }
    }
    let sep = |b: &u8| matches!(b, b'/' | b'\\');
    if decoded.len() >= 2 && sep(&decoded[0]) && sep(&decoded[1]) {
        return true;
    }
    pieces(decoded).any(is_dots)
}

fn pieces(decoded: &[u8]) -> impl Iterator<Item = &[u8]> {
    decoded.split(|b| matches!(b, b'/' | b'\\' | b';' | 0 | b'?' | b'#'))
}

/// The gateway's paths, each under its public name and the OP's, with canonical forms.
#[derive(Debug, Clone)]
pub struct Routes {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    target: Target,
    public: String,
    canonical: Vec<String>,
    last: String,
}

impl Routes {
    /// Routes for `(target, public path, the OP's path)` triples; the first entry whose
    /// canonical form matches wins.
    pub fn new(paths: &[(Target, &str, &str)]) -> Routes {
        let entries = paths
            .iter()
            .map(|&(target, public, op)| {
                let canonical: Vec<String> = [public, op]
                    .iter()
                    .filter_map(|p| canonical_path(p.as_bytes()).ok())
                    .collect();
                let last = canonical
                    .first()
                    .and_then(|c| c.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                Entry {
                    target,
                    public: public.to_string(),
                    canonical,
                    last,
                }
            })
            .collect();
        Routes { entries }
    }

    /// The exact public path of a target.
    pub fn public_path(&self, target: Target) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.target == target)
            .map(|e| e.public.as_str())
    }

    /// What a request-target (as received: origin- or absolute-form, with its query)
    /// names.
    pub fn classify(&self, target: &[u8]) -> Decision {
        if let Some(t) = self.exact(target) {
            return Decision::Exact(t);
        }
        let path = target_path(target);
        // Most paths a gateway passes through are plain and in origin form (an absolute
        // form's authority is judged too): the full rule's answer for them, without its
        // decoding passes and copies (tests compare the two).
        let plain = match target.first() {
            Some(b'/') => plain_canonical(path),
            _ => None,
        };
        if let Some(canonical) = plain {
            return match self
                .entries
                .iter()
                .find(|e| e.canonical.contains(&canonical))
            {
                Some(e) => Decision::Variant(e.target),
                None => Decision::Other,
            };
        }
        self.classify_full(target, path)
    }

    /// The gateway path a request-target's path is byte for byte, if any: [`Routes::classify`]'s
    /// [`Decision::Exact`], which every [`Variants`] mode serves.
    pub fn exact(&self, target: &[u8]) -> Option<Target> {
        let path = target_path(target);
        self.entries
            .iter()
            .find(|e| e.public.as_bytes() == path)
            .map(|e| e.target)
    }

    /// [`Routes::classify`] past the exact match, by the full rule.
    fn classify_full(&self, target: &[u8], path: &[u8]) -> Decision {
        let canonical = match canonical_path(target) {
            Ok(c) => c,
            Err(r) => return Decision::Refused(r),
        };
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.canonical.contains(&canonical))
        {
            return Decision::Variant(e.target);
        }
        // Decoding succeeded above, so it succeeds again here.
        let decoded = decode(path).unwrap_or_default();
        if suspicious(target, &decoded) && self.mentioned(&decoded) {
            return Decision::Refused(Refusal::Ambiguous);
        }
        Decision::Other
    }

    /// Whether any piece of the decoded path is an endpoint's last segment.
    fn mentioned(&self, decoded: &[u8]) -> bool {
        pieces(decoded).any(|p| {
            let mut folded = String::new();
            fold_into(&text(trim_dots_spaces(p)), &mut folded);
            !folded.is_empty() && self.entries.iter().any(|e| e.last == folded)
        })
    }
}

/// The parameter a path template (`prefix{param}suffix`, e.g.
/// `/op/api/v1/ciba/{auth_req_id}`) takes from a target, matched under the same rule as
/// the endpoints: the template's literal parts compare canonically, the parameter is the
/// decoded segment, its letter case kept.
pub fn template_param(prefix: &str, suffix: &str, target: &[u8]) -> Option<String> {
    const HOLE: &str = "\u{1}";
    let template = segments(format!("{prefix}{HOLE}{suffix}").as_bytes()).ok()?;
    let got = segments(target).ok()?;
    if template.len() != got.len() {
        return None;
    }
    let mut param = None;
    for (t, g) in template.iter().zip(&got) {
        match t.split_once("%01") {
            Some((before, after)) => {
                let rest = strip_folded_prefix(g, before)?;
                let id = strip_folded_suffix(rest, after)?;
                if id.is_empty() {
                    return None;
                }
                param = Some(id.to_string());
            }
            None if folded(t) == folded(g) => {}
            None => return None,
        }
    }
    param
}

fn folded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

fn strip_folded_prefix<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let want = folded(prefix);
    let mut acc = String::new();
    for (i, c) in s.char_indices() {
        if acc == want {
            return Some(&s[i..]);
        }
        if acc.len() > want.len() {
            return None;
        }
        fold_into(c.encode_utf8(&mut [0; 4]), &mut acc);
    }
    (acc == want).then_some("")
}

fn strip_folded_suffix<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let want = folded(suffix);
    if want.is_empty() {
        return Some(s);
    }
    let mut acc = String::new();
    for (i, c) in s.char_indices().rev() {
        let mut one = String::new();
        fold_into(c.encode_utf8(&mut [0; 4]), &mut one);
        acc.insert_str(0, &one);
        if acc == want {
            return Some(&s[..i]);
        }
        if acc.len() > want.len() {
            return None;
        }
    }
    None
}

/// The OP's cancel call, e.g. `DELETE /op/api/v1/ciba/{auth_req_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRoute {
    /// The method.
    pub method: http::Method,
    /// The path before the placeholder.
    pub prefix: String,
    /// The path after the placeholder.
    pub suffix: String,
}

impl CancelRoute {
    /// The `auth_req_id` a request cancels, when it is the cancel call: its request-target
    /// (as received) matches the path under the routing rule (`routing::template_param`).
    pub fn auth_req_id(&self, method: &http::Method, target: &[u8]) -> Option<String> {
        if *method != self.method {
            return None;
        }
        template_param(&self.prefix, &self.suffix, target)
    }
}

#[cfg(test)]
mod tests;
