// Headless Chromium (Debian's, through playwright-core) as a WHEP viewer of servers
// whose endpoint URLs are given whole, such as janus-whep-server's /whep/endpoint/ID
// (conformance/browser/pages.mjs builds `${base}/whep/${stream}` URLs, which that
// server does not serve).
//
// Usage: node conformance/janus/whep-view.mjs PLAN_JSON, where the plan is
//   { "probe": [URL, ...], "play": URL, "token": "..." }   (every key optional)
//
// Offers are made by bare RTCPeerConnections with recvonly transceivers, candidates
// gathered first (no trickle), and POSTed from node rather than from the page, so that
// every response header can be read (CORS hides ETag from a page).
//   probe: for each URL, two offers, "video" (one video transceiver) and "audio+video"
//     (as a viewer that does not know what the stream has). What comes back is
//     recorded, not judged: the status, Location, ETag, and what the SDP holds
//     (m-lines, a=setup, ice-lite, candidates, codecs). A 201's SDP is applied as the
//     answer, and Chromium's verdict recorded; a 406's SDP (a server-sent offer, the
//     pre-standard WHEP flow) is recorded only. Each session is then DELETEd.
//   play: a "video" offer to URL; the answer applied (201), or, if the server sends
//     its own offer instead (406), a new peer connection answers it and PATCHes the
//     answer (application/sdp) to the Location. Chromium must decode frames: the time
//     from the POST to the first decoded frame, frames decoded in the next 2 s. Then
//     DELETE.
// Progress on stderr; the last stdout line is one JSON object:
//   { client, role, version, ok, step, error, figures: { probes: { URL: { video,
//     audio_video } }, play } }

import { chromium } from 'playwright-core';
import { launch, version as chromiumVersion } from '../browser/chromium.mjs';

const plan = JSON.parse(process.argv[2] || '{}');
const token = plan.token || null;
const log = (...a) => console.error('[janus-view]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const figures = { probes: {} };
let step = 'start';

/** What an SDP holds, for the report. */
function inspect(sdp) {
  const lines = sdp.split(/\r?\n/).filter(Boolean);
  const media = [];
  const session = [];
  for (const l of lines) {
    if (l.startsWith('m=')) {
      const [kind, port] = l.slice(2).split(' ');
      media.push({ kind, port: Number(port), attrs: [] });
    } else if (l.startsWith('a=')) {
      (media.length ? media[media.length - 1].attrs : session).push(l.slice(2));
    }
  }
  const all = [...session, ...media.flatMap((m) => m.attrs)];
  return {
    m_lines: media.length,
    media: media.map((m) => ({
      kind: m.kind,
      port: m.port,
      mid: (m.attrs.find((a) => a.startsWith('mid:')) || '').slice(4),
      direction: m.attrs.find((a) => /^(sendrecv|sendonly|recvonly|inactive)$/.test(a)) || null,
      codecs: m.attrs.filter((a) => a.startsWith('rtpmap:')).map((a) => a.split(' ')[1]),
    })),
    bundle: (session.find((a) => a.startsWith('group:BUNDLE')) || '').slice(6) || null,
    setup: [...new Set(all.filter((a) => a.startsWith('setup:')).map((a) => a.slice(6)))],
    ice_lite: session.includes('ice-lite'),
    candidates: all.filter((a) => a.startsWith('candidate:')).map((c) => c.split(' ').slice(4, 8).join(' ')),
    end_of_candidates: all.includes('end-of-candidates'),
  };
}

/** A new peer connection on the page (its index in window.pcs). */
async function newPc(page) {
  return page.evaluate(() => {
    window.pcs = window.pcs || [];
    window.pcs.push(new RTCPeerConnection());
    return window.pcs.length - 1;
  });
}

/** Gives the page `window.gathered(pc)`: waits (at most 1.5 s) for `pc` to gather. */
async function prepare(page) {
  await page.evaluate(() => {
    window.gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 1500);
    });
  });
}

