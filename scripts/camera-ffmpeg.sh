#!/usr/bin/env bash
# Pushes a moving test pattern (H.264 + Opus) as plain RTP to a wishd [[rtp]] entry,
# like an IP camera would. Usage: scripts/camera-ffmpeg.sh [HOST] [VIDEO_PORT] [AUDIO_PORT] [SECONDS]
# A port of "none" leaves that medium out: a camera without a microphone, or audio alone.
# Needs Debian's ffmpeg (apt-get install ffmpeg). Writes camera.sdp for `wishd --rtp cam=camera.sdp`.
set -euo pipefail
host=${1:-127.0.0.1}; vport=${2:-5004}; aport=${3:-5006}; secs=${4:-3600}
args=()
n=0
if [[ $vport != none ]]; then
    args+=(-t "$secs" -f lavfi -i testsrc2=size=640x360:rate=30)
    out_video=(-map "$n:v" -c:v libx264 -profile:v baseline -preset ultrafast -tune zerolatency
        -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 -pix_fmt yuv420p -b:v 1M
        -payload_type 96 -f rtp "rtp://$host:$vport?pkt_size=1200")
    n=$((n + 1))
fi
if [[ $aport != none ]]; then
    args+=(-t "$secs" -f lavfi -i sine=frequency=440:sample_rate=48000)
    out_audio=(-map "$n:a" -c:a libopus -b:a 64k -ar 48000 -ac 2
        -payload_type 111 -f rtp "rtp://$host:$aport?pkt_size=1200")
    n=$((n + 1))
fi
if ((n == 0)); then
    echo "camera-ffmpeg.sh: nothing to send (both ports are none)" >&2
    exit 2
fi
exec ffmpeg -nostdin -loglevel warning -re "${args[@]}" \
    "${out_video[@]}" "${out_audio[@]}" -sdp_file camera.sdp
