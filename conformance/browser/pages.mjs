// Drives wishd's own web pages in headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) and reports what getStats() saw.
//
//   node conformance/browser/pages.mjs '<plan as JSON>'
//
// The plan: { "out": "conformance/out", "secure_origins": [ "http://10.0.0.1:8080" ],
// "scenarios": [ ... ] } (secure_origins: plain-HTTP origins the camera may be used
// on, for servers inside a test's namespace), each scenario one of
//   { "kind": "publish-watch", "base", "stream", "codec", "resolution", "token",
//     "watch_first": bool, "reconnect": bool, "screenshots": bool, "microphone": "none",
//     "expect_path" }
//       the publish page publishes, the watch page plays (started before the publisher
//       when watch_first: the player must wait through 409s); with reconnect, the
//       publisher stops and starts again and the player must come back by itself.
//       With "microphone": "none", the page publishes its camera alone; with
//       "keep_publishing", it goes on publishing for the scenarios after this one.
//       With "expect_path" (e.g. "relay"), the candidate pairs both pages' ICE chose
//       must say it.
//   { "kind": "watch", "base", "stream", "html", "expect_width", "expect_height", "screenshot",
//     "watch_screenshot", "drop_network_ms", "video": bool, "audio": bool, "expect_path",
//     "expect_remote" }
//       a <wishd-player> embedded, as the README's snippet says (or as "html" says,
//       verbatim), in a page of another origin plays a stream some other client
//       publishes (and, with watch_screenshot, the watch page too, for a screenshot). With
//       "drop_network_ms", the media path is then cut for that long (only inside a
//       test's own network namespace) and the player must recover. "video" and
//       "audio" (default true) say what the stream has: the player must play that
//       and nothing else. "expect_path" (e.g. "relay", "tcp"): the candidate pair ICE
//       chose must say it (its local candidate's type and protocol, "relay udp"); "expect_remote":
//       the address of its remote candidate (wishd's) must be this one.
//   { "kind": "watch-page", "base", "stream", "url", "video": bool, "audio": bool, "screenshot" }
//       wishd's watch page plays a stream some other client publishes (at "url" when
//       given, as a reader would type it).
//   { "kind": "plain-view", "base", "stream", "order": ["audio", "video"], "video": bool,
//     "audio": bool }
//       a bare RTCPeerConnection on a page of another origin offers recvonly
//       transceivers in `order`, applies the server's answer (the step a browser
//       refuses when an answer rejects a bundled m-line) and must decode what the
//       stream has: frames when "video", audio packets when "audio".
//   { "kind": "timeline", "base", "stream", "stop_file", "max_seconds", "index": bool,
//     "publish": bool, "codec" }
//       a bare RTCPeerConnection (audio + video) plays the stream and reads its
//       getStats() every 100 ms until the file `stop_file` exists (at most
//       max_seconds): the figures are the samples { t (Unix ms), frames (decoded),
//       audio (packets), state (connectionState) }, for a test that restarts the
//       stream's publisher meanwhile and judges what the viewer saw. With "index",
//       the index page is open meanwhile and `index_sources` lists each text its
//       Source cell showed for the stream. With "publish", this browser's publish page
//       publishes the stream first (fake camera, 640×360, H.264 or `codec`), and `publisher`
//       holds its outbound figures at the end (packets, retransmitted packets, NACKs
//       and PLIs received); it stops publishing once the stop file is there.
//   { "kind": "refused", "base", "stream", "token", "expect_state", "expect_text",
//     "then_token" }
//       the watch page shows the server's refusal in words (then, with then_token
//       typed in, plays or waits).
//   { "kind": "publish-refused", "base", "stream", "token", "expect_text" }
//       the publish page shows the server's refusal in words and can try again.
//   { "kind": "reasons", "base" }
//       wish.js reads a refusal's reason from problem+json and from text/plain.
//   { "kind": "index-token", "base", "token" }
//       the index of a server where playing needs a token asks for one, then lists.
//   { "kind": "simulcast-player", "base", "stream", "index": bool, "shutdown": bool }
//       a page publishes the fake camera at 1280×720 as three H.264 simulcast layers
//       (q 320×180, h 640×360, f 1280×720; the stream must not exist yet). A watch
//       page whose WHEP answer has its Link headers removed plays without a quality
//       menu or a viewer count. Then the watch page's <wishd-player> follows the
//       server-sent events: its quality menu lists Auto and the three layers,
//       choosing 320×180 brings the decoded picture (videoWidth) down to 320 and
//       Auto back to 1280, an unknown rid shows the server's reason, and the viewer
//       count goes 1 → 2 → 1 as a player embedded in a page of another origin joins
//       (and pins q across origins) and leaves. With "index", the index page lists
//       the three layers. Last, the publisher DELETEs its session and the player
//       waits (the `inactive` event), without a menu; the publisher comes back and
//       the same WHEP session plays again (`active`). With "shutdown", the test then
//       shuts the server down when the step "server: shuts down now" is logged, and
//       the player must say it was asked to reconnect (the `reconnect` event).
//       Figures: how long each took.
//   { "kind": "play-recording", "base", "url", "token" }
//       a page of the server fetches a recorded file from the API (`url`, with the
//       admin `token`) and plays it in a <video> element: it must play on for more
//       than a second and decode frames. Figures: its duration, picture size, frames
//       decoded and dropped, and how long until it played.
// With "index": true, publish-watch also checks that the index page, open before the
// stream starts, lists it by itself with its codec, resolution and viewer count.
// One browser serves every scenario. Progress goes to stderr; the last line on stdout
// is one JSON object: { client, version, results: [ { name, ok, step, error, figures } ] }.

import { existsSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { ARGS, launch, version as chromiumVersion } from './chromium.mjs';

const plan = JSON.parse(process.argv[2] || '{}');
const out = plan.out || 'conformance/out';
mkdirSync(out, { recursive: true });

const log = (...a) => console.error('[pages]', ...a);
/** Pages that outlive their scenario (a publisher later scenarios watch). */
const kept = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn`, naming `step` in the error if it throws. */
async function step(ctx, name, fn) {
  ctx.step = name;
  log(`${ctx.name}: ${name}`);
  return fn();
}

/** Waits until `fn(arg)` evaluated in the page is truthy; its value is returned. */
async function until(page, fn, arg, timeout = 15000) {
  const h = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  return h.jsonValue();
}

const PLAYER = (sel) => `document.querySelector(${JSON.stringify(sel)})`;

/** Reads the player's figures. */
function playerFigures(page, sel) {
  return page.evaluate((sel) => {
    const p = document.querySelector(sel);
    const s = p.lastStats || {};
    return {
      state: p.state, message: p.message, connects: p.metrics.connects,
      firstFrameMs: p.metrics.firstFrameMs, frames: s.frames || 0, width: s.width || 0,
      height: s.height || 0, codec: s.codec || null, audioPackets: s.audioPackets || 0,
      kbps: s.kbps || 0, fps: s.fps || 0, lost: s.lost || 0, jitterMs: s.jitterMs || 0,
      path: s.path || null, remoteAddress: s.remoteAddress || null,
    };
  }, sel);
}

/** The player plays what the stream has: frames decoded keep growing (when `video`),
 *  audio packets keep arriving (when `audio`), and a kind the stream lacks brings
 *  nothing. Two readings 2 s apart; returns the second, with the growth. */
async function assertPlaying(ctx, page, sel, label, { video = true, audio = true } = {}) {
  await step(ctx, `${label}: first ${video ? 'decoded frame' : 'audio packet'}`, () => until(page,
    ([sel, video]) => {
      const p = document.querySelector(sel);
      const s = p && p.lastStats;
      return p.state === 'playing' && s && (video ? s.frames : s.audioPackets) > 0;
    }, [sel, video], 20000));
  const a = await playerFigures(page, sel);
  await sleep(2000);
  const b = await playerFigures(page, sel);
  await step(ctx, `${label}: framesDecoded ${video ? 'grows' : 'stays 0 (no video)'}`, () => {
    if (video && !(b.frames > a.frames + 10)) throw new Error(`framesDecoded ${a.frames} → ${b.frames} in 2 s`);
    if (!video && b.frames !== 0) throw new Error(`framesDecoded ${b.frames} from a stream without video`);
  });
  await step(ctx, `${label}: audio packets ${audio ? 'arrive' : 'stay 0 (no audio)'}`, () => {
    if (audio && !(b.audioPackets > a.audioPackets)) throw new Error(`audio packetsReceived ${a.audioPackets} → ${b.audioPackets} in 2 s`);
    if (!audio && b.audioPackets !== 0) throw new Error(`${b.audioPackets} audio packets from a stream without audio`);
  });
  const kinds = await page.evaluate((sel) => document.querySelector(sel).kinds, sel);
  await step(ctx, `${label}: the player knows the stream's kinds`, () => {
    const want = [video && 'video', audio && 'audio'].filter(Boolean).sort().join();
    if ([...kinds].sort().join() !== want) throw new Error(`player.kinds is ${JSON.stringify(kinds)}`);
  });
  return { ...b, framesIn2s: b.frames - a.frames, audioPacketsIn2s: b.audioPackets - a.audioPackets };
}

