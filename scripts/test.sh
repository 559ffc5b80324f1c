#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against a real wishd on
# loopback. What the tests need beyond Rust is installed by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The fuzz targets' build (about 9 minutes of a clean clone's CI) needs nothing from the
# tests, so it runs beside them on SCHED_IDLE: it gets only CPU the tests leave idle
# (most of their time is real time waiting on real clients), so no test's timed bound
# waits for it. Its own process group, so that a failing test stops it too.
fuzz_log=$(mktemp)
setsid chrt --idle 0 scripts/fuzz-smoke.sh --build-only >"$fuzz_log" 2>&1 &
fuzz_build=$!
trap 'kill -- "-$fuzz_build" 2>/dev/null || true; rm -f "$fuzz_log"' EXIT
# The conformance runner against wishd runs last, uncaptured, so its tables (one row
# per checklist requirement) are in the CI output.
cargo test --workspace --all-targets "$@" -- --skip every_applicable_
# --workspace keeps the features the first command built with, so the binary is reused.
cargo test --workspace --test against_wishd "$@" -- --nocapture --test-threads 1
# Every fuzz target for a short while (nightly; see scripts/fuzz-smoke.sh), once built.
build_ok=0
wait "$fuzz_build" || build_ok=$?
cat "$fuzz_log"
if [ "$build_ok" != 0 ]; then
    echo "fuzz smoke: building the targets failed" >&2
    exit 1
fi
scripts/fuzz-smoke.sh
