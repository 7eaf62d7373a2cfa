//! A bare pingora reverse proxy with no CIBA logic: the baseline for `benches/load/compare.sh`.
//!
//! Every request goes to one plain-HTTP upstream over pooled keep-alive connections, with the
//! same worker-thread count as the gateway's default. Nothing is inspected or rewritten.
//!
//! Usage: cargo run --release --example bare_proxy -- [LISTEN] [UPSTREAM] [THREADS] [WORK_STEALING]
//! Defaults: 127.0.0.1:18090 127.0.0.1:18081 2 true

use async_trait::async_trait;

// glibc's malloc was about a sixth of the proxy's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pingora::prelude::HttpPeer;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let work_stealing = args.next().is_none_or(|w| w != "false");

    let conf = ServerConf {
        threads,
        work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
