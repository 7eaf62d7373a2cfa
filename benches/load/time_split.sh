#!/usr/bin/env bash
# Where a request's CPU time goes, layer by layer, and how many system calls it makes: the
# gateway against bare pingora built with the same settings, the twins of compare.sh's goals.
#
#   c  gateway, GET /jwks passed through        g   bare pingora, GET /jwks passed through
#   e  gateway, slow_down answered itself       g0  bare pingora, a fixed 400 answered itself
#
# Each server runs alone on CPU 0 (one thread, no work stealing); wrk and an nginx stub OP
# share CPU 1. For each scenario and round, wrk loads the server for DURATION seconds while
# `perf record -e cpu-clock` samples it (a software clock: no hardware counters needed, so it
# works in a virtual machine); the server's CPU time over the run (/proc) divided by wrk's
# requests gives the time per request, and the samples split it into the kernel, pingora,
# tokio, http/httparse/bytes, the allocator, libc, the clock (vDSO), the rest of std, and the
# gateway's own functions. Medians over ROUNDS rounds, the scenarios interleaved.
#
# Then each server runs a short wrk load under `strace -c -f` (slow, so only counts are
# kept): system calls per request, by call.
#
# Usage: benches/load/time_split.sh   (after cargo build --release --bin ciba-gateway --example bare_proxy)
# Environment: ROUNDS (default 3), DURATION (seconds per run, default 6), GATEWAY / BARE
#   (binaries, default target/release/ciba-gateway and target/release/examples/bare_proxy),
#   BASE_PORT (default 18480; uses BASE_PORT+1 .. BASE_PORT+4). Everything listens on
#   127.0.0.1 and is stopped on exit; about two minutes.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
BASE_PORT=${BASE_PORT:-18480}
OP_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))
BARE_PORT=$((BASE_PORT + 4))

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
GATEWAY=${GATEWAY:-$target/release/ciba-gateway}
BARE=${BARE:-$target/release/examples/bare_proxy}
LOAD_NAME=time_split
# shellcheck source=lib.sh
source "$here/lib.sh"

need_tools nginx wrk curl python3 perf:linux-perf strace taskset:util-linux
for b in "$GATEWAY" "$BARE"; do [[ -x $b ]] || die "no executable at $b"; done
(($(nproc) >= 2)) || die "needs two CPUs: the server alone on one, the load on the other"
ports_free BASE_PORT "$OP_PORT" "$GW_PORT" "$METRICS_PORT" "$BARE_PORT"
start_work ciba-time-split

fixed_op op "$OP_PORT" taskset -c 1
per_request_toml "$work/gw.toml" "$GW_PORT" "$METRICS_PORT" "$OP_PORT"

taskset -c 0 "$GATEWAY" --config "$work/gw.toml" >"$work/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
taskset -c 0 "$BARE" "127.0.0.1:$BARE_PORT" "127.0.0.1:$OP_PORT" 1 false >"$work/bare.log" 2>&1 &
bare=$!
pids+=("$bare")
wait_ready "$gw" "$METRICS_PORT" "http://127.0.0.1:$GW_PORT/jwks" \
    || die "the gateway did not come up: $(tail -3 "$work/gateway.log")"
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$BARE_PORT/jwks" && break
    kill -0 "$bare" 2>/dev/null || die "the bare proxy exited: $(tail -3 "$work/bare.log")"
    sleep 0.1
done

# A tracked id, polled once (forwarded): every later poll of it is too soon.
form='content-type: application/x-www-form-urlencoded'
ack=$(curl -fs -X POST "http://127.0.0.1:$GW_PORT/backchannel" -H "$form" \
    --data 'scope=openid&client_id=c&client_secret=s&login_hint=u') || die "no acknowledgement"
