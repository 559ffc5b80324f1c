#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against a real wishd on
# loopback. What the tests need beyond Rust is installed by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The conformance runner against wishd runs last, uncaptured, so its tables (one row
# per checklist requirement) are in the CI output.
cargo test --workspace --all-targets "$@" -- --skip every_applicable_
# --workspace keeps the features the first command built with, so the binary is reused.
cargo test --workspace --test against_wishd "$@" -- --nocapture --test-threads 1
# Every fuzz target for a short while (nightly; see scripts/fuzz-smoke.sh).
scripts/fuzz-smoke.sh