async function publishWatch(ctx, browser, sc) {
  const [w, h] = (sc.resolution || '640x360').split('x').map(Number);
  const audio = sc.microphone !== 'none';
  const pub = await browser.newPage();
  const watch = await browser.newPage();
  ctx.pages.push(watch);
  (sc.keep_publishing ? kept : ctx.pages).push(pub);
  let index = null;
  if (sc.index) {
    // Opened before the stream exists: its row must appear without a reload.
    index = await browser.newPage();
    ctx.pages.push(index);
    await step(ctx, 'index: page loads', async () => {
      await index.goto(`${sc.base}/`);
      await until(index, () => !/Loading/.test(document.getElementById('streams').innerText));
    });
  }
  const watchUrl = `${sc.base}/watch.html?stream=${encodeURIComponent(sc.stream)}`;
  const openWatch = () => step(ctx, 'watch: page loads', () => watch.goto(watchUrl));
  if (sc.watch_first) {
    await openWatch();
    await step(ctx, 'watch: says nobody publishes yet (409)', () => until(watch,
      () => { const p = document.getElementById('player'); return p.state === 'waiting' && /Nobody is publishing/.test(p.message); }));
  }
  await step(ctx, 'publish: page loads and opens the fake camera', async () => {
    await pub.goto(`${sc.base}/publish.html?stream=${encodeURIComponent(sc.stream)}&codec=${sc.codec}&resolution=${w}x${h}`);
    await until(pub, () => window.wishdPublish && window.wishdPublish.state === 'idle');
  });
  if (!audio) {
    await step(ctx, 'publish: microphone off, the camera alone', async () => {
      await pub.selectOption('#microphone', 'none');
      await until(pub, () => {
        const m = document.getElementById('preview').srcObject;
        return m && m.getAudioTracks().length === 0 && m.getVideoTracks().length === 1;
      });
    });
  }
  const offered = await pub.evaluate(() => [...document.getElementById('codec').options].map((o) => o.value));
  await step(ctx, `publish: offers ${sc.codec}`, () => {
    if (!offered.includes(sc.codec)) throw new Error(`the codec list has ${offered.join(', ')}`);
  });
  if (sc.token) await pub.fill('#token', sc.token);
  await pub.click('#start');
  await step(ctx, 'publish: goes live', () => until(pub,
    () => { const s = window.wishdPublish; return s.state === 'live' || (s.state === 'error' && s.message); }));
  const pubState = await pub.evaluate(() => ({ state: wishdPublish.state, message: wishdPublish.message }));
  await step(ctx, 'publish: goes live', () => {
    if (pubState.state !== 'live') throw new Error(`the page says: ${pubState.message}`);
  });
  const sent = await step(ctx, 'publish: frames go out', () => until(pub,
    (audio) => { const s = window.wishdPublish.stats; return s && s.frames > 5 && (s.audioPackets > 0) === audio && s; }, audio));
  await step(ctx, `publish: sends ${sc.codec} at ${w}x${h}`, () => {
    if (sent.codec !== sc.codec) throw new Error(`outbound codec is ${sent.codec}`);
    if (sent.width !== w || sent.height !== h) throw new Error(`outbound resolution is ${sent.width}x${sent.height}`);
  });
  if (!sc.watch_first) await openWatch();
  const seen = await assertPlaying(ctx, watch, '#player', 'watch', { audio });
  if (!audio) {
    await step(ctx, 'watch: no Unmute button for a stream without audio', async () => {
      if (await watch.locator('#player button').isVisible()) throw new Error('the Unmute button shows');
    });
  } else await step(ctx, 'watch: autoplays muted, and the Unmute button unmutes', async () => {
    const before = await watch.evaluate(() => {
      const v = document.getElementById('player').video;
      return { muted: v.muted, paused: v.paused };
    });
    if (!before.muted || before.paused) throw new Error(`video muted=${before.muted} paused=${before.paused}`);
    await watch.locator('#player button').click();
    const after = await watch.evaluate(() => document.getElementById('player').video.muted);
    if (after) throw new Error('still muted after Unmute');
  });
  await step(ctx, 'watch: resolution and codec match what was published', () => {
    if (seen.width !== w || seen.height !== h) throw new Error(`decoded ${seen.width}x${seen.height}, published ${w}x${h}`);
    if (seen.codec !== sc.codec) throw new Error(`decoded ${seen.codec}, published ${sc.codec}`);
  });
  if (sc.expect_path) {
    await step(ctx, `publish and watch: media paths are ${sc.expect_path}`, async () => {
      const paths = [
        await pub.evaluate(() => window.wishdPublish.stats.path),
        await watch.evaluate(() => document.getElementById('player').lastStats.path),
      ];
      if (!paths.every((p) => p && p.split(' ').includes(sc.expect_path))) throw new Error(`selected candidate pairs: ${paths.join(', ')}`);
    });
  }
  const figures = {
    codec: seen.codec, width: seen.width, height: seen.height, first_frame_ms: seen.firstFrameMs,
    frames_in_2s: seen.framesIn2s, audio_packets_in_2s: seen.audioPacketsIn2s,
    kbps_in: Math.round(seen.kbps), kbps_out: Math.round(await pub.evaluate(() => window.wishdPublish.stats.kbps)),
    encoder: sent.encoder,
    jitter_buffer_ms: Math.round(seen.jitterMs), packets_lost: seen.lost,
  };
  if (index) {
    const row = await step(ctx, 'index: lists the stream (live, codec, resolution, 1 viewer) by itself', () => until(index,
      (name) => {
        const tr = document.querySelector(`tr[data-stream="${name}"]`);
        const cells = tr ? [...tr.cells].map((c) => c.innerText.trim()) : [];
        return cells.length && /live/.test(cells[1]) && /\d+×\d+/.test(cells[2]) && cells[4] === '1' && cells;
      }, sc.stream, 10000));
    figures.index_row = row;
    await step(ctx, 'index: the row matches', () => {
      if (!row[1].startsWith('WHIP')) throw new Error(`source is "${row[1]}"`);
      if (row[2] !== `${sc.codec} ${w}×${h}`) throw new Error(`video is "${row[2]}"`);
      if (audio !== /opus/i.test(row[3])) throw new Error(`audio is "${row[3]}"`);
    });
    if (sc.screenshots) await index.screenshot({ path: join(out, 'index.png') });
  }
  if (sc.screenshots) {
    await step(ctx, 'screenshots', async () => {
      await sleep(600); // one more stats refresh on both pages
      await pub.evaluate(() => window.scrollTo(0, 0));
      await pub.screenshot({ path: join(out, `publish-${sc.codec.toLowerCase()}.png`), fullPage: true });
      await watch.screenshot({ path: join(out, `watch-${sc.codec.toLowerCase()}.png`) });
    });
  }
  if (sc.reconnect) {
    await step(ctx, 'publish: stop', () => pub.click('#stop'));
    // The `inactive` event makes the player wait at once, in its session; once the
    // grace period is over the server ends that session and the player's next
    // WHEP POST gets 409. Wait for that, so the publisher's return is met by a new
    // session (the same session going on is the simulcast-player scenario's case).
    await step(ctx, 'watch: notices the end and waits (409 after the grace period)', () => until(watch,
      () => { const p = document.getElementById('player'); return p.state === 'waiting' && /Nobody is publishing/.test(p.message); }, null, 20000));
    const t0 = Date.now();
    await pub.click('#start');
    await step(ctx, 'publish: live again', () => until(pub, () => window.wishdPublish.state === 'live'));
    await step(ctx, 'watch: reconnects by itself', () => until(watch,
      () => { const p = document.getElementById('player'); return p.metrics.connects >= 2 && p.state === 'playing'; }, null, 20000));
    figures.reconnect_ms = Date.now() - t0;
    const again = await assertPlaying(ctx, watch, '#player', 'watch after reconnect', { audio });
    figures.reconnect_first_frame_ms = again.firstFrameMs;
  }
  return figures;
}

async function embedded(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  // Another site: a page on another origin (a port of this script's own HTTP server
  // on loopback) with the README's snippet, loading player.js from wishd across
  // origins (CORS).
  const src = `${sc.base}/whep/${encodeURIComponent(sc.stream)}`;
  const site = await embedSite(`<!doctype html><title>embed</title>
${sc.html || `<script type="module" src="${sc.base}/player.js"></script>
<wishd-player src="${src}" stats style="width: 640px"></wishd-player>`}`);
  ctx.cleanup.push(() => site.close());
  await step(ctx, 'embed: page of another origin loads player.js', async () => {
    await page.goto(site.url);
    await until(page, () => customElements.get('wishd-player') !== undefined);
  });
  const kinds = { video: sc.video ?? true, audio: sc.audio ?? true };
  const seen = await assertPlaying(ctx, page, 'wishd-player', 'embedded player', kinds);
  if (!kinds.video) {
    await step(ctx, 'embedded player: shows "Audio only"', async () => {
      const card = page.locator('wishd-player').locator('.card');
      if (!(await card.isVisible())) throw new Error('no "Audio only" card');
    });
  }
  await step(ctx, 'embedded player: resolution', () => {
    if (sc.expect_width && (seen.width !== sc.expect_width || seen.height !== sc.expect_height)) {
      throw new Error(`decoded ${seen.width}x${seen.height}, expected ${sc.expect_width}x${sc.expect_height}`);
    }
  });
  const { path, remoteAddress } = await playerFigures(page, 'wishd-player');
  if (sc.expect_path) {
    await step(ctx, `embedded player: media path is ${sc.expect_path}`, () => {
      if (!path || !path.split(' ').includes(sc.expect_path)) throw new Error(`selected candidate pair: ${path}`);
    });
  }
  if (sc.expect_remote) {
    await step(ctx, `embedded player: media comes from ${sc.expect_remote}`, () => {
      if (remoteAddress !== sc.expect_remote) throw new Error(`selected remote candidate: ${remoteAddress}`);
    });
  }
  if (sc.screenshot) await page.screenshot({ path: join(out, `${sc.screenshot}.png`) });
  let dropped = {};
  if (sc.drop_network_ms) dropped = await dropNetwork(ctx, page, 'wishd-player', sc.drop_network_ms);
  if (sc.watch_screenshot) {
    // The same stream on wishd's own watch page, for the README.
    const watch = await browser.newPage();
    ctx.pages.push(watch);
    await step(ctx, 'watch page: plays', async () => {
      await watch.goto(`${sc.base}/watch.html?stream=${encodeURIComponent(sc.stream)}`);
      await until(watch, () => { const p = document.getElementById('player'); return p.lastStats && p.lastStats.kbps > 0; });
      await watch.screenshot({ path: join(out, `${sc.watch_screenshot}.png`) });
    });
  }
  return {
    codec: seen.codec, width: seen.width, height: seen.height, first_frame_ms: seen.firstFrameMs,
    frames_in_2s: seen.framesIn2s, audio_packets_in_2s: seen.audioPacketsIn2s, path, remote: remoteAddress,
    ...dropped,
  };
}

