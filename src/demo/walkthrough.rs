//! The walkthrough `ciba-gateway demo` prints: shell commands a new user pastes as printed,
//! each followed by what it shows.
//!
//! Layout, which the demo's integration test relies on: commands are indented six spaces,
//! prose three (or not at all). Commands use only `curl`, `sed` and POSIX `sh` syntax, so
//! they work in sh, bash and zsh.

use super::op::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DENY_HINT, EXPIRES_IN};
use crate::ciba::polling::{admit_ack, PollPolicy};
use std::time::Duration;

/// What the walkthrough needs to know about the running demo.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    /// The metrics listener's address, e.g. `127.0.0.1:9091`.
    pub metrics: String,
    /// Seconds before the simulated device answers.
    pub approve_after: u64,
    /// The interval the gateway enforces for a new request, in seconds.
    pub interval: u64,
    /// The interval after one `slow_down`, in seconds.
    pub slowed_interval: u64,
}

/// The interval the gateway enforces for a demo request (the demo OP announcing
/// `op_interval`, or none), and that interval after one `slow_down`, in whole seconds: the
/// same rules as `ciba::polling`'s `admit_ack` and its `slow_down` growth.
pub fn intervals(policy: &PollPolicy, op_interval: Option<u64>) -> (u64, u64) {
    let interval = match admit_ack(policy, op_interval, EXPIRES_IN) {
        Ok(ack) => Duration::from_secs(ack.interval_secs()),
        Err(_) => policy.min_interval,
    };
    let slowed = if interval < policy.max_interval {
        (interval + policy.slow_down_step).min(policy.max_interval)
    } else {
        interval
    };
    (interval.as_secs(), ceil_secs(slowed))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The walkthrough's text.
pub fn text(d: &Demo) -> String {
    let gw = &d.gateway;
    let metrics = &d.metrics;
    let (approve, interval, slowed) = (d.approve_after, d.interval, d.slowed_interval);
    // Long enough for the interval and for the device to have answered.
    let wait = slowed.max(approve);
    let creds = format!("-d client_id={DEMO_CLIENT_ID} -d client_secret={DEMO_CLIENT_SECRET}");
    let start = |hint: &str| {
        format!("curl -s {gw}/backchannel {creds} -d scope=openid -d login_hint={hint}")
    };
    let id_of = r#"sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p'"#;
    let alice = start("alice");
    let deny = start(DENY_HINT);
    format!(
        r#"
ciba-gateway demo: the gateway on {gw}, in front of a built-in demo OP.
The demo client is {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}. The simulated device approves a
request {approve} s after it starts, and refuses it when login_hint={DENY_HINT}.

Paste the commands below (the indented lines) into a shell on this machine: sh, bash or zsh.
Paste each step's lines together.

1. Discovery, from the gateway. Every endpoint points at the gateway, and the issuer is the
   gateway's URL, so an OpenID client library discovers from {gw} unchanged:
      curl -s {gw}/.well-known/openid-configuration; echo

2. A shell function that polls the token endpoint for an auth_req_id and shows the answer
   with its headers:
      poll() {{ curl -s -i {gw}/token {creds} -d grant_type=urn:openid:params:grant-type:ciba -d auth_req_id="$1"; echo; }}

3. Start an authentication, keep its auth_req_id in $ID, and poll twice at once:
      ACK=$({alice}); echo "$ACK"
      ID=$(echo "$ACK" | {id_of}); echo "ID=$ID"
      poll "$ID"; poll "$ID"
   The acknowledgement says "interval":{interval}: the demo OP sent no interval, so the gateway
   added the one it enforces, {interval} s between polls.
   The first poll reaches the OP: {{"error":"authorization_pending",...}} (the user has not
   answered yet).
   The second comes too early, so the gateway answers it itself, and the OP never sees it:
   {{"error":"slow_down",...}} with Retry-After: {slowed}, the seconds until a poll will be let
   through. The interval is now {slowed} s (CIBA 11 adds 5 s on each slow_down).

4. Wait that long and poll again, then once more:
      sleep {wait}; poll "$ID"; poll "$ID"
   The device approved after {approve} s, so the OP answers with the tokens:
   HTTP/1.1 200 OK, {{"access_token":"...","token_type":"Bearer","id_token":"...",...}}.
   The auth_req_id is used up now: the gateway answers {{"error":"invalid_grant",...}} itself.

5. A request the user refuses (login_hint={DENY_HINT}), polled once the device has answered:
      ID=$({deny} | {id_of}); echo "ID=$ID"
      sleep {approve}; poll "$ID"
   The OP answers {{"error":"access_denied",...}}.

6. A request the gateway refuses before the OP sees it (a repeated parameter):
      curl -s {gw}/backchannel {creds} -d scope=openid -d scope=openid -d login_hint=alice; echo
   {{"error":"invalid_request","error_description":"parameter `scope` appears more than once"}}

7. What the gateway counted, and whether it is ready:
      curl -s http://{metrics}/metrics | grep -e '^ciba_gateway_requests_total' -e '^ciba_gateway_local_answers_total'
      curl -s http://{metrics}/readyz
   The slow_down and invalid_grant of steps 3 and 4 are counted as local answers.

Stop with Ctrl-C.
"#
    )
}

/// What the `--bridge` walkthrough needs to know.
#[derive(Debug, Clone)]
pub struct BridgeDemo {
    /// The gateway's base URL.
    pub gateway: String,
    /// The demo OP's base URL.
    pub op: String,
    /// The interval the gateway announces, in seconds.
    pub interval: u64,
    /// The API's path, when it is on.
    pub api_path: Option<String>,
}

/// The `--bridge` walkthrough's text (same layout rules as [`text`]).
pub fn bridge_text(d: &BridgeDemo) -> String {
    let gw = &d.gateway;
    let op = &d.op;
    let interval = d.interval;
    let creds = format!("-u {DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}");
    let id_of = r#"sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p'"#;
    let url_of = r#"sed -n 's/.*"authorization_url":"\([^"]*\)".*/\1/p'"#;
    let api = d
        .api_path
        .as_deref()
        .unwrap_or("/ciba-bridge/authorization-url");
    format!(
        r#"
ciba-gateway demo --bridge: the gateway on {gw} serves CIBA in front of a built-in demo OP
on {op} that has no CIBA at all, only the authorization code flow with PAR and PKCE.
The demo client is {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}.

Paste the commands below (the indented lines) into a shell on this machine: sh, bash or zsh.
Paste each step's lines together.

1. Start an authentication. The gateway pushes an authorization request to the OP (PAR,
   with the client's own credential, PKCE, a fresh state and nonce) and acknowledges:
      ACK=$(curl -s {creds} {gw}/backchannel -d scope=openid -d login_hint=alice -d binding_message=DEMO-42); echo "$ACK"
      ID=$(echo "$ACK" | {id_of}); echo "ID=$ID"

2. A shell function that polls the token endpoint, and a first poll:
      poll() {{ curl -s {creds} {gw}/token -d grant_type=urn:openid:params:grant-type:ciba -d auth_req_id="$1"; echo; }}
      poll "$ID"
   The gateway answers {{"error":"authorization_pending",...}} itself: the OP knows nothing
   of CIBA.

3. The URL the user opens, from the gateway's API (asked as the client, same credential):
      URL=$(curl -s {creds} {gw}{api} -d auth_req_id="$ID" | {url_of}); echo "$URL"
   Open it in any browser and press Approve: the OP sends the browser back to the gateway,
   which exchanges the code (PKCE), checks the ID token against the OP's keys, and shows
   "You are signed in" with DEMO-42. Or approve from here, following the redirect:
      curl -s -L "$URL&decision=approve" | sed -n 's/.*<h1>\(.*\)<\/h1>.*/\1/p'

4. Poll again, after the {interval} s interval, and once more:
      sleep {interval}; poll "$ID"; poll "$ID"
   The first gets the tokens the gateway held for the client; the auth_req_id is used up
   after that: {{"error":"invalid_grant",...}}.

Stop with Ctrl-C.
"#
    )
}

/// The walkthrough's commands, in order: its lines indented six spaces.
pub fn commands(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("      "))
        .filter(|l| !l.starts_with(' '))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Demo {
        Demo {
            gateway: "http://127.0.0.1:8080".into(),
            metrics: "127.0.0.1:9091".into(),
            approve_after: 10,
            interval: 5,
            slowed_interval: 10,
        }
    }

    #[test]
    fn every_step_has_its_commands_and_they_use_the_captured_id() {
        let t = text(&demo());
        let c = commands(&t);
        assert_eq!(c.len(), 11, "{c:#?}");
        assert!(c[0].starts_with("curl -s http://127.0.0.1:8080/.well-known"));
        assert!(c[1].starts_with("poll() {"), "{}", c[1]);
        assert!(c[3].starts_with("ID=$(echo \"$ACK\" | sed -n"), "{}", c[3]);
        assert_eq!(c[5], r#"sleep 10; poll "$ID"; poll "$ID""#);
        assert!(c[6].contains("login_hint=deny"), "{}", c[6]);
        assert_eq!(c[7], r#"sleep 10; poll "$ID""#);
        assert!(!t.contains("PASTE"), "nothing to fill in by hand");
    }

    #[test]
    fn intervals_follow_the_poll_rules() {
        let p = PollPolicy::default();
        assert_eq!(intervals(&p, None), (5, 10), "CIBA's 5 s, then 5 s more");
        assert_eq!(intervals(&p, Some(7)), (7, 12));
        let short = PollPolicy {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(2),
            ..p
        };
        assert_eq!(intervals(&short, Some(1)), (1, 2), "capped");
        assert_eq!(
            intervals(&short, Some(3)),
            (3, 3),
            "an OP's longer interval is kept"
        );
    }

    #[test]
    fn the_text_states_the_intervals_it_was_given() {
        let t = text(&Demo {
            interval: 1,
            slowed_interval: 2,
            approve_after: 1,
            ..demo()
        });
        assert!(t.contains("\"interval\":1"), "{t}");
        assert!(t.contains("Retry-After: 2"), "{t}");
        assert!(t.contains("sleep 2; poll"), "{t}");
        assert!(t.contains("sleep 1; poll"), "{t}");
    }
}
