#!/usr/bin/python3
"""GStreamer's own WebRTC stack (webrtcbin + libnice) as a WHIP publisher or a WHEP
viewer, with the DTLS certificate webrtcbin makes itself (RSA 2048 in 1.22).

    /usr/bin/python3 conformance/gstreamer/webrtcbin.py publish URL SECONDS [TOKEN]
    /usr/bin/python3 conformance/gstreamer/webrtcbin.py view URL SECONDS [TOKEN]

publish: sends a moving test pattern (H.264 from x264enc + Opus) to the WHIP endpoint
URL for SECONDS (or until SIGTERM). view: receives H.264 and Opus from the WHEP
endpoint URL for SECONDS and decodes them (avdec_h264, opusdec), counting frames.
Either ends the session with DELETE. Non-trickle: the offer is POSTed once ICE
gathering is complete. libnice gathers on every interface except loopback, so
the tests run this inside a network namespace of their own, with a veth carrying
127.0.0.2 (and wishd's media socket on that address: a libnice socket on the veth
cannot send to 127.0.0.1).
With GST_WHIP_ICE_TCP=1 in the environment, libnice also offers ICE-TCP (active).
Progress goes to stderr; the last line on stdout is one JSON object:
{ client, version, ok, step, error, figures }.
"""
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO_CAPS = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000"
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"

PUBLISH = """
webrtcbin name=w bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1
  ! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 bitrate=800
  ! video/x-h264,profile=constrained-baseline ! rtph264pay pt=96 config-interval=-1 aggregate-mode=zero-latency mtu=1200
  ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w.
audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc bitrate=64000
  ! rtpopuspay pt=111 mtu=1200 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w.
"""


