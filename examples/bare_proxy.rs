//! A bare pingora reverse proxy with no CIBA logic: the baseline for `benches/load/compare.sh`.
//!
//! Every request goes to one plain-HTTP upstream over pooled keep-alive connections, with the
//! same worker-thread count as the gateway's default and the same upstream peer (built by
//! the gateway's own code from `upstream.url`, so it has the same connect, read, write and
//! pool-idle timeouts as the gateway's defaults) and the same idle bound on kept-alive client
//! connections. Nothing is inspected or rewritten, except that `POST /slow_down` is answered
//! with a fixed 400 JSON body without the upstream: pingora's floor for an answer of its own,
//! as nginx's `return 400` is nginx's.
//!
//! With `fields` as the fifth argument it also sets the three fields the gateway sets on
//! every request it forwards (`Host`, `X-Forwarded-For`, `X-Request-Id`) the way a pingora
//! proxy sets fields (`insert_header`), with values made once at start: what pingora charges
//! for them, apart from making the values.
//!
//! Usage: cargo run --release --example bare_proxy -- [LISTEN] [UPSTREAM_IP:PORT] [THREADS] [WORK_STEALING] [fields]
//! Defaults: 127.0.0.1:18090 127.0.0.1:18081 2 true (no fields)

use async_trait::async_trait;
use ciba_gateway::config;
use ciba_gateway::edge::{op_client, proxy};

// glibc's malloc was about a sixth of the proxy's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

struct Bare {
    peer: HttpPeer,
    /// The gateway's default idle bound for kept-alive client connections.
    keepalive_timeout_seconds: u64,
    /// The values of the gateway's three fields, when they are set on forwarded requests.
    fields: Option<[http::HeaderValue; 3]>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        // The gateway's own idle bound (a timer per wait for the next request).
        proxy::bound_keepalive(session, self.keepalive_timeout_seconds);
        if session.req_header().uri.path() != "/slow_down" {
            return Ok(false);
        }
        // Drain the body so the connection can carry the next request.
        while session.read_request_body().await?.is_some() {}
        let body = bytes::Bytes::from_static(br#"{"error":"slow_down"}"#);
        let mut header = ResponseHeader::build(400, Some(2))?;
        header.insert_header("content-type", "application/json")?;
        header.set_content_length(body.len())?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let Some([host, forwarded_for, request_id]) = &self.fields else {
            return Ok(());
        };
        req.insert_header(http::header::HOST, host.clone())?;
        req.insert_header("x-forwarded-for", forwarded_for.clone())?;
        req.insert_header("x-request-id", request_id.clone())?;
        Ok(())
    }
}

fn main() {
    // The same process settings as the gateway (its allocator, no transparent huge pages).
    ciba_gateway::edge::huge_pages::disable();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let work_stealing = args.next().is_none_or(|w| w != "false");
    let fields = match args.next().as_deref() {
        None => false,
        Some("fields") => true,
        Some(other) => panic!("the fifth argument is `fields` or nothing, not {other:?}"),
    };

    let conf = ServerConf {
        threads,
        work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let text = format!("[upstream]\nurl = \"http://{upstream}\"\n");
    let cfg = config::parse_file(&text)
        .and_then(|file| config::validate(file, &config::Overrides::default()))
        .unwrap_or_else(|e| panic!("bad upstream {upstream}: {e}"));
    let addr = upstream
        .parse()
        .unwrap_or_else(|e| panic!("the upstream must be an IP address and port: {e}"));
    let peer = op_client::peer(&cfg.upstream, addr);
    let bare = Bare {
        peer,
        keepalive_timeout_seconds: cfg.keepalive_timeout_seconds,
        fields: fields.then(|| {
            [
                http::HeaderValue::from_str(&upstream).expect("an address"),
                http::HeaderValue::from_static("127.0.0.1"),
                http::HeaderValue::from_static("1f2e-1"),
            ]
        }),
    };
    let mut proxy = http_proxy_service(&server.configuration, bare);
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
