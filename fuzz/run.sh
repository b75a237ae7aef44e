#!/usr/bin/env bash
# Run fuzz targets one after the other, each for SECONDS (default 60): the engine's
# (client, server, udp) and the preload layer's (layer). Usage:
#
#     ./run.sh [SECONDS] [TARGET...]      (default: all four)
#
# Needs the nightly toolchain (rustup) and cargo-fuzz (installed from crates.io if
# missing). The layer target also needs root (it builds network namespaces) and the
# launcher of the main workspace, which this script builds first (`cargo build -p
# laysocks`, which embeds liblaysocks.so) and copies aside, so that a rebuild during the
# run cannot change the layer under test.
#
# Crashes land in fuzz/artifacts/<target>/. New inputs the fuzzer finds go to a scratch
# directory (kept if FUZZ_WORK_DIR names one), never into the small checked-in corpus:
# pick the few worth keeping by hand (`cargo +nightly fuzz cmin`).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client server udp layer)
for t in "${targets[@]}"; do
    case "$t" in
        client|server|udp|layer) ;;
        *) echo "run.sh: unknown target $t (client, server, udp, layer)" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

if [ -n "${FUZZ_WORK_DIR:-}" ]; then
    scratch="$FUZZ_WORK_DIR"
    mkdir -p "$scratch"
else
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
fi

for t in "${targets[@]}"; do
    [ "$t" = layer ] || continue
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: the layer target builds network namespaces and must run as root" \
             "(sudo $0 $secs layer), or leave it out: $0 $secs client server udp" >&2
        exit 1
    fi
    for tool in ip cc; do
        if ! command -v "$tool" >/dev/null; then
            echo "run.sh: the layer target needs $tool (Debian package" \
                 "$([ $tool = ip ] && echo iproute2 || echo gcc))" >&2
            exit 1
        fi
    done
    echo "== building the launcher and the layer (main workspace)"
    (cd .. && cargo build -p laysocks -p laysocks-preload)
    target_dir="${CARGO_TARGET_DIR:-../target}"
    cp "$target_dir/debug/laysocks" "$scratch/laysocks"
    export LAYSOCKS_BIN
    LAYSOCKS_BIN="$(cd "$scratch" && pwd)/laysocks"
done

for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== $target: ${secs}s"
    # The scratch directory comes first: new inputs are written there; the checked-in
    # corpus is only read.
    cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "run.sh: ${targets[*]} ran ${secs}s each without a failure"
