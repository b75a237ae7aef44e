#!/bin/bash
# laysocks guard benchmark: what the seccomp user-notification guard (issue 8) costs, in
# one run, as differences and ratios against the preload layer alone (--no-guard), no
# layer at all, a native SOCKS5 client and proxychains-ng. See bench/README.md, "Guard".
#
#   sudo bench/guard.sh [--results FILE] [--no-build] [--quick] [--only sys,conn,peer,start]
#
# --results appends the report to FILE. Needs root (network namespaces). Everything it
# starts is killed by PID, the namespaces are deleted on exit; every step runs under
# `timeout`; the measuring takes about 4 minutes after the build (--quick: under 1).
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NAME=guard.sh
ONLY=",sys,conn,peer,start,"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
parse_args "$@"

# Counts (overridable from the environment).
if [ "$QUICK" = 1 ]; then
    : "${SYS_N:=400000}" "${SYS_M:=20480}" "${SYS_REPS:=2}" "${N_CONN:=300}" "${CONN_RUNS:=2}"
    : "${N_PEER:=51200}" "${PEER_REPS:=2}" "${N_START:=40}"
else
    : "${SYS_N:=2000000}" "${SYS_M:=51200}" "${SYS_REPS:=5}" "${N_CONN:=1000}" "${CONN_RUNS:=5}"
    : "${N_PEER:=102400}" "${PEER_REPS:=5}" "${N_START:=200}"
fi
: "${PIN:=1}"      # 1: the client (and the supervisor), microsocks and the echo server on one CPU
LAUNCHER="${LAYSOCKS_LAUNCHER:-$ROOT/target/release/laysocks}"

[ "$(id -u)" = 0 ] || die "needs root for network namespaces (run with sudo)"
for t in ip cc python3 microsocks proxychains4 timeout taskset; do
    command -v "$t" >/dev/null || die "missing $t (Debian packages: iproute2 gcc python3 microsocks proxychains4 coreutils util-linux)"
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "missing libc.a for the static client (Debian package libc6-dev)"
HAVE_HYPERFINE=0; command -v hyperfine >/dev/null && [ -z "${NO_HYPERFINE:-}" ] && HAVE_HYPERFINE=1
[ "$HAVE_HYPERFINE" = 1 ] || note "hyperfine not found (apt-get install -y hyperfine): timing start-up with a bash loop instead"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset LD_PRELOAD LAYSOCKS_LAYER LAYSOCKS_PROXY LAYSOCKS_CONFIG

NSC="lsguard-$$-c"; NSP="lsguard-$$-p"; VC="lsg$$c"; VP="lsg$$p"
bench_start lsguard "$NSC" "$NSP"

# ---------------------------------------------------------------- build
build_release 1200 laysocks-preload laysocks
[ -x "$LAUNCHER" ] || die "no $LAUNCHER: cargo build --release -p laysocks"
cc -O2 -Wall -o "$W/guardcost" "$BENCH_DIR/guardcost.c" || die "cc failed on bench/guardcost.c"
cc -O2 -Wall -o "$W/guardconn" "$BENCH_DIR/guardconn.c" || die "cc failed on bench/guardconn.c"
# The static build: no dynamic loader, so no preload layer can reach it; only the guard.
cc -O2 -Wall -static -o "$W/guardconn-static" "$BENCH_DIR/guardconn.c" || die "cc -static failed on bench/guardconn.c (libc6-dev)"
cc -O2 -Wall -o "$W/echoserv" "$BENCH_DIR/echoserv.c" || die "cc failed on bench/echoserv.c"
GC="$W/guardconn"; GCS="$W/guardconn-static"

# ---------------------------------------------------------------- rig
rig_up "$NSC" "$NSP" "$VC" "$VP" # lib.sh: client 198.51.100.2, proxy 198.51.100.1, target 203.0.113.2
PX=198.51.100.1; MPORT=1080; TGT=203.0.113.2; EPORT=7007
inc() { ip netns exec "$NSC" "$@"; }
inp() { ip netns exec "$NSP" "$@"; }
for ns in "$NSC" "$NSP"; do # thousands of short connections leave thousands in TIME_WAIT
    ip netns exec "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 >/dev/null ||
        note "could not set the port range / tcp_tw_reuse in $ns"
