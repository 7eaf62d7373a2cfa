//! The gateway's own request to the OP (for the CIBA endpoints and the metadata
//! documents), and the exchange that sends it.

use super::names::{is_hop_by_hop, X_FORWARDED_FOR, X_REQUEST_ID};
use super::numbers::decimal;
use super::{Gateway, RequestCtx, Route};
use crate::ciba::pipeline::Endpoint;
use crate::ciba::routing::Target;
use crate::edge::op_client::{self, Answer, Failure};
use crate::edge::reload::Live;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::Instant;

impl Gateway {
    /// The request the gateway sends to the OP: the client's headers minus hop-by-hop ones,
    /// the OP's `Host`, and the body's length.
    ///
    /// Built as an `http` request and handed to pingora without its case map (see
    /// `answer`): pingora writes the common names capitalised and the rest in lower case.
    pub(super) fn upstream_request(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        body_len: usize,
    ) -> Result<RequestHeader> {
        let src = session.req_header();
        // The endpoint's own path, whichever spelling of it the client used.
        let public = match ctx.route {
            Route::Ciba(Endpoint::Backchannel) if ctx.via_alias => Some(Target::MtlsBackchannel),
            Route::Ciba(Endpoint::Token) if ctx.via_alias => Some(Target::MtlsToken),
            Route::Ciba(Endpoint::Backchannel) => Some(Target::Backchannel),
            Route::Ciba(Endpoint::Token) => Some(Target::Token),
            Route::Discovery(doc) => Some(doc.target()),
            Route::PassThrough => None,
        }
        .and_then(|t| self.routes.get()?.public_path(t));
        let path = op_path_and_query(&self.live(ctx), &src.uri, public);
        let uri = http::Uri::try_from(path).explain_err(ErrorType::InternalError, |_| {
            "the OP's path is not a valid URI"
        })?;
        let mut headers = HeaderMap::with_capacity(src.headers.len() + 4);
        for (name, value) in src.headers.iter() {
            if !is_hop_by_hop(name) {
                append(&mut headers, name.clone(), value.clone())?;
            }
        }
        set_own_fields(
            &mut headers,
            session,
            &self.host,
            self.request_id(ctx, session).header_value(),
        )?;
        if body_len > 0 || src.method == http::Method::POST {
            set(&mut headers, CONTENT_LENGTH, decimal(body_len as u64))?;
        }
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = src.method.clone();
        parts.uri = uri;
        parts.headers = headers;
        let mut req = RequestHeader::from(parts);
        self.forward_certificate(ctx, &mut req)?;
        Ok(req)
    }

    /// Sends `request` and `body` to the OP and reads its whole answer; the time it took
    /// and a failure are recorded in `ctx`.
    ///
    /// `again` makes the request once more from the context, for the one retry a broken
    /// pooled connection allows (see `op_client::exchange_with`).
    pub(super) async fn exchange(
        &self,
        ctx: &mut RequestCtx,
        request: RequestHeader,
        again: impl FnOnce(&RequestCtx) -> Option<RequestHeader> + Send,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let Some(peer) = self.op.peer() else {
            ctx.tally.upstream_failure = Some(Failure::Connect);
            return Err(Failure::Connect);
        };
        let start = Instant::now();
        let shared: &RequestCtx = ctx;
        // Boxed: pingora's client session and the deadline make this future about 5 KiB,
        // which inline would be copied also for the requests answered without the OP.
        let result = Box::pin(op_client::exchange_with(
            &self.connector,
            &peer,
            request,
            move || again(shared),
            body,
            op_client::deadline(&self.live(ctx).cfg.upstream),
        ))
        .await;
        ctx.upstream_seconds = Some(start.elapsed().as_secs_f64());
        if let Err(f) = result {
            ctx.tally.upstream_failure = Some(f);
        }
        result
    }
}

/// The OP's path (the profile's mapping of the public one, `public` when routed to one
/// of the gateway's paths) with the request's query.
pub(super) fn op_path_and_query(live: &Live, uri: &http::Uri, public: Option<&str>) -> String {
    let path = live.cfg.profile.to_op_path(public.unwrap_or(uri.path()));
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    }
}

