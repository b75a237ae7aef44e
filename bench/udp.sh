#!/bin/bash
# laysocks UDP benchmark: datagrams through danted's UDP ASSOCIATE relay, laysocks vs a
# native SOCKS5 UDP client vs Dante's own socksify, with a direct path as the reference,
# in one run, reported as ratios. See bench/README.md, "UDP".
#
#   sudo bench/udp.sh [--results FILE] [--no-build] [--quick] [--only lat,rate,sc]
#
# --results appends the report to FILE. Needs root (network namespaces), danted
# (dante-server) and socksify (dante-client). Everything it starts is killed by PID, the
# namespaces are deleted on exit; every step runs under `timeout`.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NAME=udp.sh
ONLY=",lat,rate,sc,"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
parse_args "$@"

# Counts (overridable from the environment).
if [ "$QUICK" = 1 ]; then
    : "${RUNS:=2}" "${LAT_N:=1000}" "${RATE_SECS:=1}"
else
    : "${RUNS:=5}" "${LAT_N:=5000}" "${RATE_SECS:=2}"
fi
: "${LAT_LEN:=64}"           # payload bytes of the round-trip datagrams
: "${RATE_LENS:=64 1200}"    # payload sizes of the datagrams-per-second runs
: "${WINDOW:=16}"            # datagrams in flight in the rate runs
: "${LAT_PIN:=1}"            # 1: client, danted and the echo all on one CPU for §1
: "${RATE_PIN:=1}"           # §2: 1 as LAT_PIN; 2: client on CPU 0, danted and the echo on CPU 1
LAUNCHER="${LAYSOCKS_LAUNCHER:-$ROOT/target/release/laysocks}"


[ "$(id -u)" = 0 ] || die "needs root for network namespaces (run with sudo)"
for t in ip cc python3 danted socksify timeout taskset; do
    command -v "$t" >/dev/null || die "missing $t (Debian packages: iproute2 gcc python3 dante-server dante-client coreutils util-linux)"
done
unset LD_PRELOAD LAYSOCKS_LAYER LAYSOCKS_PROXY LAYSOCKS_CONFIG SOCKS_CONF SOCKS_SERVER SOCKS5_SERVER

NSC="lsudp-$$-c"; NSP="lsudp-$$-p"; VC="lsu$$c"; VP="lsu$$p"
bench_start lsudp "$NSC" "$NSP"

# ---------------------------------------------------------------- build
build_release 1200 laysocks
for p in udpbench udpecho; do
    cc -O2 -Wall -o "$W/$p" "$BENCH_DIR/$p.c" || die "cc failed on bench/$p.c"
done
B="$W/udpbench"

# ---------------------------------------------------------------- rig
# client ns: 198.51.100.2, route only to 198.51.100.0/24: a datagram sent straight to
# the target fails with ENETUNREACH (and counts in the client's OutNoRoutes), so an
# answer proves the proxy carried it. proxy ns: 198.51.100.1 (danted :1081, and the echo
# on :7007 for the direct reference), the target 203.0.113.2 on lo (the same echo).
ip netns add "$NSC" && ip netns add "$NSP" || die "ip netns add failed"
ip link add "$VC" type veth peer name "$VP" || die "ip link add veth failed"
ip link set "$VC" netns "$NSC"; ip link set "$VP" netns "$NSP"
ip -n "$NSC" link set lo up; ip -n "$NSP" link set lo up
ip -n "$NSC" addr add 198.51.100.2/24 dev "$VC"
ip -n "$NSP" addr add 198.51.100.1/24 dev "$VP"
ip -n "$NSC" link set "$VC" up; ip -n "$NSP" link set "$VP" up
ip -n "$NSP" addr add 203.0.113.2/32 dev lo

PX=198.51.100.1; DPORT=1081; TGT=203.0.113.2; EPORT=7007
inc() { ip netns exec "$NSC" "$@"; }
inp() { ip netns exec "$NSP" "$@"; }

