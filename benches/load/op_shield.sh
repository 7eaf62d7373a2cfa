#!/usr/bin/env bash
# The OP shield: how many too-early polls the real node-oidc-provider (tests/op) answers on
# one core, against the gateway answering them (slow_down) on the same core in front of it.
#
#   op  wrk -> node-oidc-provider, POST /token for a pending auth_req_id
#   gw  wrk -> gateway -> node-oidc-provider, the same poll for an id the gateway tracks,
#       answered slow_down at the edge
#
# Both servers run on CPU 0, wrk on CPU 1 (when the machine has 2). The OP's own request
# counter is read around the gateway's runs: it must not move. Each scenario runs REPS times,
# interleaved; the table shows medians. Everything stays on 127.0.0.1 and stops on exit.
#
# Usage: benches/load/op_shield.sh   (after cargo build --release --bin ciba-gateway and
#   npm ci --prefix tests/op)
# Environment: DURATION (seconds per run, default 8), REPS (default 3), CONNECTIONS
#   (default 32), BASE_PORT (default 18280; uses BASE_PORT .. BASE_PORT+2), GATEWAY.
set -euo pipefail

DURATION=${DURATION:-8}
REPS=${REPS:-3}
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18280}
OP_PORT=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))
METRICS_PORT=$((BASE_PORT + 2))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
GATEWAY=${GATEWAY:-$target/release/ciba-gateway}

LOAD_NAME=op_shield
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools wrk curl node:nodejs
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT"
pin_one_core

start_work ciba-op-shield
start_test_op "$OP_PORT" 0

cat >"$work/gateway.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = 1
work_stealing = false
[upstream]
url = "http://127.0.0.1:$OP_PORT"
[rate_limit]
enabled = false
[logging]
level = "warn"
CONF
start_gateway "$work/gateway.toml" "$METRICS_PORT" "http://127.0.0.1:$OP_PORT/jwks"

form='content-type: application/x-www-form-urlencoded'
creds='client_id=client-post&client_secret=post-secret-0123456789'
start() { # base URL -> a new auth_req_id
    curl -fs -X POST "$1/backchannel" -H "$form" --data "scope=openid&login_hint=shield-user&$creds" \
        | sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p'
}
direct_id=$(start "http://127.0.0.1:$OP_PORT")
via_id=$(start "http://127.0.0.1:$GW_PORT")
[[ -n $direct_id && -n $via_id ]] || die "no auth_req_id from the OP"
poll() { echo "grant_type=urn:openid:params:grant-type:ciba&auth_req_id=$1&$creds"; }
# The gateway forwards the first poll of its id, then answers the early ones itself.
curl -s -o /dev/null -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$(poll "$via_id")"
echo "probes:"
echo "  op: $(curl -s -w ' %{http_code}' -X POST "http://127.0.0.1:$OP_PORT/token" -H "$form" --data "$(poll "$direct_id")")"
echo "  gw: $(curl -s -w ' %{http_code}' -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$(poll "$via_id")")"

wrk_script "$work/poll.lua"
clk_tck=$(getconf CLK_TCK)
run() { # name url body pid -> "name rps p50 p99 p999 n non2xx errors cpu_ms_per_1k op_seen"
    local before after out seen_before seen_after
    before=$(cpu_ticks "$4")
    seen_before=$(op_token_count "$OP_PORT")
    out=$(WRK_METHOD=POST WRK_BODY=$3 "${load[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION"s \
        --timeout 5s --latency -s "$work/poll.lua" "$2" 2>&1) || die "$1: wrk failed: $out"
    after=$(cpu_ticks "$4")
    seen_after=$(op_token_count "$OP_PORT")
    printf '%s\n' "$out" | awk -v n="$1" -v t=$((after - before)) -v hz="$clk_tck" \
        -v seen=$((seen_after - seen_before)) \
        '$1 == "RESULT" { $1 = n; print $0, ($6 ? sprintf("%.1f", t * 1000 / hz / ($6 / 1000)) : 0), seen }'
}

echo
echo "servers on CPU 0, wrk -t1 -c$CONNECTIONS -d${DURATION}s on CPU 1, $REPS runs each, interleaved"
for rep in $(seq "$REPS"); do
    for name in op gw; do
        if [[ $name == op ]]; then
            line=$(run op "http://127.0.0.1:$OP_PORT/token" "$(poll "$direct_id")" "$op_pid")
        else
            line=$(run gw "http://127.0.0.1:$GW_PORT/token" "$(poll "$via_id")" "$gw")
        fi
        echo "  run $rep: $line"
        echo "$line" >>"$work/results"
    done
done

echo
awk '
function median(arr, k,   m, i, j, t, v) {
    m = cnt[k]
    for (i = 1; i <= m; i++) v[i] = arr[k, i]
    for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
{ k = $1; i = ++cnt[k]; rps[k, i] = $2; p99[k, i] = $4; cpu[k, i] = $9; n[k] += $6; seen[k] += $10 }
END {
    printf "| who answers the early polls | requests/s | p99 ms | CPU ms / 1k | requests | seen by the OP |\n|---|--:|--:|--:|--:|--:|\n"
    split("op gw", order, " ")
    for (x = 1; x <= 2; x++) {
        k = order[x]; R[k] = median(rps, k)
        printf "| %s | %.0f | %.2f | %.1f | %d | %d |\n", (k == "op" ? "node-oidc-provider itself" : "the gateway, in front of it"), R[k], median(p99, k) / 1000, median(cpu, k), n[k], seen[k]
    }
    printf "\nthe gateway answers %.1f× as many early polls as the OP on the same core; the OP saw %d of the gateway'\''s %d\n", R["gw"] / R["op"], seen["gw"], n["gw"]
}' "$work/results"
