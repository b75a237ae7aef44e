# Shared by bench/run.sh, bench/dns.sh and bench/udp.sh (sourced, not run).
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
