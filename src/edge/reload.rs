//! Reloading the configuration without a restart: on `SIGHUP` the file is read again and
//! validated as `--check` validates it; a valid one replaces the running snapshot at once.
//!
//! [`Live`] is one configuration and what is built from it for requests (the rate
//! limiters, the metric label set). [`Runtime`] holds the current one: each request takes
//! its snapshot when it starts (`new_ctx`), so it ends on the configuration it began with,
//! and a swap never waits for one. What cannot change while running keeps its start-up
//! value (`config::live_keys`, the one list), and a reload that changes it says so by name.
//!
//! The order of a reload: read and validate; refuse what cannot be applied (ping turned
//! on); the registered reloaders, each of which may refuse (a certificate that does not
//! load); the swap; the reloaders' commits; then what follows the new snapshot outside
//! requests (the store's poll numbers, the guard's limits, the ping targets, the log
//! level). A refusal at any step before the swap leaves everything as it was.

use crate::config::live_keys;
use crate::config::{Config, ConfigError, Overrides};
use crate::metrics;
use crate::state::rate_limit::RateLimits;
use arc_swap::ArcSwap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One configuration and what requests use that is built from it.
pub struct Live {
    /// The validated configuration (restart-only keys at their start-up values).
    pub cfg: Arc<Config>,
    /// The rate limiters for `cfg.rate_limit`.
    pub limits: Arc<RateLimits>,
    /// `metrics.client_labels` as a set.
    pub client_labels: HashSet<String>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("client_labels", &self.client_labels.len())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The snapshot for `cfg`. The rate limiters of `previous` go on counting wherever
    /// their rate is unchanged (`RateLimits::reconfigured`).
    pub fn new(cfg: Arc<Config>, previous: Option<&Live>) -> Live {
        let limits = match previous {
            Some(p) if p.cfg.rate_limit == cfg.rate_limit => p.limits.clone(),
            Some(p) => Arc::new(p.limits.reconfigured(&cfg.rate_limit)),
            None => Arc::new(RateLimits::new(&cfg.rate_limit)),
        };
        Live {
            client_labels: cfg.client_labels.iter().cloned().collect(),
            limits,
            cfg,
        }
    }
}

/// What a component needs from a new configuration before it is swapped in, called with
/// it on every valid reload (not at start-up): it loads and checks what it needs (files
/// the configuration names, such as a listener's certificates) and returns what puts that
/// in use, or an error naming the key, which refuses the whole reload. The [`Commit`]s of
/// a reload run only once every reloader has passed, right after the swap; a refused
/// reload runs none, so a component never runs on something the rest did not accept.
/// Registered at build time (`edge/server.rs`, [`Runtime::add_reloader`]).
pub type Reloader = Box<dyn Fn(&Config) -> Result<Option<Commit>, ConfigError> + Send + Sync>;

/// What a [`Reloader`] prepared, put in use after the swap.
pub type Commit = Box<dyn FnOnce() + Send>;

/// Work that follows a new snapshot outside requests, run after each swap.
pub type Follower = Box<dyn Fn(&Live) + Send + Sync>;

/// The running configuration and how to replace it.
pub struct Runtime {
    current: ArcSwap<Live>,
    /// The configuration the process started with: what start-up built agrees with its
    /// restart-only keys, whatever reloads came since.
    started: Arc<Config>,
    reloaders: Mutex<Vec<Reloader>>,
    followers: Mutex<Vec<Follower>>,
    /// One reload at a time, so two signals cannot interleave their swaps.
    reloading: Mutex<()>,
}

/// What a reload did.
#[derive(Debug)]
pub enum Outcome {
    /// Swapped in; these restart-only keys changed in the file and kept their value.
    Applied {
        /// The restart-only keys that differ from start-up, by name.
        needs_restart: Vec<&'static str>,
    },
    /// Refused; the running configuration stays.
    Invalid(ConfigError),
}

impl Runtime {
    /// A runtime starting with `cfg`.
    pub fn new(cfg: Arc<Config>) -> Arc<Runtime> {
        Arc::new(Runtime {
            current: ArcSwap::from_pointee(Live::new(cfg.clone(), None)),
            started: cfg,
            reloaders: Mutex::new(Vec::new()),
            followers: Mutex::new(Vec::new()),
            reloading: Mutex::new(()),
        })
    }

