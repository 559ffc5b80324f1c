// Simulcast in headless Chromium: a publisher that sends three layers with
// sendEncodings, and viewers that record what they decode, for tests/simulcast.rs.
//
//   node conformance/browser/simulcast.mjs '<plan as JSON>'
//
// The plan: { "base", "stream", "stop_file", "max_seconds",
//   "publish": { "width", "height", "video_file", "layers": [{ "rid", "scale", "max_kbps" }] }
//     | absent,
//   "viewers": [{ "name", "layer_posts": [{ "at_ms", "body" }], "events": ["layers", …] }] }
// Every role runs in one browser, until the file `stop_file` exists (at most
// max_seconds). The publisher sends H.264 (OpenH264) three times, each layer its
// rid, scaled down by `scale`. Each viewer is a bare RTCPeerConnection that offers
// audio and video, applies the answer and samples getStats() every 100 ms:
// { t (Unix ms), frames (framesDecoded), keyframes (keyFramesDecoded), width,
// height, freezes (freezeCount), freeze_ms (totalFreezesDuration), bytes,
// state }. With "layer_posts", it POSTs each body to the layer URL the server's 201
// linked (urn:ietf:params:whep:ext:core:layer) at at_ms after its first frame, and
// records the status and body; with "events", it subscribes to the server-sent
// events URL linked in the 201 and records every event.
// Progress goes to stderr; the last line on stdout is one JSON object:
// { version, publisher: { samples: [{ t, layers: { rid: { width, kbps, frames } } }] },
//   viewers: { name: { samples, posts, events, links } }, error }.

import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { ARGS, launch, version as chromiumVersion } from './chromium.mjs';

const plan = JSON.parse(process.argv[2] || '{}');
const log = (...a) => console.error('[simulcast]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A page of its own origin on 127.0.0.1 (a secure context, for getUserMedia). */
function site() {
  return new Promise((resolve) => {
    const server = createServer((_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>simulcast</title>');
    });
    server.listen(0, '127.0.0.1', () =>
      resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() }));
  });
}

/** Publishes the camera (at width×height) and the microphone with `layers`. */
async function publish(page, endpoint, p) {
  return page.evaluate(async ({ endpoint, p }) => {
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: p.width, height: p.height, frameRate: 30 },
      audio: true,
    });
    const pc = new RTCPeerConnection();
    const [video] = media.getVideoTracks();
    const t = pc.addTransceiver(video, {
      direction: 'sendonly',
      sendEncodings: p.layers.map((l) => ({
        rid: l.rid,
        scaleResolutionDownBy: l.scale,
        ...(l.max_kbps ? { maxBitrate: l.max_kbps * 1000 } : {}),
      })),
    });
    // Frame rate, not resolution, gives way when the machine is busy: the layers'
    // sizes are what the viewers are judged by.
    const params = t.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    await t.sender.setParameters(params).catch(() => {});
    const h264 = RTCRtpSender.getCapabilities('video').codecs.filter(
      (c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    if (h264.length) t.setCodecPreferences(h264);
    pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 1500);
    });
    const resp = await fetch(endpoint, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) throw new Error(`WHIP POST → ${resp.status}: ${(await resp.text()).trim()}`);
    const answer = await resp.text();
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    window.pub = { pc, last: {} };
    return { simulcast: /a=simulcast:recv/.test(answer) };
  }, { endpoint, p });
}

/** The publisher's layers now: rid → { width, kbps since the last read, frames }. */
function readPublisher(page) {
  return page.evaluate(async () => {
    const layers = {};
    const now = performance.now();
    for (const r of (await window.pub.pc.getStats()).values()) {
      if (r.type !== 'outbound-rtp' || r.kind !== 'video') continue;
      const rid = r.rid || '-';
      const last = window.pub.last[rid];
      const kbps = last ? ((r.bytesSent - last.bytes) * 8) / (now - last.at) : 0;
      window.pub.last[rid] = { bytes: r.bytesSent, at: now };
      layers[rid] = {
        width: r.frameWidth || 0, kbps: Math.round(kbps), frames: r.framesEncoded || 0,
        limitation: r.qualityLimitationReason, encoder: r.encoderImplementation,
      };
    }
    return { t: Date.now(), layers };
  });
}

