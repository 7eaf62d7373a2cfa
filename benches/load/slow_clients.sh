#!/usr/bin/env bash
# Resident memory of the release gateway and a normal client's latency while 2,000 hostile
# connections are open: slowloris headers, oversized headers, and headers held just under
# the cap.
#
# Starts nginx on 127.0.0.1 as a stub OpenID Provider, the release gateway in front of it, and
# then, one load at a time, N client connections from a Python asyncio client:
#
#   slow       each sends "POST /token HTTP/1.1\r\nHost: gw\r\n", then one more header byte a
#              second, never ending the header (slowloris)
#   oversized  each sends a 40 KiB header at once, over the 32 KiB cap, and keeps reading
#   near_cap   each sends 31 KiB of a header (under the cap) and then nothing
#
# With each load held open it reads the gateway's VmRSS and VmHWM from /proc/<pid>/status and
# its open-connections gauge, and times NORMAL sequential GET /jwks requests (a new connection
# each, passed through to the stub) for the median and p99. The same is measured with no load
# first. The header deadline is raised to HOLD+15 s for the run, so every hostile connection
# the guard lets in is still open while it is measured. Raises `ulimit -n` for itself and its
# children. Everything it starts is stopped by PID on exit; all traffic stays on 127.0.0.1;
# each load phase is capped at HOLD+30 s. About 2 minutes.
#
# Usage: benches/load/slow_clients.sh       (after cargo build --release)
# Environment: N (connections per load, default 2000), HOLD (seconds each load is held,
#   default 15), NORMAL (sequential requests timed, default 200), GATEWAY (binary, default
#   target/release/ciba-gateway, or under $CARGO_TARGET_DIR), BASE_PORT (default 18280; uses
#   BASE_PORT+1 .. BASE_PORT+3).
set -euo pipefail

N=${N:-2000}
HOLD=${HOLD:-15}
NORMAL=${NORMAL:-200}
BASE_PORT=${BASE_PORT:-18280}
OP_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GATEWAY=${GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/release/ciba-gateway}

LOAD_NAME=slow_clients
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx curl python3
[[ -x $GATEWAY ]] || die "no gateway binary at $GATEWAY; run cargo build --release first"
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT"
# Each load needs N sockets in the client and N (+ upstream) in the gateway.
ulimit -n "$(( $(ulimit -Hn) < 65536 ? $(ulimit -Hn) : 65536 ))"
(( $(ulimit -n) > N + 512 )) || die "ulimit -n $(ulimit -n) is too low for N=$N"
start_work ciba-slow-clients

# --- stub OP -----------------------------------------------------------------------------
nginx_conf nginx "
    server {
        listen 127.0.0.1:$OP_PORT;
        default_type application/json;
        location = /jwks { return 200 '{\"keys\":[]}'; }
        location = /bc { return 200 '{\"auth_req_id\":\"ar-\$request_id\",\"expires_in\":600,\"interval\":5}'; }
        location = /token { return 400 '{\"error\":\"authorization_pending\"}'; }
    }"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

# --- gateway -----------------------------------------------------------------------------
cat >"$work/gateway.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
threads = 2
client_header_timeout_seconds = $((HOLD + 15))
max_header_bytes = 32768
max_connections = $((N + 1000))
# Every client here is 127.0.0.1.
max_connections_per_address = $((N + 1000))

[upstream]
url = "http://127.0.0.1:$OP_PORT"
backchannel_path = "/bc"
token_path = "/token"

[rate_limit]
enabled = false

[logging]
level = "warn"
CONF
"$GATEWAY" --config "$work/gateway.toml" 2>"$work/gateway.log" &
gw=$!
pids+=($gw)
wait_ready "$gw" "$METRICS_PORT" "http://127.0.0.1:$GW_PORT/jwks" \
    || die "the gateway did not become ready: $(tail -5 "$work/gateway.log")"

