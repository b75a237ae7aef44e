#!/bin/bash
# laysocks benchmark: laysocks vs proxychains-ng vs a native SOCKS5 client, in one run,
# reported as ratios. See bench/README.md for what each figure means.
#
#   sudo bench/run.sh [--results FILE] [--no-build] [--quick] [--only start,curl,conn,bulk,hook,rss,loop]
#
# Needs root (network namespaces). Every step runs under `timeout`; the whole run is
# meant to take under 5 minutes on 2 cores. Everything it starts is killed by PID and
# its namespaces are deleted on exit.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NAME=run.sh
ONLY=",start,curl,conn,bulk,hook,rss,loop,"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
parse_args "$@"

# Repetition counts (overridable from the environment).
if [ "$QUICK" = 1 ]; then
    : "${N_START:=50}" "${N_CURL:=30}" "${N_CONN:=300}" "${CONN_RUNS:=2}" "${N_BULK:=2}" "${N_HOOK:=500000}" "${HOOK_REPS:=1}"
    : "${LOOP_REPS:=2}" "${LAT_N:=5}" "${LAT_ROUNDS:=2}"
else
    : "${N_START:=300}" "${N_CURL:=200}" "${N_CONN:=1000}" "${CONN_RUNS:=7}" "${N_BULK:=15}" "${N_HOOK:=1000000}" "${HOOK_REPS:=5}"
    : "${LOOP_REPS:=5}" "${LAT_N:=15}" "${LAT_ROUNDS:=3}"
fi
: "${LOOP_BATCH:=10}"
BULK_SIZE=100M

LIB="$ROOT/target/release/liblaysocks.so"
LAUNCHER="${LAYSOCKS_LAUNCHER:-$ROOT/target/release/laysocks}"
PCLIB=/usr/lib/x86_64-linux-gnu/libproxychains.so.4


[ "$(id -u)" = 0 ] || die "needs root for network namespaces (run with sudo)"
for t in ip cc python3 curl microsocks danted proxychains4 timeout taskset; do
    command -v "$t" >/dev/null || die "missing $t (Debian packages: iproute2 gcc python3 curl microsocks dante-server proxychains4 coreutils util-linux)"
done
[ -e "$PCLIB" ] || die "missing $PCLIB (Debian package libproxychains4)"
HAVE_HYPERFINE=0; command -v hyperfine >/dev/null && [ -z "${NO_HYPERFINE:-}" ] && HAVE_HYPERFINE=1
[ "$HAVE_HYPERFINE" = 1 ] || note "hyperfine not found (apt-get install -y hyperfine): timing start-up with a bash loop instead"
GNU_TIME=""; [ -x /usr/bin/time ] && GNU_TIME=/usr/bin/time
# A proxy environment would send the "native" curl elsewhere.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY LD_PRELOAD

NSC="lsbench-$$-c"; NSP="lsbench-$$-p"; VC="lsb$$c"; VP="lsb$$p"
bench_start lsbench "$NSC" "$NSP"

# ---------------------------------------------------------------- build
build_release 600 laysocks-preload laysocks
[ -e "$LIB" ] || die "no $LIB: cargo build --release -p laysocks-preload"
for p in zeroserv connloop hookcost echoserv delayrelay; do
    cc -O2 -Wall -o "$W/$p" "$BENCH_DIR/$p.c" || die "cc failed on bench/$p.c"
done

# ---------------------------------------------------------------- rig
# client ns: 198.51.100.2, route only to 198.51.100.0/24 (a direct connect to the target
# fails with ENETUNREACH, so a reply proves the proxy carried it).
# proxy ns: 198.51.100.1 (microsocks :1080, danted :1081); target 203.0.113.2 on lo.
rig_up "$NSC" "$NSP" "$VC" "$VP" # lib.sh

PX=198.51.100.1; PXPORT=1080; DPORT=1081; TGT=203.0.113.2; TPORT=8080
URL_SMALL="http://$TGT:$TPORT/small"; URL_BULK="http://$TGT:$TPORT/$BULK_SIZE"
inc() { ip netns exec "$NSC" "$@"; }
inp() { ip netns exec "$NSP" "$@"; }

inp "$W/zeroserv" "$TGT" "$TPORT" >"$W/zeroserv.log" 2>&1 & PIDS+=($!)
inp microsocks -i "$PX" -p "$PXPORT" >"$W/microsocks.log" 2>&1 & PIDS+=($!)
danted_conf "$W/danted.conf" "$W/danted.log" "$DPORT" # lib.sh
inp danted -f "$W/danted.conf" -p "$W/danted.pid" >"$W/danted.out" 2>&1 & PIDS+=($!)

