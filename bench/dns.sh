#!/bin/bash
# laysocks DNS benchmark: getaddrinfo under the layer (placeholders from the shared name
# table) vs glibc against a local resolver vs proxychains-ng's proxy_dns, in one run,
# reported as ratios; then the name table under 16 threads. See bench/README.md, "DNS".
#
#   sudo bench/dns.sh [--results FILE] [--no-build] [--quick] [--only gai,map]
#
# --results appends the report to FILE. Needs root (a network namespace and
# /etc/netns/NS/resolv.conf). Everything it starts is killed by PID, the namespace and
# its /etc/netns directory are removed on exit; every step runs under `timeout`.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NAME=dns.sh
ONLY=",gai,map,"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
parse_args "$@"

# Counts (overridable from the environment).
if [ "$QUICK" = 1 ]; then
    : "${N_GAI:=2000}" "${GAI_RUNS:=1}" "${MAP_RUNS:=1}"
else
    : "${N_GAI:=20000}" "${GAI_RUNS:=3}" "${MAP_RUNS:=3}"
fi
: "${GAI_CAP:=30}"           # seconds per gaibench seq run, whatever it has done by then
: "${MAP_THREADS:=16}" "${MAP_NAMES:=10000}" "${MAP_SHARED:=1000}" "${MAP_CAP:=60}"
: "${MAP_FAMILY:=4}"         # hints for the table runs: 4, 6 or any
: "${BIG_NAMES:=131070}"     # dns_names of the "big enough" table: all that 198.18.0.0/15 holds
: "${BIG_PER_THREAD:=8000}"  # names per thread in the big runs: 16 x 8,000 + 1,000 shared fit
: "${LAY_SCHEME:=socks5}"    # the launcher's -x scheme (socks5h:// if socks5:// resolves locally)
LAUNCHER="${LAYSOCKS_LAUNCHER:-$ROOT/target/release/laysocks}"
PROXY=127.0.0.1:1080         # never contacted: getaddrinfo does not connect
ANSWER4=203.0.113.9; ANSWER6=2001:db8::9


[ "$(id -u)" = 0 ] || die "needs root for the network namespace (run with sudo)"
for t in ip cc python3 dnsmasq proxychains4 timeout; do
    command -v "$t" >/dev/null || die "missing $t (Debian packages: iproute2 gcc python3 dnsmasq-base proxychains4 coreutils)"
done
unset LD_PRELOAD LAYSOCKS_LAYER LAYSOCKS_PROXY LAYSOCKS_CONFIG

NS="lsdns-$$"
bench_start lsdns "$NS"

# ---------------------------------------------------------------- build
build_release 1200 laysocks
[ -x "$LAUNCHER" ] || die "no $LAUNCHER: cargo build --release -p laysocks"
cc -O2 -Wall -pthread -o "$W/gaibench" "$BENCH_DIR/gaibench.c" || die "cc failed on bench/gaibench.c"
G="$W/gaibench"

# ---------------------------------------------------------------- rig
# One namespace with only lo: dnsmasq on 127.0.0.1:53 answers every name itself (no
# upstream); /etc/netns/NS/resolv.conf points glibc at it. A query that went anywhere
# else would fail with ENETUNREACH, so nothing leaves the machine.
ip netns add "$NS" || die "ip netns add failed"
ip -n "$NS" link set lo up
mkdir -p "/etc/netns/$NS"
printf 'nameserver 127.0.0.1\n' >"/etc/netns/$NS/resolv.conf"
inn() { ip netns exec "$NS" "$@"; }
# ip netns exec execs dnsmasq, so $! is dnsmasq itself (through the inn function it would
# be a subshell, and SIGUSR1 below would kill that instead)
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --listen-address=127.0.0.1 --bind-interfaces --port=53 --user=root --pid-file= \
    --address=/#/$ANSWER4 --address=/#/$ANSWER6 --cache-size=10000 \
    --log-facility="$W/dnsmasq.log" >"$W/dnsmasq.out" 2>&1 & PIDS+=($!)
