#!/usr/bin/env bash
# Memory check: the engine's and the layer's own tests, and real programs with the layer
# loaded, under Valgrind's memcheck. Not part of CI (it takes minutes); run it by hand
# after changes to the engine or the layer:
#
#   sudo tools/memcheck.sh [--quick]
#
# What runs under memcheck:
#   1. the unit and corpus tests of laysocks-proto (engine, fuzz corpus replay),
#      laysocks-config and laysocks-preload (the layer's own modules: name table, fd
#      table, DNS policy, …) — each test binary with --error-exitcode;
#   2. real programs with liblaysocks.so preloaded, in a private network namespace with
#      microsocks on 127.0.0.1:1080 and an HTTP server on 203.0.113.2 (an address of the
#      namespace's own loopback device, so the layer proxies it and nothing leaves the
#      namespace): curl, the event-loop probe in every readiness mode, getent (the resolver
#      hooks, remote DNS placeholders), python3 urllib.
# Every run must report 0 errors and no definitely lost bytes. A summary table is printed
# at the end (and written to target/memcheck.md); README.md quotes the last one.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/laysocks-memcheck.XXXXXX)
NS="lsmc-$$"
PIDS=()
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

die() { echo "memcheck.sh: $*" >&2; exit 1; }
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || die "needs root for a network namespace (run with sudo)"
for t in valgrind:valgrind microsocks:microsocks curl:curl cc:gcc python3:python3 ip:iproute2 getent:libc-bin; do
    command -v "${t%%:*}" >/dev/null || die "missing ${t%%:*} (Debian package ${t##*:})"
done

VG=(valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --num-callers=30 --trace-children=no)
ROWS=()
FAILED=0
# row NAME LOG STATUS: one summary row from a valgrind log.
row() {
    local name=$1 log=$2 status=$3 errors lost
    errors=$(grep -ho 'ERROR SUMMARY: [0-9]*' "$log" | awk '{s+=$3} END {print s+0}')
    lost=$(grep -ho 'definitely lost: [0-9,]* bytes' "$log" | tr -d , | awk '{s+=$3} END {print s+0}')
    local verdict=clean
    if [ "$status" != 0 ] || [ "$errors" != 0 ] || [ "$lost" != 0 ]; then
        verdict="FAILED (exit $status)"
        FAILED=1
        echo "---- $name: $log" >&2
        grep -A25 -m3 -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|[0-9,]+ bytes in)' "$log" >&2
    fi
    ROWS+=("| $name | $errors | $lost | $verdict |")
    printf '%-48s errors=%s definitely-lost=%s %s\n' "$name" "$errors" "$lost" "$verdict" >&2
}

cd "$ROOT" || die "no repository at $ROOT"
echo "== building (debug)" >&2
cargo build -q -p laysocks-preload -p laysocks || die "build failed"
LIB="$ROOT/target/debug/liblaysocks.so"
LAUNCHER="$ROOT/target/debug/laysocks"
mapfile -t TESTBINS < <(cargo test -q -p laysocks-proto -p laysocks-config -p laysocks-preload \
    --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
')
[ "${#TESTBINS[@]}" -gt 0 ] || die "no test binaries were built"

echo "== 1. test binaries under memcheck" >&2
for bin in "${TESTBINS[@]}"; do
    name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
    # Tests that start real processes (curl, microsocks) are checked on the test side
    # only (--trace-children=no).
    log="$WORK/$name.log"
    timeout 1200 "${VG[@]}" --log-file="$log" "$bin" --test-threads=2 -q >"$WORK/$name.out" 2>&1
    row "tests: $name" "$log" $?
done

echo "== 2. real programs with the layer loaded" >&2
ip netns add "$NS" || die "cannot create network namespace $NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 203.0.113.2/32 dev lo
mkdir -p "$WORK/www"
head -c 200000 /dev/urandom > "$WORK/www/blob"
printf 'hello through the proxy\n' > "$WORK/www/hello.txt"
# microsocks alone sees remote.test (its own /etc/hosts, in a private mount namespace), so
# the name is one only the proxy can resolve.
printf '127.0.0.1 localhost\n203.0.113.2 remote.test\n' > "$WORK/proxy-hosts"
ip netns exec "$NS" unshare -m sh -c \
    'mount --bind "$0" /etc/hosts && exec microsocks -i 127.0.0.1 -p 1080' "$WORK/proxy-hosts" \
    >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$NS" python3 -m http.server 8080 --bind 203.0.113.2 --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    ip netns exec "$NS" curl -s -o /dev/null http://203.0.113.2:8080/hello.txt 2>/dev/null && break
    sleep 0.1
done
cc -O1 -g -o "$WORK/nbprobe" "$ROOT/tests/probes/nbprobe.c" -lpthread || die "cannot compile nbprobe.c"

# Python's own allocator confuses memcheck; the system allocator does not.
export PYTHONMALLOC=malloc
PROXIED=1
# under NAME CMD...: CMD under memcheck, with the layer, in the namespace.
under() {
    local name=$1
    shift
    local log="$WORK/run-${#ROWS[@]}.log"
    # -v: the layer prints one line per proxied connection, which proves the connection
    # went through microsocks (the target is reachable directly in this namespace).
    timeout 300 ip netns exec "$NS" "$LAUNCHER" -v -x socks5://127.0.0.1:1080 --connect-timeout 20 -- \
        "${VG[@]}" --log-file="$log" "$@" >"$log.out" 2>&1
    local status=$?
    if [ "$status" = 0 ] && [ "$PROXIED" = 1 ] && ! grep -q "via socks5://127.0.0.1:1080: connected" "$log.out"; then
        echo "---- $name: the layer reported no proxied connection:" >&2
        cat "$log.out" >&2
        status=97
    fi
    if [ "$status" = 0 ] && ! grep -q "$EXPECT" "$log.out"; then
        echo "---- $name: expected output '$EXPECT' missing:" >&2
        cat "$log.out" >&2
        status=98
    fi
    row "$name" "$log" "$status"
}

sum=$(sha256sum "$WORK/www/blob" | cut -c1-64)
EXPECT="$sum" under "curl: 200 kB over HTTP" \
    sh -c "curl -sS -m 60 http://203.0.113.2:8080/blob | sha256sum"
EXPECT="hello through the proxy" under "curl: a name only the proxy resolves" \
    curl -sS -m 60 http://remote.test:8080/hello.txt
PROXIED=0 EXPECT="198.18." under "getent ahosts (remote DNS placeholders)" getent ahosts remote.test
modes=(poll ppoll select pselect epoll epoll-et epoll-oneshot epoll-thread epoll-nested epoll-multi fionbio fork)
[ "$QUICK" = 1 ] && modes=(poll epoll select)
for mode in "${modes[@]}"; do
    EXPECT="HTTP/1" under "nbprobe $mode" "$WORK/nbprobe" "$mode" 203.0.113.2 8080
done
if [ "$QUICK" = 0 ]; then
    EXPECT="hello through the proxy" under "python3 urllib" python3 -c \
        'import urllib.request; print(urllib.request.urlopen("http://203.0.113.2:8080/hello.txt", timeout=60).read().decode())'
fi

{
    echo "Valgrind $(valgrind --version | sed 's/valgrind-//') memcheck, $(date -u +%Y-%m-%d):"
    echo
    echo "| run | errors | definitely lost (bytes) | verdict |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$ROOT/target/memcheck.md"
[ "$FAILED" = 0 ] || die "memcheck found problems (see above)"
echo "memcheck.sh: every run is clean" >&2