# proxychains configs: socks5, local DNS (like socks5:// here), no chatter.
pcconf() { printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n%s[ProxyList]\nsocks5 %s %s\n' "$3" "$PX" "$2" >"$1"; }
pcconf "$W/pc-micro.conf" "$PXPORT" ""
pcconf "$W/pc-dante.conf" "$DPORT" ""
pcconf "$W/pc-dns.conf" "$PXPORT" $'proxy_dns\nremote_dns_subnet 224\n'
layer() { echo "v1;proxy=$PX:$1;label=socks5://$PX:$1;quiet=1"; }
L_MICRO=$(layer $PXPORT); L_DANTE=$(layer $DPORT)

# wait for the servers (bounded)
for i in $(seq 50); do
    inc timeout 2 curl -s -o /dev/null --socks5 "$PX:$PXPORT" "$URL_SMALL" &&
        inc timeout 2 curl -s -o /dev/null --socks5 "$PX:$DPORT" "$URL_SMALL" && break
    [ "$i" = 50 ] && die "servers did not come up: $(cat "$W"/*.log "$W/danted.out" 2>/dev/null | head -5)"
    sleep 0.1
done

# ---------------------------------------------------------------- sanity
# Each way of running must fetch the page through the proxy before it is timed;
# otherwise its figures would be meaningless, so it is reported and left out.
OUT="$W/figures"; : >"$OUT"
check() { # name, command...
    local name=$1; shift
    if inc timeout 10 "$@" >"$W/check-$name.out" 2>"$W/check-$name.err"; then
        put "ok.$name" 1
    else
        local rc=$?
        put "ok.$name" 0
        put "err.$name" "exit $rc: $(tr '\n' ' ' <"$W/check-$name.err" | cut -c1-300)"
        note "$name does not work: $* -> exit $rc: $(head -c 300 "$W/check-$name.err")"
    fi
}
check native curl -sS -f -o /dev/null --socks5 "$PX:$PXPORT" "$URL_SMALL"
check preload env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" curl -sS -f -o /dev/null "$URL_SMALL"
check pc proxychains4 -q -f "$W/pc-micro.conf" curl -sS -f -o /dev/null "$URL_SMALL"
HAVE_LAUNCHER=0
if [ -x "$LAUNCHER" ]; then
    check launcher "$LAUNCHER" -q -x "socks5://$PX:$PXPORT" -- curl -sS -f -o /dev/null "$URL_SMALL"
    check launcher_true "$LAUNCHER" -q -x "socks5://$PX:$PXPORT" -- true
    grep -q '^ok.launcher=1' "$OUT" && grep -q '^ok.launcher_true=1' "$OUT" && HAVE_LAUNCHER=1
else
    put ok.launcher 0; put err.launcher "no $LAUNCHER (cargo build --release -p laysocks)"
fi
ok native || die "native curl --socks5 through microsocks failed: the rig is broken"
L_CMD=("$LAUNCHER" -q -x "socks5://$PX:$PXPORT" --)
L_CMD_D=("$LAUNCHER" -q -x "socks5://$PX:$DPORT" --)
PC_CMD=(proxychains4 -q -f "$W/pc-micro.conf")
PC_CMD_D=(proxychains4 -q -f "$W/pc-dante.conf")

# ---------------------------------------------------------------- timing helpers
# time_cmds KEY RUNS WARMUP NAME=CMD... : records KEY.NAME.mean / .median / .stddev / .min
# in ms. hyperfine (no shell) runs one command's runs back to back, so slow drift on a
# shared VM (a neighbour, frequency) lands on whichever command runs then; we split the
# runs into $ROUNDS rounds with the order rotated each round and pool the raw times.
ROUNDS=4
if [ "$HAVE_HYPERFINE" = 1 ]; then put meta.timer "hyperfine -N (no shell), $ROUNDS rotated rounds"
else put meta.timer "bash loop on EPOCHREALTIME, $ROUNDS rotated rounds; each time includes ~1-2 ms of ip netns exec"; fi
time_cmds() {
    local key=$1 runs=$2 warm=$3; shift 3
    local names=() cmds=() a r i j
    for a in "$@"; do names+=("${a%%=*}"); cmds+=("${a#*=}"); done
    local k=${#cmds[@]} per=$(( (runs + ROUNDS - 1) / ROUNDS ))
    : >"$W/$key.times"
    for r in $(seq 0 $((ROUNDS - 1))); do
        local order=() ordn=()
        for i in $(seq 0 $((k - 1))); do j=$(( (i + r) % k )); order+=("${cmds[$j]}"); ordn+=("${names[$j]}"); done
        if [ "$HAVE_HYPERFINE" = 1 ]; then
            inc timeout 150 hyperfine -N --style none --runs "$per" --warmup "$warm" \
                --export-json "$W/$key.$r.json" "${order[@]}" >/dev/null 2>"$W/$key.err" ||
                { note "hyperfine $key failed: $(head -c 400 "$W/$key.err")"; return 1; }
            python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for name, res in zip(sys.argv[2:], d["results"]):
    for t in res["times"]:
        print(name, t * 1e3)' "$W/$key.$r.json" "${ordn[@]}" >>"$W/$key.times"
        else # bounded bash loop, one run of each command in turn, EPOCHREALTIME (builtin)
            for i in $(seq $((per + warm))); do
                for j in "${!order[@]}"; do
                    local t0=$EPOCHREALTIME
                    # shellcheck disable=SC2086
                    eval "inc ${order[$j]}" >/dev/null 2>&1
                    local t1=$EPOCHREALTIME
                    [ "$i" -gt "$warm" ] && echo "${ordn[$j]} $(( ${t1/./} - ${t0/./} ))e-3" >>"$W/$key.times"
                done
            done
        fi
    done
    python3 - "$W/$key.times" "$key" >>"$OUT" <<'EOF2'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    n, t = line.split()
    v.setdefault(n, []).append(float(t))
for n, ts in v.items():
    p = f"{sys.argv[2]}.{n}"
    print(f"{p}.mean={statistics.mean(ts):.4f}")
    print(f"{p}.median={statistics.median(ts):.4f}")
    print(f"{p}.stddev={statistics.pstdev(ts):.4f}")
    print(f"{p}.min={min(ts):.4f}")
    print(f"{p}.n={len(ts)}")
EOF2
}
q() { printf '%q ' "$@"; } # one hyperfine command line from an argv
# Share of the machine's CPU time that was busy over one second (lib.sh). Taken before
# each section while nothing of ours runs, so it is other people's load: on a shared
# 2-core box a parallel cargo build moves every figure, and the report should say so.
busy() { put "busy.$1" "$(cpu_busy)"; }
# hookcost is pinned to the idlest CPU (lib.sh's idlest_cpu): pinning to a fixed CPU that
# someone's fuzzer sits on would measure the fuzzer.

# Wait (bounded) for the machine to be quiet: other engineers' builds share these cores.
if [ "${WAIT_IDLE:-60}" -gt 0 ]; then
    t_end=$(( $(date +%s) + ${WAIT_IDLE:-60} ))
    i=0
    while b=$(cpu_busy); [ "$b" -gt 15 ] && [ "$(date +%s)" -lt "$t_end" ]; do
        [ $((i++ % 10)) = 0 ] && note "machine is ${b}% busy with other work; waiting (up to ${WAIT_IDLE:-60} s, WAIT_IDLE=0 to skip)"
    done
fi

# ---------------------------------------------------------------- 1. start-up
if want start; then
    busy start
    note "1/6 start-up ($N_START runs each)"
    S=("true=true" "env_true=env true"
       "preload=$(q env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" true)"
       "pc=$(q "${PC_CMD[@]}" true)"
       "pc_preload=$(q env LD_PRELOAD="$PCLIB" PROXYCHAINS_CONF_FILE="$W/pc-micro.conf" PROXYCHAINS_QUIET_MODE=1 true)")
    [ "$HAVE_LAUNCHER" = 1 ] && S+=("launcher=$(q "${L_CMD[@]}" true)" "launcher_version=$(q "$LAUNCHER" --version)")
    time_cmds start "$N_START" 10 "${S[@]}"
fi

# ---------------------------------------------------------------- 2. one connection
if want curl; then
    busy curl
    note "2/6 one curl connection via microsocks ($N_CURL runs each)"
    C=("native=$(q curl -s -o /dev/null --socks5 "$PX:$PXPORT" "$URL_SMALL")"
       "env_native=$(q env curl -s -o /dev/null --socks5 "$PX:$PXPORT" "$URL_SMALL")")
    ok preload && C+=("preload=$(q env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" curl -s -o /dev/null "$URL_SMALL")")
    ok pc && C+=("pc=$(q "${PC_CMD[@]}" curl -s -o /dev/null "$URL_SMALL")")
    [ "$HAVE_LAUNCHER" = 1 ] && C+=("launcher=$(q "${L_CMD[@]}" curl -s -o /dev/null "$URL_SMALL")")
    time_cmds curl "$N_CURL" 5 "${C[@]}"
fi

# ---------------------------------------------------------------- 2b. connection loop
if want conn; then
    busy conn
    note "2/6 in-process connection loop ($N_CONN cycles x $CONN_RUNS runs each, interleaved)"
    conn_run() { # name, command...
        local name=$1; shift
        local line
        if line=$(inc timeout 60 "$@" 2>"$W/conn-$name.err"); then
            echo "$line" >>"$W/conn-$name.lines"
        else
            put "err.conn_$name" "$(head -c 300 "$W/conn-$name.err")"
            note "connloop $name failed: $(head -c 300 "$W/conn-$name.err")"
        fi
    }
    CL=("$W/connloop" -n "$N_CONN")
    for r in $(seq "$CONN_RUNS"); do
        conn_run native "${CL[@]}" -s "$PX:$PXPORT" "$TGT" "$TPORT" /small
        ok preload && conn_run preload env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" "${CL[@]}" "$TGT" "$TPORT" /small
        conn_run pc env LD_PRELOAD="$PCLIB" PROXYCHAINS_CONF_FILE="$W/pc-micro.conf" PROXYCHAINS_QUIET_MODE=1 "${CL[@]}" "$TGT" "$TPORT" /small
    done
    # Syscalls per connection, counted by strace: the difference between 200 and 100
    # cycles, so process start-up cancels. Unlike the timings this does not move with
    # the machine's load; strace slows the run but not the count.
    if command -v strace >/dev/null; then
        sc() { # name, command... (connloop without -n) -> W/sc-name-N
            local name=$1; shift
            local n
            for n in 100 200; do
                inc timeout 60 strace -f -c -o "$W/sc-$name-$n" "$@" -n $n "$TGT" "$TPORT" /small >/dev/null 2>&1 ||
                    note "strace count for $name failed"
            done
        }
        sc native "$W/connloop" -s "$PX:$PXPORT"
        ok preload && sc preload env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" "$W/connloop"
        sc pc env LD_PRELOAD="$PCLIB" PROXYCHAINS_CONF_FILE="$W/pc-micro.conf" PROXYCHAINS_QUIET_MODE=1 "$W/connloop"
        python3 - "$W" >>"$OUT" <<'EOF'
import os, sys
def counts(path):
    c = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            c[f[-1]] = int(f[3])
    return c
for way in ("native", "preload", "pc"):
    a, b = (os.path.join(sys.argv[1], f"sc-{way}-{n}") for n in (100, 200))
    if not (os.path.exists(a) and os.path.exists(b)):
        continue
    ca, cb = counts(a), counts(b)
    for name in sorted(set(ca) | set(cb)):
        d = (cb.get(name, 0) - ca.get(name, 0)) / 100
        if abs(d) >= 0.005:
            print(f"sc.{way}.{name}={d:.2f}")
EOF
    else
        note "strace not found (apt-get install -y strace): no syscall counts"
    fi

    # per way: the median over the runs of each run's mean, median and p90
    for f in "$W"/conn-*.lines; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .lines); n=${n#conn-}
        python3 - "$f" "$n" >>"$OUT" <<'EOF'
import statistics, sys
runs = [dict(kv.split("=") for kv in line.split()) for line in open(sys.argv[1])]
for k in ("mean", "median", "p90"):
    print(f"conn.{sys.argv[2]}.{k}={statistics.median(float(r[k + '_us']) for r in runs):.2f}")
print(f"conn.{sys.argv[2]}.runs={len(runs)}")
EOF
    done
fi

# ---------------------------------------------------------------- 3. throughput
if want bulk; then
    busy bulk
    note "3/6 $BULK_SIZE download via danted ($N_BULK runs each, interleaved)"
    bulk() { # name, command... ; appends bytes/s
        local name=$1; shift
        local s rc=0
        s=$(inc timeout 30 "${PIN[@]}" "$@" -s -f -o /dev/null -w '%{speed_download}' "$URL_BULK" 2>"$W/bulk-$name.err") || rc=$?
        if [ "$rc" = 0 ]; then
            echo "$s" >>"$W/bulk-$name.v"
        else
            note "bulk $name failed: exit $rc $(head -c 300 "$W/bulk-$name.err")"
            put "err.bulk_$name" "exit $rc: $(head -c 300 "$W/bulk-$name.err")"
        fi
    }
    bulk_way() { # one download the way number $1 says
        case $1 in
            0) bulk native curl --socks5 "$PX:$DPORT" ;;
            1) ok preload && bulk preload env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_DANTE" curl ;;
            2) [ "$HAVE_LAUNCHER" = 1 ] && bulk launcher "${L_CMD_D[@]}" curl ;;
            3) ok pc && bulk pc "${PC_CMD_D[@]}" curl ;;
        esac
        return 0
    }
    # Pinned: the servers (danted and its children, zeroserv) on CPU 1, curl on CPU 0.
    # Unpinned, which of three busy processes shares a core with which changes from run
    # to run and moves a download by +-10 %; pinned, every way gets the same placement.
    [ "${BULK_PIN:-1}" = 1 ] && for p in $(ip netns pids "$NSP"); do taskset -a -p -c 1 "$p" >/dev/null 2>&1; done
    PIN=(); [ "${BULK_PIN:-1}" = 1 ] && PIN=(taskset -c 0)
    # every way in turn, starting one further along each round, so none always follows
    # the same neighbour (the page cache and danted's fork see the same history)
    for r in $(seq 0 $((N_BULK - 1))); do
        for i in 0 1 2 3; do bulk_way $(( (i + r) % 4 )); done
    done
    for p in $(ip netns pids "$NSP"); do taskset -a -p -c 0-$(( $(nproc) - 1 )) "$p" >/dev/null 2>&1; done
    for f in "$W"/bulk-*.v; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .v); n=${n#bulk-}
        python3 - "$f" "$n" >>"$OUT" <<'EOF'
import statistics, sys
v = [float(x) / 1e6 for x in open(sys.argv[1])]
print(f"bulk.{sys.argv[2]}.mean={statistics.mean(v):.2f}")
print(f"bulk.{sys.argv[2]}.median={statistics.median(v):.2f}")
print(f"bulk.{sys.argv[2]}.best={max(v):.2f}")
print(f"bulk.{sys.argv[2]}.n={len(v)}")
EOF
    done
fi

# ---------------------------------------------------------------- 4. hook cost
if want hook; then
    busy hook
    HOOK_CPU=$(idlest_cpu); put meta.hook_cpu "$HOOK_CPU"
    note "4/6 hooked calls on foreign fds ($N_HOOK calls each, $HOOK_REPS runs, interleaved, pinned to CPU $HOOK_CPU)"
    hook_run() { # name, env...
        local name=$1; shift
        if ! inc timeout 100 env "$@" taskset -c "$HOOK_CPU" "$W/hookcost" "$N_HOOK" >>"$W/hook-$name.v" 2>"$W/hook-$name.err"; then
            note "hookcost $name failed: $(head -c 300 "$W/hook-$name.err")"
            put "err.hook_$name" "$(head -c 300 "$W/hook-$name.err")"
        fi
    }
    for r in $(seq "$HOOK_REPS"); do
        hook_run none
        hook_run none2 # the same again: run-to-run noise floor
        hook_run preload LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO"
        hook_run pc LD_PRELOAD="$PCLIB" PROXYCHAINS_CONF_FILE="$W/pc-micro.conf" PROXYCHAINS_QUIET_MODE=1
        hook_run pcdns LD_PRELOAD="$PCLIB" PROXYCHAINS_CONF_FILE="$W/pc-dns.conf" PROXYCHAINS_QUIET_MODE=1
    done
    for f in "$W"/hook-*.v; do
        n=$(basename "$f" .v); n=${n#hook-}
        # per call: minimum over runs of the fastest batch, and of the median batch
        awk -v n="$n" '{ if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2; if (!($1 in md) || $3 < md[$1]) md[$1] = $3 }
            END { for (k in lo) { print "hook." n "." k ".min=" lo[k]; print "hook." n "." k ".median=" md[k] } }' "$f" >>"$OUT"
    done
    hooked() { # which of our calls a library exports
        nm -D --defined-only "$1" 2>/dev/null | awk '$2 ~ /^[TtWi]$/ {print $3}' | sed 's/@.*//' |
            grep -xE 'read|write|poll|dup|close' | sort -u | tr '\n' ','
    }
    put hooked.preload "$(hooked "$LIB")"
    put hooked.pc "$(hooked "$PCLIB")"
fi

# ---------------------------------------------------------------- 5. RSS
if want rss; then
    busy rss
    note "5/6 max RSS of sleep 1"
    rss() { # name, command...
        local name=$1; shift
        if [ -n "$GNU_TIME" ]; then
            inc "$GNU_TIME" -f '%M' -o "$W/rss-$name" "$@" >/dev/null 2>&1 && put "rss.$name" "$(tail -1 "$W/rss-$name")"
        else # fallback: VmHWM of the process half-way through
            inc "$@" & local p=$!; sleep 0.5
            put "rss.$name" "$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null)"; wait "$p"
        fi
    }
    rss sleep sleep 1 & r1=$!
    rss env_sleep env sleep 1 & r2=$!
    rss preload env LD_PRELOAD="$LIB" LAYSOCKS_LAYER="$L_MICRO" sleep 1 & r3=$!
    rss pc "${PC_CMD[@]}" sleep 1 & r4=$!
    [ "$HAVE_LAUNCHER" = 1 ] && { rss launcher "${L_CMD[@]}" sleep 1 & r5=$!; }
    wait $r1 $r2 $r3 $r4 ${r5:-}
fi

# ---------------------------------------------------------------- 6. event loop
# One asyncio thread, many connections at once, a 20 ms round trip to the proxy
# (bench/delayrelay.c in the proxy netns; this kernel has no netem). A layer that
# negotiates inside the program's own poll/epoll overlaps the handshakes; one that blocks
# in connect() does them one after another and stalls the loop for each.
if want loop; then
    busy loop
    note "6/6 event loop: concurrent echo connections from one asyncio thread, 20 ms RTT to the proxy"
    PY=$(python3 -c 'import sys; print(sys.executable)') # the interpreter itself, not a pyenv shim
    # Each run leaves 1000-2000 connections in TIME_WAIT per namespace (the client, the
    # relay and microsocks close first). With the default port range and no reuse for
    # non-loopback peers, connect() soon spends milliseconds finding a free port, which
    # shows up as seconds-long runs and 0.5 s loop stalls with or without a layer. Both
    # namespaces are ours; this only affects them.
    for ns in "$NSC" "$NSP"; do
        ip netns exec "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 >/dev/null ||
            note "could not set the port range / tcp_tw_reuse in $ns: later 1000-connection runs may slow down"
    done
    EPORT=7007; APORT=1082; RMPORT=1090; RDPORT=1091; RAPORT=1092; RTT_MS=20
    # A throw-away account for this run. microsocks only takes it on its command line
    # (it blanks -P's argument after reading it); everything else reads it from files.
    LUSER=bench; LPASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077
     printf '%s\n%s\n' "$LUSER" "$LPASS" >"$W/loop-auth"
     printf '%s\n' "$LPASS" >"$W/loop-pw"
     printf 'proxy = "socks5://%s:%s"\nusername = "%s"\npassword_file = "%s"\nquiet = true\n' \
         "$PX" "$RAPORT" "$LUSER" "$W/loop-pw" >"$W/loop-auth.toml"
     pcconf "$W/pc-relay.conf" "$RMPORT" ""
     printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s %s %s\n' \
         "$PX" "$RAPORT" "$LUSER" "$LPASS" >"$W/pc-relay-auth.conf")
    inp "$W/echoserv" "$TGT" "$EPORT" >"$W/echoserv.log" 2>&1 & PIDS+=($!)
    inp microsocks -i "$PX" -p "$APORT" -u "$LUSER" -P "$LPASS" >"$W/microsocks-auth.log" 2>&1 & PIDS+=($!)
    half=$(python3 -c "print($RTT_MS / 2)")
    inp "$W/delayrelay" "$half" "$PX" "$RMPORT" "$PX" "$PXPORT" >"$W/relay-m.log" 2>&1 & PIDS+=($!)
    inp "$W/delayrelay" "$half" "$PX" "$RDPORT" "$PX" "$DPORT" >"$W/relay-d.log" 2>&1 & PIDS+=($!)
    inp "$W/delayrelay" "$half" "$PX" "$RAPORT" "$PX" "$APORT" >"$W/relay-a.log" 2>&1 & PIDS+=($!)
    LB=("$PY" "$BENCH_DIR/loopbench.py")
    for i in $(seq 50); do # bounded wait for the new servers
        inc timeout 5 "${LB[@]}" seq 1 "$TGT" "$EPORT" --socks "$PX:$RMPORT" >/dev/null 2>&1 &&
            inc timeout 5 "${LB[@]}" seq 1 "$TGT" "$EPORT" --socks "$PX:$RAPORT" --auth "$W/loop-auth" >/dev/null 2>&1 && break
        [ "$i" = 50 ] && die "loop servers did not come up: $(cat "$W"/relay-*.log "$W/echoserv.log" "$W/microsocks-auth.log" 2>/dev/null | head -5)"
        sleep 0.1
    done
    # listen backlogs (ss shows a listening socket's backlog as Send-Q): a full accept
    # queue drops SYNs, and a retransmitted SYN costs a second.
    put meta.loop_backlogs "$(inp ss -ltnH | awk '{n = split($4, a, ":"); printf "%s:%s ", a[n], $3}')"
    put meta.loop_rtt_ms "$RTT_MS"
    put meta.loop_batch "$LOOP_BATCH"

    loop_run() { # file-key timeout command... ; appends the figures line to W/loop-KEY.lines
        local key=$1 to=$2; shift 2
        local line rc=0
        line=$(inc timeout "$to" "$@" 2>"$W/loop-$key.err") || rc=$?
        if [ "$rc" = 0 ] && [[ $line == ok=* ]]; then
            echo "$line" >>"$W/loop-$key.lines"
            return 0
        fi
        [ "$rc" = 124 ] && echo "timed out after $to s" >>"$W/loop-$key.err"
        put "err.loop_$key" "exit $rc: ${line:+$line; }$(tr '\n' ' ' <"$W/loop-$key.err" | cut -c1-300)"
        note "loop $key failed: exit $rc ${line} $(head -c 300 "$W/loop-$key.err")"
        touch "$W/loop-$key.broken"
        return 1
    }
    loop_way() { # scenario way N -> one run
        local sc=$1 way=$2 n=$3 auth=0 port=$RMPORT
        [[ $sc == a* ]] && { auth=1; port=$RAPORT; }
        [ -e "$W/loop-$sc.$way.broken" ] && return 1
        local cmd
        case $way in
            lay) if [ "$auth" = 1 ]; then cmd=("$LAUNCHER" -q -c "$W/loop-auth.toml" --)
                 else cmd=("$LAUNCHER" -q -x "socks5://$PX:$port" --); fi
                 cmd+=("${LB[@]}" conc "$n" "$TGT" "$EPORT" --batch "$LOOP_BATCH") ;;
            native) cmd=("${LB[@]}" conc "$n" "$TGT" "$EPORT" --batch "$LOOP_BATCH" --socks "$PX:$port")
                 [ "$auth" = 1 ] && cmd+=(--auth "$W/loop-auth") ;;
            pc)  if [ "$auth" = 1 ]; then cmd=(proxychains4 -q -f "$W/pc-relay-auth.conf")
                 else cmd=(proxychains4 -q -f "$W/pc-relay.conf"); fi
                 cmd+=("${LB[@]}" conc "$n" "$TGT" "$EPORT" --batch "$LOOP_BATCH") ;;
        esac
        loop_run "$sc.$way" "$4" "${cmd[@]}"
    }
    pc_total() { # median total_ms of the proxychains4 runs of a scenario (empty if none)
        [ -e "$W/loop-$1.pc.lines" ] && sed 's/.*total_ms=\([0-9.]*\).*/\1/' "$W/loop-$1.pc.lines" | head -1
    }
    [ "$HAVE_LAUNCHER" = 1 ] || { touch "$W"/loop-{m200,a200,m1000,a1000}.lay.broken; put err.loop_lay "no launcher"; }
    for sc in ${LOOP_SCEN:-m200 a200 m1000 a1000}; do
        n=${sc:1}
        # laysocks and native, interleaved, the starting way alternating
        for r in $(seq "$LOOP_REPS"); do
            if [ $((r % 2)) = 1 ]; then loop_way "$sc" lay "$n" 30; loop_way "$sc" native "$n" 30
            else loop_way "$sc" native "$n" 30; loop_way "$sc" lay "$n" 30; fi
        done
        # proxychains4 once: it does the handshakes one after another, so it takes about
        # N x (proxy round trips) and one run is plenty. For 1000 connections it runs only
        # if the 200-connection run says it will finish within 60 s.
        if [ "${LOOP_PC:-1}" = 0 ]; then
            put "loop.$sc.pc.skipped" "LOOP_PC=0"
        elif [ "$n" = 200 ]; then
            loop_way "$sc" pc "$n" 70
        else
            small=$(pc_total "${sc:0:1}200")
            if [ -z "$small" ]; then
                put "loop.$sc.pc.skipped" "no 200-connection proxychains4 figure to estimate from"
            else
                est=$(python3 -c "print(round($small * $n / 200 / 1000, 1))")
                if python3 -c "import sys; sys.exit(0 if $est <= 60 else 1)"; then
                    loop_way "$sc" pc "$n" 90
                else
                    put "loop.$sc.pc.skipped" "would take about $est s (5 x the 200-connection run), over the 60 s limit"
                    note "proxychains4 with $n connections ($sc) skipped: about $est s"
                fi
            fi
        fi
    done

    # Single connections, one after another, through danted (it takes a pipelined
    # handshake): native, laysocks, laysocks --pipeline; rounds interleaved.
    for r in $(seq "$LAT_ROUNDS"); do
        ways=(native lay pipe)
        for i in 0 1 2; do
            w=${ways[$(( (i + r) % 3 ))]}
            [ -e "$W/loop-lat.$w.broken" ] && continue
            case $w in
                native) loop_run lat.native 30 "${LB[@]}" seq "$LAT_N" "$TGT" "$EPORT" --socks "$PX:$RDPORT" ;;
                lay) [ "$HAVE_LAUNCHER" = 1 ] && loop_run lat.lay 30 "$LAUNCHER" -q -x "socks5://$PX:$RDPORT" -- "${LB[@]}" seq "$LAT_N" "$TGT" "$EPORT" ;;
                pipe) [ "$HAVE_LAUNCHER" = 1 ] && loop_run lat.pipe 30 "$LAUNCHER" -q --pipeline -x "socks5://$PX:$RDPORT" -- "${LB[@]}" seq "$LAT_N" "$TGT" "$EPORT" ;;
            esac
        done
    done
    # The same through microsocks, which cannot take a pipelined handshake: the cost of
    # the layer's fallback (for information).
    loop_run latm.native 30 "${LB[@]}" seq "$LAT_N" "$TGT" "$EPORT" --socks "$PX:$RMPORT"
    [ "$HAVE_LAUNCHER" = 1 ] && loop_run latm.pipe 30 "$LAUNCHER" -q --pipeline -x "socks5://$PX:$RMPORT" -- "${LB[@]}" seq "$LAT_N" "$TGT" "$EPORT"

    python3 - "$W" >>"$OUT" <<'EOF'