/** Connects a bare viewer; keeps `window.view` = { pc, links, posts, events }. */
async function view(page, endpoint, v) {
  return page.evaluate(async ({ endpoint, v }) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 1500);
    });
    const resp = await fetch(endpoint, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) throw new Error(`WHEP POST → ${resp.status}: ${(await resp.text()).trim()}`);
    const links = {};
    for (const part of (resp.headers.get('link') || '').split(/,(?=\s*<)/)) {
      const m = part.match(/<([^>]*)>\s*;\s*rel="?([^";]+)"?/);
      if (m) links[m[2]] = new URL(m[1], endpoint).href;
    }
    const location = new URL(resp.headers.get('location'), endpoint).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    window.view = { pc, links, location, posts: [], events: [] };
    const sse = links['urn:ietf:params:whep:ext:core:server-sent-events'];
    if (v.events && sse) {
      const r = await fetch(sse, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(v.events),
      });
      if (r.status !== 201) throw new Error(`SSE POST → ${r.status}: ${(await r.text()).trim()}`);
      const source = new EventSource(new URL(r.headers.get('location'), sse).href);
      for (const type of ['active', 'inactive', 'layers', 'viewercount', 'reconnect']) {
        source.addEventListener(type, (e) => window.view.events.push({ t: Date.now(), type, data: e.data }));
      }
      window.view.source = source;
    }
    return links;
  }, { endpoint, v });
}

/** One sample of a viewer's video. */
function readViewer(page) {
  return page.evaluate(async () => {
    const out = { t: Date.now(), frames: 0, keyframes: 0, width: 0, height: 0, freezes: 0, freeze_ms: 0, bytes: 0 };
    for (const r of (await window.view.pc.getStats()).values()) {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video') continue;
      out.frames = r.framesDecoded || 0;
      out.keyframes = r.keyFramesDecoded || 0;
      out.width = r.frameWidth || 0;
      out.height = r.frameHeight || 0;
      out.freezes = r.freezeCount || 0;
      out.freeze_ms = Math.round((r.totalFreezesDuration || 0) * 1000);
      out.bytes = r.bytesReceived || 0;
    }
    out.state = window.view.pc.connectionState;
    return out;
  });
}

/** POSTs `body` to the viewer's layer URL; records the answer. */
function postLayer(page, body) {
  return page.evaluate(async (body) => {
    const url = window.view.links['urn:ietf:params:whep:ext:core:layer'];
    if (!url) throw new Error('the 201 linked no layer URL');
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const rec = { t: Date.now(), body, status: r.status, text: (await r.text()).trim() };
    window.view.posts.push(rec);
    return rec;
  }, body);
}

async function main() {
  const result = { version: chromiumVersion(), publisher: { samples: [] }, viewers: {} };
  // A camera file with detail in every frame (the fake camera's own picture is so
  // plain that the encoder's layers stay far under their targets).
  const file = plan.publish && plan.publish.video_file;
  const browser = await launch(chromium, file ? { args: [...ARGS, `--use-file-for-fake-video-capture=${file}`] } : {});
  const home = await site();
  const base = plan.base;
  const stream = encodeURIComponent(plan.stream);
  try {
    let pub = null;
    if (plan.publish) {
      pub = await browser.newPage();
      await pub.goto(home.url);
      const r = await publish(pub, `${base}/whip/${stream}`, plan.publish);
      log('publishing', JSON.stringify(r));
      result.publisher.simulcast = r.simulcast;
    }
    const viewers = [];
    for (const v of plan.viewers || []) {
      const page = await browser.newPage();
      await page.goto(home.url);
      let links = null;
      for (let i = 0; ; i++) {
        try {
          links = await view(page, `${base}/whep/${stream}`, v);
          break;
        } catch (e) {
          // 409 until the publisher's stream is live.
          if (i > 100) throw e;
          await sleep(200);
        }
      }
      log(`viewer ${v.name} connected`);
      const rec = { samples: [], posts: [], events: [], links, first: null };
      result.viewers[v.name] = rec;
      viewers.push({ v, page, rec, posts: [...(v.layer_posts || [])] });
    }
    const end = Date.now() + (plan.max_seconds || 60) * 1000;
    let tick = 0;
    while (Date.now() < end && !(plan.stop_file && existsSync(plan.stop_file))) {
      for (const x of viewers) {
        const s = await readViewer(x.page);
        x.rec.samples.push(s);
        if (x.rec.first === null && s.frames > 0) {
          x.rec.first = s.t;
          log(`viewer ${x.v.name}: first frame ${s.width}x${s.height}`);
        }
        while (x.rec.first !== null && x.posts.length && s.t - x.rec.first >= x.posts[0].at_ms) {
          const p = x.posts.shift();
          const r = await postLayer(x.page, p.body);
          log(`viewer ${x.v.name}: POST layer ${JSON.stringify(p.body)} → ${r.status} ${r.text}`);
        }
      }
      if (pub && tick % 10 === 0) {
        const s = await readPublisher(pub);
        result.publisher.samples.push(s);
        if (tick % 50 === 0) log('publisher', JSON.stringify(s.layers));
      }
      tick++;
      await sleep(100);
    }
    for (const x of viewers) {
      const extra = await x.page.evaluate(() => ({ posts: window.view.posts, events: window.view.events }));
      x.rec.posts = extra.posts;
      x.rec.events = extra.events;
    }
  } catch (e) {
    result.error = String(e && e.stack || e);
    log('error', result.error);
  } finally {
    home.close();
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

main();