# ip netns exec execs the program, so $! is the server itself.
ip netns exec "$NSP" "$W/udpecho" 0.0.0.0 "$EPORT" >"$W/udpecho.log" 2>&1 & PIDS+=($!)
cat >"$W/danted.conf" <<EOF
logoutput: $W/danted.log
internal: $PX port = $DPORT
external: $TGT
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: bind connect udpassociate bindreply udpreply }
EOF
ip netns exec "$NSP" danted -f "$W/danted.conf" -p "$W/danted.pid" >"$W/danted.out" 2>&1 & PIDS+=($!)
# Dante's client library, as socksify loads it: every destination via danted, UDP too.
cat >"$W/socks.conf" <<EOF
route {
    from: 0.0.0.0/0 to: 0.0.0.0/0 via: $PX port = $DPORT
    proxyprotocol: socks_v5
    command: udpassociate connect
    method: none
}
EOF

# Ways of running udpbench. Each takes its arguments after the way's prefix.
#   direct  the plain program to the echo on the proxy host's own address, no proxy
#   native  udpbench -s: UDP ASSOCIATE in the program
#   lay     the plain program under the launcher
#   sf      the plain program under socksify
#   *_c     the same with a connect()ed socket and send()/recv()
L_CMD=("$LAUNCHER" -q -x "socks5://$PX:$DPORT" --)
SF_CMD=(env SOCKS_CONF="$W/socks.conf" socksify)
way_cmd() { # way mode -> the argv in WAY[] (options go after it), the target in WT[]
    local w=$1 m=$2
    WT=("$TGT" "$EPORT")
    case $w in
        direct) WAY=("$B" "$m"); WT=("$PX" "$EPORT") ;;
        direct_c) WAY=("$B" "$m" -c); WT=("$PX" "$EPORT") ;;
        native) WAY=("$B" "$m" -s "$PX:$DPORT") ;;
        lay) WAY=("${L_CMD[@]}" "$B" "$m") ;;
        lay_c) WAY=("${L_CMD[@]}" "$B" "$m" -c) ;;
        sf) WAY=("${SF_CMD[@]}" "$B" "$m") ;;
        sf_c) WAY=("${SF_CMD[@]}" "$B" "$m" -c) ;;
    esac
}

# Datagrams the client namespace could not route (a leak to the target would count here).
noroutes() { inc awk '/^Ip:/ { if (h) { print $(f) } else { for (i = 1; i <= NF; i++) if ($i == "OutNoRoutes") f = i; h = 1 } }' /proc/net/snmp; }

OUT="$W/figures"; : >"$OUT"
R="$W/raw"; mkdir -p "$R"

# wait for the servers (bounded): the native client's first round trip
for i in $(seq 50); do
    inc timeout 5 "$B" lat -n 1 -W 1 -s "$PX:$DPORT" "$TGT" "$EPORT" >/dev/null 2>&1 && break
    [ "$i" = 50 ] && die "danted or the echo did not come up: $(cat "$W/danted.out" "$W/danted.log" "$W/udpecho.log" 2>/dev/null | head -5)"
    sleep 0.1
done
DANTED_PID=$(cat "$W/danted.pid" 2>/dev/null)
[ "$(cat "/proc/$DANTED_PID/comm" 2>/dev/null)" = danted ] || die "PID ${DANTED_PID:-?} is not danted"

# Pin every process of the proxy namespace (danted, its children, the echo) to CPUs.
pin_servers() { local p; for p in $(ip netns pids "$NSP"); do taskset -a -p -c "$1" "$p" >/dev/null 2>&1; done; }
if [ "${WAIT_IDLE:-60}" -gt 0 ]; then # bounded wait for the machine to be quiet
    t_end=$(( $(date +%s) + ${WAIT_IDLE:-60} )); i=0
    while b=$(cpu_busy); [ "$b" -gt 15 ] && [ "$(date +%s)" -lt "$t_end" ]; do
        [ $((i++ % 10)) = 0 ] && note "machine is ${b}% busy with other work; waiting (up to ${WAIT_IDLE:-60} s, WAIT_IDLE=0 to skip)"
    done
fi

