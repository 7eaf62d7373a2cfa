#!/usr/bin/env bash
# Throughput and latency of the release gateway against nginx on the same machine.
#
# Starts one nginx on 127.0.0.1 as a fast static OpenID Provider stub (fixed JSON answers), a
# second nginx that only proxy_passes to it, the release gateway in front of it, and a bare
# pingora proxy (examples/bare_proxy.rs) in front of it, then measures each scenario with wrk:
#
#   a  nginx stub directly                     GET  /jwks
#   b  nginx proxy_pass -> stub                GET  /jwks          (the reference)
#   c  gateway -> stub, passed through         GET  /jwks
#   d  gateway -> stub, CIBA poll forwarded    POST /token  (a new unknown auth_req_id each time)
#   e  gateway answers slow_down itself        POST /token  (tracked id, polled too soon)
#   e0 nginx answers a fixed 400 itself        POST /slow_down
#   f  gateway validates + normalizes a Base64 login_hint_token and forwards  POST /backchannel
#   g  bare pingora proxy -> stub              GET  /jwks
#   g0 bare pingora answers a fixed 400 itself POST /slow_down
#   h  gateway over TLS -> stub, passed through GET /jwks   (HTTPS, TLS 1.3, the gateway's listener)
#   h0 nginx over TLS, proxy_pass -> stub      GET  /jwks   (HTTPS, the same certificate)
#   i  gateway over TLS answers slow_down      POST /token  (tracked id, polled too soon)
#   i0 nginx over TLS answers a fixed 400      POST /slow_down
#
# The TLS scenarios use a self-signed RSA 2048 certificate made with openssl in the work
# directory, wrk's kept-alive connections (one handshake per connection, so they measure the
# record layer more than handshakes), a second gateway listening with [server.tls], and a
# TLS server block in the nginx proxy.
#
#   Ld nginx + Lua poll rule -> stub, poll forwarded  POST /token  (a new id each time)
#   Le nginx + Lua answers slow_down itself    POST /token  (tracked id, polled too soon)
#
# Ld and Le are the peer an operator would write instead of the gateway: nginx with
# libnginx-mod-http-lua reading the form, keeping each auth_req_id's next allowed poll and
# interval in a shared dict, answering slow_down (interval + 5 s) or proxying.
#
# Each scenario runs REPS times (interleaved), the table shows medians, with the CPU time the
# server under test (the proxy, or the stub in a and e0) spent per 1,000 requests, read from
# /proc/<pid>/stat around each run. wrk is pinned to the
# last CPU and every server to the others (when the machine has at least 2). Everything it
# starts is stopped by PID on exit; all traffic stays on 127.0.0.1. About 3 minutes.
#
# Usage: benches/load/compare.sh   (after cargo build --release --bin ciba-gateway --example bare_proxy)
# Environment: DURATION (seconds per run, default 10), REPS (default 2), CONNECTIONS (default 32),
#   GATEWAY / BARE (binaries, default target/release/ciba-gateway and
#   target/release/examples/bare_proxy, or under $CARGO_TARGET_DIR),
#   BASE_PORT (default 18180; uses BASE_PORT+1 .. BASE_PORT+7, BASE_PORT+13 and BASE_PORT+14),
#   ONLY (scenario names to run, e.g. "b c g"; default all), GATEWAY_THREADS (default 1),
#   WORK_STEALING (true or false, default false; for the gateway and the bare proxy alike:
#   one thread on the one server core, as nginx's one worker),
#   HALF_LOAD (1: afterwards, measure p99 at half of (c)'s peak rate with oha's fixed-rate
#   mode: the stub directly, then through nginx proxy_pass, the gateway and the bare proxy;
#   installs oha with cargo when missing; needs scenario c in the run).
set -euo pipefail

