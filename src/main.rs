//! The `ciba-gateway` command: parse the command line, load the configuration, run.

use ciba_gateway::config::{Config, LogFormat, Overrides};

// glibc's malloc was about a sixth of the proxy's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ciba_gateway::demo::code_op::CodeOp;
use ciba_gateway::demo::op::DemoOp;
use ciba_gateway::demo::walkthrough;
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
        /// Seconds before the simulated device approves (or refuses, for login_hint=deny).
        #[arg(long, default_value_t = 10)]
        approve_after: u64,
        /// The interval the demo OP announces in its acknowledgements, in seconds; by
        /// default none, like node-oidc-provider, and the gateway adds CIBA's 5 s.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        op_interval: Option<u64>,
        /// Run the demo OP with the authorization code flow only (PAR, PKCE, no CIBA), the
        /// gateway in bridge mode in front of it.
        #[arg(long)]
        bridge: bool,
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
            op_interval,
            ..
        }) => {
            overrides.upstream = Some(format!("http://{op_listen}"));
            Some((op_listen.clone(), *approve_after, *op_interval))
        }
        None => None,
    };
    let bridge_demo = matches!(&cli.command, Some(Command::Demo { bridge: true, .. }));
    let (cfg, started_text) = match Config::load_with_text(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ciba-gateway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // `demo --bridge`: the bridge on, with a key made for this run unless one is configured.
    let mut cfg = cfg;
    if bridge_demo && cfg.bridge.is_none() {
        cfg.bridge = Some(ciba_gateway::config::bridge::Bridge::with_key(random_key()));
    }
    if cli.check {
        println!(
            "ciba-gateway: configuration ok (listen {}, metrics {}, upstream {}, worker threads {})",
            cfg.listen,
            cfg.metrics_listen,
            cfg.upstream.base_url(),
            cfg.threads
        );
        check_resolution(&cfg);
        return ExitCode::SUCCESS;
    }
    // As early as a running gateway can be sent it: SIGHUP's default action ends the process.
    if let Err(e) = ciba_gateway::edge::reload::catch_hangup_early() {
        eprintln!("ciba-gateway: cannot handle SIGHUP: {e}");
        return ExitCode::FAILURE;
    }
    let mut listeners = vec![
        ("server.listen", cfg.listen.to_string()),
        ("server.metrics_listen", cfg.metrics_listen.to_string()),
    ];
    if let Some((op_listen, _, _)) = &demo {
        listeners.push(("--op-listen", op_listen.clone()));
    }
    if let Err(e) = check_listeners(&listeners) {
        eprintln!("ciba-gateway: {e}");
        return ExitCode::FAILURE;
    }
    let log_level = init_logging(&cfg);
    // Before the id table is made with its room (see the module).
    ciba_gateway::edge::huge_pages::disable();
    ciba_gateway::metrics::init();

    let listen = cfg.listen;
    let metrics_listen = cfg.metrics_listen;
    let threads = cfg.threads;
    // The demo's issuer is the gateway's public URL (see demo/op.rs); its walkthrough is
    // computed before `cfg` moves into the server.
    let bridge_walkthrough = cfg.bridge.as_ref().filter(|_| bridge_demo).map(|b| {
        (
            walkthrough::bridge_text(&walkthrough::BridgeDemo {
                gateway: format!("http://{listen}"),
                op: demo
                    .as_ref()
                    .map(|(l, _, _)| format!("http://{l}"))
                    .unwrap_or_default(),
                interval: b.interval.max(cfg.polling.policy.min_interval.as_secs()),
                api_path: b.api_path.clone(),
            }),
            b.callback_path.clone(),
        )
    });
    let demo = demo.map(|(op_listen, approve_after, op_interval)| {
        let gateway = format!("http://{listen}");
        let issuer = cfg.public_url.clone().unwrap_or_else(|| gateway.clone());
        let (interval, slowed_interval) = walkthrough::intervals(&cfg.polling.policy, op_interval);
        let text = walkthrough::text(&walkthrough::Demo {
            gateway,
            metrics: metrics_listen.to_string(),
            approve_after,
            interval,
            slowed_interval,
        });
        let op = DemoOp::new(&issuer, Duration::from_secs(approve_after))
            .announcing_interval(op_interval);
        (op_listen, op, text)
    });
    let built = ciba_gateway::edge::server::build_reloadable(cfg);
    let (mut server, runtime) = (built.server, built.runtime);
    if let Some(set_level) = log_level {
        runtime.follow(Box::new(move |live| set_level(&live.cfg.log_level)));
    }
    let source = ciba_gateway::edge::reload::Source {
        path: cli.config.clone(),
        overrides,
        started: started_text,
    };
    if let Err(e) = ciba_gateway::edge::reload::listen_for_hangup(runtime, source) {
        eprintln!("ciba-gateway: cannot listen for SIGHUP: {e}");
        return ExitCode::FAILURE;
    }
    if let Some((op_listen, op, text)) = demo {
        let text = match bridge_walkthrough {
            Some((bridge_text, callback_path)) => {
                let op = CodeOp::new(&format!("http://{op_listen}"), &callback_path);
                let mut svc = Service::new("demo-op".to_string(), HttpServer::new_app(op));
                svc.add_tcp(&op_listen);
                server.add_service(svc);
                bridge_text
            }
            None => {
                let mut svc = Service::new("demo-op".to_string(), HttpServer::new_app(op));
                svc.add_tcp(&op_listen);
                server.add_service(svc);
                text
            }
        };
        print!("{text}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    tracing::info!(%listen, %metrics_listen, %threads, "ciba-gateway starting");
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

/// A fresh 32-byte key (the demo's `bridge.key`).
fn random_key() -> ciba_gateway::ciba::ids::Secret<[u8; 32]> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .expect("the operating system's random source works");
    ciba_gateway::ciba::ids::Secret::new(key)
}

/// Changes the log filter of a running process.
type SetLevel = Box<dyn Fn(&str) + Send + Sync>;

/// Sets up logging; returns what changes the level on a reload (`logging.level`), or
/// nothing when `RUST_LOG` chose the filter (the environment then wins until a restart).
fn init_logging(cfg: &Config) -> Option<SetLevel> {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if pinned {
        // Nothing to reload: no reloadable layer (a lock read on each event) either.
        match cfg.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
        return None;
    }
    // The handle's type differs per format, so each becomes the same closure; a level
    // that passed `logging::check_log_level` parses here too.
    let set: SetLevel = match cfg.log_format {
        LogFormat::Json => {
            let b = builder.json().with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |level| {
                let _ = h.reload(EnvFilter::new(level));
            })
        }
        LogFormat::Text => {
            let b = builder.with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |level| {
                let _ = h.reload(EnvFilter::new(level));
            })
        }
    };
    Some(set)
}