/** Cuts the media path for `ms`: packets to 127.0.0.2, where wishd's media socket
 *  is, are blackholed by a routing rule (HTTP on 127.0.0.1 still works), then the
 *  rule is removed, and the player must play again by itself. Only ever run inside
 *  a test's own network namespace (tests/gstreamer_webrtc.rs), where the local
 *  routing table was moved after this rule's preference. */
async function dropNetwork(ctx, page, sel, ms) {
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const before = await playerFigures(page, sel);
  await page.evaluate((sel) => {
    window.seenMessages = [];
    document.querySelector(sel).addEventListener('statechange', (e) => {
      if (e.detail.message && !window.seenMessages.includes(e.detail.message)) window.seenMessages.push(e.detail.message);
    });
  }, sel);
  await step(ctx, `network: cut the media path for ${ms} ms`, async () => {
    ip('rule', 'add', 'pref', '5', 'to', '127.0.0.2/32', 'blackhole');
    try {
      await sleep(ms);
    } finally {
      ip('rule', 'del', 'pref', '5');
    }
  });
  const restored = Date.now();
  await step(ctx, 'network: the player plays again by itself', () => until(page,
    ([sel, frames, connects]) => {
      const p = document.querySelector(sel);
      const s = p.lastStats;
      // Either the same session recovered (more frames) or a new one plays.
      return p.state === 'playing' && s && (p.metrics.connects > connects ? s.frames > 10 : s.frames > frames + 10);
    }, [sel, before.frames, before.connects], 30000));
  const after = await playerFigures(page, sel);
  const messages = await page.evaluate(() => window.seenMessages);
  return { recovered_ms: Date.now() - restored, reconnected: after.connects > before.connects, drop_messages: messages };
}

async function watchPage(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  const url = sc.url || `${sc.base}/watch.html?stream=${encodeURIComponent(sc.stream)}`;
  await step(ctx, 'watch page: loads', () => page.goto(url));
  const seen = await assertPlaying(ctx, page, '#player', 'watch page', { video: sc.video ?? true, audio: sc.audio ?? true });
  if (sc.screenshot) await page.screenshot({ path: join(out, `${sc.screenshot}.png`) });
  return {
    first_media_ms: seen.firstFrameMs, frames_in_2s: seen.framesIn2s, audio_packets_in_2s: seen.audioPacketsIn2s,
    width: seen.width, height: seen.height,
  };
}

/** A bare RTCPeerConnection, as any site would write one, offers recvonly transceivers
 *  in `sc.order` and must decode what the stream has. */
async function plainView(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  const site = await embedSite('<!doctype html><title>plain</title>');
  ctx.cleanup.push(() => site.close());
  const want = { video: sc.video ?? true, audio: sc.audio ?? true };
  await step(ctx, 'page of another origin loads', () => page.goto(site.url));
  const answered = await step(ctx, `offer ${sc.order.join('+')}, POST, apply the answer`, () =>
    plainConnect(page, `${sc.base}/whep/${encodeURIComponent(sc.stream)}`, sc.order));
  const read = () => plainRead(page);
  const first = await step(ctx, `first ${want.video ? 'decoded frame' : 'audio packet'}`, async () => {
    const deadline = Date.now() + 20000;
    for (;;) {
      const r = await read();
      if ((want.video ? r.frames : r.audioPackets) > 0) return r;
      if (Date.now() > deadline) throw new Error(`nothing decoded in 20 s: ${JSON.stringify(r)}`);
      await sleep(25);
    }
  });
  await sleep(2000);
  const after = await read();
  await step(ctx, 'decodes what the stream has, nothing else', () => {
    if (want.video && !(after.frames > first.frames + 10)) throw new Error(`framesDecoded ${first.frames} → ${after.frames} in 2 s`);
    if (want.audio && !(after.audioPackets > first.audioPackets)) throw new Error(`audio packets ${first.audioPackets} → ${after.audioPackets} in 2 s`);
    if (!want.video && (after.videoInbound || after.frames)) throw new Error(`video from a stream without video: ${JSON.stringify(after)}`);
    if (!want.audio && (after.audioInbound || after.audioPackets)) throw new Error(`audio from a stream without audio: ${JSON.stringify(after)}`);
  });
  await step(ctx, 'DELETE the session', () => page.evaluate(() => window.plain.hangUp()));
  return {
    transceivers: answered, first_media_ms: Math.round(first.at),
    frames_in_2s: after.frames - first.frames, audio_packets_in_2s: after.audioPackets - first.audioPackets,
  };
}

/** A bare RTCPeerConnection on a page of another origin: offers recvonly
 *  transceivers in `order`, POSTs to `endpoint`, applies the answer. Leaves
 *  `window.plain` = { pc, postAt, hangUp } and returns the transceivers' directions. */
async function plainConnect(page, endpoint, order) {
  return page.evaluate(async ({ endpoint, order }) => {
    const pc = new RTCPeerConnection();
    for (const kind of order) pc.addTransceiver(kind, { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 1500);
    });
    const postAt = performance.now();
    const resp = await fetch(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (resp.status !== 201) throw new Error(`POST → ${resp.status}: ${(await resp.text()).trim()}`);
    const location = new URL(resp.headers.get('location'), endpoint).href;
    const answer = await resp.text();
    window.plain = { pc, postAt, hangUp: () => { pc.close(); return fetch(location, { method: 'DELETE' }); } };
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    return pc.getTransceivers().map((t) => `${t.receiver.track.kind}:${t.currentDirection}`);
  }, { endpoint, order });
}