DURATION=${DURATION:-10}
REPS=${REPS:-2}
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18180}
ONLY=${ONLY:-}
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
WORK_STEALING=${WORK_STEALING:-false}
HALF_LOAD=${HALF_LOAD:-0}
OP_PORT=$((BASE_PORT + 1))
NGX_PORT=$((BASE_PORT + 2))
GW_PORT=$((BASE_PORT + 3))
BARE_PORT=$((BASE_PORT + 4))
LUA_PORT=$((BASE_PORT + 7))
METRICS_PORT=$((BASE_PORT + 13))
GW_TLS_PORT=$((BASE_PORT + 5))
NGX_TLS_PORT=$((BASE_PORT + 6))
METRICS_TLS_PORT=$((BASE_PORT + 14))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
GATEWAY=${GATEWAY:-$target/release/ciba-gateway}
BARE=${BARE:-$target/release/examples/bare_proxy}

LOAD_NAME=compare
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx wrk curl openssl pgrep:procps
lua_module=/usr/lib/nginx/modules/ngx_http_lua_module.so
[[ -f $lua_module ]] || need_tools "$lua_module:libnginx-mod-http-lua"
[[ -f $lua_module ]] || die "no $lua_module; install libnginx-mod-http-lua"
if [[ $HALF_LOAD == 1 ]]; then # oha is not in Debian; build it once with cargo
    PATH="$target/tools/bin:$PATH"
    if ! command -v oha >/dev/null; then
        echo "installing oha into $target/tools with cargo install (a few minutes)"
        cargo install --quiet --locked --root "$target/tools" oha || die "could not install oha"
    fi
fi
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
[[ -x $BARE ]] || die "no bare proxy at $BARE; run cargo build --release --example bare_proxy"

ports_free BASE_PORT "$OP_PORT" "$NGX_PORT" "$GW_PORT" "$BARE_PORT" "$LUA_PORT" "$METRICS_PORT" \
    "$GW_TLS_PORT" "$NGX_TLS_PORT" "$METRICS_TLS_PORT"

# --- CPU pinning: wrk on the last CPU, servers on the rest ---------------------------------
ncpu=$(nproc)
if ((ncpu >= 2)) && command -v taskset >/dev/null; then
    srv=(taskset -c "0-$((ncpu - 2))")
    load=(taskset -c "$((ncpu - 1))")
    pinning="servers on CPU 0-$((ncpu - 2)), wrk on CPU $((ncpu - 1))"
else
    srv=()
    load=()
    pinning="not pinned"
fi

start_work ciba-compare

# --- the certificate the gateway and nginx both serve --------------------------------------
mkdir -p "$work/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null \
    || die "openssl could not make the test certificate"

