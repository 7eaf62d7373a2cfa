#!/usr/bin/env bash
# Instructions per request, counted with callgrind: deterministic, unaffected by whatever
# else the machine is doing, so two trees (or the gateway and bare pingora) can be compared
# on a busy machine where a wall-clock load test cannot.
#
# For each binary and scenario the server runs under `valgrind --tool=callgrind` (one
# thread, no work stealing) in front of an nginx stub OP; once it is up its counters are
# zeroed (start-up left out), a keep-alive client sends N1 and then, in a second run, N2
# requests; (total(N2) - total(N1)) / (N2 - N1) is the cost of one request, the client's
# set-up and the shutdown cancelled out.
#
#   c  GET  /jwks, passed through to the stub
#   d  POST /token, a CIBA poll of a new auth_req_id each time (forwarded)
#   e  POST /token, a tracked auth_req_id polled too soon (slow_down answered by the gateway)
#   f  POST /backchannel with a Base64 login_hint_token (validated, normalized, forwarded,
#      its acknowledgement tracked)
#   g  bare pingora (examples/bare_proxy.rs), GET /jwks passed through
#   g0 bare pingora answers POST /slow_down with a fixed 400 itself
#   g3 bare pingora, GET /jwks passed through, setting the three fields the gateway sets on
#      what it forwards (Host, X-Forwarded-For, X-Request-Id) with pingora's insert_header and
#      values made at start: g3 - g is what a pingora proxy pays for them
#
# The same scenarios as benches/load/compare.sh, so each of its throughput ratios has an
# instruction twin: c/g is g's count over c's, and so on (fewer instructions, more requests).
#
# Usage: benches/load/instructions.sh [OLD_BINARY] NEW_BINARY
# Environment: N1 (default 100), N2 (default 600), SCENARIOS (default "c d e f"),
#   BARE (the bare proxy, default target/release/examples/bare_proxy; "" to skip g, g0 and g3),
#   PROFILE (a directory: keep each binary's N2 callgrind file there, for callgrind_annotate),
#   BASE_PORT (default 18380; uses BASE_PORT+1 .. BASE_PORT+4). Everything listens on
#   127.0.0.1 and is stopped on exit.
set -euo pipefail

