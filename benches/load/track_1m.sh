#!/usr/bin/env bash
# Resident memory of the real gateway binary while it tracks ~1,000,000 auth_req_ids.
#
# Starts nginx on 127.0.0.1 as a stub OpenID Provider whose backchannel endpoint acknowledges
# every request with a fresh ~43-character auth_req_id, starts the release gateway in front of
# it, drives N backchannel POSTs through the gateway with wrk, and reads the gateway's VmRSS and
# VmHWM from /proc plus its tracked-ids gauge. Everything it starts is stopped by PID on exit.
# All traffic stays on 127.0.0.1.
#
# Usage: benches/load/track_1m.sh            (after `cargo build --release`)
# Environment: N (requests, default 1000000), CLIENTS (distinct client_ids, default 300),
#   GATEWAY (binary, default target/release/ciba-gateway, or $CARGO_TARGET_DIR/release/...),
#   GW_PORT / METRICS_PORT / OP_PORT (defaults 18080 / 19091 / 18081),
#   MAX_SECONDS (wall-clock cap for the load phase, default 900), WRK_CONNECTIONS (default 64).
set -euo pipefail

N=${N:-1000000}
CLIENTS=${CLIENTS:-300}
GW_PORT=${GW_PORT:-18080}
METRICS_PORT=${METRICS_PORT:-19091}
OP_PORT=${OP_PORT:-18081}
MAX_SECONDS=${MAX_SECONDS:-900}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_THREADS=2

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GATEWAY=${GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/release/ciba-gateway}

LOAD_NAME=track_1m
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx wrk curl
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
ports_free GW_PORT/METRICS_PORT/OP_PORT "$GW_PORT" "$METRICS_PORT" "$OP_PORT"
start_work ciba-track-1m

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
max_tracked = 1100000
max_tracked_per_client = 1100000
max_expires_in_seconds = 86400
sweep_interval_seconds = 60

# One address sends everything: the per-address limit would refuse most of it.
[rate_limit]
enabled = false

[logging]
level = "warn"
CONF
"$GATEWAY" --config "$work/gateway.toml" 2>"$work/gateway.log" &
gw=$!
pids+=("$gw")

wait_ready "$gw" "$METRICS_PORT" "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" \
    || { cat "$work/gateway.log" >&2; die "the gateway or the stub OP did not come up"; }

# One request by hand: the gateway must answer with a rewritten ack.
probe=$(curl -fs -X POST "http://127.0.0.1:$GW_PORT/bc" \
    -H 'content-type: application/x-www-form-urlencoded' \
    --data 'client_id=c0&client_secret=x&scope=openid&login_hint=u') \
    || die "the probe request failed: $(tail -5 "$work/gateway.log")"
echo "probe ack: $probe"

rss0=$(status_kib "$gw" VmRSS)
hwm0=$(status_kib "$gw" VmHWM)
n0=$(tracked "$METRICS_PORT")

# --- load --------------------------------------------------------------------------------
per_thread=$(((N + WRK_THREADS - 1) / WRK_THREADS))
mkdir "$work/done"
started=$(date +%s.%N)
wrk -t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -d "${MAX_SECONDS}s" --timeout 10s \
    -s "$here/backchannel.lua" "http://127.0.0.1:$GW_PORT" \
    -- "$per_thread" "$CLIENTS" "$work/done" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
# wrk's threads stop at their quota but wrk waits out -d; SIGINT makes it report and exit.
while kill -0 "$wrk_pid" 2>/dev/null; do
    if (($(find "$work/done" -type f | wc -l) >= WRK_THREADS)); then
        kill -INT "$wrk_pid" 2>/dev/null || true
        break
    fi
    sleep 0.5
done
wait "$wrk_pid" || true
ended=$(date +%s.%N)
sed 's/^/  wrk | /' "$work/wrk.out"

rss1=$(status_kib "$gw" VmRSS)
hwm1=$(status_kib "$gw" VmHWM)
n1=$(tracked "$METRICS_PORT")
kill -0 "$gw" 2>/dev/null || die "the gateway exited during the run"

awk -v n0="$n0" -v n1="$n1" -v r0="$rss0" -v r1="$rss1" -v h0="$hwm0" -v h1="$hwm1" \
    -v t0="$started" -v t1="$ended" -v clients="$CLIENTS" 'BEGIN {
    mib = 1024
    added = n1 - n0
    printf "\n| measure                         | before | after | change |\n"
    printf "|---------------------------------|-------:|------:|-------:|\n"
    printf "| tracked auth_req_ids (gauge)    | %d | %d | %+d |\n", n0, n1, added
    printf "| VmRSS (MiB)                     | %.1f | %.1f | %+.1f |\n", r0 / mib, r1 / mib, (r1 - r0) / mib
    printf "| VmHWM (MiB)                     | %.1f | %.1f | %+.1f |\n", h0 / mib, h1 / mib, (h1 - h0) / mib
    if (added > 0)
        printf "| RSS per tracked id (B)          |  |  | %.1f |\n", (r1 - r0) * 1024 / added
    printf "| load phase (s), acks/s          |  | %.1f | %.0f |\n", t1 - t0, added / (t1 - t0)
    printf "\n%d client ids; 256 MB goal for the whole process: %s\n", clients, \
        (r1 * 1024 <= 256 * 1000 * 1000 ? "met" : "NOT met")
}'
