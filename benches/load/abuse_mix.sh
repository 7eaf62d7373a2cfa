#!/usr/bin/env bash
# The abuse mix: one client floods too-early polls while another polls correctly, through the
# gateway to the real node-oidc-provider (tests/op). The correct client's latency with the
# flood is compared with its clean run, and the OP's token counter shows what reached it.
#
#   clean  the correct client alone: IDS requests, each polled once per interval
#   flood  the same, while wrk (niced, from 127.0.0.1) polls one tracked id of another
#          client as fast as it can
#
# The gateway (one thread) and the OP share CPU 0; the clients run on CPU 1, the correct one
# from 127.0.0.2 so that the per-address limits keep the two apart as two hosts would be.
# Default rate limits stay on. Goal: the correct client's p99 with the flood at most 2× its
# clean p99, and the OP sees none of the flood beyond the polls due at their interval.
# Runs REPS pairs, interleaved; everything stays on loopback and stops on exit.
#
# Usage: benches/load/abuse_mix.sh   (after cargo build --release --bin ciba-gateway and
#   npm ci --prefix tests/op)
# Environment: SECONDS_PER_RUN (default 20), REPS (default 3), IDS (default 20),
#   FLOOD_CONNECTIONS (default 32), BASE_PORT (default 18290; uses BASE_PORT .. +2), GATEWAY.
set -euo pipefail

RUN_SECONDS=${SECONDS_PER_RUN:-20}
REPS=${REPS:-3}
IDS=${IDS:-20}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18290}
OP_PORT=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))
METRICS_PORT=$((BASE_PORT + 2))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
GATEWAY=${GATEWAY:-$target/release/ciba-gateway}

LOAD_NAME=abuse_mix
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools wrk curl node:nodejs
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT"
pin_one_core

start_work ciba-abuse-mix
# The OP announces a 1 s interval, so the correct client polls once a second.
start_test_op "$OP_PORT" 0 --interval 1

cat >"$work/gateway.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = 1
work_stealing = false
[upstream]
url = "http://127.0.0.1:$OP_PORT"
[polling]
min_interval_seconds = 1
[logging]
level = "warn"
CONF
start_gateway "$work/gateway.toml" "$METRICS_PORT" "http://127.0.0.1:$OP_PORT/jwks"

form='content-type: application/x-www-form-urlencoded'
flood_creds='client_id=client-post&client_secret=post-secret-0123456789'
flood_id=$(curl -fs -X POST "http://127.0.0.1:$GW_PORT/backchannel" -H "$form" \
    --data "scope=openid&login_hint=flooder&$flood_creds" | sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p')
[[ -n $flood_id ]] || die "no auth_req_id for the flooding client"
flood_poll="grant_type=urn:openid:params:grant-type:ciba&auth_req_id=$flood_id&$flood_creds"
curl -s -o /dev/null -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$flood_poll"
wrk_script "$work/flood.lua"

paced() { # -> "RESULT polls p50 p99 max errors statuses"
    "${load[@]}" node "$here/paced_client.mjs" "http://127.0.0.1:$GW_PORT" client-other \
        other-secret-0123456789 "$IDS" 1000 "$RUN_SECONDS" 127.0.0.2
}

echo "gateway and OP on CPU 0; the clients on CPU 1; $IDS ids polled once a second for ${RUN_SECONDS}s; $REPS pairs"
for rep in $(seq "$REPS"); do
    seen_before=$(op_token_count "$OP_PORT")
    clean=$(paced)
    seen_clean=$(($(op_token_count "$OP_PORT") - seen_before))
    echo "  run $rep clean: ${clean#RESULT } (the OP saw $seen_clean polls)"

    seen_before=$(op_token_count "$OP_PORT")
    WRK_METHOD=POST WRK_BODY=$flood_poll "${load[@]}" nice -n 19 wrk -t1 -c"$FLOOD_CONNECTIONS" \
        -d"$((RUN_SECONDS + 2))"s --timeout 5s --latency -s "$work/flood.lua" \
        "http://127.0.0.1:$GW_PORT/token" >"$work/flood.out" 2>&1 &
    flood=$!
    pids+=("$flood")
    sleep 1 # the flood is on before the correct client starts
    mixed=$(paced)
    wait "$flood" || die "the flood's wrk failed: $(cat "$work/flood.out")"
    seen_mixed=$(($(op_token_count "$OP_PORT") - seen_before))
    flood_line=$(awk '$1 == "RESULT" { print $6, $2 }' "$work/flood.out")
    echo "  run $rep flood: ${mixed#RESULT } (flood: ${flood_line% *} polls at ${flood_line#* }/s; the OP saw $seen_mixed polls)"
    echo "clean ${clean#RESULT } $seen_clean" >>"$work/results"
    echo "mixed ${mixed#RESULT } $seen_mixed ${flood_line% *}" >>"$work/results"
done

echo
awk '
function median(arr, k,   m, i, j, t, v) {
    m = cnt[k]
    for (i = 1; i <= m; i++) v[i] = arr[k, i]
    for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
{ k = $1; i = ++cnt[k]; polls[k, i] = $2; p50[k, i] = $3; p99[k, i] = $4; errs[k] += $6; seen[k, i] = $8; flood[k] += $9 }
END {
    printf "| run | correct polls | p50 ms | p99 ms | socket errors |\n|---|--:|--:|--:|--:|\n"
    for (x = 1; x <= 2; x++) {
        k = (x == 1) ? "clean" : "mixed"
        P99[k] = median(p99, k)
        printf "| %s | %d | %.2f | %.2f | %d |\n", (k == "clean" ? "alone" : "with the flood"), median(polls, k), median(p50, k) / 1000, P99[k] / 1000, errs[k]
    }
    extra = 0
    for (i = 1; i <= cnt["mixed"]; i++) extra += seen["mixed", i] - polls["mixed", i]
    r = P99["mixed"] / P99["clean"]
    printf "\ncorrect client p99 with the flood: %.2f× its clean run (goal <= 2×): %s\n", r, (r <= 2 ? "met" : "MISSED")
    printf "flood polls sent: %d; polls the OP saw beyond the correct client'\''s: %d (a poll due at its interval passes)\n", flood["mixed"], extra
}' "$work/results"