# ---------------------------------------------------------------- sanity
# Each way must carry 50 round trips (answers from the target, payload intact) without
# one unroutable datagram before it is timed; otherwise it is reported and left out.
WAYS_ALL=(direct direct_c native lay lay_c sf sf_c)
[ -x "$LAUNCHER" ] || note "no $LAUNCHER (cargo build --release -p laysocks): laysocks left out"
for w in "${WAYS_ALL[@]}"; do
    if [[ $w == lay* ]] && [ ! -x "$LAUNCHER" ]; then put "ok.$w" 0; put "err.$w" "no $LAUNCHER"; continue; fi
    way_cmd "$w" lat
    n0=$(noroutes); rc=0
    line=$(inc timeout 30 "${WAY[@]}" -n 50 -W 5 "${WT[@]}" 2>"$W/sanity-$w.err") || rc=$?
    n1=$(noroutes)
    if [ "$rc" = 0 ] && [[ $line == ok=1* ]] && [[ $line == *" foreign=0"* ]] && [ "$n1" = "$n0" ]; then
        put "ok.$w" 1
    else
        put "ok.$w" 0
        put "err.$w" "exit $rc, $((n1 - n0)) unroutable: $(head -c 300 "$W/sanity-$w.err" | tr '\n' ' ') ${line:0:200}"
        note "$w does not work: exit $rc, $((n1 - n0)) unroutable datagrams: $(head -c 300 "$W/sanity-$w.err")"
    fi
done
ok native || die "the native SOCKS5 UDP client does not get through danted: the rig is broken"
ok direct || die "the direct reference does not reach the echo: the rig is broken"

# CPU time (clock ticks, user + system) of every process in the proxy namespace: danted
# and its children, and the echo.
srv_ticks() { local p t=0 a; for p in $(ip netns pids "$NSP"); do
    a=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) && t=$((t + a)); done; echo "$t"; }

# one run: way mode key args... -> a line in R/KEY.WAY, unroutable datagrams in R/noroute.WAY
bench_run() {
    local w=$1 m=$2 key=$3; shift 3
    local line rc=0 n0 n1 pin=()
    [ -n "${CLIENT_CPU:-}" ] && pin=(taskset -c "$CLIENT_CPU")
    way_cmd "$w" "$m"
    n0=$(noroutes); s0=$(srv_ticks)
    line=$(inc timeout $((RATE_SECS + 90)) "${pin[@]}" "${WAY[@]}" "$@" "${WT[@]}" 2>"$W/run-$w.err") || rc=$?
    n1=$(noroutes); s1=$(srv_ticks)
    echo $((n1 - n0)) >>"$R/noroute.$w"
    if [ "$rc" = 0 ] && [[ $line == ok=1* ]]; then
        echo "$line srv_ticks=$((s1 - s0)) hz=$(getconf CLK_TCK)" >>"$R/$key.$w"
    else
        put "err.${key}_$w" "exit $rc: $(head -c 300 "$W/run-$w.err" | tr '\n' ' ')"
        note "$key $w failed: exit $rc $(head -c 300 "$W/run-$w.err")"
    fi
}