import glob, os, statistics, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "loop-*.lines"))):
    key = os.path.basename(path)[5:-6]  # e.g. m200.lay, lat.pipe
    runs = [dict(kv.split("=", 1) for kv in line.split()) for line in open(path)]
    if key.startswith(("lat.", "latm.")):
        ts = sorted(float(t) for r in runs for t in r["all_ms"].split(","))
        print(f"{key}.median={statistics.median(ts):.2f}")
        print(f"{key}.mean={statistics.mean(ts):.2f}")
        print(f"{key}.p10={ts[len(ts) // 10]:.2f}")
        print(f"{key}.p90={ts[len(ts) * 9 // 10]:.2f}")
        print(f"{key}.n={len(ts)}")
        continue
    tot = [float(r["total_ms"]) for r in runs]
    lag = [float(r["maxlag_ms"]) for r in runs]
    print(f"loop.{key}.total={statistics.median(tot):.1f}")
    print(f"loop.{key}.total_min={min(tot):.1f}")
    print(f"loop.{key}.total_max={max(tot):.1f}")
    print(f"loop.{key}.lag_max={max(lag):.2f}")
    print(f"loop.{key}.lag_median={statistics.median(lag):.2f}")
    print(f"loop.{key}.conn_median={statistics.median(float(r['conn_median_ms']) for r in runs):.1f}")
    print(f"loop.{key}.runs={len(runs)}")