# --- the two nginx instances ---------------------------------------------------------------
# nginx as a plain reverse proxy, keep-alive connections to the stub.
nginx_conf ngx "
    upstream op { server 127.0.0.1:$OP_PORT; keepalive 64; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://op;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    server {
        listen 127.0.0.1:$NGX_TLS_PORT ssl;
        ssl_certificate $work/tls/cert.pem;
        ssl_certificate_key $work/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /slow_down { default_type application/json; return 400 '{\"error\":\"slow_down\"}'; }
        location / {
            proxy_pass http://op;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

# The same-job peer: the poll rule in Lua in front of the stub. A poll before the id's next
# allowed time is slow_down with the interval grown by 5 s (CIBA 11); any other poll sets the
# next allowed time and is proxied. Ids live 600 s in the shared dict.
nginx_conf lua "
    lua_shared_dict polls 256m;
    upstream op { server 127.0.0.1:$OP_PORT; keepalive 64; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$LUA_PORT;
        location = /token {
            access_by_lua_block {
                ngx.req.read_body()
                local id = ngx.req.get_post_args(32).auth_req_id
                if type(id) ~= \"string\" then return end
                local polls = ngx.shared.polls
                local now = ngx.now()
                local interval = polls:get(\"i\" .. id) or 5
                local next_at = polls:get(id)
                if next_at and now < next_at then
                    interval = interval + 5
                    polls:set(\"i\" .. id, interval, 600)
                    polls:set(id, now + interval, 600)
                    ngx.status = 400
                    ngx.header[\"Content-Type\"] = \"application/json\"
                    ngx.header[\"Cache-Control\"] = \"no-store\"
                    ngx.header[\"Retry-After\"] = interval
                    ngx.print('{\"error\":\"slow_down\"}')
                    return ngx.exit(ngx.HTTP_OK)
                end
                polls:set(id, now + interval, 600)
            }
            proxy_pass http://op;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
        location / {
            proxy_pass http://op;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" "load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module $lua_module;"

# The stub OP: every acknowledgement is a new id.
fixed_op op "$OP_PORT" "${srv[@]}"
op_master=$fixed_op_pid
"${srv[@]}" nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" &
ngx_master=$!
pids+=("$ngx_master")
"${srv[@]}" nginx -p "$work/lua" -c "$work/lua/nginx.conf" &
lua_master=$!
pids+=("$lua_master")

# --- the gateway and the bare proxy --------------------------------------------------------
cat >"$work/gateway.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = $GATEWAY_THREADS
work_stealing = $WORK_STEALING

[upstream]
url = "http://127.0.0.1:$OP_PORT"
backchannel_path = "/backchannel"
token_path = "/token"

[polling]
# Room for every id the runs leave behind (about 1.2 million): the id table is made with
# room for max_tracked at start (docs/configuration.md).
max_tracked = 2000000
max_tracked_per_client = 2000000
sweep_interval_seconds = 60

[rate_limit]
enabled = false

[logging]
level = "warn"
CONF
"${srv[@]}" "$GATEWAY" --config "$work/gateway.toml" 2>"$work/gateway.log" &
gw=$!
pids+=("$gw")
# The same gateway listening with TLS (its own state, so its own tracked id below).
sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$GW_TLS_PORT/" -e "s/127.0.0.1:$METRICS_PORT/127.0.0.1:$METRICS_TLS_PORT/" \
    "$work/gateway.toml" >"$work/gateway-tls.toml"
cat >>"$work/gateway-tls.toml" <<CONF

[server.tls]
cert_file = "$work/tls/cert.pem"
key_file = "$work/tls/key.pem"
CONF
"${srv[@]}" "$GATEWAY" --config "$work/gateway-tls.toml" 2>"$work/gateway-tls.log" &
gw_tls=$!
pids+=("$gw_tls")
"${srv[@]}" "$BARE" "127.0.0.1:$BARE_PORT" "127.0.0.1:$OP_PORT" "$GATEWAY_THREADS" "$WORK_STEALING" 2>"$work/bare.log" &
bare=$!
pids+=("$bare")

wait_ready "$gw" "$METRICS_PORT" "http://127.0.0.1:$OP_PORT/jwks" "http://127.0.0.1:$NGX_PORT/jwks" \
    "http://127.0.0.1:$BARE_PORT/jwks" "http://127.0.0.1:$LUA_PORT/jwks" \
    || { cat "$work/gateway.log" "$work/bare.log" "$work/lua/logs/error.log" >&2; die "a server did not come up"; }
wait_ready "$gw_tls" "$METRICS_TLS_PORT" \
    || { cat "$work/gateway-tls.log" >&2; die "the TLS gateway did not come up"; }

# nginx serves from its one worker process, the master's child; that is the process to time.
op_worker=$(pgrep -P "$op_master" | head -1)
ngx_worker=$(pgrep -P "$ngx_master" | head -1)
lua_worker=$(pgrep -P "$lua_master" | head -1)
[[ -n $op_worker && -n $ngx_worker && -n $lua_worker ]] || die "could not find the nginx worker processes"
clk_tck=$(getconf CLK_TCK)

# --- requests ------------------------------------------------------------------------------
form='content-type: application/x-www-form-urlencoded'
poll_unknown='grant_type=urn:openid:params:grant-type:ciba&auth_req_id=never-issued-by-the-op&client_id=c&client_secret=s'
# Base64 of {"flow_type":"broker_oidc","idp_values":"mitid"}, percent-encoded for the form.
lht=$(printf '%s' '{"flow_type":"broker_oidc","idp_values":"mitid"}' | base64 -w0 \
    | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
backchannel="scope=openid&client_id=c&client_secret=s&login_hint_token=$lht"

# A tracked id for (e): one backchannel request through the gateway, then one poll.
ack=$(curl -fs -X POST "http://127.0.0.1:$GW_PORT/backchannel" -H "$form" \
    --data 'scope=openid&client_id=c&client_secret=s&login_hint=u') \
    || die "the backchannel probe failed: $(tail -5 "$work/gateway.log")"
tracked_id=$(printf '%s' "$ack" | sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p')
[[ -n $tracked_id ]] || die "no auth_req_id in the acknowledgement: $ack"
poll_tracked="grant_type=urn:openid:params:grant-type:ciba&auth_req_id=$tracked_id&client_id=c&client_secret=s"
curl -s -o /dev/null -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$poll_tracked"
# The Lua peer tracks the same id from its first poll.
curl -s -o /dev/null -X POST "http://127.0.0.1:$LUA_PORT/token" -H "$form" --data "$poll_tracked"
ack=$(curl -fsk -X POST "https://127.0.0.1:$GW_TLS_PORT/backchannel" -H "$form" \
    --data 'scope=openid&client_id=c&client_secret=s&login_hint=u') \
    || die "the TLS backchannel probe failed: $(tail -5 "$work/gateway-tls.log")"
tls_id=$(printf '%s' "$ack" | sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p')
[[ -n $tls_id ]] || die "no auth_req_id in the TLS acknowledgement: $ack"
poll_tls="grant_type=urn:openid:params:grant-type:ciba&auth_req_id=$tls_id&client_id=c&client_secret=s"
curl -sk -o /dev/null -X POST "https://127.0.0.1:$GW_TLS_PORT/token" -H "$form" --data "$poll_tls"

# Each scenario's request must give the expected answer before it is measured.
expect() { # name, expected substring, curl arguments...
    local name=$1 want=$2 got
    shift 2
    got=$(curl -s -w ' %{http_code}' "$@") || die "$name: request failed"
    [[ $got == *"$want"* ]] || die "$name: expected '$want', got: $got"
    echo "  $name: $got"
}
echo "probes (body, status):"
expect a '{"keys":[]} 200' "http://127.0.0.1:$OP_PORT/jwks"
expect b '{"keys":[]} 200' "http://127.0.0.1:$NGX_PORT/jwks"
expect c '{"keys":[]} 200' "http://127.0.0.1:$GW_PORT/jwks"
expect d 'authorization_pending' -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$poll_unknown"
expect e '"slow_down"' -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$poll_tracked"
expect e0 '"slow_down"' -X POST "http://127.0.0.1:$OP_PORT/slow_down" -H "$form" --data "$poll_tracked"
expect f '"auth_req_id"' -X POST "http://127.0.0.1:$GW_PORT/backchannel" -H "$form" --data "$backchannel"
expect g '{"keys":[]} 200' "http://127.0.0.1:$BARE_PORT/jwks"
expect g0 '"slow_down"' -X POST "http://127.0.0.1:$BARE_PORT/slow_down" -H "$form" --data "$poll_tracked"
expect Ld 'authorization_pending' -X POST "http://127.0.0.1:$LUA_PORT/token" -H "$form" \
    --data "${poll_unknown/never-issued-by-the-op/probe-$RANDOM$RANDOM}"
expect Le '"slow_down"' -X POST "http://127.0.0.1:$LUA_PORT/token" -H "$form" --data "$poll_tracked"
expect h '{"keys":[]} 200' -k "https://127.0.0.1:$GW_TLS_PORT/jwks"
expect h0 '{"keys":[]} 200' -k "https://127.0.0.1:$NGX_TLS_PORT/jwks"
expect i '"slow_down"' -k -X POST "https://127.0.0.1:$GW_TLS_PORT/token" -H "$form" --data "$poll_tls"
expect i0 '"slow_down"' -k -X POST "https://127.0.0.1:$NGX_TLS_PORT/slow_down" -H "$form" --data "$poll_tls"

# --- load ----------------------------------------------------------------------------------
cat >"$work/compare.lua" <<'LUA'
-- One fixed request per scenario from WRK_METHOD and WRK_BODY. No request() function, so
-- wrk formats the request once per thread and sends it unchanged; except with
-- WRK_UNIQUE_ID, where each request's auth_req_id is new: the gateway forwards an id it
-- never saw once, then decides its later polls itself, so a fixed id would measure local
-- answers, not forwarded polls.
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
if (os.getenv("WRK_UNIQUE_ID") or "") ~= "" then
    local template = body:gsub("auth_req_id=[^&]*", "auth_req_id=%%s")
    local prefix = string.format("u%d-%d-", os.time(), math.random(1, 1000000000))
    local n = 0
    function request()
        n = n + 1
        return wrk.format(nil, nil, nil, string.format(template, prefix .. n))
    end
end
-- requests/s, p50, p99, p99.9 (microseconds), requests, non-2xx/3xx answers, socket errors
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %.1f %d %d %d %d %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
        summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

# name|method|url|body|process timed|description
scenarios=(
    "a|GET|http://127.0.0.1:$OP_PORT/jwks||$op_worker|nginx stub directly, GET /jwks"
    "b|GET|http://127.0.0.1:$NGX_PORT/jwks||$ngx_worker|nginx proxy_pass, GET /jwks"
    "c|GET|http://127.0.0.1:$GW_PORT/jwks||$gw|gateway, GET /jwks passed through"
    "d|POST|http://127.0.0.1:$GW_PORT/token|$poll_unknown|$gw|gateway, CIBA poll forwarded"
    "e|POST|http://127.0.0.1:$GW_PORT/token|$poll_tracked|$gw|gateway answers slow_down itself"
    "e0|POST|http://127.0.0.1:$OP_PORT/slow_down|$poll_tracked|$op_worker|nginx answers a fixed 400 itself"
    "f|POST|http://127.0.0.1:$GW_PORT/backchannel|$backchannel|$gw|gateway, Base64 login_hint_token normalized, forwarded"
    "g|GET|http://127.0.0.1:$BARE_PORT/jwks||$bare|bare pingora proxy, GET /jwks"
    "g0|POST|http://127.0.0.1:$BARE_PORT/slow_down|$poll_tracked|$bare|bare pingora answers a fixed 400 itself"
    "Ld|POST|http://127.0.0.1:$LUA_PORT/token|$poll_unknown|$lua_worker|nginx + Lua poll rule, CIBA poll forwarded"
    "Le|POST|http://127.0.0.1:$LUA_PORT/token|$poll_tracked|$lua_worker|nginx + Lua answers slow_down itself"
    "h|GET|https://127.0.0.1:$GW_TLS_PORT/jwks||$gw_tls|gateway over TLS, GET /jwks passed through"
    "h0|GET|https://127.0.0.1:$NGX_TLS_PORT/jwks||$ngx_worker|nginx over TLS, proxy_pass, GET /jwks"
    "i|POST|https://127.0.0.1:$GW_TLS_PORT/token|$poll_tls|$gw_tls|gateway over TLS answers slow_down itself"
    "i0|POST|https://127.0.0.1:$NGX_TLS_PORT/slow_down|$poll_tls|$ngx_worker|nginx over TLS answers a fixed 400 itself"
)

if [[ -n $ONLY ]]; then
    kept=()
    for s in "${scenarios[@]}"; do
        [[ " $ONLY " == *" ${s%%|*} "* ]] && kept+=("$s")
    done
    scenarios=("${kept[@]}")
fi

run() { # name method url body seconds pid -> "name rps p50 p99 p999 n non2xx errors cpu_ms_per_1k"
    local out before after
    before=$(cpu_ticks "$6")
    local unique=""
    [[ $1 == d || $1 == Ld ]] && unique=1
    out=$(WRK_METHOD=$2 WRK_BODY=$4 WRK_UNIQUE_ID=$unique "${load[@]}" wrk -t1 -c"$CONNECTIONS" -d"$5"s --timeout 5s \
        --latency -s "$work/compare.lua" "$3" 2>&1) || die "$1: wrk failed: $out"
    after=$(cpu_ticks "$6")
    printf '%s\n' "$out" | awk -v n="$1" -v t=$((after - before)) -v hz="$clk_tck" \
        '$1 == "RESULT" { $1 = n; print $0, ($6 ? sprintf("%.1f", t * 1000 / hz / ($6 / 1000)) : 0) }'
}

echo
echo "$pinning; wrk -t1 -c$CONNECTIONS -d${DURATION}s, $REPS runs per scenario, interleaved"
for s in "${scenarios[@]}"; do # a short warm-up of every path and connection pool
    IFS='|' read -r name method url body pid _ <<<"$s"
    run "$name" "$method" "$url" "$body" 1 "$pid" >/dev/null
done
for rep in $(seq "$REPS"); do
    for s in "${scenarios[@]}"; do
        IFS='|' read -r name method url body pid _ <<<"$s"
        line=$(run "$name" "$method" "$url" "$body" "$DURATION" "$pid")
        echo "  run $rep: $line"
        echo "$line" >>"$work/results"
    done
done

kill -0 "$gw" 2>/dev/null || die "the gateway exited during the run"
kill -0 "$gw_tls" 2>/dev/null || die "the TLS gateway exited during the run"
rss=$(status_kib "$gw" VmRSS)
hwm=$(status_kib "$gw" VmHWM)
tracked=$(tracked "$METRICS_PORT")

# --- table ---------------------------------------------------------------------------------
desc_file="$work/desc"
for s in "${scenarios[@]}"; do
    IFS='|' read -r name _ _ _ _ desc <<<"$s"
    echo "$name|$desc" >>"$desc_file"
done
echo
awk -v descs="$desc_file" -v rss="$rss" -v hwm="$hwm" -v tracked="$tracked" '
function median(arr, k,   m, i, j, t, v) {
    m = cnt[k]
    for (i = 1; i <= m; i++) v[i] = arr[k, i]
    for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
function ms(us) { return sprintf("%.2f", us / 1000) }
BEGIN { FS = "|"; while ((getline line < descs) > 0) { split(line, p, "|"); order[++n] = p[1]; desc[p[1]] = p[2] }; FS = " " }
{
    k = $1; i = ++cnt[k]
    rps[k, i] = $2; p50[k, i] = $3; p99[k, i] = $4; p999[k, i] = $5; cpu[k, i] = $9
    non2xx[k] += $7; errs[k] += $8; total[k] += $6
}
END {
    for (x = 1; x <= n; x++) {
        k = order[x]
        R[k] = median(rps, k); P50[k] = median(p50, k); P99[k] = median(p99, k); P999[k] = median(p999, k)
        C[k] = median(cpu, k)
    }
    printf "| scenario | requests/s | p50 ms | p99 ms | p99.9 ms | ratio | CPU ms / 1k requests | CPU ratio | non-2xx, socket errors |\n"
    printf "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    for (x = 1; x <= n; x++) {
        k = order[x]
        ref = (k == "e" || k == "e0" || k == "g0" || k == "Le") ? "e0" : (k == "h" ? "h0" : (k == "i" ? "i0" : "b"))
        if (!(ref in R)) ref = k
        printf "| %s: %s | %.0f | %s | %s | %s | %.2f× %s | %.1f | %s | %d, %d |\n", k, desc[k], R[k], ms(P50[k]), ms(P99[k]), ms(P999[k]), R[k] / R[ref], ref, C[k], (C[ref] > 0 ? sprintf("%.2f× %s", C[k] / C[ref], ref) : "-"), non2xx[k], errs[k]
    }
    printf "\nCPU: user + system time of the server under test (the proxy; the stub itself in a and e0), all threads, per 1,000 requests.\n"
    printf "\ngateway after the run: VmRSS %.1f MiB, VmHWM %.1f MiB, tracked auth_req_ids %s\n", rss / 1024, hwm / 1024, tracked
    printf "\ngoals against bare pingora built with the same settings (ratios of medians):\n"
    goal("c", "g", 0.95, "pass-through c/g")
    goal("d", "g", 0.90, "forwarded poll against bare pass-through d/g")
    goal("e", "g0", 0.95, "local answer against bare pingora fixed answer e/g0")
    goal("f", "g", 0.85, "Base64 backchannel against bare pass-through f/g")
    printf "goals against the nginx + Lua peer (p99 at saturation at most 1.5x):\n"
    tail_goal("e", "Le")
    tail_goal("d", "Ld")
    printf "moonshot (recorded, not required):\n"
    goal("d", "Ld", 1.0, "forwarded poll d/Ld")
    goal("e", "Le", 1.0, "local answer e/Le")
    printf "for the record:\n"
    if ("c" in R && "b" in R) printf "  c/b (gateway pass-through against nginx proxy_pass): %.2f\n", R["c"] / R["b"]
    if ("e" in R && "e0" in R) printf "  e/e0 (gateway slow_down against nginx fixed 400): %.2f\n", R["e"] / R["e0"]
    if ("g" in R && "b" in R) printf "  g/b (bare pingora against nginx proxy_pass): %.2f\n", R["g"] / R["b"]
    if ("h" in R && "h0" in R) printf "  h/h0 (over TLS, gateway pass-through against nginx proxy_pass): %.2f; p99 %s vs %s ms\n", R["h"] / R["h0"], ms(P99["h"]), ms(P99["h0"])
    if ("i" in R && "i0" in R) printf "  i/i0 (over TLS, gateway slow_down against nginx fixed 400): %.2f\n", R["i"] / R["i0"]
}
function goal(k, base, want, what) {
    if (!(k in R) || !(base in R)) return
    printf "  %s: %.2f (goal >= %.2f): %s\n", what, R[k] / R[base], want, (R[k] / R[base] >= want ? "met" : "MISSED")
}
function tail_goal(k, base) {
    if (!(k in P99) || !(base in P99) || P99[base] == 0) return
    printf "  p99 %s %s ms against %s %s ms: %.2fx (goal <= 1.5x): %s\n", k, ms(P99[k]), base, ms(P99[base]), P99[k] / P99[base], (P99[k] <= 1.5 * P99[base] ? "met" : "MISSED")
}' "$work/results"

# --- p99 added by the gateway at half of its peak rate -------------------------------------
[[ $HALF_LOAD == 1 ]] || exit 0
peak=$(awk '$1 == "c" { print $2 }' "$work/results" | sort -n \
    | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
[[ -n $peak ]] || die "HALF_LOAD=1 needs scenario c in the run"
rate=$(awk -v p="$peak" 'BEGIN { printf "%d", p / 2 }')
p99_at() { # url -> p99 in microseconds, with coordinated-omission correction
    "${load[@]}" oha -z "${DURATION}s" -c "$CONNECTIONS" -q "$rate" --latency-correction \
        --no-tui --output-format json "$1" \
        | tr -d ' \n' | sed -n 's/.*"latencyPercentiles":{[^}]*"p99":\([0-9.e-]*\).*/\1/p' \
        | awk '{ printf "%d", $1 * 1e6 }'
}
echo
echo "half of (c)'s peak: $rate requests/s for ${DURATION}s, oha -c$CONNECTIONS, $REPS runs, interleaved"
for rep in $(seq "$REPS"); do
    direct=$(p99_at "http://127.0.0.1:$OP_PORT/jwks")
    ngx=$(p99_at "http://127.0.0.1:$NGX_PORT/jwks")
    via=$(p99_at "http://127.0.0.1:$GW_PORT/jwks")
    bare=$(p99_at "http://127.0.0.1:$BARE_PORT/jwks")
    [[ -n $direct && -n $ngx && -n $via && -n $bare ]] || die "could not read oha's p99"
    awk -v d="$direct" -v n="$ngx" -v v="$via" -v b="$bare" -v r="$rep" 'BEGIN {
        printf "  run %s: p99 stub directly %.2f ms; added over it: gateway %.2f ms (goal < 1 ms: %s), nginx proxy_pass %.2f ms, bare pingora %.2f ms\n",
            r, d / 1000, (v - d) / 1000, (v - d < 1000 ? "met" : "MISSED"), (n - d) / 1000, (b - d) / 1000 }'
done