/** The viewer's decoded frames and audio packets, read by a bare peer connection. */
function plainRead(page) {
  return page.evaluate(async () => {
    const out = { frames: 0, audioPackets: 0, videoInbound: false, audioInbound: false, at: performance.now() - window.plain.postAt };
    for (const r of (await window.plain.pc.getStats()).values()) {
      if (r.type === 'candidate-pair' && r.nominated) { out.checks = r.requestsSent || 0; out.answered = r.responsesReceived || 0; }
      if (r.type !== 'inbound-rtp') continue;
      if (r.kind === 'video') {
        out.videoInbound = true; out.frames = r.framesDecoded || 0;
        out.videoPackets = r.packetsReceived || 0; out.videoLost = r.packetsLost || 0; out.nacks = r.nackCount || 0;
        out.plis = r.pliCount || 0; out.keyframes = r.keyFramesDecoded || 0;
      }
      if (r.kind === 'audio') { out.audioInbound = true; out.audioPackets = r.packetsReceived || 0; }
    }
    out.state = window.plain.pc.connectionState;
    out.t = Date.now();
    return out;
  });
}

/** The publish page's video sender and its ICE pair now: what it sent and encoded,
 * the keyframe requests it got, its target rate and the ICE checks it made. */
async function publisherRead(pub) {
  return pub.evaluate(async () => {
    const pc = window.wishdPublish.pc;
    const out = { sent: 0, frames: 0, keyframes: 0, plis: 0, target: 0, limit: '', checks: 0, answered: 0, pair: '' };
    if (!pc) return out;
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.sent += r.packetsSent || 0; out.frames += r.framesEncoded || 0;
        out.keyframes += r.keyFramesEncoded || 0; out.plis += r.pliCount || 0;
        out.target += r.targetBitrate || 0; out.limit = r.qualityLimitationReason || '';
      } else if (r.type === 'candidate-pair' && r.nominated) {
        out.checks = r.requestsSent || 0; out.answered = r.responsesReceived || 0; out.pair = r.state;
      }
    }
    out.ice = pc.iceConnectionState;
    return out;
  });
}

async function timeline(ctx, browser, sc) {
  let pub = null;
  if (sc.publish) {
    // The stream's publisher is this browser's publish page (fake camera, H.264
    // unless `codec` names another).
    pub = await browser.newPage();
    ctx.pages.push(pub);
    await step(ctx, 'publish: page loads', async () => {
      await pub.goto(`${sc.base}/publish.html?stream=${encodeURIComponent(sc.stream)}&codec=${sc.codec || 'H264'}&resolution=640x360`);
      await until(pub, () => window.wishdPublish && window.wishdPublish.state === 'idle');
    });
    await pub.click('#start');
    await step(ctx, 'publish: goes live', () => until(pub, () => window.wishdPublish.state === 'live'));
  }
  const page = await browser.newPage();
  ctx.pages.push(page);
  const site = await embedSite('<!doctype html><title>timeline</title>');
  ctx.cleanup.push(() => site.close());
  await step(ctx, 'page of another origin loads', () => page.goto(site.url));
  await step(ctx, 'offer audio+video, POST, apply the answer', () =>
    plainConnect(page, `${sc.base}/whep/${encodeURIComponent(sc.stream)}`, ['audio', 'video']));
  let index = null;
  const indexSources = [];
  if (sc.index) {
    index = await browser.newPage();
    ctx.pages.push(index);
    await step(ctx, 'index: page loads', () => index.goto(`${sc.base}/`));
  }
  const samples = [];
  const end = Date.now() + (sc.max_seconds || 60) * 1000;
  await step(ctx, 'sample until told to stop', async () => {
    let first = true;
    while (Date.now() < end && !existsSync(sc.stop_file)) {
      const r = await plainRead(page);
      const sample = { t: r.t, frames: r.frames, audio: r.audioPackets, state: r.state,
                       packets: r.videoPackets, lost: r.videoLost, nacks: r.nacks,
                       plis: r.plis, keyframes: r.keyframes, checks: r.checks, answered: r.answered };
      if (pub) sample.pub = await publisherRead(pub);
      samples.push(sample);
      if (index) {
        const source = await index.evaluate((name) => {
          const tr = document.querySelector(`tr[data-stream="${name}"]`);
          return tr ? tr.cells[1].innerText.trim() : null;
        }, sc.stream);
        if (source && source !== indexSources[indexSources.length - 1]) indexSources.push(source);
      }
      if (first && r.frames > 0) {
        first = false;
        log(`${ctx.name}: first decoded frame`);
      }
      await sleep(100);
    }
  });
  const publisher = pub ? await pub.evaluate(async () => {
    const pc = window.wishdPublish.pc;
    const out = { packets: 0, retransmitted: 0, nacks: 0, plis: 0 };
    if (!pc) return out;
    for (const r of (await pc.getStats()).values()) {
      if (r.type !== 'outbound-rtp' || r.kind !== 'video') continue;
      out.packets += r.packetsSent || 0; out.retransmitted += r.retransmittedPacketsSent || 0;
      out.nacks += r.nackCount || 0; out.plis += r.pliCount || 0;
    }
    return out;
  }) : null;
  // The publisher stops as soon as it is told to (its Stop button: DELETE of its
  // session), so that what it sent ends with the stop file. Clicked from the page's
  // own script: Playwright's click waits for animation frames, which a page in the
  // background gets seldom (about 2 s here).
  if (pub) await step(ctx, 'publish: stops', () => pub.evaluate(() => document.getElementById('stop').click()));
  await step(ctx, 'DELETE the session', () => page.evaluate(() => window.plain.hangUp()));
  return { samples, index_sources: indexSources, publisher };
}

async function refused(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  await step(ctx, 'watch: page loads', async () => {
    await page.goto(`${sc.base}/watch.html?stream=${encodeURIComponent(sc.stream)}`);
    if (sc.token) {
      await page.fill('#token', sc.token);
      await page.click('button[type=submit]');
    }
  });
  const got = await step(ctx, `watch: shows ${sc.expect_state}`, () => until(page,
    (want) => { const p = document.getElementById('player'); return p.state === want && p.message && { state: p.state, message: p.message }; },
    sc.expect_state));
  await step(ctx, 'watch: the message explains', () => {
    if (!new RegExp(sc.expect_text).test(got.message)) throw new Error(`the message is "${got.message}"`);
  });
  if (sc.then_token) {
    // The person types the token and presses Play: the same player is let in (and
    // waits, as nobody publishes there).
    await step(ctx, 'watch: with the token it is let in (409: waiting)', async () => {
      await page.fill('#token', sc.then_token);
      await page.click('button[type=submit]');
      await until(page, () => document.getElementById('player').state === 'waiting');
    });
  }
  return { message: got.message };
}