/** Offers `kinds` as recvonly from a new peer connection: its index and its offer. */
async function offer(page, kinds) {
  const i = await newPc(page);
  const sdp = await page.evaluate(async ({ i, kinds }) => {
    const pc = window.pcs[i];
    for (const kind of kinds) pc.addTransceiver(kind, { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await window.gathered(pc);
    return pc.localDescription.sdp;
  }, { i, kinds });
  return { i, sdp };
}

function headers(type) {
  const h = type ? { 'Content-Type': type } : {};
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** POSTs `sdp` to `url`: status, headers, body, and how long it took. */
async function post(url, sdp) {
  const t0 = performance.now();
  const resp = await fetch(url, { method: 'POST', headers: headers('application/sdp'), body: sdp });
  const body = await resp.text();
  const location = resp.headers.get('location');
  return {
    at: t0,
    status: resp.status,
    ms: Math.round(performance.now() - t0),
    content_type: resp.headers.get('content-type'),
    location,
    resource: location ? new URL(location, url).href : null,
    etag: resp.headers.get('etag'),
    body,
  };
}

async function del(resource) {
  if (!resource) return null;
  return (await fetch(resource, { method: 'DELETE', headers: headers() })).status;
}

/** Sets `sdp` as the remote description (`type`) of peer connection `i`: null, or
 *  Chromium's error. */
async function setRemote(page, i, type, sdp) {
  return page.evaluate(async ({ i, type, sdp }) => {
    try {
      await window.pcs[i].setRemoteDescription({ type, sdp });
      return null;
    } catch (e) {
      return String(e && e.message ? e.message : e);
    }
  }, { i, type, sdp });
}

/** Frames decoded and packets received by peer connection `i`. */
async function read(page, i) {
  return page.evaluate(async (i) => {
    const pc = window.pcs[i];
    const out = { frames: 0, packets: 0, width: 0, height: 0, codec: null, state: pc.connectionState };
    const stats = await pc.getStats();
    for (const r of stats.values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        out.frames = r.framesDecoded || 0;
        out.packets = r.packetsReceived || 0;
        out.width = r.frameWidth || 0;
        out.height = r.frameHeight || 0;
        const c = r.codecId && stats.get(r.codecId);
        out.codec = c ? c.mimeType : null;
      }
    }
    return out;
  }, i);
}

const close = (page, i) => page.evaluate((i) => window.pcs[i].close(), i);

function describe(r) {
  return {
    status: r.status, location: r.location, etag: r.etag, content_type: r.content_type,
    sdp: r.body.includes('v=0') ? inspect(r.body) : null,
    text: r.body.includes('v=0') ? null : r.body.trim().slice(0, 300),
  };
}

async function probe(page, url, kinds) {
  step = `probe ${url}: ${kinds.join('+')} offer, POST`;
  const o = await offer(page, kinds);
  const r = await post(url, o.sdp);
  log(`${kinds.join('+')} offer (${(o.sdp.match(/^m=/gm) || []).length} m-lines) → ${url}: ${r.status} in ${r.ms} ms, Location ${r.location}, ETag ${r.etag}`);
  log(`its SDP:\n${r.body.trim()}`);
  const out = { offer_m_lines: (o.sdp.match(/^m=/gm) || []).length, ...describe(r) };
  if (r.status === 201) {
    step = `probe ${url}: ${kinds.join('+')}: apply the answer`;
    out.apply_error = await setRemote(page, o.i, 'answer', r.body);
    log(`Chromium applying it as the answer: ${out.apply_error || 'accepted'}`);
  }
  await close(page, o.i);
  out.delete_status = await del(r.resource);
  return out;
}

async function play(page, url) {
  step = 'play: video offer, POST';
  const o = await offer(page, ['video']);
  const r = await post(url, o.sdp);
  log(`play: video offer → ${r.status} in ${r.ms} ms, Location ${r.location}, ETag ${r.etag}`);
  const out = { ...describe(r) };
  let pc = o.i;
  if (r.status === 201) {
    step = 'play: apply the answer';
    const err = await setRemote(page, o.i, 'answer', r.body);
    if (err) throw new Error(`setRemoteDescription(answer): ${err}`);
    out.flow = 'viewer offer, server answer (201)';
  } else if (r.status === 406) {
    // The server sent its own offer: answer it from a new peer connection.
    step = 'play: answer the server\'s offer';
    await close(page, o.i);
    pc = await newPc(page);
    const err = await setRemote(page, pc, 'offer', r.body);
    if (err) throw new Error(`setRemoteDescription(offer): ${err}`);
    const answer = await page.evaluate(async (i) => {
      const pc = window.pcs[i];
      await pc.setLocalDescription(await pc.createAnswer());
      await window.gathered(pc);
      return pc.localDescription.sdp;
    }, pc);
    step = 'play: PATCH the answer';
    const p = await fetch(r.resource, { method: 'PATCH', headers: headers('application/sdp'), body: answer });
    out.patch_status = p.status;
    out.patch_etag = p.headers.get('etag');
    if (p.status < 200 || p.status > 299) throw new Error(`PATCH answer → ${p.status}: ${(await p.text()).trim()}`);
    out.flow = 'server offer (406), viewer answer by PATCH';
    out.answer = inspect(answer);
  } else {
    throw new Error(`POST → ${r.status}: ${r.body.trim().slice(0, 200)}`);
  }
  log(`play: ${out.flow}`);

  step = 'play: first decoded frame';
  let first = null;
  const deadline = Date.now() + 20000;
  for (;;) {
    const s = await read(page, pc);
    if (s.frames > 0) {
      first = { ...s, ms: Math.round(performance.now() - r.at) };
      break;
    }
    if (Date.now() > deadline) throw new Error(`nothing decoded in 20 s: ${JSON.stringify(s)}`);
    await sleep(25);
  }
  log(`play: first frame ${first.ms} ms after the POST (${first.codec} ${first.width}x${first.height})`);
  await sleep(2000);
  step = 'play: frames keep coming';
  const after = await read(page, pc);
  Object.assign(out, {
    first_frame_ms: first.ms, frames_in_2s: after.frames - first.frames, codec: after.codec,
    size: `${after.width}x${after.height}`, connection: after.state,
  });
  figures.play = out;
  if (!(after.frames > first.frames + 10)) throw new Error(`framesDecoded ${first.frames} → ${after.frames} in 2 s`);
  // DELETE before closing: Janus ends the session by itself once the peer connection
  // closes (DTLS close), and the resource is then gone.
  step = 'play: DELETE';
  out.delete_status = await del(r.resource);
  await close(page, pc);
}

async function main() {
  const browser = await launch(chromium);
  try {
    const page = await browser.newPage();
    await page.goto('about:blank');
    await prepare(page);
    for (const url of plan.probe || []) {
      figures.probes[url] = {
        video: await probe(page, url, ['video']),
        audio_video: await probe(page, url, ['audio', 'video']),
      };
    }
    if (plan.play) await play(page, plan.play);
    step = 'done';
  } finally {
    await browser.close();
  }
}

const version = chromiumVersion();
main().then(
  () => console.log(JSON.stringify({ client: 'chromium', role: 'WHEP viewer', version, ok: true, step, figures })),
  (e) => {
    const error = String(e && e.message ? e.message : e).split('\n')[0];
    log(`FAILED at "${step}": ${error}`);
    console.log(JSON.stringify({ client: 'chromium', role: 'WHEP viewer', version, ok: false, step, error, figures }));
  },
);