# ---------------------------------------------------------------- 1. round trips
if want lat; then
    put busy.lat "$(cpu_busy)"
    CLIENT_CPU=""
    if [ "$LAT_PIN" = 1 ]; then
        CLIENT_CPU=$(idlest_cpu); pin_servers "$CLIENT_CPU"
        put meta.lat_pin "client, danted and the echo on CPU $CLIENT_CPU"
    else
        put meta.lat_pin "unpinned"
    fi
    note "1/3 round trips: $LAT_N x $LAT_LEN B per run, $RUNS runs of each way, interleaved"
    WAYS=(direct native lay sf direct_c lay_c sf_c)
    k=${#WAYS[@]}
    for r in $(seq 0 $((RUNS - 1))); do
        for i in $(seq 0 $((k - 1))); do
            w=${WAYS[$(( (i + r) % k ))]}
            ok "$w" || continue
            bench_run "$w" lat lat -n "$LAT_N" -l "$LAT_LEN"
        done
    done
fi

# ---------------------------------------------------------------- 2. datagrams per second
if want rate; then
    put busy.rate "$(cpu_busy)"
    CLIENT_CPU=""
    if [ "$RATE_PIN" = 2 ] && [ "$(nproc)" -ge 2 ]; then
        CLIENT_CPU=0; pin_servers 1
        put meta.rate_pin "client on CPU 0, danted and the echo on CPU 1"
    elif [ "$RATE_PIN" = 1 ]; then
        CLIENT_CPU=$(idlest_cpu); pin_servers "$CLIENT_CPU"
        put meta.rate_pin "client, danted and the echo on CPU $CLIENT_CPU"
    else
        pin_servers "0-$(( $(nproc) - 1 ))"; put meta.rate_pin "unpinned"
    fi
    note "2/3 datagrams per second: window $WINDOW, $RATE_SECS s per run, sizes $RATE_LENS, $RUNS runs of each way"
    WAYS=(direct native lay sf)
    for len in $RATE_LENS; do
        for r in $(seq 0 $((RUNS - 1))); do
            for i in 0 1 2 3; do
                w=${WAYS[$(( (i + r) % 4 ))]}
                ok "$w" || continue
                bench_run "$w" rate "rate$len" -t "$RATE_SECS" -w "$WINDOW" -l "$len"
            done
        done
    done
fi
pin_servers "0-$(( $(nproc) - 1 ))"

# ---------------------------------------------------------------- 3. system calls
# Per round trip, counted by strace: a 2000-round-trip run minus a 1000 one, divided by
# 1000, so start-up and the session's set-up cancel. Load does not move this figure.
if want sc && command -v strace >/dev/null; then
    note "3/3 system calls per round trip (strace -f -c)"
    for w in direct native lay lay_c sf; do
        ok "$w" || continue
        way_cmd "$w" lat
        for n in 1000 2000; do
            inc timeout 120 strace -f -c -o "$W/sc-$w-$n" "${WAY[@]}" -n $n -l "$LAT_LEN" "${WT[@]}" >/dev/null 2>&1 ||
                note "strace count for $w failed"
        done
    done
    python3 - "$W" >>"$OUT" <<'EOF2'
import os, sys
def counts(path):
    c = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            c[f[-1]] = int(f[3])
    return c
for way in ("direct", "native", "lay", "lay_c", "sf"):
    a, b = (os.path.join(sys.argv[1], f"sc-{way}-{n}") for n in (1000, 2000))
    if not (os.path.exists(a) and os.path.exists(b)):
        continue
    ca, cb = counts(a), counts(b)
    for name in sorted(set(ca) | set(cb)):
        d = (cb.get(name, 0) - ca.get(name, 0)) / 1000
        if abs(d) >= 0.005:
            print(f"sc.{way}.{name}={d:.2f}")
EOF2
elif want sc; then
    note "strace not found: no syscall counts"
fi

# ---------------------------------------------------------------- environment + report
for w in "${WAYS_ALL[@]}"; do
    [ -e "$R/noroute.$w" ] && put "noroute.$w" "$(awk '{s += $1} END {print s}' "$R/noroute.$w")"
done
put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cpus "$(nproc)"
put meta.cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
put meta.kernel "$(uname -r)"
put meta.laysocks "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
put meta.versions "dante-server $(ver dante-server), dante-client $(ver dante-client), rustc $(rustc --version 2>/dev/null | awk '{print $2}')"
put meta.counts "$RUNS runs per way; round trips: $LAT_N x $LAT_LEN B; rate: window $WINDOW, $RATE_SECS s, sizes $RATE_LENS"
put meta.lay_cmd "$LAUNCHER -q -x socks5://$PX:$DPORT"
put meta.seconds $(( $(date +%s) - T_START ))

python3 "$BENCH_DIR/udpreport.py" "$OUT" "$R" | tee "$W/report.md"
[ -n "${KEEP_RAW:-}" ] && mkdir -p "$KEEP_RAW" && cp -r "$OUT" "$R"/. "$KEEP_RAW"/
if [ -n "$RESULTS" ]; then { echo; cat "$W/report.md"; } >>"$RESULTS"; note "appended to $RESULTS"; fi