async function publishRefused(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  await step(ctx, 'publish: page loads and opens the fake camera', async () => {
    await page.goto(`${sc.base}/publish.html?stream=${encodeURIComponent(sc.stream)}`);
    await until(page, () => window.wishdPublish && window.wishdPublish.state === 'idle');
  });
  await page.fill('#token', sc.token || '');
  await page.click('#start');
  const message = await step(ctx, 'publish: shows the refusal', () => until(page,
    () => window.wishdPublish.state === 'error' && window.wishdPublish.message));
  await step(ctx, 'publish: the message explains', () => {
    if (!new RegExp(sc.expect_text).test(message)) throw new Error(`the message is "${message}"`);
  });
  await step(ctx, 'publish: Publish can be pressed again', async () => {
    if (await page.isDisabled('#start')) throw new Error('the Publish button stays disabled');
  });
  return { message };
}

async function reasons(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  await step(ctx, 'wish.js: loads', () => page.goto(`${sc.base}/watch.html`));
  const got = await step(ctx, 'wish.js: reads reasons from problem+json and text/plain', () => page.evaluate(async () => {
    const { reasonOf } = await import('/wish.js');
    const problem = new Response(JSON.stringify({ type: 'about:blank', title: 'Conflict', status: 409, detail: 'no source yet' }),
      { status: 409, headers: { 'content-type': 'application/problem+json' } });
    const titleOnly = new Response('{"title":"Forbidden","status":403}', { status: 403, headers: { 'content-type': 'application/problem+json' } });
    const plain = new Response('a bearer token is required\n', { status: 401, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    const empty = new Response('', { status: 503, statusText: 'Service Unavailable' });
    return [await reasonOf(problem), await reasonOf(titleOnly), await reasonOf(plain), await reasonOf(empty)];
  }));
  const want = ['no source yet', 'Forbidden', 'a bearer token is required', 'Service Unavailable'];
  await step(ctx, 'wish.js: the reasons are the one-line details', () => {
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}`);
  });
  return { reasons: got };
}

async function indexToken(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  await step(ctx, 'index: page loads', () => page.goto(`${sc.base}/`));
  const said = await step(ctx, 'index: asks for a play token', () => until(page,
    () => { const s = document.getElementById('status'); return !s.hidden && s.textContent; }));
  if (!/play token/.test(said)) throw new Error(`the page says "${said}"`);
  await step(ctx, 'index: lists the streams with the token', async () => {
    await page.fill('#token', sc.token);
    await page.dispatchEvent('#token', 'change');
    await until(page, () => document.getElementById('status').hidden
      && !/Loading/.test(document.getElementById('streams').innerText));
  });
  return { message: said };
}

/** Publishes the fake camera at 1280×720 (and the microphone) from `page` as three
 *  H.264 simulcast layers, as a browser's WHIP client does: one transceiver with
 *  sendEncodings q (¼ size), h (½) and f (full). Leaves `window.pub` = { pc, location }. */
function publishSimulcast(page, endpoint) {
  return page.evaluate(async (endpoint) => {
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: 1280, height: 720, frameRate: 30 }, audio: true,
    });
    const pc = new RTCPeerConnection();
    const t = pc.addTransceiver(media.getVideoTracks()[0], {
      direction: 'sendonly',
      sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4 },
        { rid: 'h', scaleResolutionDownBy: 2 },
        { rid: 'f', scaleResolutionDownBy: 1 },
      ],
    });
    t.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter(
      (c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || '')));
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
    const location = new URL(resp.headers.get('location'), endpoint).href;
    const answer = await resp.text();
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    window.pub = { pc, location };
    if (!/a=simulcast:recv/.test(answer)) throw new Error('the answer declines simulcast');
  }, endpoint);
}

/** The quality menu of the player `sel`: its entries and what is selected. */
function qualityMenu(page, sel) {
  return page.evaluate((sel) => {
    const p = document.querySelector(sel);
    const menu = p.shadowRoot.querySelector('select');
    return {
      shown: !menu.hidden && menu.offsetParent !== null,
      labels: [...menu.options].map((o) => o.text),
      titles: [...menu.options].map((o) => o.title),
      value: menu.value,
    };
  }, sel);
}

/** The viewer count the player `sel` shows on screen ('' when none). */
function shownCount(page, sel) {
  return page.evaluate((sel) => {
    const v = document.querySelector(sel).shadowRoot.querySelector('.viewers');
    return v.hidden ? '' : v.textContent.trim();
  }, sel);
}

async function simulcastPlayer(ctx, browser, sc) {
  const stream = encodeURIComponent(sc.stream);
  const watchUrl = `${sc.base}/watch.html?stream=${stream}`;
  const figures = {};
  let index = null;
  if (sc.index) {
    index = await browser.newPage();
    ctx.pages.push(index);
    await step(ctx, 'index: page loads', () => index.goto(`${sc.base}/`));
  }
  // The publisher, on a page of its own origin (a secure context on 127.0.0.1).
  const pub = await browser.newPage();
  ctx.pages.push(pub);
  const home = await embedSite('<!doctype html><title>simulcast publisher</title>');
  ctx.cleanup.push(() => home.close());
  await step(ctx, 'publish: three simulcast layers over WHIP', async () => {
    await pub.goto(home.url);
    await publishSimulcast(pub, `${sc.base}/whip/${stream}`);
  });

  // A server that links no extensions (an older wishd, another vendor's): the WHEP
  // answer reaches the player without its Link headers.
  const bare = await browser.newPage();
  ctx.pages.push(bare);
  await bare.route((url) => url.pathname.startsWith('/whep/'), async (route) => {
    const resp = await route.fetch();
    const headers = resp.headers();
    delete headers.link;
    await route.fulfill({ response: resp, headers });
  });
  await step(ctx, 'no Link: the player plays', async () => {
    await bare.goto(watchUrl);
    await until(bare, () => { const p = document.getElementById('player'); return p.state === 'playing' && p.lastStats && p.lastStats.frames > 0; }, null, 20000);
  });
  await sleep(1500);
  const without = await bare.evaluate(() => {
    const p = document.getElementById('player');
    return { extensions: p.extensions, count: p.viewerCount, layers: p.layers.length, state: p.state };
  });
  await step(ctx, 'no Link: no quality menu, no viewer count, still playing', async () => {
    const menu = await qualityMenu(bare, '#player');
    const count = await shownCount(bare, '#player');
    if (without.extensions.events || without.extensions.layer) throw new Error(`extensions ${JSON.stringify(without.extensions)}`);
    if (menu.shown || count || without.count !== null || without.layers) throw new Error(`menu ${JSON.stringify(menu)}, count "${count}"`);
    if (without.state !== 'playing') throw new Error(`state ${without.state}`);
  });
  // stop() sends the DELETE, so the count below starts from this player alone.
  await bare.evaluate(() => document.getElementById('player').stop());
  await bare.close();

  const watch = await browser.newPage();
  ctx.pages.push(watch);
  await step(ctx, 'watch: plays', async () => {
    await watch.goto(watchUrl);
    await until(watch, () => { const p = document.getElementById('player'); return p.state === 'playing' && p.lastStats && p.lastStats.frames > 0; }, null, 20000);
  });
  const want = ['Auto', '1280×720', '640×360', '320×180'];
  const t0 = Date.now();
  const menu = await step(ctx, 'watch: the quality menu lists Auto and the three layers', async () => {
    // The top layer's size is known from its first keyframe, once the publisher's
    // bandwidth estimate lets it send: a few seconds.
    await until(watch, ([want]) => {
      const m = document.getElementById('player').shadowRoot.querySelector('select');
      return !m.hidden && [...m.options].map((o) => o.text).join() === want.join();
    }, [want], 20000);
    return qualityMenu(watch, '#player');
  });
  figures.menu = menu.labels;
  figures.menu_titles = menu.titles;
  figures.menu_after_ms = Date.now() - t0;
  await step(ctx, 'watch: the menu marks Auto, with bit rates in the tooltips', () => {
    if (!menu.shown || menu.value !== '') throw new Error(`menu ${JSON.stringify(menu)}`);
    if (!menu.titles.slice(1).every((t) => /^[qhf] · /.test(t))) throw new Error(`tooltips ${JSON.stringify(menu.titles)}`);
  });
  const videoWidth = (w) => until(watch, (w) => document.getElementById('player').video.videoWidth === w, w, 15000);
  await step(ctx, 'watch: Auto plays the top layer (videoWidth 1280)', () => videoWidth(1280));
  await step(ctx, 'watch: the count shows 1', () => until(watch,
    () => { const p = document.getElementById('player'); return p.viewerCount === 1 && p.shadowRoot.querySelector('.viewers').textContent.trim() === '1'; }));
  if (sc.screenshot) await watch.screenshot({ path: join(out, `${sc.screenshot}.png`) });

  let t = Date.now();
  await step(ctx, 'watch: choose 320×180 in the menu', () => watch.locator('#player select').selectOption('q'));
  await step(ctx, 'watch: the decoded picture is 320 wide', () => videoWidth(320));
  figures.switch_to_320_ms = Date.now() - t;
  const pinned = await qualityMenu(watch, '#player');
  const choice = await watch.evaluate(() => document.getElementById('player').layerChoice);
  await step(ctx, 'watch: the menu marks 320×180', () => {
    if (pinned.value !== 'q' || choice !== 'q') throw new Error(`the menu shows "${pinned.value}", layerChoice ${choice}`);
  });
  t = Date.now();
  await step(ctx, 'watch: choose Auto in the menu', () => watch.locator('#player select').selectOption(''));
  await step(ctx, 'watch: the decoded picture is 1280 wide again', () => videoWidth(1280));
  figures.switch_to_auto_ms = Date.now() - t;

  const refused = await step(ctx, 'watch: an unknown rid is refused', () => watch.evaluate(async () => {
    const p = document.getElementById('player');
    const ok = await p.chooseLayer('zz');
    const note = p.shadowRoot.querySelector('.note');
    return { ok, notice: p.notice, shown: !note.hidden, value: p.shadowRoot.querySelector('select').value, choice: p.layerChoice };
  }));
  await step(ctx, 'watch: the refusal shows the server\'s reason, the choice stays Auto', () => {
    if (refused.ok || !refused.shown || !/unknown rid "zz"/.test(refused.notice)) throw new Error(JSON.stringify(refused));
    if (refused.value !== '' || refused.choice !== null) throw new Error(JSON.stringify(refused));
  });
  figures.refusal = refused.notice;

  // A second viewer: the player embedded on another origin (CORS for the event
  // stream and the layer POST). Pinned to q, so that two pictures decode cheaply.
  const other = await browser.newPage();
  ctx.pages.push(other);
  const site = await embedSite(`<!doctype html><title>embed</title>
<script type="module" src="${sc.base}/player.js"></script>
<wishd-player src="${sc.base}/whep/${stream}" style="width: 480px"></wishd-player>`);
  ctx.cleanup.push(() => site.close());
  t = Date.now();
  await step(ctx, 'second viewer: the embedded player plays', async () => {
    await other.goto(site.url);
    await until(other, () => { const p = document.querySelector('wishd-player'); return p && p.state === 'playing'; }, null, 20000);
  });
  await step(ctx, 'watch: the count shows 2', () => until(watch,
    () => document.getElementById('player').shadowRoot.querySelector('.viewers').textContent.trim() === '2'));
  figures.count_2_after_ms = Date.now() - t;
  await step(ctx, 'second viewer: counts 2 and pins 320×180 across origins', async () => {
    await until(other, () => { const p = document.querySelector('wishd-player'); return p.viewerCount === 2 && p.layers.length === 3; });
    const ok = await other.evaluate(() => document.querySelector('wishd-player').chooseLayer('q'));
    if (!ok) throw new Error(await other.evaluate(() => document.querySelector('wishd-player').notice));
    await until(other, () => document.querySelector('wishd-player').video.videoWidth === 320, null, 15000);
  });
  t = Date.now();
  await step(ctx, 'second viewer leaves: the count shows 1', async () => {
    await other.evaluate(() => document.querySelector('wishd-player').stop());
    await until(watch, () => document.getElementById('player').viewerCount === 1);
  });
  figures.count_1_after_ms = Date.now() - t;

  if (index) {
    const row = await step(ctx, 'index: lists the three layers', () => until(index, (name) => {
      const tr = document.querySelector(`tr[data-stream="${name}"]`);
      const l = tr && tr.querySelector('.layers');
      return l && l.textContent === '1280×720 · 640×360 · 320×180' && { text: l.textContent, title: l.title };
    }, sc.stream, 10000));
    figures.index_layers = row;
  }

  t = Date.now();
  await step(ctx, 'publisher: DELETE', () => pub.evaluate(async () => {
    // DELETE first: closing the peer connection first ends the session by itself
    // (DTLS close_notify), and the DELETE would find nothing (404).
    const r = await fetch(window.pub.location, { method: 'DELETE' });
    window.pub.pc.close();
    if (!r.ok) throw new Error(`DELETE → ${r.status}`);
  }));
  const waiting = await step(ctx, 'watch: waits for the stream (inactive), without a menu', () => until(watch, () => {
    const p = document.getElementById('player');
    const menu = p.shadowRoot.querySelector('select');
    return p.state === 'waiting' && p.sourceActive === false && menu.hidden && { message: p.message, connects: p.metrics.connects };
  }, null, 10000));
  figures.waiting_after_ms = Date.now() - t;
  figures.waiting_message = waiting.message;
  await sleep(1500);
  const still = await watch.evaluate(() => document.getElementById('player').state);
  await step(ctx, 'watch: still waiting 1.5 s later (frames in flight do not end the wait)', () => {
    if (still !== 'waiting') throw new Error(`the player is ${still}`);
  });

  // The publisher comes back within the grace period: the same session plays on
  // (`active`, then frames), with its menu back.
  t = Date.now();
  await step(ctx, 'publish: again', () => publishSimulcast(pub, `${sc.base}/whip/${stream}`));
  const back = await step(ctx, 'watch: plays again in the same session, with the menu', () => until(watch, () => {
    const p = document.getElementById('player');
    const menu = p.shadowRoot.querySelector('select');
    return p.state === 'playing' && p.sourceActive === true && !menu.hidden && { connects: p.metrics.connects };
  }, null, 20000));
  await step(ctx, 'watch: no reconnect while the source was away', () => {
    if (back.connects !== waiting.connects) throw new Error(`${back.connects - waiting.connects} new WHEP sessions`);
  });
  figures.playing_again_after_ms = Date.now() - t;

  if (sc.shutdown) {
    // The test shuts the server down when it reads this step's line on stderr.
    await watch.evaluate(() => {
      window.seenMessages = [];
      document.getElementById('player').addEventListener('statechange', (e) => window.seenMessages.push(e.detail.message));
    });
    t = Date.now();
    const seen = await step(ctx, 'server: shuts down now; the player is told to reconnect', () => until(watch,
      () => window.seenMessages.some((m) => /asked to reconnect/.test(m)) && window.seenMessages, null, 15000));
    figures.reconnect_after_ms = Date.now() - t;
    figures.reconnect_messages = seen;
  }
  return figures;
}

/** Serves `html` at http://127.0.0.1:PORT/ until closed. */
function embedSite(html) {
  return new Promise((resolve) => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    });
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/`,
      close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }),
    }));
  });
}

