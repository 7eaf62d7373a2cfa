//! Which keys a reload (`SIGHUP`) applies and which need a restart: the one list.
//!
//! A key is written as the key reference spells it (`clients.<id>.jwks`); an entry names a
//! key or a whole table (`validation` covers every `validation.*` key). `keys.rs` tests that
//! every key of the file matches exactly one entry. A restart-only key keeps the value the
//! process started with ([`carry_restart_only`]) whatever a reload reads, and a reload that
//! finds it changed says so by name ([`restart_changes`]).

use super::{Config, Overrides};

/// What a reload does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Applied by a reload: new requests (or new connections) see the new value.
    Live,
    /// Read once at start-up (a listener, a thread, a connection, a key in use).
    Restart,
}

use Reload::{Live, Restart};

/// Every key or table of the file and what a reload does with it.
pub const KEYS: &[(&str, Reload)] = &[
    // Listeners, threads and the shutdown grace are pingora's, set when it starts.
    ("server.listen", Restart),
    ("server.metrics_listen", Restart),
    ("server.threads", Restart),
    ("server.work_stealing", Restart),
    ("server.shutdown_grace_seconds", Restart),
    ("server.public_url", Live),
    ("server.max_body_bytes", Live),
    // Read for each new connection (the guard) or request (the proxy).
    ("server.keepalive_timeout_seconds", Live),
    ("server.client_header_timeout_seconds", Live),
    ("server.client_body_timeout_seconds", Live),
    ("server.max_header_bytes", Live),
    ("server.max_connections", Live),
    ("server.max_connections_per_address", Live),
    // The listener's certificate pair rotates (edge/tls.rs); the rest of its TLS is
    // built into the acceptor at start-up.
    ("server.tls.cert_file", Live),
    ("server.tls.key_file", Live),
    ("server.tls.min_version", Restart),
    ("server.tls.fapi_ciphers", Restart),
    ("server.tls.http2", Restart),
    ("server.tls.client_auth", Restart),
    ("server.tls.handshake_timeout_seconds", Restart),
    ("server.tls.watch_interval_seconds", Restart),
    ("server.tls.max_concurrent_streams", Restart),
    // The OP's peer, address follower and discovery are set up once.
    ("upstream.url", Restart),
    ("upstream.backchannel_path", Restart),
    ("upstream.token_path", Restart),
    ("upstream.connect_timeout_ms", Restart),
    ("upstream.read_timeout_ms", Restart),
    ("upstream.write_timeout_ms", Restart),
    ("upstream.discovery_retry_seconds", Restart),
    ("upstream.resolve_interval_seconds", Restart),
    ("upstream.tls_verify", Restart),
    ("upstream.ca_file", Restart),
    ("upstream.client_cert_file", Restart),
    ("upstream.client_key_file", Restart),
    ("upstream.mtls_backchannel_path", Restart),
    ("upstream.mtls_token_path", Restart),
    ("polling", Live),
    ("rate_limit", Live),
    ("metrics.client_labels", Live),
    // The discovered endpoints are stored under their public paths, mapped once.
    ("profile.paths", Restart),
    ("profile.name", Live),
    ("profile.error_codes", Live),
    ("profile.ack_fields", Live),
    ("profile.default_expires_in", Live),
    ("validation", Live),
    ("login_hint_token", Live),
    // The store (memory or a Redis connection pool) is built once.
    ("state", Restart),
    ("logging.level", Live),
    ("logging.format", Restart),
    ("routing", Live),
    // What ping requests already hold is sealed with this key and queued in this store.
    ("ping.key", Restart),
    ("ping.key_file", Restart),
    ("ping.max_concurrent_polls", Restart),
    ("ping.queue_capacity", Restart),
    ("ping.notify_connect_timeout_ms", Restart),
    ("ping.notify_write_timeout_ms", Restart),
    ("ping.notify_read_timeout_ms", Restart),
    ("ping.notify_backoff_first_ms", Restart),
    ("ping.notify_backoff_cap_ms", Restart),
    ("ping.notify_max_body_bytes", Restart),
    ("ping.notify_ca_file", Restart),
    ("ping.lease_seconds", Restart),
    ("ping.clients", Live),
    ("clients", Live),
    // Read per request from the request's snapshot (edge/proxy/client_cert.rs).
    ("client_certificates", Live),
    // Read per request from the request's snapshot; the replay table is sized at start-up.
    ("fapi", Live),
    ("fapi.replay_cache_max_entries", Restart),
    // The bridge's store, key, paths and notifier are built at start-up.
    ("bridge", Restart),
];

/// Whether `entry` covers `key`: the key itself or a key inside that table.
fn covers(entry: &str, key: &str) -> bool {
    key == entry
        || key
            .strip_prefix(entry)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// What a reload does with `key` (written as the key reference writes it), or `None` for
/// a key the list does not know.
pub fn classify(key: &str) -> Option<Reload> {
    KEYS.iter()
        .filter(|(entry, _)| covers(entry, key))
        .max_by_key(|(entry, _)| entry.len())
        .map(|&(_, r)| r)
}

/// The restart-only keys whose value in `new` differs from `started` (both file texts),
/// leaving out the ones a command-line option overrides. A text that does not parse as
/// TOML compares as empty: the validation reports it, not this.
pub fn restart_changes(started: &str, new: &str, overrides: &Overrides) -> Vec<&'static str> {
    let table = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (old, new) = (table(started), table(new));
    let overridden = |key: &str| match key {
        "server.listen" => overrides.listen.is_some(),
        "server.metrics_listen" => overrides.metrics_listen.is_some(),
        "upstream.url" => overrides.upstream.is_some(),
        _ => false,
    };
    KEYS.iter()
        .filter(|(key, r)| *r == Restart && !overridden(key))
        .filter(|(key, _)| lookup(&old, key) != lookup(&new, key))
        .map(|&(key, _)| key)
        .collect()
}

