//! Requests the gateway answers itself, served on pingora's HTTP/1 session without pingora's
//! proxy loop.
//!
//! pingora's proxy app runs every request inside one future made for proxying (its upstream
//! connection, its body pumps, its cache), boxed and copied in full on every request: tens of
//! KiB, whether or not the request is proxied. The gateway answers the CIBA endpoints and the
//! metadata documents itself, after its own exchange with the OP, so for a request the guard
//! can tell is one of them it runs the same hooks in the same order as pingora's
//! `process_request` does for a request its `request_filter` answers (`early_request_filter`,
//! the downstream modules, `request_filter`, `logging`, and on an error `fail_to_proxy`),
//! on the same session type and with the same keep-alive hand-back. The guard passes no
//! downstream modules: pingora's default set is response compression at level 0, which does
//! nothing, and the gateway's own answers carry tokens and are never to be compressed.
//!
//! Which requests: [`OwnRequests::claims`] answers from the request-target as received, and
//! only for plain origin-form targets (the guard's `header_check` passed them), whose bytes
//! pingora's own parser keeps as they are; `request_filter` then routes the request again
//! from pingora's parse. Should it ever decide to proxy a claimed request, the request is
//! refused with a 500 and the connection closed: a claimed request is never forwarded.

use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::modules::http::HttpModules;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType};

/// A proxy that answers some requests itself, never proxying them.
pub trait OwnRequests: ProxyHttp + Send + Sync + 'static
where
    Self::CTX: Send + Sync,
{
    /// A fresh context for a request with this origin-form target when `request_filter`
    /// answers every such request itself (never returns `Ok(false)` for it); `None` when it
    /// may proxy it.
    fn claims(&self, target: &[u8]) -> Option<Self::CTX>;
}

/// Serves one claimed request on `stream`, whose header is complete at its front; `prepare`
/// sets the session's keep-alive as the guard does for every request. Returns the
/// connection when it may carry another request.
pub async fn serve<P>(
    proxy: &P,
    modules: &HttpModules,
    stream: Stream,
    mut ctx: P::CTX,
    prepare: impl FnOnce(&mut pingora::protocols::http::ServerSession),
) -> Option<ReusedHttpStream>
where
    P: OwnRequests,
    P::CTX: Send + Sync,
{
    let mut session = Session::new_h1_with_modules(stream, modules);
    prepare(&mut session.downstream_session);
    match session.downstream_session.read_request().await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            // As pingora's proxy app does (the guard has already refused what it cannot
            // parse, so this is for completeness). Boxed, as is every rare path here: the
            // whole future is copied when it is boxed, its largest await included.
            Box::pin(async {
                if e.etype() == &ErrorType::InvalidHTTPHeader {
                    let _ = session.downstream_session.respond_error(400).await;
                }
                session.downstream_session.shutdown().await;
            })
            .await;
            return None;
        }
    }
    let failure = match proxy.early_request_filter(&mut session, &mut ctx).await {
        Err(e) => Some((e, "Fail to early filter request:")),
        Ok(()) => {
            let Session {
                downstream_session,
                downstream_modules_ctx,
                ..
            } = &mut session;
            downstream_modules_ctx
                .request_header_filter(downstream_session.req_header_mut())
                .await
                .err()
                .map(|e| (e, "Failed in downstream modules request filter:"))
        }
    };
    let failure = match failure {
        Some(failure) => Some(failure),
        None => match proxy.request_filter(&mut session, &mut ctx).await {
            Ok(true) => None,
            Ok(false) => Some((
                Error::explain(
                    ErrorType::InternalError,
                    "a request the gateway claimed was routed to the OP; refused",
                ),
                "Fail to filter request:",
            )),
            Err(e) => Some((e, "Fail to filter request:")),
        },
    };
    let keep = match failure {
        None => {
            proxy.logging(&mut session, None, &mut ctx).await;
            true
        }
        Some((e, context)) => Box::pin(failed(proxy, &mut session, &mut ctx, e, context)).await,
    };
    if !keep {
        return None;
    }
    // pingora's own hand-back: the settings the next request starts with, then the
    // connection once the rest of this request's body is drained.
    let mut settings = HttpPersistentSettings::for_session(&session.downstream_session);
    if let Some(uc) = proxy.persist_connection_context(&session, &ctx) {
        settings.set_user_context(uc);
    }
    // pingora's `finish` for HTTP/1 (the guard's sessions are nothing else), step by step:
    // its future holds every session kind's hand-back and is copied in full wherever it is
    // moved; these hold only what HTTP/1 needs.
    let mut downstream = session.downstream_session;
    downstream.finish_body().await.ok()?;
    let pingora::protocols::http::ServerSession::H1(h1) = *downstream else {
        return None;
    };
    let reusable = h1.reuse().await.ok().flatten()?;
    Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
}

