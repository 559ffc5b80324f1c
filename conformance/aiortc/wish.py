#!/usr/bin/python3
"""aiortc (Python WebRTC) as a WHIP publisher or a WHEP viewer.

    /usr/bin/python3 conformance/aiortc/wish.py publish URL SECONDS [CODEC]
    /usr/bin/python3 conformance/aiortc/wish.py view URL SECONDS [KINDS]

publish: sends a moving 640x360 test pattern (CODEC: VP8, the default, or H264) and
silence in Opus to the WHIP endpoint URL for SECONDS (or until SIGTERM), then
DELETEs the session.
view: receives from the WHEP endpoint URL for SECONDS and counts decoded video
frames and audio frames; KINDS ("video", "audio" or the default "video,audio") names
the ones that must arrive (a video-only camera sends no audio).

aioice (aiortc's ICE) never gathers on the loopback interface, so the tests run this
inside a network namespace of their own, with a veth carrying 127.0.0.2. Progress
goes to stderr; the last line on stdout is one JSON object:
{ client, version, role, ok, step, error, figures }.
"""
import asyncio
import json
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aiortc
import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

WIDTH, HEIGHT, FPS = 640, 360, 30


def log(*a):
    print("[aiortc]", *a, file=sys.stderr, flush=True)


class Pattern(VideoStreamTrack):
    """A grey frame with a white bar sweeping across it."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        x = (self.n * 8) % WIDTH
        row = bytearray(b"\x50" * WIDTH)
        row[x : x + 40] = b"\xeb" * len(row[x : x + 40])
        frame.planes[0].update(bytes(row) * HEIGHT)
        chroma = b"\x80" * (WIDTH // 2 * HEIGHT // 2)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts, frame.time_base = pts, time_base
        self.n += 1
        return frame


def answered_codec(sdp, kind):
    """The first codec of the `kind` m-line of an SDP, e.g. "H264"."""
    section = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        elif section == kind and line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/", 1)[0]
    return None


def http(method, url, body=None, content_type=None):
    """One blocking HTTP request: (status, headers, body text)."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body.encode() if body else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


class Run:
    def __init__(self, role, url):
        self.role, self.url = role, url
        self.step = "start"
        self.figures = {}
        self.location = None

    async def negotiate(self, pc):
        self.step = "offer (ICE gathered)"
        await pc.setLocalDescription(await pc.createOffer())
        self.step = "POST the offer"
        t0 = time.monotonic()
        status, headers, body = await asyncio.to_thread(
            http, "POST", self.url, pc.localDescription.sdp, "application/sdp"
        )
        self.figures["post_ms"] = round((time.monotonic() - t0) * 1000)
        if status != 201:
            raise RuntimeError(f"{status}: {body.strip()}")
        self.location = urllib.parse.urljoin(self.url, headers.get("Location", ""))
        self.answer = body
        self.step = "apply the answer"
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return t0

    async def connected(self, pc, t0):
        self.step = "ICE and DTLS connect"
        for _ in range(100):
            if pc.connectionState == "connected":
                self.figures["connected_ms"] = round((time.monotonic() - t0) * 1000)
                log(f"{self.role}: connected")
                return
            if pc.connectionState == "failed":
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"connection state is {pc.connectionState}")

    async def hang_up(self):
        if self.location:
            status, _, _ = await asyncio.to_thread(http, "DELETE", self.location)
            self.figures["delete_status"] = status


async def publish(run, seconds, codec):
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver(Pattern(), direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        want = f"video/{codec}".lower()
        caps = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences(
            [c for c in caps if c.mimeType.lower() == want] + [c for c in caps if c.mimeType.lower() != want]
        )
        t0 = await run.negotiate(pc)
        await run.connected(pc, t0)
        run.step = "publish"
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        stats = await pc.getStats()
        run.figures["packets_sent"] = {
            s.kind: s.packetsSent for s in stats.values() if s.type == "outbound-rtp"
        }
        if not run.figures["packets_sent"].get("video"):
            raise RuntimeError(f"sent {run.figures['packets_sent']}")
        run.step = "DELETE"
        await run.hang_up()
    finally:
        await pc.close()


async def view(run, seconds, kinds):
    pc = RTCPeerConnection()
    counts = {"video": 0, "audio": 0}
    first = {}
    sizes = set()
    tasks = []

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            counts[track.kind] += 1
            first.setdefault(track.kind, time.monotonic())
            if track.kind == "video":
                sizes.add((frame.width, frame.height))

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(consume(track)))

    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        t0 = await run.negotiate(pc)
        await run.connected(pc, t0)
        run.step = "receive"
        await asyncio.sleep(seconds)
        run.figures.update(
            video_frames=counts["video"],
            audio_frames=counts["audio"],
            sizes=sorted(f"{w}x{h}" for w, h in sizes),
            first_frame_ms=round((first["video"] - t0) * 1000) if "video" in first else None,
        )
        run.figures["codec"] = answered_codec(run.answer, "video")
        run.step = "receive: decoded video frames and audio"
        if any(counts[k] < 10 for k in kinds):
            raise RuntimeError(f"{counts['video']} video and {counts['audio']} audio frames in {seconds} s")
        run.step = "DELETE"
        await run.hang_up()
    finally:
        for t in tasks:
            t.cancel()
        await pc.close()


async def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("publish", "view"):
        sys.exit(__doc__)
    role, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    run = Run(role, url)
    result = {"client": "aiortc", "version": aiortc.__version__, "role": role}
    try:
        if role == "publish":
            await asyncio.wait_for(publish(run, seconds, sys.argv[4] if len(sys.argv) > 4 else "VP8"), seconds + 20)
        else:
            kinds = (sys.argv[4] if len(sys.argv) > 4 else "video,audio").split(",")
            await asyncio.wait_for(view(run, seconds, kinds), seconds + 20)
        result.update(ok=True, step=run.step, error=None)
    except Exception as e:  # noqa: BLE001 - every failure is reported, named by step
        result.update(ok=False, step=run.step, error=f"{type(e).__name__}: {e}")
        log(f"FAILED at {run.step}: {e}")
    result["figures"] = run.figures
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