async function playRecording(ctx, browser, sc) {
  const page = await browser.newPage();
  ctx.pages.push(page);
  await step(ctx, 'a page of the server loads', () => page.goto(`${sc.base}/`));
  const t0 = Date.now();
  await step(ctx, 'download the recording and give it to a <video>', () => page.evaluate(async ({ url, token }) => {
    const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    if (r.status !== 200) throw new Error(`GET ${url} → ${r.status}`);
    const blob = await r.blob();
    const v = document.createElement('video');
    v.muted = true;
    v.src = URL.createObjectURL(blob);
    document.body.append(v);
    window.recording = v;
    await v.play();
  }, { url: sc.url, token: sc.token }));
  const played = await step(ctx, 'it plays on for more than a second', () => until(page, () => {
    const v = window.recording;
    const q = v.getVideoPlaybackQuality();
    return v.currentTime > 1.2 && q.totalVideoFrames > 20 && {
      duration: v.duration, width: v.videoWidth, height: v.videoHeight,
      frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, error: v.error && v.error.message,
    };
  }, null, 20000));
  return { ...played, played_after_ms: Date.now() - t0 };
}

const KINDS = {
  'publish-watch': publishWatch, watch: embedded, 'watch-page': watchPage, 'plain-view': plainView, timeline,
  refused, 'index-token': indexToken, reasons, 'publish-refused': publishRefused,
  'simulcast-player': simulcastPlayer, 'play-recording': playRecording,
};

