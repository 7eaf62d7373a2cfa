#!/usr/bin/env bash
# Instructions per request of two gateway builds, side by side: deterministic counts from
# callgrind, unaffected by whatever else the machine is doing, so two trees can be compared
# on a busy machine (a wall-clock load test cannot).
#
# For each build and scenario the gateway runs under `valgrind --tool=callgrind` (one thread,
# no work stealing) in front of an nginx stub OP; a keep-alive client sends N1 and then, in a
# second run, N2 requests; (total(N2) - total(N1)) / (N2 - N1) is the cost of one request,
# start-up and shutdown cancelled out.
#
#   c  GET  /jwks, passed through to the stub
#   d  POST /token, a CIBA poll of a new auth_req_id each time (forwarded)
#   e  POST /token, a tracked auth_req_id polled too soon (slow_down answered by the gateway)
#
# Usage: benches/load/instructions.sh OLD_BINARY NEW_BINARY
# Environment: N1 (default 200), N2 (default 1200), BASE_PORT (default 18380; uses
#   BASE_PORT+1 .. BASE_PORT+3). Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail

[[ $# == 2 ]] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1
NEW=$2
N1=${N1:-200}
N2=${N2:-1200}
BASE_PORT=${BASE_PORT:-18380}
OP_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))

here=$(cd "$(dirname "$0")" && pwd)
LOAD_NAME=instructions
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx valgrind curl python3
[[ -x $OLD && -x $NEW ]] || die "both binaries must exist and be executable"
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT"
start_work ciba-instructions

nginx_conf op "
    server {
        listen 127.0.0.1:$OP_PORT;
        default_type application/json;
        location = /jwks { return 200 '{\"keys\":[]}'; }
        location = /token { return 400 '{\"error\":\"authorization_pending\"}'; }
        location = /backchannel { return 200 '{\"auth_req_id\":\"\$request_id\",\"expires_in\":600}'; }
    }"
nginx -p "$work/op" -c "$work/op/nginx.conf" &
pids+=("$!")

cat >"$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = 1
work_stealing = false

[upstream]
url = "http://127.0.0.1:$OP_PORT"
backchannel_path = "/backchannel"
token_path = "/token"

[polling]
max_tracked = 10000000
max_tracked_per_client = 10000000
sweep_interval_seconds = 3600

[rate_limit]
enabled = false

[logging]
level = "warn"
TOML

# The client: N requests of one scenario on one kept-alive connection.
cat >"$work/client.py" <<'PY'
import http.client, sys, urllib.parse
port, scenario, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
form = {"Content-Type": "application/x-www-form-urlencoded"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def poll(id):
    body = urllib.parse.urlencode({"grant_type": "urn:openid:params:grant-type:ciba",
                                   "auth_req_id": id, "client_id": "c", "client_secret": "s"})
    c.request("POST", "/token", body, form)
    return c.getresponse()
tracked = None
if scenario == "e":
    body = "scope=openid&login_hint=alice&client_id=c&client_secret=s"
    c.request("POST", "/backchannel", body, form)
    r = c.getresponse()
    import json
    tracked = json.loads(r.read())["auth_req_id"]
    poll(tracked).read()  # the first poll is forwarded; every later one is too soon
for i in range(n):
    if scenario == "c":
        c.request("GET", "/jwks")
        r = c.getresponse()
    elif scenario == "d":
        r = poll("new-%s-%d" % (sys.argv[4], i))
    else:
        r = poll(tracked)
    r.read()
PY

# total BINARY SCENARIO N: callgrind's instruction total for one run of N requests.
total() {
    local out="$work/cg.$RANDOM" gw
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --config "$work/gw.toml" \
        >/dev/null 2>"$work/gw.err" &
    gw=$!
    pids+=("$gw")
    for _ in $(seq 600); do
        curl -fs -o /dev/null "http://127.0.0.1:$METRICS_PORT/readyz" && break
        kill -0 "$gw" 2>/dev/null || die "the gateway exited: $(tail -3 "$work/gw.err")"
        sleep 0.2
    done
    python3 "$work/client.py" "$GW_PORT" "$2" "$3" "$RANDOM$RANDOM" || die "client failed"
    kill -TERM "$gw"
    wait "$gw" 2>/dev/null || true
    awk '/^totals:/ { print $2 }' "$out"
}

printf '%-3s %-18s %14s %14s\n' scenario binary "instr/request" "change"
for s in c d e; do
    old=$(( ($(total "$OLD" "$s" "$N2") - $(total "$OLD" "$s" "$N1")) / (N2 - N1) ))
    new=$(( ($(total "$NEW" "$s" "$N2") - $(total "$NEW" "$s" "$N1")) / (N2 - N1) ))
    printf '%-3s %-18s %14d\n' "$s" old "$old"
    awk -v s="$s" -v o="$old" -v n="$new" \
        'BEGIN { printf "%-3s %-18s %14d %+13.1f%%\n", s, "new", n, (n - o) * 100 / o }'
done
