#!/usr/bin/env bash
# Janus and wishd side by side (BENCHMARKS.md): one ffmpeg camera (H.264 1280x720,
# 30 fps, 2.5 Mbit/s) feeds Debian's Janus (streaming plugin, behind
# janus-whep-server) and wishd (an RTP stream) in a network namespace, and the same
# wishd-load swarm watches each in steps. Prints one table per server and the ratios;
# writes bench-out/bench-janus.json. Needs root (a namespace), janus, ffmpeg and
# `npm ci` in conformance/ (.ci/run installs them). Every step is bounded in viewers
# and time.
#   BENCH_STEPS=10,100,400 BENCH_SECS=10 scripts/bench-janus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p wishd --bin wishd -p wishd-load --bin wishd-load
exec cargo test --release -q --test janus bench_janus_and_wishd -- --ignored --nocapture
