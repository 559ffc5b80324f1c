#!/usr/bin/env bash
# Every fuzz target (fuzz/fuzz_targets/) for FUZZ_SMOKE_SECS seconds (default 15),
# two at a time: so that no target stops building or finds something new unseen.
# Part of scripts/test.sh. Needs the nightly toolchain and cargo-fuzz (.ci/run
# installs cargo-fuzz); without them it says so and, outside CI, skips.
# With --build-only it builds the targets and runs none (scripts/test.sh builds them
# beside the tests). Prints each target's executions and coverage; fails on the first
# finding (its input is in fuzz/artifacts/TARGET/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SMOKE_SECS:-15}
jobs=${FUZZ_JOBS:-2}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    msg="fuzz smoke: needs the nightly toolchain and cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)"
    if [ "${CI:-}" = "true" ]; then
        echo "$msg" >&2
        exit 1
    fi
    echo "$msg: skipped"
    exit 0
fi
echo "== fuzz smoke: building the targets"
cargo +nightly fuzz build --fuzz-dir fuzz
if [ "${1:-}" = "--build-only" ]; then
    exit 0
fi
targets=$(cargo +nightly fuzz list --fuzz-dir fuzz)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() {
    local t=$1
    if scripts/fuzz.sh "$t" "$secs" >"$logs/$t.log" 2>&1; then
        local runs cov
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
        echo "fuzz smoke: $t: $runs executions in ${secs} s, coverage $cov edges, nothing found"
    else
        echo "fuzz smoke: $t FAILED; its log:" >&2
        tail -40 "$logs/$t.log" >&2
        return 1
    fi
}
pids=()
failed=0
for t in $targets; do
    run "$t" &
    pids+=($!)
    if ((${#pids[@]} >= jobs)); then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || failed=1
done
exit $failed
