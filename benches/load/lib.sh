# Shared by the load scripts in this directory (sourced, not run): tools, free ports, a work
# directory whose processes are stopped by PID on exit, nginx configurations, readiness and
# /proc readings. The sourcing script sets LOAD_NAME first (the prefix of its messages).

die() { echo "${LOAD_NAME:-load}: $*" >&2; exit 1; }

# need_tools COMMAND[:DEBIAN_PACKAGE]... installs what is missing from the Debian archive.
need_tools() {
    local spec cmd pkg need=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        command -v "$cmd" >/dev/null || need+=("$pkg")
    done
    ((${#need[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing ${need[*]}; install them or run as root"
    echo "installing ${need[*]} from the Debian archive"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ports_free HINT PORT... dies when a port on 127.0.0.1 already answers; HINT says what to set.
ports_free() {
    local hint=$1 p
    shift
    for p in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "127.0.0.1:$p is already in use; set $hint"
        fi
    done
}

# start_work PREFIX makes $work and stops every PID in $pids, then removes $work, on exit.
pids=()
start_work() {
    work=$(mktemp -d -t "$1.XXXXXX")
    trap stop_work EXIT
    trap 'exit 130' INT TERM
}
stop_work() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Give each a moment to exit, then insist.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

# nginx_conf NAME HTTP_BODY [MAIN] writes $work/NAME/nginx.conf: one worker, no access log,
# long keep-alive, everything under $work/NAME, HTTP_BODY inside the http block and MAIN
# (load_module lines) before it.
nginx_conf() {
    mkdir -p "$work/$1/logs" "$work/$1/tmp"
    cat >"$work/$1/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $work/$1/nginx.pid;
error_log $work/$1/logs/error.log warn;
${3:-}
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$1/tmp/body;
    proxy_temp_path $work/$1/tmp/proxy;
    fastcgi_temp_path $work/$1/tmp/fastcgi;
    uwsgi_temp_path $work/$1/tmp/uwsgi;
    scgi_temp_path $work/$1/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
$2
}
CONF
}

# fixed_op NAME PORT [COMMAND...]: nginx under $work/NAME as a stub OP with fixed answers on
# 127.0.0.1:PORT (the JWKS at /jwks, a pending poll at /token, an acknowledgement with a fresh
# id at /backchannel, and at /slow_down nginx's own fixed 400), started through COMMAND (e.g.
# taskset -c 1) when one is given; sets fixed_op_pid.
fixed_op() {
    local name=$1 port=$2
    shift 2
    nginx_conf "$name" "
    server {
        listen 127.0.0.1:$port;
        default_type application/json;
        location = /jwks { return 200 '{\"keys\":[]}'; }
        location = /token { return 400 '{\"error\":\"authorization_pending\"}'; }
        location = /backchannel { return 200 '{\"auth_req_id\":\"\$request_id\",\"expires_in\":600}'; }
        location = /slow_down { return 400 '{\"error\":\"slow_down\"}'; }
    }"
    "$@" nginx -p "$work/$name" -c "$work/$name/nginx.conf" &
    fixed_op_pid=$!
    pids+=("$fixed_op_pid")
}

# per_request_toml FILE LISTEN_PORT METRICS_PORT OP_PORT writes the gateway's configuration for
# per-request measurements in front of fixed_op: one thread without work stealing (as bare
# pingora is run), room for a million ids, no sweep and no rate limit during a run.
per_request_toml() {
    cat >"$1" <<TOML
[server]
listen = "127.0.0.1:$2"
metrics_listen = "127.0.0.1:$3"
threads = 1
work_stealing = false

[upstream]
url = "http://127.0.0.1:$4"
backchannel_path = "/backchannel"
token_path = "/token"

[polling]
max_tracked = 1000000
max_tracked_per_client = 1000000
sweep_interval_seconds = 3600

[rate_limit]
enabled = false

[logging]
level = "warn"
TOML
}

# wait_ready GATEWAY_PID METRICS_PORT URL...: the gateway says ready and every URL answers 2xx;
# false after 10 s or when the gateway exits.
wait_ready() {
    local gw=$1 metrics=$2 url ok
    shift 2
    for _ in $(seq 100); do
        ok=1
        curl -fs -o /dev/null "http://127.0.0.1:$metrics/readyz" || ok=
        for url in "$@"; do
            [[ -z $ok ]] || curl -fs -o /dev/null "$url" || ok=
        done
        [[ -z $ok ]] || return 0
        kill -0 "$gw" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# status_kib PID FIELD: a /proc/PID/status field such as VmRSS, in KiB.
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# tracked METRICS_PORT: the gateway's tracked auth_req_ids gauge.
tracked() {
    curl -fs "http://127.0.0.1:$1/metrics" \
        | awk '$1 == "ciba_gateway_tracked_auth_req_ids" { print $2 }'
}

# start_stub_op PORT: nginx as a fast static OP on 127.0.0.1:PORT: acknowledgements at /bc
# with a fresh auth_req_id each (`$request_id` is 32 random hex digits; the suffix makes ids
# about 43 characters, like real ones), every poll at /token pending, and a discovery
# document naming both.
start_stub_op() {
    nginx_conf nginx "
    server {
        listen 127.0.0.1:$1;
        default_type application/json;
        location = /bc {
            return 200 '{\"auth_req_id\":\"ar-\$request_id-\$connection-\$connection_requests\",\"expires_in\":600,\"interval\":5}';
        }
        location = /token {
            return 400 '{\"error\":\"authorization_pending\"}';
        }
        location = /.well-known/openid-configuration {
            return 200 '{\"issuer\":\"http://127.0.0.1:$1\",\"backchannel_authentication_endpoint\":\"http://127.0.0.1:$1/bc\",\"token_endpoint\":\"http://127.0.0.1:$1/token\"}';
        }
    }"
    nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    pids+=($!)
}

# wrk_script FILE writes a wrk Lua script that sends one fixed request from WRK_METHOD and
# WRK_BODY (form-encoded) and prints one line at the end:
#   RESULT <requests/s> <p50 µs> <p99 µs> <p99.9 µs> <requests> <non-2xx/3xx> <socket errors>
wrk_script() {
    cat >"$1" <<'LUA'
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %.1f %d %d %d %d %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
        summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
}

# cpu_ticks PID: user + system CPU ticks of the whole process, all threads.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    awk '{ print $12 + $13 }' <<<"${stat##*) }"
}

# start_test_op PORT CPU [ARG...]: the test OP (node-oidc-provider, tests/op) on
# 127.0.0.1:PORT with its ARGs, pinned to CPU unless that is ""; sets op_pid. Needs
# `npm ci --prefix tests/op` once.
start_test_op() {
    local port=$1 cpu=$2 pin=()
    shift 2
    [[ -n $cpu ]] && command -v taskset >/dev/null && pin=(taskset -c "$cpu")
    [[ -d $root/tests/op/node_modules ]] || die "run npm ci --prefix tests/op first"
    "${pin[@]}" node "$root/tests/op/server.mjs" --port "$port" --ignore-stdin "$@" \
        >"$work/op.out" 2>"$work/op.log" &
    op_pid=$!
    pids+=("$op_pid")
    for _ in $(seq 100); do
        grep -q '^READY' "$work/op.out" 2>/dev/null && return 0
        kill -0 "$op_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/op.log" >&2
    die "the test OP did not come up"
}

# op_token_count PORT: how many requests the test OP's token endpoint has seen.
op_token_count() {
    curl -fs "http://127.0.0.1:$1/admin/stats" | sed -n 's/.*"token":\([0-9]*\).*/\1/p'
}

# pin_one_core sets srv and load: the servers on CPU 0, the load on CPU 1, when the machine
# has two CPUs and taskset; otherwise nothing is pinned.
pin_one_core() {
    srv=() load=()
    if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
        srv=(taskset -c 0) load=(taskset -c 1)
    fi
}

# start_gateway CONFIG METRICS_PORT URL...: $GATEWAY with CONFIG (pinned as srv, its log in
# $work/gateway.log); sets gw; dies unless it is ready and every URL answers.
start_gateway() {
    local config=$1 metrics=$2
    shift 2
    "${srv[@]}" "$GATEWAY" --config "$config" 2>"$work/gateway.log" &
    gw=$!
    pids+=("$gw")
    wait_ready "$gw" "$metrics" "$@" || { cat "$work/gateway.log" >&2; die "the gateway did not come up"; }
}