/// Appends a field, refusing (rather than panicking) past `http`'s field limit, which a
/// header under a large `server.max_header_bytes` could reach.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<()> {
    headers
        .try_append(name, value)
        .or_err(ErrorType::InvalidHTTPHeader, "too many header fields")?;
    Ok(())
}

/// Sets a field, replacing every earlier one of that name.
fn set(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<()> {
    headers
        .try_insert(name, value)
        .or_err(ErrorType::InvalidHTTPHeader, "too many header fields")?;
    Ok(())
}

/// Sets the fields the gateway adds to a request it passes through: [`set_own_fields`].
///
/// pingora's `insert_header` keeps a case-preserving map of names beside `http`'s, parses
/// each name anew, and neither map can reserve room: two new fields grow both maps, and
/// that cost as much as everything else the gateway does to such a request. So the header
/// is taken apart instead (a move), its fields set in `http`'s map with room reserved, and
/// put back together without the case map. Names then go out as on the gateway's own
/// requests to the OP: the common ones capitalised, the rest in lower case (names are
/// case-insensitive, RFC 9110 5.1; HAProxy and Envoy send them in lower case too). A target
/// that only pingora's header keeps as the bytes received (an absolute-form one)
/// is put back as those bytes.
pub(super) fn set_forwarded_fields(
    session: &Session,
    req: &mut RequestHeader,
    host: &HeaderValue,
    id: HeaderValue,
) -> Result<()> {
    let path = req.uri.path_and_query().map(|p| p.as_str().as_bytes());
    let raw = (path != Some(req.raw_path())).then(|| req.raw_path().to_vec());
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    parts
        .headers
        .try_reserve(3)
        .or_err(ErrorType::InvalidHTTPHeader, "too many header fields")?;
    set_own_fields(&mut parts.headers, session, host, id)?;
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw {
        req.set_raw_path(&raw)?;
    }
    Ok(())
}

/// Sets the gateway's own fields on a request to the OP, replacing any the client sent: the
/// OP's `Host`, the client's address after every earlier hop's in `X-Forwarded-For`, and
/// the request's `X-Request-Id`.
fn set_own_fields(
    headers: &mut HeaderMap,
    session: &Session,
    host: &HeaderValue,
    id: HeaderValue,
) -> Result<()> {
    set(headers, HOST, host.clone())?;
    if let Some(list) = forwarded_for(session)? {
        set(headers, X_FORWARDED_FOR, list)?;
    }
    set(headers, X_REQUEST_ID, id)
}

/// The `X-Forwarded-For` list with the client's address last, after every earlier hop's;
/// `None` when the client has no IP address (a Unix socket).
fn forwarded_for(session: &Session) -> Result<Option<HeaderValue>> {
    let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    else {
        return Ok(None);
    };
    let ip = IpText::new(ip);
    // Every earlier hop's list, in order: several header lines are one list (RFC 9110 5.3).
    let earlier = session.req_header().headers.get_all(X_FORWARDED_FOR);
    let len = earlier.iter().map(|v| v.len() + 2).sum::<usize>() + ip.as_bytes().len();
    // Sized exactly: the header value takes the buffer over without copying it again.
    let mut value = Vec::with_capacity(len);
    for prev in earlier {
        value.extend_from_slice(prev.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(ip.as_bytes());
    let value = HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| {
        pingora::Error::explain(ErrorType::InvalidHTTPHeader, "bad X-Forwarded-For")
    })?;
    Ok(Some(value))
}

/// An address written as `Display` writes it, on the stack; IPv4 by hand, since it is on
/// every proxied request.
struct IpText {
    // The longest `Display` of an IPv6 address is 39 bytes.
    bytes: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: std::net::IpAddr) -> Self {
        let mut t = IpText {
            bytes: [0; 48],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut t.bytes[..];
                // 48 bytes always hold it.
                let _ = write!(rest, "{v6}");
                t.len = 48 - rest.len();
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut cases: Vec<IpAddr> = vec![
            Ipv6Addr::LOCALHOST.into(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            "::ffff:255.255.255.255".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            "1111:2222:3333:4444:5555:6666:7777:8888".parse().unwrap(),
        ];
        for a in [0u8, 1, 9, 10, 42, 99, 100, 127, 199, 200, 250, 255] {
            cases.push(Ipv4Addr::new(a, 255 - a, a / 2, 7).into());
        }
        for ip in cases {
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
