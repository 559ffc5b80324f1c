#!/usr/bin/env bash
# Pushes a moving test pattern (H.264 + Opus) as plain RTP to a wishd [[rtp]] entry,
# like an IP camera would. Usage: scripts/camera-gstreamer.sh [HOST] [VIDEO_PORT] [AUDIO_PORT]
# Needs gstreamer1.0-tools and gstreamer1.0-plugins-{base,good,bad,ugly}.
set -euo pipefail
host=${1:-127.0.0.1}; vport=${2:-5004}; aport=${3:-5006}
exec gst-launch-1.0 -e \
    videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert \
    ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bframes=0 bitrate=1000 \
    ! video/x-h264,profile=constrained-baseline \
    ! rtph264pay pt=96 config-interval=-1 mtu=1200 aggregate-mode=zero-latency ! udpsink host="$host" port="$vport" \
    audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
    ! opusenc bitrate=64000 frame-size=20 ! rtpopuspay pt=111 mtu=1200 ! udpsink host="$host" port="$aport"