/// What pingora does when a hook fails: `fail_to_proxy` answers, the error is logged
/// (unless the proxy suppresses it), `logging` runs; the connection may be kept only if
/// `fail_to_proxy` says so.
async fn failed<P>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    e: Box<Error>,
    context: &str,
) -> bool
where
    P: OwnRequests,
    P::CTX: Send + Sync,
{
    let answered = proxy.fail_to_proxy(session, &e, ctx).await;
    if !proxy.suppress_error_log(session, ctx, &e) {
        tracing::error!(
            "{context} {e}, status: {}, {}",
            answered.error_code,
            proxy.request_summary(session, ctx)
        );
    }
    proxy.logging(session, Some(&e), ctx).await;
    session.downstream_session.on_proxy_failure(e);
    answered.can_reuse_downstream
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use pingora::proxy::FailToProxy;
    use pingora::upstreams::peer::HttpPeer;
    use std::sync::Mutex;

    /// Hooks that note what ran; `request_filter` answers or declines as told.
    #[derive(Default)]
    struct Noting {
        answers: bool,
        ran: Mutex<Vec<String>>,
    }

    impl Noting {
        fn note(&self, what: impl Into<String>) {
            self.ran.lock().unwrap().push(what.into());
        }
    }

    #[async_trait]
    impl ProxyHttp for Noting {
        type CTX = ();

        fn new_ctx(&self) {}

        async fn request_filter(&self, session: &mut Session, _: &mut ()) -> pingora::Result<bool> {
            self.note(format!("request_filter {}", session.req_header().uri));
            if self.answers {
                let answer = pingora::http::ResponseHeader::build(204, None)?;
                session
                    .write_response_header(Box::new(answer), true)
                    .await?;
            }
            Ok(self.answers)
        }

        async fn upstream_peer(
            &self,
            _: &mut Session,
            _: &mut (),
        ) -> pingora::Result<Box<HttpPeer>> {
            self.note("upstream_peer");
            Err(Error::new(ErrorType::ConnectNoRoute))
        }

        async fn fail_to_proxy(&self, _: &mut Session, e: &Error, _: &mut ()) -> FailToProxy {
            self.note(format!("fail_to_proxy {:?}", e.etype()));
            FailToProxy {
                error_code: 500,
                can_reuse_downstream: false,
            }
        }

        async fn logging(&self, _: &mut Session, e: Option<&Error>, _: &mut ()) {
            self.note(format!("logging {:?}", e.map(|e| e.etype().clone())));
        }
    }

    impl OwnRequests for Noting {
        fn claims(&self, _: &[u8]) -> Option<()> {
            Some(())
        }
    }

    async fn serve_one(proxy: &Noting) -> Option<ReusedHttpStream> {
        let request = b"GET /token HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec();
        let stream: Stream = Box::new(std::io::Cursor::new(request));
        serve(proxy, &HttpModules::new(), stream, (), |s| {
            s.set_keepalive(Some(60))
        })
        .await
    }

    #[tokio::test]
    async fn an_answered_request_runs_the_hooks_in_pingoras_order_and_keeps_the_connection() {
        let proxy = Noting {
            answers: true,
            ..Noting::default()
        };
        assert!(serve_one(&proxy).await.is_some());
        assert_eq!(
            *proxy.ran.lock().unwrap(),
            ["request_filter /token", "logging None"]
        );
    }

    #[tokio::test]
    async fn a_claimed_request_the_proxy_would_forward_is_refused_never_forwarded() {
        let proxy = Noting::default();
        assert!(
            serve_one(&proxy).await.is_none(),
            "the connection is closed"
        );
        assert_eq!(
            *proxy.ran.lock().unwrap(),
            [
                "request_filter /token",
                "fail_to_proxy InternalError",
                "logging Some(InternalError)"
            ]
        );
    }
}