async function main() {
  // A server on an address other than loopback (a test's own namespace) serves the
  // publish page over plain HTTP, which is no secure context: the camera needs one.
  const secure = plan.secure_origins || [];
  const browser = await launch(chromium, secure.length
    ? { args: [...ARGS, `--unsafely-treat-insecure-origin-as-secure=${secure.join(',')}`] }
    : {});
  const version = chromiumVersion();
  const results = [];
  for (const sc of plan.scenarios || []) {
    const name = sc.name || `${sc.kind} ${sc.stream}`;
    const ctx = { name, step: 'start', pages: [], cleanup: [] };
    const t0 = Date.now();
    try {
      const figures = await KINDS[sc.kind](ctx, browser, sc);
      results.push({ name, ok: true, figures, ms: Date.now() - t0 });
      log(`${name}: ok ${JSON.stringify(figures)}`);
    } catch (e) {
      const error = String(e && e.message ? e.message : e).split('\n')[0];
      results.push({ name, ok: false, step: ctx.step, error, ms: Date.now() - t0 });
      log(`${name}: FAILED at "${ctx.step}": ${error}`);
      for (const [i, p] of ctx.pages.entries()) {
        await p.screenshot({ path: join(out, `failed-${name.replace(/\W+/g, '-')}-${i}.png`) }).catch(() => {});
      }
    } finally {
      for (const p of ctx.pages) await p.close().catch(() => {});
      for (const c of ctx.cleanup) await c().catch(() => {});
    }
  }
  for (const p of kept) await p.close().catch(() => {});
  await browser.close();
  console.log(JSON.stringify({ client: 'chromium', version, results }));
}

main().catch((e) => {
  console.log(JSON.stringify({ client: 'chromium', fatal: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
