#!/usr/bin/python3
"""An RTSP camera for the tests: GStreamer's RTSP server (gst-rtsp-server, Debian's
gir1.2-gst-rtsp-server-1.0) serving a moving test pattern and a tone, as an IP camera
or an NVR serves rtsp://user:pass@host/stream.

Usage: camera.py --port PORT [--path /cam] [--video h264|h265|none] [--keyint FRAMES]
                 [--audio opus|pcmu|pcma|aac|none] [--user U --password P [--digest]]

Prints one JSON line {"event": "ready", "url": "rtsp://127.0.0.1:PORT/cam"} on stdout
once it serves, then runs until killed (SIGTERM or SIGINT end it cleanly). The media
is shared between clients and made once a client plays it. Each time the number of
RTSP sessions (made by SETUP, ended by TEARDOWN or their client's going) or of
connected clients changes, it prints {"event": "sessions", "sessions": N,
"clients": M}: what a test counts to know how often a media server connected.
"""

import argparse
import json
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={keyint} bframes=0 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={keyint} "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}
AUDIO = {
    "opus": "opusenc ! rtpopuspay name={pay} pt=97",
    "pcmu": "audioresample ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name={pay} pt=0",
    "pcma": "audioresample ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name={pay} pt=8",
    "aac": "avenc_aac ! rtpmp4apay name={pay} pt=97",
}


def launch(video, audio, keyint):
    parts = []
    pay = 0
    if video != "none":
        parts.append(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=30/1 "
            "! videoconvert ! " + VIDEO[video].format(keyint=keyint)
        )
        pay += 1
    if audio != "none":
        parts.append(
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
            + AUDIO[audio].format(pay=f"pay{pay}")
        )
    return "( " + " ".join(parts) + " )"


def watch_sessions(server):
    """Reports the sessions and connected clients whenever either changes."""
    pool = server.get_session_pool()
    now = {"sessions": 0, "clients": 0}

    def report():
        print(json.dumps({"event": "sessions", **now}), flush=True)

    def closed(_client):
        now["clients"] -= 1
        report()

    def connected(_server, client):
        now["clients"] += 1
        client.connect("closed", closed)
        report()

    def poll():
        pool.cleanup()
        n = pool.get_n_sessions()
        if n != now["sessions"]:
            now["sessions"] = n
            report()
        return True

    server.connect("client-connected", connected)
    GLib.timeout_add(50, poll)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--video", default="h264", choices=["h264", "h265", "none"])
    p.add_argument("--audio", default="opus", choices=["opus", "pcmu", "pcma", "aac", "none"])
    p.add_argument("--keyint", type=int, default=30, help="frames between keyframes")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--digest", action="store_true")
    a = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch(a.video, a.audio, a.keyint))
    factory.set_shared(True)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", a.user)
        if a.digest:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(a.user, a.password, token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(a.user, "media.factory.access", True)
        permissions.add_permission_for_role(a.user, "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(a.path, factory)
    if server.attach(None) == 0:
        print(json.dumps({"event": "error", "error": f"cannot listen on {a.port}"}), flush=True)
        sys.exit(1)
    watch_sessions(server)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(json.dumps({"event": "ready", "url": f"rtsp://127.0.0.1:{a.port}{a.path}"}), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
