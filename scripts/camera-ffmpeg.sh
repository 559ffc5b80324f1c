#!/usr/bin/env bash
# Pushes a moving test pattern (H.264 + Opus) as plain RTP to a wishd [[rtp]] entry,
# like an IP camera would. Usage: scripts/camera-ffmpeg.sh [HOST] [VIDEO_PORT] [AUDIO_PORT] [SECONDS]
# Needs Debian's ffmpeg (apt-get install ffmpeg). Writes camera.sdp for `wishd --rtp cam=camera.sdp`.
set -euo pipefail
host=${1:-127.0.0.1}; vport=${2:-5004}; aport=${3:-5006}; secs=${4:-3600}
exec ffmpeg -nostdin -loglevel warning -re \
    -t "$secs" -f lavfi -i testsrc2=size=640x360:rate=30 \
    -t "$secs" -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -map 0:v -c:v libx264 -profile:v baseline -preset ultrafast -tune zerolatency \
    -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 -pix_fmt yuv420p -b:v 1M \
    -payload_type 96 -f rtp "rtp://$host:$vport?pkt_size=1200" \
    -map 1:a -c:a libopus -b:a 64k -ar 48000 -ac 2 \
    -payload_type 111 -f rtp "rtp://$host:$aport?pkt_size=1200" \
    -sdp_file camera.sdp
