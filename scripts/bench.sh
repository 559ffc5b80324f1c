#!/usr/bin/env bash
# The fan-out benchmark (BENCHMARKS.md): builds release binaries, starts wishd on
# loopback with publishing and playing open and the request rate limit off, then
# runs `wishd-load bench` against it: the physical floor, one 2.5 Mbit/s publisher,
# viewers stepped 1, 10, 50, 100, 200, 400, ... until loss passes 0.5 %, the machine
# runs out or the time cap is reached, then a burst of 200 viewers joining at once.
# Prints one table; writes bench-out/bench-<time>.json (git-ignored) and the server
# log beside it. Extra arguments go to `wishd-load bench` (see --help), e.g.
#   scripts/bench.sh --steps 1,10,100 --step-secs 5 --burst 50
# Loopback only; every step is bounded in viewers and time, and wishd is stopped on exit.
#
# Another server in the same run: give its WHIP and WHEP endpoints of one stream and
# its PID (for CPU and memory), and the same bench runs against it after wishd's,
# printing the same table:
#   BENCH_PEER_WHIP=http://127.0.0.1:7777/whip/bench BENCH_PEER_WHEP=http://127.0.0.1:7777/whep/bench \
#   BENCH_PEER_PID=$(pidof live777) BENCH_PEER_NAME=live777 scripts/bench.sh --steps 1,10,100
# (A server that takes no WHIP, as Janus: scripts/bench-janus.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-bench-out}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"

cargo build --release -q -p wishd --bin wishd -p wishd-load --bin wishd-load
bin=$CARGO_TARGET_DIR/release
# BENCH_WISHD=/path/to/wishd benchmarks another build of the server (an A/B).
wishd=${BENCH_WISHD:-$bin/wishd}

# The viewers' sockets receive a GSO batch (a video frame) as one buffer; a 4 MiB cap
# (Debian's default rmem_max here) overflows when the tool's threads wait for a core,
# and the loss would be the tool's. As root, raise the cap for the run, then restore it.
rmem=/proc/sys/net/core/rmem_max
old_rmem=
if [ -w "$rmem" ] && [ "$(cat "$rmem")" -lt 33554432 ]; then
    old_rmem=$(cat "$rmem")
    echo 33554432 >"$rmem"
fi
# BENCH_NICE=-5 runs server and tool ahead of other work on a shared machine.
nice=${BENCH_NICE:-0}
# BENCH_TOOL_NICE sets the tool's apart (default: the server's), e.g. 10 to see how
# much of the delay tail is the tool taking a core from the server.
tool_nice=${BENCH_TOOL_NICE:-$nice}
# BENCH_HOLD=5ms holds forwards that long so each viewer's leave as GSO runs.
hold=${BENCH_HOLD:-0ms}
# BENCH_WORKERS=1 runs one media worker instead of one per core (0).
workers=${BENCH_WORKERS:-0}
# BENCH_PREPARED=0 makes every DTLS session on its request (prepared_dtls; default
# 256, more than the default burst of 200, so the burst measures joins that take one
# ready).
prepared=${BENCH_PREPARED:-256}
# BENCH_PREFIX runs the server under another command, e.g. "chrt -f 10" (real-time
# scheduling for all its threads) or "taskset -c 1".
# BENCH_TOOL_PREFIX does the same for the tool, e.g. "chrt -i 0": SCHED_IDLE, so the
# tool runs only on time the server leaves, the nearest this host comes to the tool on
# a machine of its own. Its own delay figures (e2e) then include its waiting.

cat >"$out/wishd.toml" <<TOML
# Written by scripts/bench.sh: loopback on free ports, open policies (no tokens), no
# request rate limit, no session cap, the chosen media workers (0: one per core) and
# forward hold.
http = "127.0.0.1:0"
udp = "127.0.0.1:0"
workers = $workers
prepared_dtls = $prepared
forward_hold = "$hold"

[auth]
publish = "open"
play = "open"

[limits]
requests_per_second = 0.0
max_sessions = 0
TOML

# Empty the log first: the banner read below must not come from a previous run.
: >"$out/wishd.log"
RUST_LOG=${RUST_LOG:-info} ${BENCH_PREFIX:-} nice -n "$nice" "$wishd" --config "$out/wishd.toml" >"$out/wishd.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "$old_rmem" ]; then echo "$old_rmem" >"$rmem"; fi
}
trap cleanup EXIT

# The banner names the HTTP port the kernel chose.
http=
for _ in $(seq 100); do
    http=$(grep -o 'HTTP on http://127\.0\.0\.1:[0-9]*' "$out/wishd.log" | head -1 | sed 's|.*http://||' || true)
    [ -n "$http" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$http" ]; then
    echo "wishd did not start:" >&2
    cat "$out/wishd.log" >&2
    exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
# BENCH_POST_OFFER: a captured offer the burst also POSTs (each a client of its own);
# Chromium's WHEP offer unless set, empty for none.
post_offer=${BENCH_POST_OFFER-fuzz/seeds/sdp_offer/whep_chromium.sdp}
post_offer_args=()
[ -n "$post_offer" ] && post_offer_args=(--post-offer "$post_offer")
# BENCH_WHIP_OFFER: a captured WHIP offer the burst POSTs as many times, each a
# publisher of a stream of its own; Chromium's unless set, empty for none.
whip_offer=${BENCH_WHIP_OFFER-fuzz/seeds/sdp_offer/whip_chromium.sdp}
[ -n "$whip_offer" ] && post_offer_args+=(--whip-offer "$whip_offer")
${BENCH_TOOL_PREFIX:-} nice -n "$tool_nice" "$bin/wishd-load" bench --base "http://$http" --server-pid "$pid" \
    --json "$out/bench-$stamp.json" "${post_offer_args[@]}" "$@" | tee "$out/bench-$stamp.txt"
echo "wrote $out/bench-$stamp.json and $out/bench-$stamp.txt"

if [ -n "${BENCH_PEER_WHEP:-}" ]; then
    : "${BENCH_PEER_WHIP:?BENCH_PEER_WHIP: the peer's WHIP endpoint of the same stream}"
    : "${BENCH_PEER_PID:?BENCH_PEER_PID: the peer's process id, for its CPU and memory}"
    peer=${BENCH_PEER_NAME:-peer}
    echo
    echo "== $peer: $BENCH_PEER_WHIP → $BENCH_PEER_WHEP (pid $BENCH_PEER_PID)"
    ${BENCH_TOOL_PREFIX:-} nice -n "$tool_nice" "$bin/wishd-load" bench --whip "$BENCH_PEER_WHIP" \
        --whep "$BENCH_PEER_WHEP" --server-pid "$BENCH_PEER_PID" --metrics none \
        --json "$out/bench-$stamp-$peer.json" "$@" | tee "$out/bench-$stamp-$peer.txt"
    echo "wrote $out/bench-$stamp-$peer.json and $out/bench-$stamp-$peer.txt"
fi