def certificate_kind(pem):
    """What kind of key webrtcbin's DTLS certificate has, e.g. "RSA 2048" (GStreamer's
    default, which the test relies on being what it proves) or "EC secp256r1"."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def log(*a):
    print("[gst-whip]", *a, file=sys.stderr, flush=True)


class Peer:
    def __init__(self, role, url, seconds, token):
        self.role, self.url, self.seconds, self.token = role, url, seconds, token
        self.step = "pipeline"
        self.error = None
        self.location = None
        self.figures = {}
        self.loop = GLib.MainLoop()
        if role == "publish":
            self.pipe = Gst.parse_launch(PUBLISH)
            self.w = self.pipe.get_by_name("w")
        else:
            self.pipe = Gst.Pipeline.new("view")
            self.w = Gst.ElementFactory.make("webrtcbin", "w")
            self.w.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(self.w)
            recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            # What a GStreamer WHEP player (whepsrc) asks for: H.264 in
            # packetization-mode 1 (mode 0 is what no fmtp means, RFC 6184).
            video = VIDEO_CAPS + ",packetization-mode=(string)1,profile-level-id=(string)42e01f"
            for caps in (video, AUDIO_CAPS):
                self.w.emit("add-transceiver", recv, Gst.Caps.from_string(caps))
            self.w.connect("pad-added", self.on_pad)
            self.frames = {"video": 0, "audio": 0}
        # No UPnP port mapping (SSDP multicast), and no ICE-TCP candidates unless
        # GST_WHIP_ICE_TCP=1 asks for them. PyGObject drops a reference it does not
        # own when these wrappers are collected, so they are kept for the life of the
        # process.
        self.ice = self.w.get_property("ice-agent")
        self.ice.set_property("ice-tcp", os.environ.get("GST_WHIP_ICE_TCP") == "1")
        self.nice = self.ice.get_property("agent")
        self.nice.set_property("upnp", False)
        self.w.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.w.connect("notify::ice-gathering-state", self.on_gathering)
        self.w.connect("notify::ice-connection-state", self.on_ice)
        self.dtls = None
        self.pipe.connect("deep-element-added", self.on_element)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)
        self.offered = False
        self.finished = False

    def fail(self, step, error):
        if self.error is None:
            self.step, self.error = step, str(error)
            log(f"FAILED at {step}: {error}")
        self.loop.quit()

    def on_bus_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(self.step, f"{err.message} ({dbg})")

    def on_element(self, _bin, _sub, element):
        # webrtcbin's DTLS element, to report which certificate it made: its own
        # default, untouched.
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "dtlssrtpdec" and self.dtls is None:
            self.dtls = element

    def on_pad(self, _w, pad):
        # A received stream: decode it and count what comes out.
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        media = pad.get_current_caps().get_structure(0).get_string("media")
        dec = Gst.ElementFactory.make("decodebin")
        self.pipe.add(dec)
        dec.connect("pad-added", self.on_decoded, media)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def on_decoded(self, _dec, pad, media):
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        pad.add_probe(Gst.PadProbeType.BUFFER, self.on_frame, media)

    def on_frame(self, pad, _info, media):
        self.frames[media] += 1
        if media == "video" and "first_frame_ms" not in self.figures:
            self.figures["first_frame_ms"] = round((time.monotonic() - self.t_post) * 1000)
            s = pad.get_current_caps().get_structure(0)
            self.figures["size"] = f"{s.get_value('width')}x{s.get_value('height')}"
            log("first decoded frame")
        return Gst.PadProbeReturn.OK

    def on_negotiation_needed(self, w):
        self.step = "create offer"
        if self.role == "view":
            promise = Gst.Promise.new_with_change_func(self.on_offer, w, None)
            w.emit("create-offer", None, promise)
            return
        # WHIP publishes only: every transceiver sends.
        i = 0
        while True:
            t = w.emit("get-transceiver", i)
            if t is None:
                break
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            i += 1
        promise = Gst.Promise.new_with_change_func(self.on_offer, w, None)
        w.emit("create-offer", None, promise)

    def on_offer(self, promise, w, _data):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            return self.fail("create offer", "webrtcbin made no offer")
        self.step = "gather ICE candidates"
        w.emit("set-local-description", offer, Gst.Promise.new())
        self.t_gather = time.monotonic()

    def on_gathering(self, w, _pspec):
        state = w.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            self.figures["gather_ms"] = round((time.monotonic() - self.t_gather) * 1000)
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        what = "WHIP POST" if self.role == "publish" else "WHEP POST"
        self.step = what
        sdp = self.w.get_property("local-description").sdp.as_text()
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=sdp.encode(), headers=headers, method="POST")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, answer = resp.status, resp.read().decode()
                loc = resp.headers.get("Location")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace").strip()
            return self.fail(what, f"{e.code}: {body}")
        except OSError as e:
            return self.fail(what, e)
        self.figures["post_ms"] = round((time.monotonic() - t0) * 1000)
        if status != 201 or not loc:
            return self.fail(what, f"status {status}, Location {loc!r}")
        self.location = urllib.parse.urljoin(self.url, loc)
        self.step = "apply the answer"
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            return self.fail("apply the answer", "the answer does not parse")
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.w.emit("set-remote-description", desc, Gst.Promise.new())
        self.step = "ICE connects"
        self.t_post = t0
        GLib.timeout_add(8000, self.check_connected)
        return False

    def on_ice(self, w, _pspec):
        state = w.get_property("ice-connection-state")
        if state in (GstWebRTC.WebRTCICEConnectionState.CONNECTED, GstWebRTC.WebRTCICEConnectionState.COMPLETED):
            if "connected_ms" not in self.figures:
                self.figures["connected_ms"] = round((time.monotonic() - self.t_post) * 1000)
                self.step = self.role
                log("publishing" if self.role == "publish" else "viewing")
                GLib.timeout_add(int(self.seconds * 1000), self.finish)
                GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.finish)
        elif state == GstWebRTC.WebRTCICEConnectionState.FAILED:
            GLib.idle_add(self.fail, "ICE connects", "ICE failed")

    def check_connected(self):
        if "connected_ms" not in self.figures:
            self.fail("ICE connects", "not connected 8 s after the answer")
        return False

    def finish(self):
        if self.finished:
            return False
        self.finished = True
        promise = Gst.Promise.new()
        self.w.emit("get-stats", None, promise)
        promise.wait()
        stats = promise.get_reply()
        sent = []
        if stats is not None:
            # One outbound-rtp entry per SSRC (1.22 labels both "audio": go by SSRC).
            def each(_field, value, _data):
                if isinstance(value, Gst.Structure) and value.get_name() == "outbound-rtp":
                    sent.append(value.get_value("packets-sent"))
                return True
            stats.foreach(each, None)
        if self.role == "publish":
            self.figures["packets_sent"] = sent
        else:
            self.figures["video_frames"] = self.frames["video"]
            self.figures["audio_frames"] = self.frames["audio"]
            if self.frames["video"] < 10 or self.frames["audio"] < 10:
                self.fail("decode", f"{self.frames['video']} video and {self.frames['audio']} audio frames")
        if self.dtls is not None:
            self.figures["certificate"] = certificate_kind(self.dtls.get_property("pem"))
        self.loop.quit()
        return False

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int((self.seconds + 20) * 1000), lambda: self.fail(self.step, "overall timeout"))
        self.loop.run()
        if self.location:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            try:
                urllib.request.urlopen(urllib.request.Request(self.location, headers=headers, method="DELETE"), timeout=5)
            except (urllib.error.HTTPError, OSError) as e:
                log("DELETE:", e)
        self.pipe.set_state(Gst.State.NULL)
        return {
            "client": "gstreamer-webrtcbin",
            "role": self.role,
            "version": Gst.version_string().replace("GStreamer ", ""),
            "ok": self.error is None,
            "step": self.step,
            "error": self.error,
            "figures": self.figures,
        }


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("publish", "view"):
        sys.exit(__doc__)
    role = sys.argv[1]
    Gst.init(None)
    need = ("x264enc", "opusenc", "rtph264pay") if role == "publish" else ("avdec_h264", "opusdec")
    for el in ("webrtcbin", "nicesrc") + need:
        if Gst.ElementFactory.find(el) is None:
            print(json.dumps({"client": "gstreamer-webrtcbin", "ok": False, "step": "plugins",
                              "error": f"GStreamer element {el} is missing"}))
            return 1
    result = Peer(role, sys.argv[2], float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "").run()
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