(($# == 1 || $# == 2)) || { echo "usage: $0 [OLD_BINARY] NEW_BINARY" >&2; exit 2; }
OLD=
(($# == 2)) && OLD=$1
NEW=${!#}
N1=${N1:-100}
N2=${N2:-600}
SCENARIOS=${SCENARIOS:-c d e f}
BASE_PORT=${BASE_PORT:-18380}
PROFILE=${PROFILE:-}
OP_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))
BARE_PORT=$((BASE_PORT + 4))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BARE=${BARE-${CARGO_TARGET_DIR:-$root/target}/release/examples/bare_proxy}
LOAD_NAME=instructions
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx valgrind curl python3
for b in $OLD $NEW $BARE; do [[ -x $b ]] || die "no executable at $b"; done
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT" "$BARE_PORT"
start_work ciba-instructions
[[ -z $PROFILE ]] || mkdir -p "$PROFILE"

fixed_op op "$OP_PORT"
per_request_toml "$work/gw.toml" "$GW_PORT" "$METRICS_PORT" "$OP_PORT"

# The client: N requests of one scenario on one kept-alive connection; every answer is
# checked, so a scenario that stops doing what it names fails the run.
cat >"$work/client.py" <<'PY'
import base64, http.client, json, sys, urllib.parse
port, scenario, n, tag = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
form = {"Content-Type": "application/x-www-form-urlencoded"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def post(path, fields):
    c.request("POST", path, urllib.parse.urlencode(fields), form)
    r = c.getresponse()
    return r.status, r.read()
def poll(id):
    return post("/token", {"grant_type": "urn:openid:params:grant-type:ciba",
                           "auth_req_id": id, "client_id": "c", "client_secret": "s"})
lht = base64.b64encode(b'{"flow_type":"broker_oidc","idp_values":"mitid"}').decode()
tracked = None
if scenario == "e":
    status, body = post("/backchannel", {"scope": "openid", "login_hint": "alice",
                                         "client_id": "c", "client_secret": "s"})
    tracked = json.loads(body)["auth_req_id"]
    poll(tracked)  # the first poll is forwarded; every later one is too soon
want = {"c": (200, b"keys"), "g": (200, b"keys"), "g3": (200, b"keys"),
        "d": (400, b"authorization_pending"),
        "e": (400, b"slow_down"), "g0": (400, b"slow_down"), "f": (200, b"auth_req_id")}[scenario]
for i in range(n):
    if scenario in ("c", "g", "g3"):
        c.request("GET", "/jwks")
        r = c.getresponse()
        got = (r.status, r.read())
    elif scenario == "d":
        got = poll("new-%s-%d" % (tag, i))
    elif scenario == "e":
        got = poll(tracked)
    elif scenario == "g0":
        got = post("/slow_down", {"grant_type": "urn:openid:params:grant-type:ciba",
                                  "auth_req_id": "x", "client_id": "c", "client_secret": "s"})
    else:
        got = post("/backchannel", {"scope": "openid", "client_id": "c", "client_secret": "s",
                                    "login_hint_token": lht})
    if got[0] != want[0] or want[1] not in got[1]:
        sys.exit("scenario %s, request %d: got %d %r" % (scenario, i, got[0], got[1][:200]))
PY

# total BINARY SCENARIO N [KEEP]: callgrind's instruction total for N requests (from the
# zeroing after start-up to the exit, less the timer clock thread); KEEP names a file to
# keep the profile in.
total() {
    local out="$work/cg.$RANDOM" srv port
    if [[ $2 == g || $2 == g0 || $2 == g3 ]]; then
        port=$BARE_PORT
        local fields=()
        [[ $2 == g3 ]] && fields=(fields)
        valgrind --tool=callgrind --callgrind-out-file="$out" "$1" "127.0.0.1:$port" \
            "127.0.0.1:$OP_PORT" 1 false "${fields[@]}" >/dev/null 2>"$work/srv.err" &
        srv=$!
        pids+=("$srv")
        for _ in $(seq 600); do
            curl -fs -o /dev/null "http://127.0.0.1:$port/jwks" && break
            kill -0 "$srv" 2>/dev/null || die "the bare proxy exited: $(tail -3 "$work/srv.err")"
            sleep 0.2
        done
    else
        port=$GW_PORT
        valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --config "$work/gw.toml" \
            >/dev/null 2>"$work/srv.err" &
        srv=$!
        pids+=("$srv")
        for _ in $(seq 600); do
            curl -fs -o /dev/null "http://127.0.0.1:$METRICS_PORT/readyz" && break
            kill -0 "$srv" 2>/dev/null || die "the gateway exited: $(tail -3 "$work/srv.err")"
            sleep 0.2
        done
    fi
    callgrind_control -z "$srv" >/dev/null 2>&1
    python3 "$work/client.py" "$port" "$2" "$3" "$RANDOM$RANDOM" || die "client failed ($2)"
    # pingora's SIGTERM waits out a grace period (five minutes by default, which the bare
    # proxy keeps); SIGINT stops at once. The gateway's own grace is short.
    if [[ $port == "$BARE_PORT" ]]; then kill -INT "$srv"; else kill -TERM "$srv"; fi
    wait "$srv" 2>/dev/null || true
    [[ -z ${4:-} ]] || cp "$out" "$4"
    # The dump at exit holds everything since the zeroing, less pingora's timer clock
    # thread where it runs (bare pingora): it ticks with wall time, not with requests, and
    # valgrind's slowdown would charge each request with about twenty times its real share.
    local all clock
    all=$(awk '/^(totals|summary):/ { t = $2 } END { print t }' "$out")
    clock=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null \
        | awk '/TimerManager::clock_thread/ { gsub(",", "", $1); print $1; exit }')
    echo $((all - ${clock:-0}))
}

# per_request BINARY SCENARIO LABEL: instructions per request.
per_request() {
    local keep=
    [[ -z $PROFILE ]] || keep="$PROFILE/$3.$2.callgrind"
    local a b
    b=$(total "$1" "$2" "$N2" "$keep")
    a=$(total "$1" "$2" "$N1")
    echo $(((b - a) / (N2 - N1)))
}

declare -A count
printf '%-3s %-5s %14s %10s\n' scenario build "instr/request" change
for s in $SCENARIOS; do
    if [[ -n $OLD ]]; then
        count[old.$s]=$(per_request "$OLD" "$s" old)
        printf '%-3s %-5s %14d\n' "$s" old "${count[old.$s]}"
    fi
    count[new.$s]=$(per_request "$NEW" "$s" new)
    if [[ -n $OLD ]]; then
        awk -v s="$s" -v o="${count[old.$s]}" -v n="${count[new.$s]}" \
            'BEGIN { printf "%-3s %-5s %14d %+9.1f%%\n", s, "new", n, (n - o) * 100 / o }'
    else
        printf '%-3s %-5s %14d\n' "$s" new "${count[new.$s]}"
    fi
done
[[ -n $BARE ]] || exit 0
for s in g g0 g3; do
    count[bare.$s]=$(per_request "$BARE" "$s" bare)
    printf '%-3s %-5s %14d\n' "$s" bare "${count[bare.$s]}"
done

# The instruction twins of compare.sh's goals: bare pingora's count over the gateway's.
echo
echo "instruction ratios (bare pingora's instructions per request over the gateway's):"
for pair in "c g 0.95" "d g 0.90" "e g0 0.95" "f g 0.85"; do
    read -r k base want <<<"$pair"
    for build in old new; do
        [[ -n ${count[$build.$k]:-} ]] || continue
        awk -v k="$k" -v b="$base" -v w="$want" -v build="$build" \
            -v x="${count[$build.$k]}" -v y="${count[bare.$base]}" \
            'BEGIN { printf "  %s/%s (%s): %.3f (throughput goal >= %.2f)\n", k, b, build, y / x, w }'
    done
done
echo "for the record (bare pingora setting the gateway's three fields, g3):"
for build in old new; do
    [[ -n ${count[$build.c]:-} ]] || continue
    awk -v build="$build" -v x="${count[$build.c]}" -v y="${count[bare.g3]}" \
        'BEGIN { printf "  c/g3 (%s): %.3f\n", build, y / x }'
done