EOF
fi

# ---------------------------------------------------------------- environment + report
put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cpus "$(nproc)"
put meta.cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
put meta.kernel "$(uname -r)"
put meta.glibc "$(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
put meta.laysocks "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
put meta.versions "proxychains4 $(ver proxychains4), microsocks $(ver microsocks), dante-server $(ver dante-server), curl $(ver curl), hyperfine $(ver hyperfine), strace $(ver strace), GNU time $(ver time), rustc $(rustc --version 2>/dev/null | awk '{print $2}')"
put meta.counts "start-up $N_START runs; curl $N_CURL runs; connloop $N_CONN cycles x$CONN_RUNS (median of runs); bulk $N_BULK x $BULK_SIZE; hookcost $N_HOOK calls x$HOOK_REPS (min); event loop $LOOP_REPS runs per way, latency $LAT_ROUNDS x $LAT_N connections"
put meta.seconds $(( $(date +%s) - T_START ))

python3 "$BENCH_DIR/report.py" "$OUT" | tee "$W/report.md"
# the raw key=value figures (and the event-loop runs' own lines) for a closer look
[ -n "${KEEP_FIGURES:-}" ] && cp "$OUT" "$KEEP_FIGURES" && (cd "$W" && grep -H . loop-*.lines) >"$KEEP_FIGURES.loop" 2>/dev/null
if [ -n "$RESULTS" ]; then cp "$W/report.md" "$RESULTS"; note "written to $RESULTS"; fi
