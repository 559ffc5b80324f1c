// A WHIP publisher that behaves like OBS Studio's WHIP output, on the same WebRTC
// stack (libdatachannel, through node-datachannel):
//
//   - one Opus track (mid 0) and one H.264 track (mid 1), both sendonly, each with an
//     SSRC, an RTCP sender reporter and a NACK responder;
//   - no trickle: the offer is POSTed once ICE gathering is complete;
//   - the stream key goes as `Authorization: Bearer KEY`;
//   - DELETE on the session URL when it stops.
//
// Media is real: Debian's ffmpeg encodes a test pattern with libx264 (Annex-B
// elementary stream on stdout, an access unit delimiter before each frame) and a tone
// with libopus (Ogg on fd 3). Frames go through libdatachannel's H264RtpPacketizer;
// Opus packets through its plain RtpPacketizer, as OBS does. PLIs from the server are
// counted but not acted on (this encoder cannot be asked for a keyframe).
//
// Usage: node whip-publish.mjs --url URL [--token KEY] [--seconds N] [--gop FRAMES]
// Output: one JSON object per line on stdout ({"event": ...}); errors on stderr.

import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import nodeDataChannel from 'node-datachannel';

const {
  PeerConnection,
  Audio,
  Video,
  RtpPacketizationConfig,
  RtpPacketizer,
  H264RtpPacketizer,
  RtcpSrReporter,
  RtcpNackResponder,
} = nodeDataChannel;

function args() {
  const a = { url: '', token: '', seconds: 6, gop: 30, ffmpeg: 'ffmpeg', size: '320x180' };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) {
    const key = v[i].replace(/^--/, '');
    if (!(key in a)) throw new Error(`unknown option ${v[i]}`);
    a[key] = typeof a[key] === 'number' ? Number(v[i + 1]) : v[i + 1];
  }
  if (!a.url) throw new Error('--url is required');
  return a;
}

const opt = args();
const t0 = performance.now();
const ms = () => Math.round((performance.now() - t0) * 10) / 10;
const emit = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, at_ms: ms(), ...fields }) + '\n');

// ---- the peer connection, set up as OBS's WHIP output does ----
const pc = new PeerConnection('whip-publisher', { iceServers: [], bindAddress: '127.0.0.1' });
const cname = 'obs-like';
const audioSsrc = 0x1000 + Math.floor(Math.random() * 0xffff);
const videoSsrc = audioSsrc + 1;

const audio = new Audio('0', 'SendOnly');
audio.addOpusCodec(111);
audio.addSSRC(audioSsrc, cname, 'obs', 'audio');
const audioTrack = pc.addTrack(audio);
const audioRtp = new RtpPacketizationConfig(audioSsrc, cname, 111, 48000);
const audioPacketizer = new RtpPacketizer(audioRtp);
audioPacketizer.addToChain(new RtcpSrReporter(audioRtp));
audioPacketizer.addToChain(new RtcpNackResponder());
audioTrack.setMediaHandler(audioPacketizer);

const video = new Video('1', 'SendOnly');
video.addH264Codec(96);
video.addSSRC(videoSsrc, cname, 'obs', 'video');
const videoTrack = pc.addTrack(video);
const videoRtp = new RtpPacketizationConfig(videoSsrc, cname, 96, 90000);
const videoPacketizer = new H264RtpPacketizer('StartSequence', videoRtp, 1200);
videoPacketizer.addToChain(new RtcpSrReporter(videoRtp));
videoPacketizer.addToChain(new RtcpNackResponder());
videoTrack.setMediaHandler(videoPacketizer);

let plis = 0;
videoTrack.onMessage((msg) => {
  // RTCP the handlers pass up: count PLIs (PT 206, FMT 1), possibly compound.
  for (let i = 0; i + 4 <= msg.length; ) {
    const fmt = msg[i] & 0x1f;
    const pt = msg[i + 1];
    if (pt === 206 && fmt === 1) plis += 1;
    i += (msg.readUInt16BE(i + 2) + 1) * 4;
  }
});

let postSent = 0;
let answered = 0;
let iceConnected = 0;
let connected = 0;
let resource = '';
let stopping = false;

pc.onIceStateChange((s) => {
  if ((s === 'connected' || s === 'completed') && !iceConnected) iceConnected = performance.now();
});
pc.onStateChange((s) => {
  if (s === 'connected' && !connected) {
    connected = performance.now();
    emit('connected', {
      handshake_ms: round(connected - postSent),
      answer_ms: round(answered - postSent),
      ice_ms: round(iceConnected - answered),
      dtls_ms: round(connected - iceConnected),
    });
  }
  if ((s === 'failed' || s === 'closed') && !stopping) {
    emit('state', { state: s });
  }
});

function round(x) {
  return Math.round(x * 10) / 10;
}