DNSMASQ_PID=$!
for i in $(seq 50); do
    # (not ahostsv4: it asks with AI_ADDRCONFIG, and a namespace with only lo has no
    # IPv4 address that counts, so glibc answers nothing)
    inn timeout 2 getent ahosts probe.gai.example 2>/dev/null | grep -q "^$ANSWER4 " && break
    [ "$i" = 50 ] && die "dnsmasq did not come up: $(cat "$W/dnsmasq.out" "$W/dnsmasq.log" 2>/dev/null | head -5)"
    sleep 0.1
done
# Queries dnsmasq has answered so far (SIGUSR1 makes it log its counters).
queries() {
    local before after
    before=$(grep -c 'answered locally' "$W/dnsmasq.log")
    kill -USR1 "$DNSMASQ_PID"
    for _ in $(seq 50); do
        after=$(grep -c 'answered locally' "$W/dnsmasq.log")
        [ "$after" -gt "$before" ] && break
        sleep 0.05
    done
    grep 'answered locally' "$W/dnsmasq.log" | tail -1 | sed 's/.*answered locally \([0-9]*\).*/\1/'
}

printf 'strict_chain\nquiet_mode\nproxy_dns\nremote_dns_subnet 224\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s\n' \
    "${PROXY/:/ }" >"$W/pc-dns.conf"
printf 'proxy = "%s://%s"\nquiet = true\ndns_names = %s\n' "$LAY_SCHEME" "$PROXY" "$BIG_NAMES" >"$W/big.toml"
L_CMD=("$LAUNCHER" -q -x "$LAY_SCHEME://$PROXY" --)
L_BIG=("$LAUNCHER" -q -c "$W/big.toml" --)
PC_CMD=(proxychains4 -q -f "$W/pc-dns.conf")

OUT="$W/figures"; : >"$OUT"
R="$W/raw"; mkdir -p "$R"

[ "$(cat "/proc/$DNSMASQ_PID/comm" 2>/dev/null)" = dnsmasq ] || die "PID $DNSMASQ_PID is not dnsmasq"

# Load from others is measured with lib.sh's cpu_busy (on a shared 2-core box a
# parallel cargo build moves every figure).
if [ "${WAIT_IDLE:-60}" -gt 0 ]; then # bounded wait for the machine to be quiet
    t_end=$(( $(date +%s) + ${WAIT_IDLE:-60} )); i=0
    while b=$(cpu_busy); [ "$b" -gt 15 ] && [ "$(date +%s)" -lt "$t_end" ]; do
        [ $((i++ % 10)) = 0 ] && note "machine is ${b}% busy with other work; waiting (up to ${WAIT_IDLE:-60} s, WAIT_IDLE=0 to skip)"
    done
fi