done
inp "$W/echoserv" "$TGT" "$EPORT" >"$W/echoserv.log" 2>&1 & PIDS+=($!)
inp microsocks -i "$PX" -p "$MPORT" >"$W/microsocks.log" 2>&1 & PIDS+=($!)
printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s\n' \
    "$PX" "$MPORT" >"$W/pc.conf"
for i in $(seq 50); do # bounded wait for the servers
    inc timeout 5 "$GC" conn -n 1 -w 0 -s "$PX:$MPORT" "$TGT" "$EPORT" >/dev/null 2>&1 && break
    [ "$i" = 50 ] && die "servers did not come up: $(cat "$W"/*.log 2>/dev/null | head -5)"
    sleep 0.1
done

OUT="$W/figures"; : >"$OUT"
# The ways of running a program. The launcher's guard is on by default; --no-guard is
# the preload layer alone (the launcher execs the program, no supervisor).
URL="socks5://$PX:$MPORT"
NOGUARD=("$LAUNCHER" -q --no-guard -x "$URL" --)
GUARD=("$LAUNCHER" -q -x "$URL" --)
HAVE_GUARD=1
if ! "$LAUNCHER" --help 2>/dev/null | grep -q -- '--no-guard'; then
    # A launcher from before the guard: it is the preload layer alone.
    HAVE_GUARD=0
    NOGUARD=("$LAUNCHER" -q -x "$URL" --)
    note "this launcher has no guard (no --no-guard option): the guard rows are left out"
fi
PC=(proxychains4 -q -f "$W/pc.conf")

# A way works if it carries one echo through the proxy (and, for the guard, the static
# client: only the guard can proxy it). A way that fails is reported and left out.
check() { # name, command...
    local name=$1; shift
    if inc timeout 20 "$@" >"$W/check-$name.out" 2>"$W/check-$name.err"; then
        put "ok.$name" 1
    else
        local rc=$?
        put "ok.$name" 0
        put "err.$name" "exit $rc: $(tr '\n' ' ' <"$W/check-$name.err" | cut -c1-300)"
        note "$name does not work: exit $rc: $(head -c 300 "$W/check-$name.err")"
    fi
}
check native "$GC" conn -n 3 -w 0 -s "$PX:$MPORT" "$TGT" "$EPORT"
ok native || die "the native client cannot reach the echo server through microsocks: the rig is broken"
check noguard "${NOGUARD[@]}" "$GC" conn -n 3 -w 0 "$TGT" "$EPORT"
if [ "$HAVE_GUARD" = 1 ]; then
    check guard "${GUARD[@]}" "$GCS" conn -n 3 -w 0 "$TGT" "$EPORT"
else
    put ok.guard 0; put err.guard "the launcher has no guard (no --no-guard in --help)"
fi
check pc "${PC[@]}" "$GC" conn -n 3 -w 0 "$TGT" "$EPORT"
# Without a guard the static client has no route to the target: proves the rig leaks nothing.
if inc timeout 10 "$GCS" conn -n 1 -w 0 "$TGT" "$EPORT" >/dev/null 2>"$W/check-leak.err"; then
    die "the static client reached $TGT without a proxy: the rig is not isolated"
fi
put meta.direct_fails "$(head -c 200 "$W/check-leak.err")"
# ... nor the dynamic one connecting with the bare `syscall` instruction under the preload
# layer alone: so the guard_raw row below is the guard's work.
if ok noguard && inc timeout 10 "${NOGUARD[@]}" "$GC" conn -r -n 1 -w 0 "$TGT" "$EPORT" >/dev/null 2>&1; then
    die "a raw connect under --no-guard reached $TGT: the preload layer caught it, the rows would be mislabelled"
fi