# --- clients -----------------------------------------------------------------------------
cat >"$work/clients.py" <<'PY'
import asyncio, socket, statistics, sys, time

def latency(port, count):
    """Median and p99 of `count` sequential GETs, each on a new connection, in ms."""
    took = []
    for _ in range(count):
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /jwks HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:64]
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    print(f"{statistics.median(took):.2f} {took[min(len(took) - 1, int(len(took) * 0.99))]:.2f}")

async def one(mode, port, hold, ready, outcome):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome["connect_failed"] += 1
        ready.release()
        return
    if mode == "slow":
        w.write(b"POST /token HTTP/1.1\r\nHost: gw\r\n")
    elif mode == "oversized":
        w.write(b"GET /jwks HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"b" * 40960 + b"\r\n\r\n")
    else:
        w.write(b"GET /jwks HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"b" * (31 * 1024))
    ready.release()
    end = time.monotonic() + hold
    answer = b""
    try:
        await w.drain()
        while time.monotonic() < end:
            try:
                chunk = await asyncio.wait_for(r.read(4096), timeout=1.0)
                if not chunk:
                    break
                answer += chunk
            except asyncio.TimeoutError:
                if mode == "slow":
                    w.write(b"a")
                    await w.drain()
    except OSError:
        pass
    key = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else ("open" if time.monotonic() >= end else "closed")
    outcome[key] = outcome.get(key, 0) + 1
    w.close()

async def load(mode, port, n, hold, signal_file):
    ready = asyncio.Semaphore(0)
    outcome = {"connect_failed": 0}
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one(mode, port, hold, ready, outcome)))
        if len(tasks) % 200 == 0:
            await asyncio.sleep(0.05)
    for _ in range(n):
        await ready.acquire()
    open(signal_file, "w").write("open\n")
    await asyncio.gather(*tasks)
    print(" ".join(f"{k}={v}" for k, v in sorted(outcome.items()) if v))

if sys.argv[1] == "latency":
    latency(int(sys.argv[2]), int(sys.argv[3]))
else:
    asyncio.run(load(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
PY

gauge() {
    curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" \
        | awk '$1 == "ciba_gateway_client_connections" { print $2 }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

rows=()
measure() { # LABEL OUTCOME
    local rss hwm lat open
    rss=$(status_kib "$gw" VmRSS)
    hwm=$(status_kib "$gw" VmHWM)
    open=$(gauge)
    lat=$(python3 "$work/clients.py" latency "$GW_PORT" "$NORMAL")
    rows+=("$1|$(mib "$rss")|$(mib "$hwm")|$open|${lat% *}|${lat#* }|$2")
}

echo "gateway pid $gw; baseline"
measure "none" "-"
for mode in slow oversized near_cap; do
    echo "load: $N $mode connections, held ${HOLD} s"
    rm -f "$work/open"
    timeout $((HOLD + 30)) python3 "$work/clients.py" "$mode" "$GW_PORT" "$N" "$HOLD" "$work/open" \
        >"$work/$mode.out" &
    client=$!
    pids+=($client)
    for _ in $(seq 300); do [[ -e $work/open ]] && break; sleep 0.1; done
    sleep 1
    measure "$mode (while open)" "pending"
    wait "$client" || die "the $mode client failed: $(cat "$work/$mode.out")"
    rows[-1]=${rows[-1]%|pending}"|$(cat "$work/$mode.out")"
    sleep 1
    measure "after $mode" "-"
done

printf '\n| load | VmRSS (MiB) | VmHWM (MiB) | open connections | median (ms) | p99 (ms) | client outcome |\n'
printf '|---|---|---|---|---|---|---|\n'
for r in "${rows[@]}"; do
    printf '| %s |\n' "${r//|/ | }"
done
printf '\n%d sequential GET /jwks per row (new connection each); N=%d, HOLD=%s s; %s CPUs (%s)\n' \
    "$NORMAL" "$N" "$HOLD" "$(nproc)" "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