    /// The snapshot new requests use now.
    pub fn current(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Registers a check every reload must pass (see [`Reloader`]).
    pub fn add_reloader(&self, r: Reloader) {
        self.reloaders.lock().expect("not poisoned").push(r);
    }

    /// Registers work to run after every swap.
    pub fn follow(&self, f: Follower) {
        self.followers.lock().expect("not poisoned").push(f);
    }

    /// Applies a newly loaded configuration (`loaded` is what `Config::load_with_text`
    /// returned), or refuses it; `started` is the file's text at start-up.
    pub fn apply(
        &self,
        loaded: Result<(Config, String), ConfigError>,
        started: &str,
        overrides: &Overrides,
    ) -> Outcome {
        let _one = self.reloading.lock().expect("not poisoned");
        let (mut cfg, text) = match loaded {
            Ok(l) => l,
            Err(e) => return Outcome::Invalid(e),
        };
        if let Some(e) = live_keys::unappliable(&self.started, &cfg) {
            return Outcome::Invalid(e);
        }
        live_keys::carry_restart_only(&mut cfg, &self.started);
        let running = self.current();
        let mut commits = Vec::new();
        for prepare in self.reloaders.lock().expect("not poisoned").iter() {
            match prepare(&cfg) {
                Ok(commit) => commits.extend(commit),
                Err(e) => return Outcome::Invalid(e),
            }
        }
        let live = Arc::new(Live::new(Arc::new(cfg), Some(&running)));
        self.current.store(live.clone());
        for commit in commits {
            commit();
        }
        for follow in self.followers.lock().expect("not poisoned").iter() {
            follow(&live);
        }
        record_loaded(&text);
        Outcome::Applied {
            needs_restart: live_keys::restart_changes(started, &text, overrides),
        }
    }
}

/// Sets the gauges of the configuration in force: when it was loaded, and its hash.
pub fn record_loaded(text: &str) {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut first = [0u8; 8];
    // Six bytes: the value stays exact in the float a gauge is scraped as.
    first[2..].copy_from_slice(&digest.as_ref()[..6]);
    metrics::CONFIG_HASH.set(i64::from_be_bytes(first));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics::CONFIG_LOADED.set(i64::try_from(now).unwrap_or(i64::MAX));
}

/// Where the configuration came from: what a reload reads again.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file (`--config`), or none for the defaults.
    pub path: Option<PathBuf>,
    /// The command-line values, applied again on every reload.
    pub overrides: Overrides,
    /// The file's text at start-up, against which restart-only keys are compared.
    pub started: String,
}

impl Source {
    /// Reads and validates the file again, exactly as `--check` does, and applies it to
    /// `runtime`; logs and counts the outcome.
    pub fn reload(&self, runtime: &Runtime) -> Outcome {
        let loaded = Config::load_with_text(self.path.as_deref(), &self.overrides);
        let outcome = runtime.apply(loaded, &self.started, &self.overrides);
        // Logged before counted: whoever sees the count can read the log.
        match &outcome {
            Outcome::Applied { needs_restart } => {
                for key in needs_restart {
                    tracing::warn!(
                        "configuration reload: {key} changed; it needs a restart, the running value stays"
                    );
                }
                tracing::info!(
                    restart_only_changes = needs_restart.len(),
                    "configuration reloaded"
                );
                metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc();
            }
            Outcome::Invalid(e) => {
                tracing::error!(
                    "configuration reload refused, the running configuration stays: configuration error: {e}"
                );
                metrics::CONFIG_RELOADS
                    .with_label_values(&["invalid"])
                    .inc();
            }
        }
        outcome
    }
}

/// Makes `SIGHUP` harmless for the life of the process, first thing: its default action
/// ends the process, and pingora handles only `SIGTERM`, `SIGINT` and `SIGQUIT`. Once tokio
/// has a handler for a signal it stays (tokio never uninstalls one), so a `SIGHUP` that
/// arrives before [`listen_for_hangup`] listens is ignored, not fatal.
pub fn catch_hangup_early() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map(drop)
    })
}