CPU=""
pin_servers() { # everything of the proxy side on one CPU
    CPU=$(idlest_cpu); put meta.pin_cpu "$CPU"
    for p in $(ip netns pids "$NSP"); do taskset -a -p -c "$CPU" "$p" >/dev/null 2>&1; done
}
unpin_servers() {
    for p in $(ip netns pids "$NSP"); do taskset -a -p -c 0-$(( $(nproc) - 1 )) "$p" >/dev/null 2>&1; done
}
pin() { [ "$PIN" = 1 ] && [ -n "$CPU" ] && echo taskset -c "$CPU"; }
busy() { put "busy.$1" "$(cpu_busy)"; }

# Wait (bounded) for the machine to be quiet: other people's builds share these cores.
if [ "${WAIT_IDLE:-60}" -gt 0 ]; then
    t_end=$(( $(date +%s) + ${WAIT_IDLE:-60} ))
    i=0
    while b=$(cpu_busy); [ "$b" -gt 15 ] && [ "$(date +%s)" -lt "$t_end" ]; do
        [ $((i++ % 10)) = 0 ] && note "machine is ${b}% busy with other work; waiting (up to ${WAIT_IDLE:-60} s, WAIT_IDLE=0 to skip)"
    done
fi

# run KEY TIMEOUT COMMAND... : appends the program's stdout to W/KEY.v; a failure is
# recorded as err.KEY and the way is not run again.
run() {
    local key=$1 to=$2; shift 2
    [ -e "$W/$key.broken" ] && return 1
    # shellcheck disable=SC2046
    if ! inc timeout "$to" $(pin) "$@" >>"$W/$key.v" 2>"$W/$key.err"; then
        put "err.$key" "$(tr '\n' ' ' <"$W/$key.err" | cut -c1-300)"
        note "$key failed: $(head -c 300 "$W/$key.err")"
        touch "$W/$key.broken"
        return 1
    fi
}

# ---------------------------------------------------------------- 1. system calls
# Untrapped calls cost what the filter's BPF costs (or nothing, where the kernel's
# per-syscall cache of "always allowed" answers applies); trapped ones a round trip to
# the supervisor. Runs interleaved; per call the minimum over runs of the fastest batch
# and of the median batch.
if want sys; then
    busy sys
    pin_servers
    note "1/4 system calls: $SYS_N untrapped and $SYS_M trapped calls each, $SYS_REPS runs, pinned to CPU $CPU"
    for r in $(seq "$SYS_REPS"); do
        run sys.bare 100 "$W/guardcost" "$SYS_N" "$SYS_M"
        run sys.bare2 100 "$W/guardcost" "$SYS_N" "$SYS_M" # the same again: the noise floor
        ok noguard && run sys.noguard 100 "${NOGUARD[@]}" "$W/guardcost" "$SYS_N" "$SYS_M"
        ok guard && run sys.guard 100 "${GUARD[@]}" "$W/guardcost" "$SYS_N" "$SYS_M"
    done
    for f in "$W"/sys.*.v; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .v); n=${n#sys.}
        awk -v n="$n" '{ if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2; if (!($1 in md) || $3 < md[$1]) md[$1] = $3 }
            END { for (k in lo) { print "sys." n "." k ".min=" lo[k]; print "sys." n "." k ".median=" md[k] } }' "$f" >>"$OUT"
    done
    unpin_servers
fi

# ---------------------------------------------------------------- 2. one connection
# socket + connect + SOCKS5 handshake + one byte echoed through microsocks, N cycles in
# one process; each way's runs interleaved with the starting way rotated; per way the
# median over runs of each run's p50 and p90.
if want conn; then
    busy conn
    [ "$PIN" = 1 ] && pin_servers
    note "2/4 connections: $N_CONN cycles x $CONN_RUNS runs per way${CPU:+, pinned to CPU $CPU}"
    conn_way() {
        case $1 in
            native) run conn.native 100 "$GC" conn -n "$N_CONN" -s "$PX:$MPORT" "$TGT" "$EPORT" ;;
            preload) ok noguard && run conn.preload 100 "${NOGUARD[@]}" "$GC" conn -n "$N_CONN" "$TGT" "$EPORT" ;;
            guard) ok guard && run conn.guard 100 "${GUARD[@]}" "$GCS" conn -n "$N_CONN" "$TGT" "$EPORT" ;;
            guard_raw) ok guard && run conn.guard_raw 100 "${GUARD[@]}" "$GC" conn -r -n "$N_CONN" "$TGT" "$EPORT" ;;
            both) ok guard && run conn.both 100 "${GUARD[@]}" "$GC" conn -n "$N_CONN" "$TGT" "$EPORT" ;;
            native_guard) ok guard && run conn.native_guard 100 "${GUARD[@]}" "$GCS" conn -n "$N_CONN" -s "$PX:$MPORT" "$TGT" "$EPORT" ;;
            pc) ok pc && run conn.pc 100 "${PC[@]}" "$GC" conn -n "$N_CONN" "$TGT" "$EPORT" ;;
        esac
        return 0
    }
    WAYS=(native preload guard guard_raw both native_guard pc)
    for r in $(seq 0 $((CONN_RUNS - 1))); do
        for i in "${!WAYS[@]}"; do conn_way "${WAYS[$(( (i + r) % ${#WAYS[@]} ))]}"; done
    done
    python3 - "$W" >>"$OUT" <<'EOF'
