#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against a real wishd on
# loopback, and doc tests. What the tests need beyond Rust is installed by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
cargo test --doc