# ---------------------------------------------------------------- sanity
# Each way must answer with what it is supposed to: glibc with dnsmasq's address,
# laysocks with a placeholder from 198.18.0.0/15, proxychains4 with one from 224/8.
sanity() { # way expected-prefix command...
    local way=$1 want=$2; shift 2
    local line rc=0
    line=$(inn timeout 30 "$@" "$G" seq -n 50 -w 0 -p sanity 2>"$W/sanity-$way.err") || rc=$?
    local addr=${line##*addr=}; addr=${addr%% *}
    if [ "$rc" = 0 ] && [[ $line == *" errors=0 "* ]] && [[ $addr == $want* ]]; then
        put "ok.$way" 1
    else
        put "ok.$way" 0
        put "err.$way" "exit $rc, answer ${addr:-none} (expected $want…): $(head -c 300 "$W/sanity-$way.err" | tr '\n' ' ') ${line:0:200}"
        note "$way does not answer as expected: exit $rc, $addr, $(head -c 300 "$W/sanity-$way.err")"
    fi
}
sanity glibc "$ANSWER4," env
sanity lay "${LAY_PREFIX:-198.1}" "${L_CMD[@]}"    # 198.18.x or 198.19.x; checked exactly in the report
sanity pc "224." "${PC_CMD[@]}"
ok glibc || die "glibc does not resolve through dnsmasq: the rig is broken"

# ---------------------------------------------------------------- 1. getaddrinfo
if want gai; then
    put busy.gai "$(cpu_busy)"
    note "1/2 getaddrinfo: $N_GAI calls x $GAI_RUNS runs per way and case, interleaved"
    gai_run() { # way mode family command...
        local way=$1 mode=$2 fam=$3; shift 3
        local key="$way.$mode.$fam" line rc=0
        line=$(inn timeout $((GAI_CAP + 30)) "$@" "$G" seq -n "$N_GAI" -t "$GAI_CAP" -m "$mode" -f "$fam" -p "r$RANDOM" 2>"$W/gai-$key.err") || rc=$?
        if [ "$rc" = 0 ] && [[ $line == ok=1* ]]; then
            echo "$line" >>"$R/gai-$key.lines"
        else
            put "err.gai_$key" "exit $rc: $(head -c 300 "$W/gai-$key.err" | tr '\n' ' ')"
            note "gaibench $key failed: exit $rc $(head -c 300 "$W/gai-$key.err")"
        fi
    }
    CASES=("distinct 4" "same 4" "distinct any" "same any")
    WAYS=(glibc lay pc)
    q0=$(queries)
    for r in $(seq 0 $((GAI_RUNS - 1))); do
        for c in "${CASES[@]}"; do
            set -- $c
            for i in 0 1 2; do
                w=${WAYS[$(( (i + r) % 3 ))]}
                ok "$w" || continue
                # proxychains-ng's getaddrinfo hook answers IPv4 only: AF_UNSPEC is
                # measured for glibc and laysocks alone.
                [ "$w" = pc ] && [ "$2" = any ] && continue
                qa=$(queries)
                case $w in
                    glibc) gai_run glibc "$1" "$2" env ;;
                    lay) gai_run lay "$1" "$2" "${L_CMD[@]}" ;;
                    pc) gai_run pc "$1" "$2" "${PC_CMD[@]}" ;;
                esac
                qb=$(queries)
                echo $((qb - qa)) >>"$R/queries-$w"
            done
        done
    done
    # Syscalls per call, counted by strace (a 2000-call run minus a 1000-call run,
    # divided by 1000, so start-up cancels): load does not move this figure.
    if command -v strace >/dev/null; then
        for w in "${WAYS[@]}"; do
            ok "$w" || continue
            case $w in glibc) pre=(env) ;; lay) pre=("${L_CMD[@]}") ;; pc) pre=("${PC_CMD[@]}") ;; esac
            for n in 1000 2000; do
                inn timeout 60 strace -f -c -o "$W/sc-$w-$n" "${pre[@]}" "$G" seq -n $n -w 0 -m distinct -f 4 -p sc >/dev/null 2>&1 ||
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
for way in ("glibc", "lay", "pc"):
    a, b = (os.path.join(sys.argv[1], f"sc-{way}-{n}") for n in (1000, 2000))
    if not (os.path.exists(a) and os.path.exists(b)):
        continue
    ca, cb = counts(a), counts(b)
    for name in sorted(set(ca) | set(cb)):
        d = (cb.get(name, 0) - ca.get(name, 0)) / 1000
        if abs(d) >= 0.005:
            print(f"sc.{way}.{name}={d:.2f}")
EOF2
    else
        note "strace not found: no syscall counts"
    fi
    for w in "${WAYS[@]}"; do
        [ -e "$R/queries-$w" ] && put "queries.$w" "$(awk '{s += $1} END {print s}' "$R/queries-$w")"
    done
fi