import glob, os, statistics, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "conn.*.v"))):
    key = os.path.basename(path)[5:-2]
    runs = [dict(kv.split("=", 1) for kv in line.split()) for line in open(path) if line.startswith("mode=")]
    if not runs:
        continue
    for f in ("p50_us", "p90_us", "mean_us", "min_us"):
        print(f"conn.{key}.{f[:-3]}={statistics.median(float(r[f]) for r in runs):.1f}")
    print(f"conn.{key}.max={max(float(r['max_us']) for r in runs):.1f}")
    print(f"conn.{key}.runs={len(runs)}")
EOF
    unpin_servers
fi

# ---------------------------------------------------------------- 3. getpeername
if want peer; then
    busy peer
    pin_servers
    note "3/4 getpeername: $N_PEER calls x $PEER_REPS runs per way, pinned to CPU $CPU"
    for r in $(seq "$PEER_REPS"); do
        # no layer: the kernel's answer (the peer is the proxy)
        run peer.bare 60 "$GCS" peer -n "$N_PEER" -s "$PX:$MPORT" "$TGT" "$EPORT"
        # the preload layer answers for a socket it proxied, in the process
        ok noguard && run peer.preload 60 "${NOGUARD[@]}" "$GC" peer -n "$N_PEER" "$TGT" "$EPORT"
        # the guard answers for a socket it proxied: every call is a notification
        ok guard && run peer.guard 60 "${GUARD[@]}" "$GCS" peer -n "$N_PEER" "$TGT" "$EPORT"
        # both layers: the preload layer's socket, a libc call
        ok guard && run peer.both 60 "${GUARD[@]}" "$GC" peer -n "$N_PEER" "$TGT" "$EPORT"
        # a socket the guard did not proxy: trapped and let through
        ok guard && run peer.guard_other 60 "${GUARD[@]}" "$GCS" peer -n "$N_PEER" -s "$PX:$MPORT" "$TGT" "$EPORT"
    done
    python3 - "$W" >>"$OUT" <<'EOF'
import glob, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "peer.*.v"))):
    key = os.path.basename(path)[5:-2]
    runs = [dict(kv.split("=", 1) for kv in line.split()) for line in open(path) if line.startswith("mode=")]
    if runs:
        print(f"peer.{key}.min={min(float(r['min_ns']) for r in runs):.1f}")
        print(f"peer.{key}.median={min(float(r['median_ns']) for r in runs):.1f}")
EOF
    unpin_servers
fi

