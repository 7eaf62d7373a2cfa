//! The `ciba-gateway` command: parse the command line, load the configuration, run.

use ciba_gateway::config::{Config, LogFormat, Overrides};

// glibc's malloc was about a sixth of the proxy's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ciba_gateway::demo::op::{DemoOp, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DENY_HINT};
use clap::{Parser, Subcommand};
use pingora::apps::http_app::HttpServer;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A CIBA-enforcing reverse proxy for OpenID Providers.
#[derive(Parser, Debug)]
#[command(name = "ciba-gateway", version, about)]
struct Cli {
    /// The configuration file (TOML); see conf/gateway.toml.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// The OP's base URL; overrides upstream.url.
    #[arg(long)]
    upstream: Option<String>,
    /// Address of the proxy listener; overrides server.listen.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Address of the metrics and health listener; overrides server.metrics_listen.
    #[arg(long, global = true)]
    metrics_listen: Option<String>,
    /// Public base URL for the discovery document; overrides server.public_url.
    #[arg(long)]
    public_url: Option<String>,
    /// Validate the configuration and exit (0 when valid), like `nginx -t`.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway in front of a built-in demo OP and print a walkthrough.
    Demo {
        /// Address of the demo OP.
        #[arg(long, default_value = "127.0.0.1:3999")]
        op_listen: String,
        /// Seconds before the simulated device approves.
        #[arg(long, default_value_t = 5)]
        approve_after: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        upstream: cli.upstream.clone(),
        listen: cli.listen.clone(),
        metrics_listen: cli.metrics_listen.clone(),
        public_url: cli.public_url.clone(),
    };
    let demo = match &cli.command {
        Some(Command::Demo {
            op_listen,
            approve_after,
        }) => {
            overrides.upstream = Some(format!("http://{op_listen}"));
            Some((op_listen.clone(), *approve_after))
        }
        None => None,
    };
    let cfg = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ciba-gateway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "ciba-gateway: configuration ok (listen {}, metrics {}, upstream {})",
            cfg.listen,
            cfg.metrics_listen,
            cfg.upstream.base_url()
        );
        check_resolution(&cfg);
        return ExitCode::SUCCESS;
    }
    let mut listeners = vec![
        ("server.listen", cfg.listen.to_string()),
        ("server.metrics_listen", cfg.metrics_listen.to_string()),
    ];
    if let Some((op_listen, _)) = &demo {
        listeners.push(("--op-listen", op_listen.clone()));
    }
    if let Err(e) = check_listeners(&listeners) {
        eprintln!("ciba-gateway: {e}");
        return ExitCode::FAILURE;
    }
    init_logging(&cfg);
    ciba_gateway::metrics::init();

    let listen = cfg.listen;
    let metrics_listen = cfg.metrics_listen;
    let (mut server, _op) = ciba_gateway::edge::server::build(cfg);
    if let Some((op_listen, approve_after)) = demo {
        let op = DemoOp::new(
            &format!("http://{op_listen}"),
            Duration::from_secs(approve_after),
        );
        let mut svc = Service::new("demo-op".to_string(), HttpServer::new_app(op));
        svc.add_tcp(&op_listen);
        server.add_service(svc);
        print_walkthrough(
            &listen.to_string(),
            &metrics_listen.to_string(),
            approve_after,
        );
    }
    tracing::info!(%listen, %metrics_listen, "ciba-gateway starting");
    server.run_forever();
}

/// Whether every listener can bind its address, each tried the way nginx does (five tries
/// half a second apart while the address is busy); the error names the key.
///
/// pingora itself retries a busy address for 30 s and then stops only that listener's
/// thread, leaving a process whose health check passes while nothing serves the address.
fn check_listeners(listeners: &[(&str, String)]) -> Result<(), String> {
    const TRIES: u32 = 5;
    for (key, addr) in listeners {
        let mut tries = 0;
        loop {
            tries += 1;
            match std::net::TcpListener::bind(addr.as_str()) {
                // Dropped at once: pingora binds it again, with its own socket options.
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < TRIES => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(format!("{key}: cannot listen on {addr}: {e}")),
            }
        }
    }
    Ok(())
}

/// Says where `upstream.url`'s host name resolves now. Not an error when it does not: the
/// gateway starts anyway, reports not ready and keeps trying, so `--check` warns.
fn check_resolution(cfg: &Config) {
    use std::net::ToSocketAddrs;
    let up = &cfg.upstream;
    if let ciba_gateway::edge::resolve::OpAddress::Name { host, port } =
        ciba_gateway::edge::resolve::OpAddress::of(&up.host, up.port)
    {
        match (host.as_str(), port).to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => println!("ciba-gateway: upstream.url: {host} resolves to {addr}"),
            Ok(None) => eprintln!(
                "ciba-gateway: warning: upstream.url: {host} resolves to no address now; the gateway would start not ready and retry every {} s",
                up.discovery_retry.as_secs()
            ),
            Err(e) => eprintln!(
                "ciba-gateway: warning: upstream.url: cannot resolve {host} now ({e}); the gateway would start not ready and retry every {} s",
                up.discovery_retry.as_secs()
            ),
        }
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_walkthrough(listen: &str, metrics: &str, approve_after: u64) {
    let gw = format!("http://{listen}");
    println!(
        r#"
ciba-gateway demo: the gateway on {gw}, in front of a built-in demo OP.
The demo client is {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}; the simulated device approves
{approve_after} s after a request starts, and refuses when login_hint={DENY_HINT}.

1. Discovery, rewritten to point at the gateway:
   curl -s {gw}/.well-known/openid-configuration

2. Start a backchannel authentication:
   curl -s {gw}/backchannel -d client_id={DEMO_CLIENT_ID} -d client_secret={DEMO_CLIENT_SECRET} \
        -d scope=openid -d login_hint=alice
   -> {{"auth_req_id":"...","expires_in":120}}

3. Poll the token endpoint with that auth_req_id:
   curl -s {gw}/token -d client_id={DEMO_CLIENT_ID} -d client_secret={DEMO_CLIENT_SECRET} \
        -d grant_type=urn:openid:params:grant-type:ciba -d auth_req_id=PASTE_IT_HERE
   -> before approval: {{"error":"authorization_pending",...}}
   -> after {approve_after} s:      {{"access_token":"...","token_type":"Bearer","id_token":"...",...}}
   -> once more:        {{"error":"invalid_grant",...}}

4. A request the gateway refuses itself (a repeated parameter):
   curl -s {gw}/backchannel -d client_id={DEMO_CLIENT_ID} -d scope=openid -d scope=openid
   -> {{"error":"invalid_request","error_description":"parameter `scope` appears more than once"}}

5. Metrics and health: curl -s http://{metrics}/metrics ; curl -s http://{metrics}/readyz

Stop with Ctrl-C.
"#
    );
}
