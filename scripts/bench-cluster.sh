#!/usr/bin/env bash
# The cluster relay's figures (BENCHMARKS.md): Redis and three release wishd nodes in a
# network namespace, a str0m publisher on node a, one viewer there and twenty on node c
# behind one relay. Prints the origin's CPU with the publisher alone, with one direct
# viewer and with the relay added (the relay's cost against a viewer's, as a ratio),
# and the delay the relay adds to the same packets. Needs root (the namespace) and
# redis-server; bounded to about 40 s; everything it starts stops with it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -q --test cluster -- --ignored --exact \
    relay_costs_the_origin_one_viewer_and_adds_little_delay --nocapture