/// The value at a dotted key (no part of a restart-only key is a map's key).
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Why a new configuration cannot be applied to a process started with `started` at
/// all: ping delivery turned on needs the ping store and poller, which are built at
/// start-up (turned off and on again is fine: they are still there).
pub fn unappliable(started: &Config, new: &Config) -> Option<super::ConfigError> {
    if started.tls.is_some() != new.tls.is_some() {
        return Some(super::err(
            "server.tls",
            "turning TLS on or off at the listener needs a restart (the listener is built at start-up); the reload is refused",
        ));
    }
    (started.ping.is_none() && new.ping.is_some()).then(|| {
        super::err(
            "ping.clients",
            "turning ping delivery on needs a restart (the ping store and poller are built at start-up); the reload is refused",
        )
    })
}

/// Puts the start-up values of the restart-only keys into `new`, so what is built from a
/// reloaded configuration agrees with what start-up built.
pub fn carry_restart_only(new: &mut Config, running: &Config) {
    new.listen = running.listen;
    new.metrics_listen = running.metrics_listen;
    new.threads = running.threads;
    new.work_stealing = running.work_stealing;
    new.shutdown_grace = running.shutdown_grace;
    new.upstream = running.upstream.clone();
    new.profile.paths = running.profile.paths.clone();
    new.state = running.state.clone();
    new.log_format = running.log_format;
    new.bridge = running.bridge.clone();
    std::sync::Arc::make_mut(&mut new.fapi).replay_max_entries = running.fapi.replay_max_entries;
    // Only the certificate pair follows a reload; on or off is refused (`unappliable`).
    match (&mut new.tls, &running.tls) {
        (Some(n), Some(r)) => {
            *n = crate::config::TlsSettings {
                cert_file: n.cert_file.clone(),
                key_file: n.key_file.clone(),
                ..r.clone()
            }
        }
        _ => new.tls = running.tls.clone(),
    }
    match (&mut new.ping, &running.ping) {
        (Some(n), Some(r)) => {
            n.key = r.key.clone();
            n.max_concurrent_polls = r.max_concurrent_polls;
            n.queue_capacity = r.queue_capacity;
            n.notify = r.notify.clone();
            n.lease = r.lease;
        }
        // Ping turned off: new requests are no longer pinged; the held ones finish.
        (None, _) => {}
        // Turned on: refused before this (`unappliable`).
        (Some(_), None) => new.ping = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_entry_covers_its_keys_and_a_longer_entry_wins() {
        assert_eq!(classify("validation.binding_message_max_chars"), Some(Live));
        assert_eq!(classify("clients.<id>.jwks"), Some(Live));
        assert_eq!(classify("ping.key"), Some(Restart));
        assert_eq!(
            classify("ping.clients.<id>.notification_endpoint"),
            Some(Live)
        );
        assert_eq!(classify("profile.paths"), Some(Restart));
        assert_eq!(classify("profile.error_codes"), Some(Live));
        assert_eq!(classify("server.listen"), Some(Restart));
        // A prefix of a word is not a table.
        assert_eq!(classify("pollingx.a"), None);
        assert_eq!(classify("server"), None);
    }

    #[test]
    fn restart_changes_names_each_changed_restart_key_and_only_those() {
        let started = "[server]\nlisten = \"127.0.0.1:1\"\nthreads = 2\n[validation]\nbinding_message_max_chars = 20\n";
        let none = Overrides::default();
        assert!(restart_changes(started, started, &none).is_empty());
        let live_only = started.replace("= 20", "= 10");
        assert!(restart_changes(started, &live_only, &none).is_empty());
        let both = live_only
            .replace("threads = 2", "threads = 3")
            .replace("127.0.0.1:1", "127.0.0.1:2")
            + "[state]\nbackend = \"redis\"\n[ping]\nkey_file = \"k\"\n";
        assert_eq!(
            restart_changes(started, &both, &none),
            vec!["server.listen", "server.threads", "state", "ping.key_file"]
        );
        // A key the command line overrides is not the file's to change.
        let cli = Overrides {
            listen: Some("127.0.0.1:9".into()),
            ..Overrides::default()
        };
        assert_eq!(
            restart_changes(started, &both, &cli),
            vec!["server.threads", "state", "ping.key_file"]
        );
        // Removing a key changes it too (back to its default).
        let removed = started.replace("threads = 2\n", "");
        assert_eq!(
            restart_changes(started, &removed, &none),
            vec!["server.threads"]
        );
    }

    #[test]
    fn carried_restart_only_values_are_the_running_ones() {
        let running = crate::config::validate(
            crate::config::parse_file(
                "[server]\nthreads = 2\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[profile.paths]\n\"/a\" = \"/b\"\n",
            )
            .unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        let mut new = crate::config::validate(
            crate::config::parse_file(
                "[server]\nthreads = 5\nmax_body_bytes = 1000\n[upstream]\nurl = \"http://127.0.0.1:2\"\n[validation]\nbinding_message_max_chars = 7\n",
            )
            .unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        carry_restart_only(&mut new, &running);
        assert_eq!(new.threads, crate::config::Threads::Configured(2));
        assert_eq!(new.upstream.base_url(), running.upstream.base_url());
        assert_eq!(new.profile.paths, running.profile.paths);
        assert_eq!(new.max_body_bytes, 1000);
    }
}