# ---------------------------------------------------------------- 4. start-up
# hyperfine -N (no shell), the runs split into rounds with the order of the commands
# rotated each round, raw times pooled (as run.sh §1).
if want start; then
    busy start
    note "4/4 start-up: $N_START runs each"
    q() { printf '%q ' "$@"; }
    S=("true=true" "pc=$(q "${PC[@]}" true)")
    # --dns local: without the remote-DNS name table and its companion process, whose
    # start the launcher waits for; it separates the guard's cost from that one.
    ok noguard && S+=("noguard=$(q "${NOGUARD[@]}" true)" "noguard_local=$(q "${NOGUARD[@]:0:${#NOGUARD[@]}-1}" --dns local -- true)")
    ok guard && S+=("guard=$(q "${GUARD[@]}" true)" "guard_local=$(q "${GUARD[@]:0:${#GUARD[@]}-1}" --dns local -- true)")
    ROUNDS=4
    names=(); cmds=()
    for a in "${S[@]}"; do names+=("${a%%=*}"); cmds+=("${a#*=}"); done
    k=${#cmds[@]}; per=$(( (N_START + ROUNDS - 1) / ROUNDS ))
    : >"$W/start.times"
    for r in $(seq 0 $((ROUNDS - 1))); do
        order=(); ordn=()
        for i in $(seq 0 $((k - 1))); do j=$(( (i + r) % k )); order+=("${cmds[$j]}"); ordn+=("${names[$j]}"); done
        if [ "$HAVE_HYPERFINE" = 1 ]; then
            inc timeout 150 hyperfine -N --style none --runs "$per" --warmup 5 \
                --export-json "$W/start.$r.json" "${order[@]}" >/dev/null 2>"$W/start.err" ||
                { note "hyperfine failed: $(head -c 400 "$W/start.err")"; break; }
            python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for name, res in zip(sys.argv[2:], d["results"]):
    for t in res["times"]:
        print(name, t * 1e3)' "$W/start.$r.json" "${ordn[@]}" >>"$W/start.times"
        else # bounded bash loop; each time includes ip netns exec
            for i in $(seq "$per"); do
                for j in "${!order[@]}"; do
                    t0=$EPOCHREALTIME
                    eval "inc ${order[$j]}" >/dev/null 2>&1
                    t1=$EPOCHREALTIME
                    echo "${ordn[$j]} $(( ${t1/./} - ${t0/./} ))e-3" >>"$W/start.times"
                done
            done
        fi
    done
    python3 - "$W/start.times" >>"$OUT" <<'EOF'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    n, t = line.split()
    v.setdefault(n, []).append(float(t))
for n, ts in v.items():
    print(f"start.{n}.median={statistics.median(ts):.3f}")
    print(f"start.{n}.mean={statistics.mean(ts):.3f}")
    print(f"start.{n}.stddev={statistics.pstdev(ts):.3f}")
    print(f"start.{n}.min={min(ts):.3f}")
    print(f"start.{n}.n={len(ts)}")
EOF
fi

# ---------------------------------------------------------------- environment + report
put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cpus "$(nproc)"
put meta.cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
put meta.kernel "$(uname -r)"
put meta.laysocks "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
put meta.versions "proxychains4 $(ver proxychains4), microsocks $(ver microsocks), hyperfine $(ver hyperfine), gcc $(ver gcc), rustc $(rustc --version 2>/dev/null | awk '{print $2}')"
put meta.counts "syscalls: $SYS_N untrapped / $SYS_M trapped x $SYS_REPS runs; connections: $N_CONN x $CONN_RUNS runs; getpeername: $N_PEER x $PEER_REPS; start-up: $N_START runs"
put meta.pin "$PIN"
put meta.seconds $(( $(date +%s) - T_START ))

python3 "$BENCH_DIR/guardreport.py" "$OUT" | tee "$W/report.md"
[ -n "${KEEP_FIGURES:-}" ] && cp "$OUT" "$KEEP_FIGURES"
if [ -n "$RESULTS" ]; then { echo; cat "$W/report.md"; } >>"$RESULTS"; note "appended to $RESULTS"; fi
