#!/usr/bin/env bash
# The ping poller's cost for N waiting ping requests in the real gateway binary: resident
# memory, and CPU while it polls all of them at their interval.
#
# Starts nginx on 127.0.0.1 as a stub OpenID Provider that acknowledges every backchannel
# request with a fresh auth_req_id (interval 5 s, expires_in 600 s) and answers every token
# request with authorization_pending, so every ping request stays waiting. Starts the release
# gateway with one ping client, reads its CPU time and VmRSS idle, sends N backchannel
# requests with a client_notification_token through it (one curl, 16 at a time), then reads
# VmRSS and the CPU time the gateway used over WINDOW seconds while its poller polls all N
# (N / 5 polls a second). Everything it starts is stopped by PID on exit; all traffic stays
# on 127.0.0.1 and the run ends by itself.
#
# Usage: benches/load/ping_10k.sh            (after `cargo build --release`)
# Environment: N (ping requests, default 10000), WINDOW (seconds measured, default 30),
#   GATEWAY (binary), GW_PORT / METRICS_PORT / OP_PORT (defaults 18090 / 19092 / 18091).
set -euo pipefail

N=${N:-10000}
WINDOW=${WINDOW:-30}
GW_PORT=${GW_PORT:-18090}
METRICS_PORT=${METRICS_PORT:-19092}
OP_PORT=${OP_PORT:-18091}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GATEWAY=${GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/release/ciba-gateway}

LOAD_NAME=ping_10k
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx curl
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
ports_free GW_PORT/METRICS_PORT/OP_PORT "$GW_PORT" "$METRICS_PORT" "$OP_PORT"
start_work ciba-ping-10k

# --- stub OP -----------------------------------------------------------------------------
start_stub_op "$OP_PORT"

# --- gateway -----------------------------------------------------------------------------
cat >"$work/gateway.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = 2

[upstream]
url = "http://127.0.0.1:$OP_PORT"
backchannel_path = "/bc"
token_path = "/token"

[polling]
max_tracked = 100000
max_tracked_per_client = 100000

[rate_limit]
enabled = false

[logging]
level = "warn"

[ping]
key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
queue_capacity = 100000

[ping.clients."pinger"]
# Never reached: the stub OP never answers terminally.
notification_endpoint = "https://client.example.com/ciba/notify"
CONF
"$GATEWAY" --config "$work/gateway.toml" 2>"$work/gateway.log" &
gw=$!
pids+=("$gw")
wait_ready "$gw" "$METRICS_PORT" "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" \
    || { cat "$work/gateway.log" >&2; die "the gateway or the stub OP did not come up"; }

# cpu_ticks PID: user plus system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

c0=$(cpu_ticks "$gw")
sleep "$WINDOW"
c1=$(cpu_ticks "$gw")
idle_cpu=$(((c1 - c0)))
rss0=$(status_kib "$gw" VmRSS)

# --- N ping requests ---------------------------------------------------------------------
for i in $(seq "$N"); do
    printf 'url = "http://127.0.0.1:%s/bc"\ndata = "client_id=pinger&client_secret=a-client-secret-of-32-characters&scope=openid&login_hint=u%s&client_notification_token=notification-token-%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext\n' \
        "$GW_PORT" "$i" "$i"
done | head -n -1 >"$work/requests.curl"
started=$(date +%s.%N)
timeout 300 curl -s --no-progress-meter --retry 3 --retry-all-errors --parallel --parallel-max 16 --config "$work/requests.curl" >"$work/codes" || true
ended=$(date +%s.%N)
ok=$(grep -c '^200$' "$work/codes" || true)
((ok == N)) || die "only $ok of $N backchannel requests were acknowledged: $(sort "$work/codes" | uniq -c | tr '\n' ' ')"

# Every request is now polled every 5 s; measure a window after the first polls began.
sleep 6
kill -0 "$gw" 2>/dev/null || die "the gateway exited during the run"
c2=$(cpu_ticks "$gw")
sleep "$WINDOW"
c3=$(cpu_ticks "$gw")
rss1=$(status_kib "$gw" VmRSS)
hwm1=$(status_kib "$gw" VmHWM)

awk -v n="$N" -v w="$WINDOW" -v hz="$hz" -v ci="$idle_cpu" -v cb="$((c3 - c2))" \
    -v r0="$rss0" -v r1="$rss1" -v h1="$hwm1" -v t0="$started" -v t1="$ended" 'BEGIN {
    printf "\n| measure | value |\n|---|---:|\n"
    printf "| backchannel requests acknowledged | %d (%.1f s) |\n", n, t1 - t0
    printf "| VmRSS idle, before (MiB) | %.1f |\n", r0 / 1024
    printf "| VmRSS holding %d ping requests (MiB) | %.1f |\n", n, r1 / 1024
    printf "| VmHWM (MiB) | %.1f |\n", h1 / 1024
    printf "| RSS per ping request (B) | %.0f |\n", (r1 - r0) * 1024 / n
    printf "| CPU idle (%% of one core) | %.2f |\n", 100 * ci / hz / w
    printf "| CPU polling %d every 5 s (%% of one core) | %.1f |\n", n, 100 * cb / hz / w
    printf "| CPU per poll (µs) | %.0f |\n", (cb - ci) / hz / (w * n / 5) * 1e6
}'
