#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against a real wishd on
# loopback. What the tests need beyond Rust is installed by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
