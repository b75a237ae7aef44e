# Shared by bench/run.sh, bench/dns.sh, bench/udp.sh and bench/soak.sh (sourced, not run).
# The caller sets NAME (for messages) and ONLY (its default list of sections) first,
# then calls `parse_args "$@"`; OUT (the key=value results file) is set before put/ok.

RESULTS=""
BUILD=1
QUICK=0

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --results) RESULTS=$2; shift 2 ;;
            --no-build) BUILD=0; shift ;;
            --quick) QUICK=1; shift ;;
            --only) ONLY=",$2,"; shift 2 ;;
            -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
            *) echo "$NAME: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done
}

die() { echo "$NAME: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
want() { [[ $ONLY == *",$1,"* ]]; }
put() { echo "$1=$2" >>"$OUT"; }
ok() { grep -q "^ok.$1=1" "$OUT"; }
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo '?'; }

# Percent of all CPUs busy over one second.
cpu_busy() {
    local a b c d e f g h A B C D E F G H
    read -r _ a b c d e f g h _ </proc/stat; sleep 1; read -r _ A B C D E F G H _ </proc/stat
    local tot=$(( A + B + C + D + E + F + G + H - a - b - c - d - e - f - g - h ))
    local idle=$(( D + E - d - e ))
    echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}

# The CPU that was idlest over one second.
idlest_cpu() {
    python3 - <<'PY'
import time
def idle():
    out = {}
    for line in open("/proc/stat"):
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            out[int(f[0][3:])] = int(f[4]) + int(f[5])
    return out
a = idle(); time.sleep(1); b = idle()
print(max(b, key=lambda c: b[c] - a[c]))
PY
}

# The two-namespace rig of run.sh/soak.sh: client NS $1 (198.51.100.2, route to
# 198.51.100.0/24 only) and proxy NS $2 (198.51.100.1, the target 203.0.113.2 on its lo),
# joined by the veth pair $3/$4. The client cannot reach the target except through a
# proxy in $2, so a reply proves the proxy carried the connection.
rig_up() {
    local nsc=$1 nsp=$2 vc=$3 vp=$4
    ip netns add "$nsc" && ip netns add "$nsp" || die "ip netns add failed"
    ip link add "$vc" type veth peer name "$vp" || die "ip link add veth failed"
    ip link set "$vc" netns "$nsc"; ip link set "$vp" netns "$nsp"
    ip -n "$nsc" link set lo up; ip -n "$nsp" link set lo up
    ip -n "$nsc" addr add 198.51.100.2/24 dev "$vc"
    ip -n "$nsp" addr add 198.51.100.1/24 dev "$vp"
    ip -n "$nsc" link set "$vc" up; ip -n "$nsp" link set "$vp" up
    ip -n "$nsp" addr add 203.0.113.2/32 dev lo
}

# A minimal no-auth danted config: FILE LOG PORT [COMMANDS] (internal 198.51.100.1,
# external 203.0.113.2).
danted_conf() {
    cat >"$1" <<EOC
logoutput: $2
internal: 198.51.100.1 port = $3
external: 203.0.113.2
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: ${4:-connect} }
EOC
}

# VmRSS and Pss (KiB) of process $1: "RSS PSS", empty if it is gone.
rss_pss() {
    local r p
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null)
    p=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null)
    [ -n "$r" ] && [ -n "$p" ] && echo "$r $p"
}

# bench_start TAG NS...: the run's start time (T_START), its scratch directory
# (W=/tmp/TAG.XXXXXX), the PIDS it starts, and an exit trap (bench_cleanup) for the
# network namespaces NS... the caller is about to create.
bench_start() {
    T_START=$(date +%s)
    W=$(mktemp -d "/tmp/$1.XXXXXX")
    shift
    BENCH_NS=("$@")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Kills every PID in PIDS, then whatever still lives in *our* namespaces (danted forks
# helpers, the launcher a companion), deletes the namespaces and their /etc/netns
# directories, and removes W.
bench_cleanup() {
    local p ns
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for ns in "${BENCH_NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    for ns in "${BENCH_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$W"
}

# build_release SECS CRATE...: `cargo build --release -p CRATE` for each (not with
# --no-build), each bounded by SECS; a failed build is reported with its first error
# and any existing artefact is used.
build_release() {
    local secs=$1 c
    shift
    [ "$BUILD" = 1 ] || return 0
    for c in "$@"; do
        if ! (cd "$ROOT" && timeout "$secs" cargo build --release -q -p "$c") >"$W/build-$c.log" 2>&1; then
            note "cargo build --release -p $c failed; using any existing artefact. First error:"
            grep -m1 -A3 '^error' "$W/build-$c.log" | sed 's/^/#   /' >&2
        fi
    done
}
