#!/usr/bin/env bash
# A three-node cluster on this machine (docs/cluster.md): redis-server on
# 127.0.0.1:6390 and wishd nodes a, b, c with HTTP on 127.0.0.1:8081, 8082, 8083, open
# to publish and play (loopback only), admin token "example-admin-token". Publish on one
# node, watch on another:
#   http://127.0.0.1:8081/publish.html?stream=live    then
#   http://127.0.0.1:8083/watch.html?stream=live      (relayed from a)
#   curl -s -H "Authorization: Bearer example-admin-token" http://127.0.0.1:8083/api/cluster
# Runs until Ctrl-C (or EXAMPLE_SECS seconds), then stops everything it started.
# WISHD=/path/to/wishd uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
if [ -z "${WISHD:-}" ]; then
    cargo build --release -q --bin wishd
    WISHD=${CARGO_TARGET_DIR:-target}/release/wishd
fi
dir=$(mktemp -d)
pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

redis-server --bind 127.0.0.1 --port 6390 --save "" --appendonly no --dir "$dir" \
    >"$dir/redis.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
    id=$(printf '%s' "abc" | cut -c"$i")
    cat >"$dir/$id.toml" <<TOML
http = "127.0.0.1:808$i"
udp = "127.0.0.1:0"
[auth]
publish = "open"
play = "open"
[api]
token = "example-admin-token"
[cluster]
redis = "redis://127.0.0.1:6390"
node = "$id"
url = "http://127.0.0.1:808$i"
token = "example-node-token-1234"
TOML
    "$WISHD" --config "$dir/$id.toml" >"$dir/$id.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:808$i/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:808$i/readyz" >/dev/null || { cat "$dir"/*.log >&2; exit 1; }
done
echo "cluster up: nodes a, b, c on http://127.0.0.1:8081, :8082, :8083 (logs in $dir)"
curl -s -H "Authorization: Bearer example-admin-token" http://127.0.0.1:8081/api/cluster
echo
# In the background and waited for, so that Ctrl-C and SIGTERM stop it at once.
sleep "${EXAMPLE_SECS:-infinity}" &
pids+=($!)
wait $!
