#!/usr/bin/env bash
# Run every fuzz target of the SOCKS5 engine, one after the other, each for SECONDS
# (default 60). Needs the nightly toolchain (rustup) and cargo-fuzz (installed from
# crates.io if missing). Crashes land in fuzz/artifacts/<target>/. New inputs the fuzzer
# finds go to a scratch directory (kept if FUZZ_WORK_DIR names one), never into the small
# checked-in corpus: pick the few worth keeping by hand (`cargo +nightly fuzz cmin`).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
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
for target in client server udp; do
    mkdir -p "$scratch/$target"
    echo "== $target: ${secs}s"
    # The scratch directory comes first: new inputs are written there; the checked-in
    # corpus is only read.
    cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "run.sh: all targets ran ${secs}s without a failure"
