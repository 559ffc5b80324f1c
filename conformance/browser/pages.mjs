// Drives wishd's own web pages in headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) and reports what getStats() saw.
//
//   node conformance/browser/pages.mjs '<plan as JSON>'
//
// The plan: { "out": "conformance/out", "scenarios": [ ... ] }, each scenario one of
//   { "kind": "publish-watch", "base", "stream", "codec", "resolution", "token",
//     "watch_first": bool, "reconnect": bool, "screenshots": bool }
//       the publish page publishes, the watch page plays (started before the publisher
//       when watch_first: the player must wait through 409s); with reconnect, the
//       publisher stops and starts again and the player must come back by itself.
//   { "kind": "watch", "base", "stream", "expect_width", "expect_height", "screenshot",
//     "watch_screenshot", "drop_network_ms" }
//       a <wishd-player> embedded, as the README's snippet says, in a page of another
//       origin plays a stream some other client publishes (and, with
//       watch_screenshot, the watch page too, for a screenshot). With
//       "drop_network_ms", the media path is then cut for that long (only inside a
//       test's own network namespace) and the player must recover.
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
// With "index": true, publish-watch also checks that the index page, open before the
// stream starts, lists it by itself with its codec, resolution and viewer count.
// One browser serves every scenario. Progress goes to stderr; the last line on stdout
// is one JSON object: { client, version, results: [ { name, ok, step, error, figures } ] }.

import { mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { launch, version as chromiumVersion } from './chromium.mjs';

const plan = JSON.parse(process.argv[2] || '{}');
const out = plan.out || 'conformance/out';
mkdirSync(out, { recursive: true });

const log = (...a) => console.error('[pages]', ...a);
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
    };
  }, sel);
}

/** The player plays: frames decoded keep growing, audio packets keep arriving. Two
 *  readings 2 s apart; returns the second, with the growth. */
async function assertPlaying(ctx, page, sel, label) {
  await step(ctx, `${label}: first decoded frame`, () => until(page,
    (sel) => { const p = document.querySelector(sel); return p && p.state === 'playing' && p.lastStats && p.lastStats.frames > 0; },
    sel, 20000));
  const a = await playerFigures(page, sel);
  await sleep(2000);
  const b = await playerFigures(page, sel);
  await step(ctx, `${label}: framesDecoded grows`, () => {
    if (!(b.frames > a.frames + 10)) throw new Error(`framesDecoded ${a.frames} → ${b.frames} in 2 s`);
  });
  await step(ctx, `${label}: audio packets arrive`, () => {
    if (!(b.audioPackets > a.audioPackets)) throw new Error(`audio packetsReceived ${a.audioPackets} → ${b.audioPackets} in 2 s`);
  });
  return { ...b, framesIn2s: b.frames - a.frames, audioPacketsIn2s: b.audioPackets - a.audioPackets };
}

async function publishWatch(ctx, browser, sc) {
  const [w, h] = (sc.resolution || '640x360').split('x').map(Number);
  const pub = await browser.newPage();
  const watch = await browser.newPage();
  ctx.pages.push(pub, watch);
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
    () => { const s = window.wishdPublish.stats; return s && s.frames > 5 && s.audioPackets > 0 && s; }));
  await step(ctx, `publish: sends ${sc.codec} at ${w}x${h}`, () => {
    if (sent.codec !== sc.codec) throw new Error(`outbound codec is ${sent.codec}`);
    if (sent.width !== w || sent.height !== h) throw new Error(`outbound resolution is ${sent.width}x${sent.height}`);
  });
  if (!sc.watch_first) await openWatch();
  const seen = await assertPlaying(ctx, watch, '#player', 'watch');
  await step(ctx, 'watch: autoplays muted, and the Unmute button unmutes', async () => {
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
      if (!/opus/i.test(row[3])) throw new Error(`audio is "${row[3]}"`);
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
    await step(ctx, 'watch: notices the end and waits (409 after the grace period)', () => until(watch,
      () => { const p = document.getElementById('player'); return p.state === 'waiting'; }, null, 20000));
    const t0 = Date.now();
    await pub.click('#start');
    await step(ctx, 'publish: live again', () => until(pub, () => window.wishdPublish.state === 'live'));
    await step(ctx, 'watch: reconnects by itself', () => until(watch,
      () => { const p = document.getElementById('player'); return p.metrics.connects >= 2 && p.state === 'playing'; }, null, 20000));
    figures.reconnect_ms = Date.now() - t0;
    const again = await assertPlaying(ctx, watch, '#player', 'watch after reconnect');
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
<script type="module" src="${sc.base}/player.js"></script>
<wishd-player src="${src}" stats style="width: 640px"></wishd-player>`);
  ctx.cleanup.push(() => site.close());
  await step(ctx, 'embed: page of another origin loads player.js', async () => {
    await page.goto(site.url);
    await until(page, () => customElements.get('wishd-player') !== undefined);
  });
  const seen = await assertPlaying(ctx, page, 'wishd-player', 'embedded player');
  await step(ctx, 'embedded player: resolution', () => {
    if (sc.expect_width && (seen.width !== sc.expect_width || seen.height !== sc.expect_height)) {
      throw new Error(`decoded ${seen.width}x${seen.height}, expected ${sc.expect_width}x${sc.expect_height}`);
    }
  });
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
    frames_in_2s: seen.framesIn2s, audio_packets_in_2s: seen.audioPacketsIn2s, ...dropped,
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

const KINDS = { 'publish-watch': publishWatch, watch: embedded, refused, 'index-token': indexToken, reasons, 'publish-refused': publishRefused };

async function main() {
  const browser = await launch(chromium);
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
  await browser.close();
  console.log(JSON.stringify({ client: 'chromium', version, results }));
}

main().catch((e) => {
  console.log(JSON.stringify({ client: 'chromium', fatal: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
