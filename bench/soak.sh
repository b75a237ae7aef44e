#!/bin/bash
# laysocks soak: many proxied connections in one process, and the resources they leave
# behind, under the layer against microsocks and danted, side by side with a native SOCKS5
# client and proxychains-ng in one run. See bench/README.md, "Soak".
#
#   sudo bench/soak.sh [--results FILE] [--no-build] [--quick] [--only seq,conc,fault,rss]
#
# --results appends the report to FILE. Needs root (network namespaces). Everything it
# starts is killed by PID, the namespaces are deleted on exit; every step runs under
# `timeout`; the whole run takes about 3 minutes after the build.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NAME=soak.sh
ONLY=",seq,conc,fault,rss,"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
parse_args "$@"

if [ "$QUICK" = 1 ]; then
    : "${N_SEQ:=2000}" "${N_CONC:=300}" "${CONC_ROUNDS:=2}" "${N_RSS:=5}"
else
    : "${N_SEQ:=10000}" "${N_CONC:=1000}" "${CONC_ROUNDS:=3}" "${N_RSS:=21}"
fi
: "${TIMEOUT_S:=5}"        # the layer's --connect-timeout in the ordinary runs
: "${FAULT_TIMEOUT_S:=1}"  # ... against the proxy that never answers
LAUNCHER="${LAYSOCKS_LAUNCHER:-$ROOT/target/release/laysocks}"
LIB="$ROOT/target/release/liblaysocks.so"

[ "$(id -u)" = 0 ] || die "needs root for network namespaces (run with sudo)"
for t in ip cc python3 microsocks danted proxychains4 timeout; do
    command -v "$t" >/dev/null || die "missing $t (Debian packages: iproute2 gcc python3 microsocks dante-server proxychains4 coreutils)"
done
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY LD_PRELOAD LAYSOCKS_LAYER

NSC="lssoak-$$-c"; NSP="lssoak-$$-p"; VC="lss$$c"; VP="lss$$p"
bench_start lssoak "$NSC" "$NSP"

# ---------------------------------------------------------------- build
build_release 900 laysocks-preload laysocks
[ -x "$LAUNCHER" ] || die "no $LAUNCHER: cargo build --release -p laysocks"
for p in soak echoserv; do
    cc -O2 -Wall -o "$W/$p" "$BENCH_DIR/$p.c" || die "cc failed on bench/$p.c"
done

# ---------------------------------------------------------------- rig
rig_up "$NSC" "$NSP" "$VC" "$VP"
PX=198.51.100.1; MPORT=1080; DPORT=1081; SPORT=1095; TGT=203.0.113.2; EPORT=7007; CLOSED=7009
inc() { ip netns exec "$NSC" "$@"; }
inp() { ip netns exec "$NSP" "$@"; }
# 10,000 connections leave 10,000 sockets in TIME_WAIT in each namespace (as run.sh §6).
for ns in "$NSC" "$NSP"; do
    ip netns exec "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 >/dev/null ||
        note "could not set the port range / tcp_tw_reuse in $ns"