# ---------------------------------------------------------------- 2. the name table
if want map; then
    put busy.map "$(cpu_busy)"
    note "2/2 name table: $MAP_THREADS threads x $MAP_NAMES names (+ $MAP_SHARED shared), $MAP_RUNS runs"
    map_run() { # key threads per-thread shared command... (extra gaibench args in MAP_EXTRA)
        local key=$1 th=$2 per=$3 sh=$4; shift 4
        local rc=0
        inn timeout $((3 * MAP_CAP + 60)) "$@" "$G" threads -T "$th" -n "$per" -s "$sh" -t "$MAP_CAP" -f "$MAP_FAMILY" \
            -p "m$RANDOM" ${MAP_EXTRA:-} >"$W/map.out" 2>"$W/map-$key.err" || rc=$?
        if [ "$rc" = 0 ] && grep -q '^phase=check' "$W/map.out"; then
            { echo "run"; cat "$W/map.out"; } >>"$R/map-$key.lines"
            # what the layer said on stderr (a full table should be one line, not one a call)
            put "map.$key.stderr_lines" "$(wc -l <"$W/map-$key.err")"
            put "map.$key.stderr_first" "$(head -1 "$W/map-$key.err" | cut -c1-200)"
        else
            put "err.map_$key" "exit $rc: $(head -c 300 "$W/map-$key.err" | tr '\n' ' ') $(tail -c 200 "$W/map.out")"
            note "map $key failed: exit $rc $(head -c 300 "$W/map-$key.err")"
        fi
    }
    TOT=$((MAP_THREADS * MAP_NAMES)); BTOT=$((MAP_THREADS * BIG_PER_THREAD))
    for r in $(seq "$MAP_RUNS"); do
        if ok lay; then
            # a table big enough for every name: 16 threads, and 1 and 2 threads doing
            # the same work
            map_run big16 "$MAP_THREADS" "$BIG_PER_THREAD" "$MAP_SHARED" "${L_BIG[@]}"
            map_run big1 1 "$BTOT" "$MAP_SHARED" "${L_BIG[@]}"
            map_run big2 2 $((BTOT / 2)) "$MAP_SHARED" "${L_BIG[@]}"
        fi
        # the same harness with numeric addresses and no layer: glibc's AI_NUMERICHOST
        # path has no shared state, so its scaling is the machine's ceiling
        # (5 times the calls: at ~0.2 us a call, the big runs' count is over in 30 ms)
        MAP_EXTRA=-N map_run num16 "$MAP_THREADS" $((5 * BIG_PER_THREAD)) "$MAP_SHARED" env
        MAP_EXTRA=-N map_run num1 1 $((5 * BTOT)) "$MAP_SHARED" env
    done
    # the default bound (65,536 names): once, it is a check, not a timing
    ok lay && map_run def16 "$MAP_THREADS" "$MAP_NAMES" "$MAP_SHARED" "${L_CMD[@]}"
    put meta.map "threads=$MAP_THREADS names=$MAP_NAMES big_names=$BIG_PER_THREAD shared=$MAP_SHARED family=$MAP_FAMILY big=$BIG_NAMES runs=$MAP_RUNS"
    put meta.map_qa "$(queries)"
fi
put meta.queries_total "$(queries)"

# ---------------------------------------------------------------- environment + report
put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cpus "$(nproc)"
put meta.cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
put meta.kernel "$(uname -r)"
put meta.glibc "$(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
put meta.laysocks "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
put meta.versions "proxychains4 $(ver proxychains4), dnsmasq $(ver dnsmasq-base), rustc $(rustc --version 2>/dev/null | awk '{print $2}')"
put meta.counts "getaddrinfo $N_GAI calls x $GAI_RUNS runs per way and case (cap $GAI_CAP s); table $MAP_THREADS x $MAP_NAMES names + $MAP_SHARED shared, $MAP_RUNS runs"
put meta.lay_cmd "$LAUNCHER -q -x $LAY_SCHEME://$PROXY"
put meta.seconds $(( $(date +%s) - T_START ))

python3 "$BENCH_DIR/dnsreport.py" "$OUT" "$R" | tee "$W/report.md"
[ -n "${KEEP_RAW:-}" ] && mkdir -p "$KEEP_RAW" && cp -r "$OUT" "$R"/. "$KEEP_RAW"/
if [ -n "$RESULTS" ]; then { echo; cat "$W/report.md"; } >>"$RESULTS"; note "appended to $RESULTS"; fi