id=$(printf '%s' "$ack" | sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p')
[[ -n $id ]] || die "no auth_req_id in $ack"
poll="grant_type=urn:openid:params:grant-type:ciba&auth_req_id=$id&client_id=c&client_secret=s"
curl -s -o /dev/null -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$poll"
got=$(curl -s -X POST "http://127.0.0.1:$GW_PORT/token" -H "$form" --data "$poll")
[[ $got == *'"slow_down"'* ]] || die "e: expected slow_down, got $got"
got=$(curl -s -X POST "http://127.0.0.1:$BARE_PORT/slow_down" -H "$form" --data "$poll")
[[ $got == *'"slow_down"'* ]] || die "g0: expected slow_down, got $got"

wrk_script "$work/load.lua"
# scenario -> port, pid, method, body
declare -A port=([c]=$GW_PORT [e]=$GW_PORT [g]=$BARE_PORT [g0]=$BARE_PORT)
declare -A pid=([c]=$gw [e]=$gw [g]=$bare [g0]=$bare)
declare -A method=([c]=GET [e]=POST [g]=GET [g0]=POST)
declare -A path=([c]=/jwks [e]=/token [g]=/jwks [g0]=/slow_down)
declare -A body=([c]= [e]=$poll [g]= [g0]=$poll)

# load SCENARIO SECONDS: wrk's RESULT line.
load() {
    WRK_METHOD=${method[$1]} WRK_BODY=${body[$1]} taskset -c 1 wrk -t1 -c32 -d"$2s" \
        -s "$work/load.lua" "http://127.0.0.1:${port[$1]}${path[$1]}" 2>&1 \
        | awk '/^RESULT/ { print $2, $6, $8 }'
}

clk_tck=$(getconf CLK_TCK)
echo "servers alone on CPU 0, wrk and the stub OP on CPU 1; wrk -t1 -c32 -d${DURATION}s; $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
    for s in c g e g0; do
        perf record -q -e cpu-clock -F 4999 -p "${pid[$s]}" -o "$work/perf.$s.$r" \
            >/dev/null 2>&1 &
        rec=$!
        sleep 0.3
        t0=$(cpu_ticks "${pid[$s]}")
        read -r rps requests errors < <(load "$s" "$DURATION")
        t1=$(cpu_ticks "${pid[$s]}")
        kill -INT "$rec"
        wait "$rec" 2>/dev/null || true
        [[ $errors == 0 && ${requests:-0} -gt 0 ]] || die "$s: wrk saw socket errors or no requests"
        us=$(awk -v t=$((t1 - t0)) -v k="$clk_tck" -v n="$requests" 'BEGIN { printf "%.3f", t / k * 1e6 / n }')
        echo "  round $r: $s $rps req/s, $us µs of CPU per request"
        echo "$s $r $us" >>"$work/cpu"
    done
done

python3 - "$work" "$ROUNDS" <<'PY'
import re, statistics, subprocess, sys
work, rounds = sys.argv[1], int(sys.argv[2])
cpu = {}
for line in open(f"{work}/cpu"):
    s, r, us = line.split()
    cpu[(s, int(r))] = float(us)

def layer(dso, kernel, sym):
    if kernel:
        return "kernel"
    if "vdso" in dso:
        return "clock (vDSO)"
    if dso.startswith("libc"):
        return "libc (memcpy, ...)"
    if sym.startswith(("mi_", "_mi_")):
        return "allocator (mimalloc)"
    if re.match(r"<?(pingora|tokio|http|core|alloc|std)", sym) is None and (
            "ciba_gateway" in sym or "bare_proxy" in sym):
        return "the proxy's own code"
    # A trait impl's symbol starts with `<`: `<pingora_core::... as ...>::poll`.
    crate = sym.lstrip("<")
    if crate.startswith("pingora"):
        return "pingora"
    if crate.startswith("tokio"):
        return "tokio"
    if crate.startswith(("http::", "httparse", "bytes::")):
        return "http, httparse, bytes"
    return "std, core, hashing, other"

def split(s, r):
    out = subprocess.run(["perf", "report", "-i", f"{work}/perf.{s}.{r}", "--no-children",
                          "--sort", "dso,sym", "--stdio", "-g", "none"],
                         capture_output=True, text=True).stdout
    shares = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            k = layer(m.group(2), m.group(3) == "k", m.group(4).strip())
            shares[k] = shares.get(k, 0) + float(m.group(1)) / 100
    total = sum(shares.values()) or 1
    return {k: v / total * cpu[(s, r)] for k, v in shares.items()}

runs = {s: [split(s, r) for r in range(1, rounds + 1)] for s in ("c", "g", "e", "g0")}
med = lambda s, k: statistics.median(run.get(k, 0.0) for run in runs[s])
layers = sorted({k for s in runs for run in runs[s] for k in run}, key=lambda k: -med("c", k))
print("\nµs of CPU per request by layer (median of %d rounds):" % rounds)
print("| layer | c | g | c − g | e | g0 | e − g0 |")
print("|---|--:|--:|--:|--:|--:|--:|")
for k in layers:
    c, g, e, g0 = (med(s, k) for s in ("c", "g", "e", "g0"))
    print(f"| {k} | {c:.2f} | {g:.2f} | {c - g:+.2f} | {e:.2f} | {g0:.2f} | {e - g0:+.2f} |")
tot = {s: statistics.median(cpu[(s, r)] for r in range(1, rounds + 1)) for s in runs}
print(f"| all | {tot['c']:.2f} | {tot['g']:.2f} | {tot['c'] - tot['g']:+.2f} | "
      f"{tot['e']:.2f} | {tot['g0']:.2f} | {tot['e'] - tot['g0']:+.2f} |")
print(f"CPU ratios: g/c {tot['g'] / tot['c']:.3f}, g0/e {tot['g0'] / tot['e']:.3f}")
PY

echo
echo "system calls per request (strace -c -f over a 2 s load; strace slows the server, so epoll_wait, which depends on how busy it is, reads low; the rest stand):"
for s in c g e g0; do
    strace -c -f -o "$work/strace.$s" -p "${pid[$s]}" 2>/dev/null &
    tracer=$!
    sleep 0.5
    read -r _ requests _ < <(load "$s" 2)
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    awk -v s="$s" -v n="$requests" '
        $NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" && $4 / n >= 0.01 {
            line = line sprintf(" %s %.2f", $NF, $4 / n)
        }
        END { printf "  %-3s%s\n", s, line }' "$work/strace.$s"
done