/// Reloads `runtime` from `source` on each `SIGHUP`, on a thread of its own, from now on:
/// returns once the signal is being listened for, so a `SIGHUP` sent after the listeners
/// are up is never missed (a pingora background service would start listening only once
/// the server runs). Reloads run one after the other; the file is read on that thread.
pub fn listen_for_hangup(runtime: Arc<Runtime>, source: Source) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    record_loaded(&source.started);
    let (ready, listening) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("config-reload".to_string())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(ready.send(Err(e))),
            };
            rt.block_on(async move {
                let mut hangup = match signal(SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let _ = ready.send(Ok(()));
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP received; reloading the configuration");
                    source.reload(&runtime);
                }
            });
        })?;
    listening
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the reload thread ended")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_file, validate};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn load(text: &str) -> Result<(Config, String), ConfigError> {
        let o = Overrides {
            upstream: Some("http://127.0.0.1:1".into()),
            ..Overrides::default()
        };
        Ok((validate(parse_file(text)?, &o)?, text.to_string()))
    }

    const START: &str = "[validation]\nbinding_message_max_chars = 20\n";

    fn runtime() -> Arc<Runtime> {
        Runtime::new(Arc::new(load(START).unwrap().0))
    }

    fn max_chars(live: &Live) -> usize {
        live.cfg.rules.validation.rules().binding_message_max_chars
    }

    #[test]
    fn a_valid_file_is_swapped_in_and_a_held_snapshot_stays_as_it_was() {
        let rt = runtime();
        let held = rt.current();
        let new = "[validation]\nbinding_message_max_chars = 10\n";
        let out = rt.apply(load(new), START, &Overrides::default());
        assert!(matches!(out, Outcome::Applied { ref needs_restart } if needs_restart.is_empty()));
        assert_eq!(max_chars(&rt.current()), 10);
        // A request that started before the swap ends on its own snapshot.
        assert_eq!(max_chars(&held), 20);
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let rt = runtime();
        let before = rt.current();
        let out = rt.apply(
            load("[validation]\nbinding_message_max_chars = 0\n"),
            START,
            &Overrides::default(),
        );
        let Outcome::Invalid(e) = out else {
            panic!("{out:?}")
        };
        assert_eq!(e.key, "validation.binding_message_max_chars");
        assert!(Arc::ptr_eq(&before, &rt.current()));
    }

    #[test]
    fn a_failing_reloader_refuses_the_whole_reload_and_followers_run_after_a_swap() {
        let rt = runtime();
        let followed = Arc::new(AtomicUsize::new(0));
        let f = followed.clone();
        rt.follow(Box::new(move |live| {
            f.store(max_chars(live), Ordering::SeqCst);
        }));
        // The first reloader passes and prepares; the second refuses 13.
        let committed = Arc::new(AtomicUsize::new(0));
        let c = committed.clone();
        rt.add_reloader(Box::new(move |cfg| {
            let (c, n) = (
                c.clone(),
                cfg.rules.validation.rules().binding_message_max_chars,
            );
            Ok(Some(
                Box::new(move || c.store(n, Ordering::SeqCst)) as Commit
            ))
        }));
        rt.add_reloader(Box::new(|cfg| {
            if cfg.rules.validation.rules().binding_message_max_chars == 13 {
                Err(ConfigError::new("server.tls_cert_file", "cannot load"))
            } else {
                Ok(None)
            }
        }));
        let before = rt.current();
        let out = rt.apply(
            load("[validation]\nbinding_message_max_chars = 13\n"),
            START,
            &Overrides::default(),
        );
        assert!(matches!(out, Outcome::Invalid(ref e) if e.key == "server.tls_cert_file"));
        assert!(Arc::ptr_eq(&before, &rt.current()));
        assert_eq!(followed.load(Ordering::SeqCst), 0);
        assert_eq!(
            committed.load(Ordering::SeqCst),
            0,
            "a refused reload commits nothing"
        );
        let out = rt.apply(
            load("[validation]\nbinding_message_max_chars = 14\n"),
            START,
            &Overrides::default(),
        );
        assert!(matches!(out, Outcome::Applied { .. }));
        assert_eq!(followed.load(Ordering::SeqCst), 14);
        assert_eq!(committed.load(Ordering::SeqCst), 14);
    }

    #[test]
    fn rate_limiters_survive_a_reload_that_leaves_rate_limit_alone() {
        let rt = runtime();
        let before = rt.current().limits.clone();
        rt.apply(
            load("[validation]\nbinding_message_max_chars = 9\n"),
            START,
            &Overrides::default(),
        );
        assert!(Arc::ptr_eq(&before, &rt.current().limits));
        rt.apply(
            load("[rate_limit]\nmax_keys = 5\n"),
            START,
            &Overrides::default(),
        );
        assert!(!Arc::ptr_eq(&before, &rt.current().limits));
    }

    #[test]
    fn a_restart_only_change_is_named_and_keeps_its_running_value() {
        let rt = runtime();
        let started_threads = rt.current().cfg.threads;
        let new = "[server]\nthreads = 7\n[validation]\nbinding_message_max_chars = 11\n";
        let out = rt.apply(load(new), START, &Overrides::default());
        let Outcome::Applied { needs_restart } = out else {
            panic!("{out:?}")
        };
        assert_eq!(needs_restart, vec!["server.threads"]);
        assert_eq!(rt.current().cfg.threads, started_threads);
        assert_eq!(max_chars(&rt.current()), 11);
    }
    #[test]
    fn ping_turned_off_and_on_again_applies_but_on_in_a_process_started_without_it_does_not() {
        let ping = "[ping]\nkey = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n[ping.clients.\"c\"]\nnotification_endpoint = \"https://client.example/cb\"\n";
        let o = Overrides::default();
        let rt = Runtime::new(Arc::new(load(ping).unwrap().0));
        assert!(matches!(
            rt.apply(load(START), ping, &o),
            Outcome::Applied { .. }
        ));
        assert!(rt.current().cfg.ping.is_none());
        assert!(matches!(
            rt.apply(load(ping), ping, &o),
            Outcome::Applied { .. }
        ));
        assert!(rt.current().cfg.ping.is_some());

        let without = runtime();
        let out = without.apply(load(ping), START, &o);
        assert!(
            matches!(out, Outcome::Invalid(ref e) if e.key == "ping.clients"),
            "{out:?}"
        );
        assert!(without.current().cfg.ping.is_none());
    }
}
