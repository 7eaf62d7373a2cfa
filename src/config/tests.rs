//! Validation of whole files: defaults, overrides, and errors that name the key.

use super::*;
use std::time::Duration;

fn load(text: &str) -> Result<Config, ConfigError> {
    validate(parse_file(text)?, &Overrides::default())
}

#[test]
fn minimal_file_gets_defaults() {
    let c = load("[upstream]\nurl = \"http://127.0.0.1:3000\"\n").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.upstream.authority(), "127.0.0.1:3000");
    assert_eq!(c.upstream.read_timeout, Duration::from_secs(35));
    assert_eq!(c.upstream.resolve_interval, Duration::from_secs(30));
    assert_eq!(c.keepalive_timeout_seconds, 75);
    assert_eq!(c.max_body_bytes, 16 * 1024);
    assert!(!c.upstream.paths_configured());
    assert!(c.work_stealing);
    let single =
        load("[server]\nthreads = 1\nwork_stealing = false\n[upstream]\nurl = \"http://a:1\"\n")
            .unwrap();
    assert_eq!(
        (single.threads, single.work_stealing),
        (super::Threads::Configured(1), false)
    );
    let usable = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.threads, super::Threads::UsableCpus(usable));
}

#[test]
fn reserved_client_labels_are_refused() {
    for name in ["none", "other"] {
        let text = format!(
            "[upstream]\nurl = \"http://a:1\"\n[metrics]\nclient_labels = [\"c1\", \"{name}\"]\n"
        );
        let e = load(&text).unwrap_err().to_string();
        assert!(
            e.contains("metrics.client_labels") && e.contains(name),
            "{e}"
        );
    }
    let ok = "[upstream]\nurl = \"http://a:1\"\n[metrics]\nclient_labels = [\"Other\"]\n";
    assert!(load(ok).is_ok());
}

#[test]
fn ipv6_upstreams_keep_their_brackets_next_to_a_port() {
    let c = load("[upstream]\nurl = \"http://[::1]:3000/op\"\n").unwrap();
    assert_eq!(c.upstream.host, "::1");
    assert_eq!(c.upstream.address(), "[::1]:3000");
    assert_eq!(c.upstream.authority(), "[::1]:3000");
    assert_eq!(c.upstream.base_url(), "http://[::1]:3000/op");
    assert!(c.upstream.address().parse::<std::net::SocketAddr>().is_ok());
    let c = load("[upstream]\nurl = \"https://[2001:db8::1]/\"\n").unwrap();
    assert_eq!(c.upstream.authority(), "[2001:db8::1]");
    assert_eq!(c.upstream.address(), "[2001:db8::1]:443");
    let c = load("[upstream]\nurl = \"https://id.example.com\"\n").unwrap();
    assert_eq!(c.upstream.authority(), "id.example.com");
    assert_eq!(c.upstream.address(), "id.example.com:443");
}

#[test]
fn overrides_win_over_the_file() {
    let file = parse_file("[upstream]\nurl = \"http://a:1\"\n[server]\nlisten = \"127.0.0.1:1\"\n")
        .unwrap();
    let o = Overrides {
        upstream: Some("https://op.example/base/".into()),
        listen: Some("127.0.0.1:2".into()),
        ..Default::default()
    };
    let c = validate(file, &o).unwrap();
    assert_eq!(c.listen.port(), 2);
    assert!(c.upstream.tls);
    assert_eq!(c.upstream.port, 443);
    assert_eq!(c.upstream.base_path, "/base");
    assert_eq!(c.upstream.base_url(), "https://op.example/base");
}

#[test]
fn cancel_route_matches_only_its_pattern() {
    let c = load("[upstream]\nurl=\"http://a\"\n[polling]\ncancel_path = \"/op/api/v1/ciba/{auth_req_id}\"\n")
        .unwrap()
        .polling
        .cancel
        .unwrap();
    let del = http::Method::DELETE;
    let id = |m: &http::Method, t: &str| c.auth_req_id(m, t.as_bytes());
    assert_eq!(id(&del, "/op/api/v1/ciba/abc-1").as_deref(), Some("abc-1"));
    assert_eq!(id(&http::Method::GET, "/op/api/v1/ciba/abc-1"), None);
    assert_eq!(id(&del, "/op/api/v1/ciba/"), None);
    assert_eq!(id(&del, "/op/api/v1/ciba/a/b"), None);
    assert_eq!(id(&del, "/other/abc"), None);
    // Other spellings of the same path, under the routing rule; the id keeps its case.
    assert_eq!(
        id(&del, "/OP/Api/v1//ciba/AbC-1/").as_deref(),
        Some("AbC-1")
    );
    assert_eq!(
        id(&del, "/op/api/x/../v1/ciba/%61bc").as_deref(),
        Some("abc")
    );
    assert_eq!(
        id(&del, "http://h/op/api/v1/ciba/abc?x=1").as_deref(),
        Some("abc")
    );
}

