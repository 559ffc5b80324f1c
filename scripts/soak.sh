#!/usr/bin/env bash
# The soak test (not in CI): one publisher, viewers joining and leaving at random
# (about 50 at a time), and sessions created and deleted continuously, for SECONDS
# (default 3600). Samples wishd's resident memory, open file descriptors and sessions
# every 30 s; at the end waits for the churn to drain and says whether file
# descriptors and sessions are back at their baseline (after the publisher joined) and
# whether memory kept growing past its level five minutes in (the allocator keeps
# what the busiest minute needed, so RSS does not fall back). Loopback only; stops by
# itself.
#   scripts/soak.sh [SECONDS]
# Writes bench-out/soak-<time>.txt (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3600}
out=${SOAK_OUT:-bench-out}
mkdir -p "$out"
cargo build --release -q -p wishd --bin wishd -p wishd-load --bin wishd-load
bin=${CARGO_TARGET_DIR:-target}/release

cat >"$out/soak.toml" <<TOML
# Written by scripts/soak.sh: loopback on free ports, open, no rate limit.
http = "127.0.0.1:0"
udp = "127.0.0.1:0"
# Sessions that were POSTed and never connected end after this.
connect_timeout = "5s"

[auth]
publish = "open"
play = "open"

[limits]
requests_per_second = 0.0
max_sessions = 0
TOML
: >"$out/soak.log"
RUST_LOG=${RUST_LOG:-info} "$bin/wishd" --config "$out/soak.toml" >"$out/soak.log" 2>&1 &
pid=$!
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
http=
for _ in $(seq 100); do
    http=$(grep -o 'HTTP on http://127\.0\.0\.1:[0-9]*' "$out/soak.log" | head -1 | sed 's|.*http://||' || true)
    [ -n "$http" ] && break
    sleep 0.1
done
if [ -z "$http" ]; then
    echo "wishd did not start (see $out/soak.log)" >&2
    exit 1
fi
base="http://$http"

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
sessions() {
    curl -s "$base/metrics" | awk '/^wishd_sessions\{/ {n += $2} END {print n + 0}'
}

# The publisher and one steady viewer, renewed every 10 minutes (the tool's longest
# run): a publisher that leaves and comes back on the same stream, too.
(
    end=$((SECONDS + secs))
    while ((SECONDS < end)); do
        left=$((end - SECONDS))
        "$bin/wishd-load" run --base "$base" --stream soak --viewers 1 \
            --duration $((left < 600 ? left : 600)) --bitrate 1000000 >/dev/null 2>&1 || true
    done
) &
pids+=($!)
sleep 15
base_rss=$(rss)
base_fds=$(fds)
base_sessions=$(sessions)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report="$out/soak-$stamp.txt"
echo "soak of ${secs} s against $base; baseline with the publisher: RSS ${base_rss} KiB, ${base_fds} fds, ${base_sessions} sessions" | tee "$report"

# Viewers joining and leaving: batches of 1-10 for 5-25 s, started every 1-4 s.
(
    end=$((SECONDS + secs))
    while ((SECONDS < end)); do
        "$bin/wishd-load" run --base "$base" --stream soak --no-publish \
            --viewers $((RANDOM % 10 + 1)) --duration $((RANDOM % 20 + 5)) >/dev/null 2>&1 &
        sleep $((RANDOM % 4 + 1))
    done
    wait
) &
pids+=($!)
# Sessions created and deleted continuously: a POST that never connects, then its
# DELETE, twice a second.
offer=fuzz/seeds/sdp_offer/whep_chromium.sdp
(
    end=$((SECONDS + secs))
    while ((SECONDS < end)); do
        loc=$(curl -s -o /dev/null -D - -H 'Content-Type: application/sdp' --data-binary "@$offer" \
            "$base/whep/soak" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
        [ -n "$loc" ] && curl -s -o /dev/null -X DELETE "$base$loc"
        sleep 0.5
    done
) &
pids+=($!)

max_rss=0
warm_rss=
start=$SECONDS
end=$((SECONDS + secs))
while ((SECONDS < end)); do
    sleep 30
    r=$(rss)
    ((r > max_rss)) && max_rss=$r
    # The allocator keeps what the busiest minute needed: growth is judged from the
    # level five minutes in, not from the baseline with the publisher alone.
    if [ -z "$warm_rss" ] && ((SECONDS - start >= 300)); then warm_rss=$r; fi
    echo "$(date -u +%H:%M:%S) RSS $r KiB, $(fds) fds, $(sessions) sessions" | tee -a "$report"
done

# Let the churn drain: batches end within 25 s; unconnected sessions within 5 s.
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
sleep 30
final_rss=$(rss)
final_fds=$(fds)
final_sessions=$(sessions)
{
    warm_rss=${warm_rss:-$max_rss}
    echo "after the churn: RSS ${final_rss} KiB (baseline ${base_rss}, ${warm_rss} five minutes in, peak ${max_rss}), ${final_fds} fds (baseline ${base_fds}), ${final_sessions} sessions (baseline ${base_sessions})"
    verdict=ok
    ((final_fds > base_fds)) && verdict="file descriptors left behind"
    ((final_sessions > base_sessions)) && verdict="sessions left behind"
    ((final_rss > warm_rss * 6 / 5)) && verdict="resident memory grew 20 % past its level five minutes in"
    echo "verdict: $verdict"
} | tee -a "$report"
echo "wrote $report"