done
inp "$W/echoserv" "$TGT" "$EPORT" >"$W/echoserv.log" 2>&1 & PIDS+=($!)
inp microsocks -i "$PX" -p "$MPORT" >"$W/microsocks.log" 2>&1 & PIDS+=($!)
danted_conf "$W/danted.conf" "$W/danted.log" "$DPORT"
inp danted -f "$W/danted.conf" -p "$W/danted.pid" >"$W/danted.out" 2>&1 & PIDS+=($!)
inp "$W/soak" silent "$PX" "$SPORT" >"$W/silent.log" 2>&1 & PIDS+=($!)
pcconf() { printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s\n' "$PX" "$2" >"$1"; }
pcconf "$W/pc-m.conf" "$MPORT"; pcconf "$W/pc-d.conf" "$DPORT"

for i in $(seq 50); do # bounded wait for the servers
    inc timeout 5 "$W/soak" seq -n 1 -s "$PX:$MPORT" "$TGT" "$EPORT" >/dev/null 2>&1 &&
        inc timeout 5 "$W/soak" seq -n 1 -s "$PX:$DPORT" "$TGT" "$EPORT" >/dev/null 2>&1 && break
    [ "$i" = 50 ] && die "servers did not come up: $(cat "$W"/*.log "$W/danted.out" 2>/dev/null | head -5)"
    sleep 0.1
done

OUT="$W/figures"; : >"$OUT"
put meta.counts "seq $N_SEQ; conc $N_CONC x $CONC_ROUNDS rounds; rss $N_RSS samples"
put meta.conc_n "$N_CONC"
put meta.timeout_ms $((TIMEOUT_S * 1000))
put meta.fault_timeout_ms "$(python3 -c "print(int($FAULT_TIMEOUT_S * 1000))")"

# one soak run: KEY TIMEOUT-SECONDS COMMAND... -> soak.KEY.<field>=… (and err.KEY)
soak() {
    local key=$1 to=$2; shift 2
    local line rc=0
    line=$(inc timeout "$to" "$@" 2>"$W/$key.err") || rc=$?
    if [[ $line == mode=* ]]; then
        for kv in $line; do put "soak.$key.${kv%%=*}" "${kv#*=}"; done
    fi
    put "soak.$key.rc" "$rc"
    # against the silent proxy nothing connects, and soak says so with exit status 1
    if [ "$rc" != 0 ] && ! { [[ $key == silent.* ]] && [ "$rc" = 1 ]; }; then
        put "err.$key" "exit $rc: ${line:0:200} $(tr '\n' ' ' <"$W/$key.err" | cut -c1-200)"
        note "$key: exit $rc ${line:0:200}"
    fi
}
lay() { echo "$LAUNCHER" -q --connect-timeout "${2:-$TIMEOUT_S}" -x "socks5://$PX:$1" --; }
PC="proxychains4 -q -f"

# ---------------------------------------------------------------- 1. sequential
if want seq; then
    put busy.seq "$(cpu_busy)"
    for px in m d; do
        port=$MPORT; [ $px = d ] && port=$DPORT
        note "sequential: $N_SEQ connections through $([ $px = m ] && echo microsocks || echo danted), three ways"
        # shellcheck disable=SC2046
        soak "seq.$px.lay" 240 $(lay $port) "$W/soak" seq -n "$N_SEQ" "$TGT" "$EPORT"
        soak "seq.$px.native" 240 "$W/soak" seq -n "$N_SEQ" -s "$PX:$port" "$TGT" "$EPORT"
        # shellcheck disable=SC2086
        soak "seq.$px.pc" 240 $PC "$W/pc-$px.conf" "$W/soak" seq -n "$N_SEQ" "$TGT" "$EPORT"
    done
fi

# ---------------------------------------------------------------- 2. concurrent
if want conc; then
    put busy.conc "$(cpu_busy)"
    for px in m d; do
        port=$MPORT; [ $px = d ] && port=$DPORT
        note "concurrent: $CONC_ROUNDS rounds of $N_CONC at once through $([ $px = m ] && echo microsocks || echo danted)"
        # shellcheck disable=SC2046
        soak "conc.$px.lay" 200 $(lay $port) "$W/soak" conc -n "$N_CONC" -r "$CONC_ROUNDS" "$TGT" "$EPORT"
        soak "conc.$px.native" 200 "$W/soak" conc -n "$N_CONC" -r "$CONC_ROUNDS" -s "$PX:$port" "$TGT" "$EPORT"
        # shellcheck disable=SC2086
        soak "conc.$px.pc" 200 $PC "$W/pc-$px.conf" "$W/soak" conc -n "$N_CONC" -r "$CONC_ROUNDS" "$TGT" "$EPORT"
    done
fi

# ---------------------------------------------------------------- 3. faults
# Half the handshakes fail: every second connection asks for a closed port on the
# target, and the proxy answers "connection refused" (RFC 1928 §6 REP 5). And a proxy
# that accepts and never answers: every handshake must fail at the deadline.
if want fault; then
    put busy.fault "$(cpu_busy)"
    note "faults: half the handshakes refused; a proxy that never answers"
    nf=$(( N_SEQ / 5 ))
    # shellcheck disable=SC2046
    soak "fault.seq.lay" 120 $(lay $MPORT) "$W/soak" seq -n "$nf" -f "$CLOSED" "$TGT" "$EPORT"
    soak "fault.seq.native" 120 "$W/soak" seq -n "$nf" -f "$CLOSED" -s "$PX:$MPORT" "$TGT" "$EPORT"
    # shellcheck disable=SC2046
    soak "fault.conc.lay" 120 $(lay $DPORT) "$W/soak" conc -n "$N_CONC" -r 2 -f "$CLOSED" "$TGT" "$EPORT"
    soak "fault.conc.native" 120 "$W/soak" conc -n "$N_CONC" -r 2 -f "$CLOSED" -s "$PX:$DPORT" "$TGT" "$EPORT"
    # the silent proxy: every connection times out (soak exits 1: none connected)
    # shellcheck disable=SC2046
    soak "silent.conc.lay" 60 $(lay $SPORT "$FAULT_TIMEOUT_S") "$W/soak" conc -n $(( N_CONC / 2 )) -r "${SILENT_ROUNDS:-2}" "$TGT" "$EPORT"
    # shellcheck disable=SC2046
    soak "silent.seq.lay" 60 $(lay $SPORT "$FAULT_TIMEOUT_S") "$W/soak" seq -n 10 "$TGT" "$EPORT"
fi

# ---------------------------------------------------------------- 4. RSS of sleep
# The program process itself (the launcher and proxychains4 exec into it: same PID),
# sampled 0.4 s after start: VmRSS and Pss (smaps_rollup, shared pages divided among
# the processes mapping them). All ways start together in each round; median of rounds.
if want rss; then
    put busy.rss "$(cpu_busy)"
    note "RSS of sleep: $N_RSS samples of each way"
    declare -A CMD=(
        [sleep]="sleep 3"
        [env_sleep]="env sleep 3"
        [lay]="$(lay $MPORT) sleep 3"
        [lay_builtin]="$LAUNCHER -q -- sleep 3"
        [preload]="env LD_PRELOAD=$LIB LAYSOCKS_LAYER=v1;proxy=$PX:$MPORT;label=socks5://$PX:$MPORT;quiet=1 sleep 3"
        [pc]="$PC $W/pc-m.conf sleep 3"
    )
    [ -e "$LIB" ] || unset 'CMD[preload]'
    for r in $(seq "$N_RSS"); do
        declare -A P=()
        for k in "${!CMD[@]}"; do
            # a simple command (not the inc function), so $! is the program's own PID:
            # ip and the launchers exec into it
            # shellcheck disable=SC2086
            ip netns exec "$NSC" ${CMD[$k]} >/dev/null 2>&1 &
            P[$k]=$!
        done
        sleep 0.4
        for k in "${!P[@]}"; do
            pid=${P[$k]}
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ]; then
                v=$(rss_pss "$pid") && echo "$k $v" >>"$W/rss.samples"
            fi
            # the companion (double-forked, its own session) of the launcher ways
            for c in $(ip netns pids "$NSC" 2>/dev/null); do
                if tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q "__companion --pid $pid "; then
                    v=$(rss_pss "$c") && echo "${k}_companion $v" >>"$W/rss.samples"
                fi
            done
        done
        for k in "${!P[@]}"; do kill "${P[$k]}" 2>/dev/null; done
        for k in "${!P[@]}"; do wait "${P[$k]}" 2>/dev/null; done
        unset P
    done
    python3 - "$W/rss.samples" >>"$OUT" <<'EOF'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    k, r, p = line.split()
    v.setdefault(k, ([], []))
    v[k][0].append(int(r)); v[k][1].append(int(p))
for k, (r, p) in sorted(v.items()):
    print(f"rss.{k}.rss={statistics.median(r):.0f}")
    print(f"rss.{k}.pss={statistics.median(p):.0f}")
    print(f"rss.{k}.n={len(r)}")
EOF
fi

put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cpus "$(nproc)"
put meta.kernel "$(uname -r)"
put meta.laysocks "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
put meta.versions "proxychains4 $(ver proxychains4), microsocks $(ver microsocks), dante-server $(ver dante-server)"
put meta.seconds $(( $(date +%s) - T_START ))

python3 "$BENCH_DIR/soakreport.py" "$OUT" | tee "$W/report.md"
[ -n "${KEEP_FIGURES:-}" ] && cp "$OUT" "$KEEP_FIGURES"
if [ -n "$RESULTS" ]; then { echo; cat "$W/report.md"; } >>"$RESULTS"; note "appended to $RESULTS"; fi