#[test]
fn upstream_credentials_are_refused_without_being_echoed() {
    for url in [
        "http://user:hunter2@op.example",
        "https://hunter2@op.example:8443/base",
    ] {
        let e = load(&format!("[upstream]\nurl = \"{url}\"\n")).unwrap_err();
        assert_eq!(e.key, "upstream.url");
        assert!(e.message.contains("credentials"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

#[test]
fn upstream_url_ports_and_hosts() {
    let url = |u: &str| load(&format!("[upstream]\nurl = \"{u}\"\n"));
    for bad in [
        "http://a:99999",
        "http://a:65536",
        "http://a:abc",
        "http://a:",
        "http://a:-1",
        "http://a:+80",
        "http://a: 80",
        "http://a:8o",
        "http://a:80:80",
        "http://:8080",
        "http:///x",
        "http://",
        "https://:443/",
        "http://[]:80",
        "http://[::1",
        "http://[::1]x",
        "http://[::1]:0",
        "http://a:00",
    ] {
        let e = url(bad).map(|_| ()).expect_err(bad).to_string();
        assert!(e.starts_with("upstream.url: "), "{bad}: {e}");
    }
    for (good, host, port) in [
        ("http://a:1", "a", 1),
        ("http://a:65535/x", "a", 65535),
        ("http://a:080", "a", 80),
        ("https://a", "a", 443),
        ("http://a", "a", 80),
        ("http://[::1]:3000", "::1", 3000),
        ("https://[::1]", "::1", 443),
        ("http://127.0.0.1:3000/base/", "127.0.0.1", 3000),
    ] {
        let c = url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(
            (c.upstream.host.as_str(), c.upstream.port),
            (host, port),
            "{good}"
        );
    }
}

#[test]
fn logging_level_takes_known_levels_only() {
    let level = |l: &str| {
        load(&format!(
            "[upstream]\nurl = \"http://a\"\n[logging]\nlevel = \"{l}\"\n"
        ))
    };
    for good in [
        "info",
        "INFO",
        "Warn",
        "off",
        "trace",
        "ciba_gateway=debug,pingora=warn",
        "warn,ciba_gateway=debug",
        "info,",
    ] {
        assert!(level(good).is_ok(), "{good}");
    }
    for bad in [
        "verbose",
        "infoo",
        "ciba_gateway=loud",
        "ciba_gateway",
        "",
        ",",
        "=info",
        "info,bogus",
        "3",
        "ciba_gateway=info=debug",
        "info, access=off",
    ] {
        let e = level(bad).map(|_| ()).expect_err(bad).to_string();
        assert!(e.starts_with("logging.level: "), "{bad}: {e}");
        assert!(
            e.contains("trace, debug, info, warn, error, off"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[upstream]\nurll = \"x\"\n", "unknown field `urll`"),
        (
            "[server]\nlisten = \"nowhere\"\n[upstream]\nurl=\"http://a\"\n",
            "server.listen",
        ),
        ("[upstream]\nurl = \"ftp://a\"\n", "upstream.url"),
        ("[server]\n", "upstream.url: is required"),
        (
            "[upstream]\nurl=\"http://a\"\nread_timeout_ms = 0\n",
            "upstream.read_timeout_ms",
        ),
        (
            "[upstream]\nurl=\"http://a\"\nbackchannel_path = \"ciba\"\n",
            "upstream.backchannel_path",
        ),
        (
            "[upstream]\nurl=\"http://a\"\nbackchannel_path = \"/Token\"\ntoken_path = \"/token/\"\n",
            "upstream.token_path",
        ),
        (
            "[routing]\nvariants = \"lenient\"\n[upstream]\nurl=\"http://a\"\n",
            "unknown variant `lenient`, expected `normalize` or `refuse`",
        ),
        (
            "[server]\nmax_body_bytes = 1000000\n[upstream]\nurl=\"http://a\"\n",
            "server.max_body_bytes",
        ),
        (
            "[logging]\nformat = \"xml\"\n[upstream]\nurl=\"http://a\"\n",
            "logging.format",
        ),
        (
            "[upstream]\nurl=\"http://a\"\n[server]\npublic_url = \"id.example.com\"\n",
            "server.public_url",
        ),
        ("[upstream]\nurl = 5\n", "invalid type"),
        ("[bogus]\n", "unknown field `bogus`"),
        ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"redis\"\n", "state.redis_url"),
        ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"etcd\"\n", "state.backend"),
        ("[upstream]\nurl=\"http://a\"\n[state]\nbackend = \"redis\"\nredis_url = \"redis://x\"\nfailure_mode = \"maybe\"\n", "state.failure_mode"),
        ("[upstream]\nurl=\"http://a\"\n[validation]\nbinding_message_pattern = \"(\"\n", "validation.binding_message_pattern"),
        ("[upstream]\nurl=\"http://a\"\n[login_hint_token]\noutput = \"xml\"\n", "unknown variant `xml`"),
        ("[upstream]\nurl=\"http://a\"\n[polling]\nunknown_auth_req_id = \"drop\"\n", "polling.unknown_auth_req_id"),
        ("[upstream]\nurl=\"http://a\"\n[polling]\ntolerance_ms = 5000\n", "polling.tolerance_ms"),
        ("[upstream]\nurl=\"http://a\"\n[polling]\ncancel_path = \"/cancel\"\n", "polling.cancel_path"),
        ("[upstream]\nurl=\"http://a\"\n[polling]\nmax_tracked = 10\nmax_tracked_per_client = 11\n", "polling.max_tracked_per_client"),
        ("[upstream]\nurl=\"http://a\"\n[polling]\nmax_tracked = 100000001\n", "polling.max_tracked"),
        ("[upstream]\nurl=\"http://a\"\nresolve_interval_seconds = 0\n", "upstream.resolve_interval_seconds"),
        ("[upstream]\nurl=\"http://a:0\"\n", "upstream.url: port 0"),
        ("[server]\nkeepalive_timeout_seconds = 0\n[upstream]\nurl=\"http://a\"\n", "server.keepalive_timeout_seconds"),
        ("[upstream]\nurl=\"http://a\"\nresolve_interval_seconds = 86401\n", "upstream.resolve_interval_seconds"),
    ];
    for (text, expect) in cases {
        let e = load(text).expect_err(text).to_string();
        assert!(e.contains(expect), "{text:?} gave {e:?}");
    }
}

#[test]
fn edge_limits_have_defaults_and_bounds() {
    let c = load("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert_eq!(
        c.edge,
        EdgeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_connections: 10_000,
            max_connections_per_address: 256,
        }
    );
    let set = load("[server]\nclient_header_timeout_seconds = 1\nclient_body_timeout_seconds = 2\nmax_header_bytes = 1024\nmax_connections = 5\nmax_connections_per_address = 5\n[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert_eq!(
        (
            set.edge.header_timeout,
            set.edge.body_timeout,
            set.edge.max_header_bytes
        ),
        (Duration::from_secs(1), Duration::from_secs(2), 1024)
    );
    let bad = [
        (
            "client_header_timeout_seconds = 0",
            "server.client_header_timeout_seconds",
        ),
        (
            "client_header_timeout_seconds = 3601",
            "server.client_header_timeout_seconds",
        ),
        (
            "client_body_timeout_seconds = 0",
            "server.client_body_timeout_seconds",
        ),
        ("max_header_bytes = 1023", "server.max_header_bytes"),
        ("max_header_bytes = 1048576", "server.max_header_bytes"),
        ("max_connections = 0", "server.max_connections"),
        (
            "max_connections_per_address = 0",
            "server.max_connections_per_address",
        ),
        (
            "max_connections = 10\nmax_connections_per_address = 11",
            "server.max_connections_per_address",
        ),
    ];
    for (line, key) in bad {
        let text = format!("[server]\n{line}\n[upstream]\nurl = \"http://a:1\"\n");
        let e = load(&text).expect_err(line).to_string();
        assert!(e.starts_with(key), "{line:?} gave {e:?}");
    }
}

#[test]
fn a_word_outside_a_closed_set_names_its_key_and_the_allowed_words() {
    let cases = [
        (
            "[state]\nbackend = \"etcd\"\n",
            "state.backend",
            "`memory` or `redis`",
        ),
        (
            "[state]\nbackend = \"redis\"\nredis_url = \"redis://x\"\nfailure_mode = \"maybe\"\n",
            "state.failure_mode",
            "`open` or `closed`",
        ),
        (
            "[polling]\nunknown_auth_req_id = \"drop\"\n",
            "polling.unknown_auth_req_id",
            "`forward` or `reject`",
        ),
        (
            "[logging]\nformat = \"xml\"\n",
            "logging.format",
            "`text` or `json`",
        ),
        (
            "[routing]\nvariants = \"lenient\"\n",
            "routing.variants",
            "`normalize` or `refuse`",
        ),
        (
            "[validation.clients.\"c\"]\ndelivery_mode = \"pigeon\"\n",
            "validation.clients.c.delivery_mode",
            "`poll`, `ping`, `push`",
        ),
    ];
    for (text, key, allowed) in cases {
        let e = parse_file(&format!("[upstream]\nurl = \"http://a\"\n{text}")).unwrap_err();
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.message.contains(allowed), "{text:?}: {e}");
        assert!(e.message.contains("line "), "{text:?}: {e}");
    }
    // A syntax error has no key; `Config::load` names the file instead.
    assert_eq!(parse_file("not toml [").unwrap_err().key, "");
}
