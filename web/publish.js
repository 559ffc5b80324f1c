// The publish page: camera and microphone → WHIP. Everything happens in this file
// and wish.js; window.wishdPublish exposes the state for tests.

import { explain, hangUp, iceServersFor, negotiate, readStats } from './wish.js';

const $ = (id) => document.getElementById(id);
const form = $('form');
const preview = $('preview');
const status = $('status');
const params = new URLSearchParams(location.search);

let media = null;
let pc = null;
let session = null;
let statsTimer = null;
let prev = null;

/** What tests and curious people can read. */
const state = {
  state: 'idle',
  message: '',
  stats: null,
  codec: null,
  start,
  stop,
  /** The peer connection while publishing (its getStats for tests). */
  get pc() { return pc; },
};
window.wishdPublish = state;

function show(s, message) {
  state.state = s;
  state.message = message;
  status.dataset.state = s;
  status.textContent = message;
}

/** Video codecs this browser can send, among those wishd forwards. */
function videoCodecs() {
  const caps = RTCRtpSender.getCapabilities?.('video');
  const names = new Set((caps ? caps.codecs : []).map((c) => c.mimeType.replace(/^video\//i, '').toUpperCase()));
  return ['H264', 'VP8', 'VP9', 'AV1'].filter((n) => names.has(n));
}

/** All of this browser's video codecs with `name` first (so wishd picks it), H.264
 *  packetization-mode 1 and constrained baseline first among the H.264 entries. */
function preferred(name) {
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  const rank = (c) => {
    const n = c.mimeType.replace(/^video\//i, '').toUpperCase();
    if (n !== name) return 2;
    const f = c.sdpFmtpLine || '';
    if (name === 'H264') return (/packetization-mode=1/.test(f) ? 0 : 0.5) + (/profile-level-id=42e0/.test(f) ? 0 : 0.25);
    return 0;
  };
  return [...codecs].sort((a, b) => rank(a) - rank(b));
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select] of [['videoinput', $('camera')], ['audioinput', $('microphone')]]) {
    const current = select.value;
    select.replaceChildren(new Option(kind === 'videoinput' ? 'No camera' : 'No microphone', 'none'));
    let n = 0;
    for (const d of devices.filter((x) => x.kind === kind)) {
      n += 1;
      select.add(new Option(d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${n}`, d.deviceId));
    }
    select.value = [...select.options].some((o) => o.value === current) ? current : (select.options[1] || select.options[0]).value;
  }
}

/** Opens the chosen devices at the chosen resolution and shows the preview. */
async function openMedia() {
  if (media) media.getTracks().forEach((t) => t.stop());
  media = null;
  const [w, h] = $('resolution').value.split('x').map(Number);
  const cam = $('camera').value;
  const mic = $('microphone').value;
  const constraints = {
    video: cam === 'none' ? false : {
      deviceId: cam ? { exact: cam } : undefined,
      width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: 30 },
    },
    audio: mic === 'none' ? false : { deviceId: mic ? { exact: mic } : undefined },
  };
  if (!constraints.video && !constraints.audio) {
    preview.srcObject = null;
    return;
  }
  media = await navigator.mediaDevices.getUserMedia(constraints);
  preview.srcObject = media;
}

async function start() {
  if (pc) return;
  const stream = $('stream').value.trim();
  const token = $('token').value.trim();
  if (!stream) return show('error', 'Enter a stream name.');
  sessionStorage.setItem('wishd-publish-token', token);
  $('start').disabled = true;
  try {
    if (!media) await openMedia();
    if (!media) throw new Error('choose a camera or a microphone');
  } catch (e) {
    $('start').disabled = false;
    return show('error', `Cannot open the camera or microphone: ${e.message || e}`);
  }
  const endpoint = new URL(`/whip/${encodeURIComponent(stream)}`, location.href).href;
  // The endpoint's TURN servers go into the offer (no trickle): a publisher whose
  // network blocks the server's media port reaches it relayed.
  pc = new RTCPeerConnection({ iceServers: await iceServersFor(endpoint, { token }) });
  const codec = $('codec').value;
  for (const track of media.getTracks()) {
    const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    if (track.kind === 'video') {
      if (tr.setCodecPreferences) tr.setCodecPreferences(preferred(codec));
      const p = tr.sender.getParameters();
      p.degradationPreference = $('degradation').value;
      await tr.sender.setParameters(p).catch(() => {});
    }
  }
  pc.addEventListener('connectionstatechange', () => {
    const s = pc && pc.connectionState;
    if (s === 'connected') show('live', `Live: publishing “${stream}”.`);
    else if (s === 'failed' || s === 'closed') {
      end();
      show('error', 'The connection to the server was lost. Press Publish to try again.');
    }
    else if (s === 'disconnected') show('connecting', 'The network dropped; trying to recover…');
  });
  show('connecting', 'Connecting…');
  try {
    session = await negotiate(pc, endpoint, { token });
  } catch (e) {
    const { text } = explain(e, 'publish', Boolean(token));
    teardown();
    $('start').disabled = false;
    return show('error', text);
  }
  state.token = token;
  $('stop').disabled = false;
  const watch = new URL(`watch.html?stream=${encodeURIComponent(stream)}`, location.href).href;
  $('watch').href = watch;
  $('watch').hidden = false;
  prev = null;
  statsTimer = setInterval(updateStats, 1000);
}

async function updateStats() {
  if (!pc) return;
  const s = await readStats(pc, 'outbound', prev).catch(() => null);
  if (!s) return;
  prev = s;
  state.stats = s;
  state.codec = s.codec;
  $('out-codec').textContent = s.codec ? `${s.codec}${s.encoder ? ` (${s.encoder})` : ''}` : '–';
  $('out-resolution').textContent = s.width ? `${s.width}×${s.height}` : '–';
  $('out-fps').textContent = s.width ? s.fps.toFixed(0) : '–';
  $('out-bitrate').textContent = `${s.kbps.toFixed(0)} kbit/s`;
}

function teardown() {
  clearInterval(statsTimer);
  statsTimer = null;
  if (pc) pc.close();
  pc = null;
}

/** Ends the session (DELETE) and frees the page to publish again. */
async function end() {
  const url = session;
  session = null;
  teardown();
  $('stop').disabled = true;
  $('start').disabled = false;
  await hangUp(url, state.token);
}

async function stop() {
  await end();
  show('stopped', 'Stopped.');
}

async function init() {
  $('stream').value = params.get('stream') || 'cam';
  $('token').value = sessionStorage.getItem('wishd-publish-token') || '';
  const codecs = videoCodecs();
  $('codec').replaceChildren(...codecs.map((c) => new Option(c, c)));
  const want = (params.get('codec') || '').toUpperCase();
  if (codecs.includes(want)) $('codec').value = want;
  if (params.get('resolution')) $('resolution').value = params.get('resolution');
  if (!navigator.mediaDevices) {
    return show('error', 'This page needs a secure context (https:// or http://localhost) to use the camera.');
  }
  try {
    await openMedia();
    await fillDevices();
  } catch (e) {
    show('error', `Cannot open the camera or microphone: ${e.message || e}`);
  }
  for (const id of ['camera', 'microphone', 'resolution']) {
    $(id).addEventListener('change', () => {
      if (!pc) openMedia().catch((e) => show('error', `Cannot open the device: ${e.message || e}`));
    });
  }
  if (state.state === 'idle') show('idle', 'Ready.');
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  start();
});
$('stop').addEventListener('click', stop);
window.addEventListener('pagehide', () => { if (session) hangUp(session, state.token); });
init();