// One HTTP request with node's own client (as OBS uses libcurl: no lazy-loaded fetch
// machinery inflating the first request's time).
function request(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request(u, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

const authHeaders = () => (opt.token ? { Authorization: `Bearer ${opt.token}` } : {});

async function publish() {
  const gathered = new Promise((resolve) => {
    pc.onGatheringStateChange((s) => s === 'complete' && resolve());
  });
  pc.setLocalDescription();
  if (pc.gatheringState() !== 'complete') await gathered;
  const offer = pc.localDescription().sdp;
  emit('offer', { sdp: offer });
  postSent = performance.now();
  const res = await request('POST', opt.url, { 'Content-Type': 'application/sdp', ...authHeaders() }, offer);
  const body = res.body;
  answered = performance.now();
  if (res.status !== 201) {
    emit('refused', { status: res.status, body });
    return false;
  }
  resource = new URL(res.headers.location, opt.url).toString();
  emit('answer', { status: res.status, location: resource, sdp: body });
  pc.setRemoteDescription(body, 'answer');
  return true;
}

// ---- media from ffmpeg ----
function startEncoder() {
  const s = String(opt.seconds);
  const g = String(opt.gop);
  // prettier-ignore
  const ff = spawn(opt.ffmpeg, [
    '-nostdin', '-loglevel', 'error', '-re',
    '-t', s, '-f', 'lavfi', '-i', `testsrc2=size=${opt.size}:rate=30`,
    '-t', s, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-map', '0:v', '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'ultrafast',
    '-tune', 'zerolatency', '-g', g, '-keyint_min', g, '-sc_threshold', '0', '-bf', '0',
    '-pix_fmt', 'yuv420p', '-b:v', '500k', '-bsf:v', 'h264_metadata=aud=insert', '-f', 'h264', 'pipe:1',
    '-map', '1:a', '-c:a', 'libopus', '-b:a', '64k', '-ar', '48000', '-ac', '2',
    '-frame_duration', '20', '-page_duration', '20000', '-f', 'ogg', 'pipe:3',
  ], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
  return ff;
}

const stats = { videoFrames: 0, keyframes: 0, audioPackets: 0, firstKeyframeMs: null };
const videoBase = Math.floor(Math.random() * 2 ** 31);
const audioBase = Math.floor(Math.random() * 2 ** 31);
let frameIndex = 0;
let audioIndex = 0;

function sendFrame(au) {
  // Frames encoded before the connection came up are dropped, as a live encoder's are.
  frameIndex += 1;
  if (!videoTrack.isOpen()) return;
  videoRtp.timestamp = (videoBase + frameIndex * 3000) >>> 0;
  const key = nalTypes(au).includes(5);
  if (key) {
    stats.keyframes += 1;
    emit('keyframe', { frame: frameIndex, plis });
    if (stats.firstKeyframeMs === null) stats.firstKeyframeMs = round(performance.now() - postSent);
  }
  stats.videoFrames += 1;
  videoTrack.sendMessageBinary(au);
}

function nalTypes(au) {
  const out = [];
  for (let i = 0; i + 3 < au.length; i++) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1) out.push(au[i + 3] & 0x1f);
  }
  return out;
}

// Splits the Annex-B stream into access units at each AUD (00 00 00 01 09).
function accessUnits(onUnit) {
  let buf = Buffer.alloc(0);
  const isAud = (b, i) => b[i] === 0 && b[i + 1] === 0 && b[i + 2] === 0 && b[i + 3] === 1 && (b[i + 4] & 0x1f) === 9;
  return {
    push(chunk) {
      buf = Buffer.concat([buf, chunk]);
      let start = -1;
      let cut = 0;
      for (let i = 0; i + 4 < buf.length; i++) {
        if (!isAud(buf, i)) continue;
        if (start >= 0) {
          onUnit(buf.subarray(start, i));
          cut = i;
        }
        start = i;
      }
      if (cut > 0) buf = buf.subarray(cut);
    },
    end() {
      if (buf.length > 0) onUnit(buf);
    },
  };
}

// Reassembles Ogg pages into packets (RFC 3533); the first two are OpusHead/OpusTags.
function oggPackets(onPacket) {
  let buf = Buffer.alloc(0);
  let partial = [];
  let count = 0;
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 27) return;
      if (buf.toString('latin1', 0, 4) !== 'OggS') throw new Error('not an Ogg stream');
      const segments = buf[26];
      if (buf.length < 27 + segments) return;
      const table = buf.subarray(27, 27 + segments);
      const size = table.reduce((a, b) => a + b, 0);
      if (buf.length < 27 + segments + size) return;
      let off = 27 + segments;
      for (const lace of table) {
        partial.push(buf.subarray(off, off + lace));
        off += lace;
        if (lace < 255) {
          const packet = Buffer.concat(partial);
          partial = [];
          count += 1;
          if (count > 2) onPacket(packet);
        }
      }
      buf = buf.subarray(off);
    }
  };
}

function sendAudio(packet) {
  audioIndex += 1;
  if (!audioTrack.isOpen()) return;
  audioRtp.timestamp = (audioBase + audioIndex * 960) >>> 0;
  stats.audioPackets += 1;
  audioTrack.sendMessageBinary(packet);
}

async function stop(reason) {
  if (stopping) return;
  stopping = true;
  let status = null;
  if (resource) {
    try {
      status = (await request('DELETE', resource, authHeaders())).status;
    } catch (e) {
      status = String(e);
    }
  }
  emit('stopped', { reason, delete_status: status, plis, ...stats });
  pc.close();
  nodeDataChannel.cleanup();
  process.exit(0);
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

try {
  if (!(await publish())) {
    pc.close();
    nodeDataChannel.cleanup();
    process.exit(2);
  }
  const ff = startEncoder();
  const units = accessUnits(sendFrame);
  ff.stdout.on('data', (c) => units.push(c));
  ff.stdio[3].on('data', oggPackets(sendAudio));
  ff.on('exit', () => {
    units.end();
    setTimeout(() => stop('encoder finished'), 100);
  });
} catch (e) {
  process.stderr.write(`whip-publish: ${e.stack || e}\n`);
  pc.close();
  nodeDataChannel.cleanup();
  process.exit(1);
}
