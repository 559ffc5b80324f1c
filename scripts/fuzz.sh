#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (fuzz/fuzz_targets/) for SECONDS, on nightly
# with cargo-fuzz (cargo install cargo-fuzz). Usage: scripts/fuzz.sh TARGET SECONDS
# Findings land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
secs=${2:-60}
mkdir -p "fuzz/corpus/$target"
seeds=()
[ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
exec cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
