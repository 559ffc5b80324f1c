// The index page: the live streams from GET /api/streams, refreshed every 2 s, with
// a simulcast stream's layers under its video.

import { reasonOf } from './wish.js';

const $ = (id) => document.getElementById(id);
const body = $('streams');
const status = $('status');
const REFRESH_MS = 2000;

$('token').value = sessionStorage.getItem('wishd-play-token') || '';
$('token').addEventListener('change', () => {
  sessionStorage.setItem('wishd-play-token', $('token').value.trim());
  refresh();
});

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function describeTrack(t) {
  if (!t) return '–';
  const size = t.width && t.height ? ` ${t.width}×${t.height}` : '';
  const ch = t.channels ? ` ${t.channels} ch` : '';
  return `${t.codec}${size}${ch}`;
}

/** A simulcast stream's layers as one line, best first ("1280×720 · 640×360 ·
 *  320×180"), with each layer's rid and bit rate in the tooltip; null without
 *  layers (the API lists none for a single encoding, or an older server). */
function describeLayers(layers) {
  if (!Array.isArray(layers) || layers.length === 0) return null;
  const name = (l) => (l.width && l.height ? `${l.width}×${l.height}` : l.rid);
  const span = document.createElement('div');
  span.className = 'layers';
  span.textContent = layers.map(name).join(' · ');
  span.title = layers
    .map((l) => `${name(l)}: rid ${l.rid}, ${l.active === false || !l.bitrate ? 'not sent now' : kbps(l.bitrate)}`)
    .join('\n');
  return span;
}

function kbps(v) {
  return typeof v === 'number' ? `${Math.round(v / 1000)} kbit/s` : '–';
}

function row(s) {
  const tr = document.createElement('tr');
  tr.dataset.stream = s.name;
  const name = document.createElement('td');
  const state = (s.source && s.source.state) || 'offline';
  const dot = document.createElement('span');
  dot.className = `dot ${state === 'live' ? 'live' : ''}`;
  dot.title = state;
  name.append(dot, s.name);
  const tracks = s.tracks || [];
  // A silent or offline source says since when: a crashed publisher or a camera
  // that lost its network shows here while its viewers keep the last picture.
  const since = s.source && s.source.silent_since ? ` since ${new Date(s.source.silent_since).toLocaleTimeString()}` : '';
  const source = s.source ? `${({ rtp: 'RTP camera', rtsp: 'RTSP camera' })[s.source.kind] || 'WHIP'} · ${state}${since}` : '–';
  const link = document.createElement('a');
  link.href = `watch.html?stream=${encodeURIComponent(s.name)}`;
  link.textContent = 'Watch';
  const watch = document.createElement('td');
  watch.append(link);
  const video = cell(describeTrack(tracks.find((t) => t.kind === 'video')));
  const layers = describeLayers(s.layers);
  if (layers) video.append(layers);
  tr.append(
    name,
    cell(source),
    video,
    cell(describeTrack(tracks.find((t) => t.kind === 'audio'))),
    cell(String(s.viewers ?? 0), 'num'),
    cell(kbps(s.bitrate_in), 'num'),
    watch,
  );
  return tr;
}

function say(text) {
  status.hidden = !text;
  status.textContent = text;
  status.dataset.state = text ? 'error' : '';
}

async function refresh() {
  const token = $('token').value.trim();
  try {
    const resp = await fetch('api/streams', {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: 'no-store',
    });
    if (!resp.ok) {
      const why = await reasonOf(resp);
      say(resp.status === 401 || resp.status === 403
        ? `Listing streams needs a play token (${resp.status}: ${why}).`
        : `The server answered ${resp.status}: ${why}`);
      return;
    }
    const list = (await resp.json()).streams || [];
    list.sort((a, b) => a.name.localeCompare(b.name));
    if (list.length === 0) {
      const td = cell('No streams yet. Publish one from the Publish page.', 'empty');
      td.colSpan = 7;
      const tr = document.createElement('tr');
      tr.append(td);
      body.replaceChildren(tr);
    } else {
      body.replaceChildren(...list.map(row));
    }
    say('');
  } catch (e) {
    say(`Cannot reach the server (${e.message || e}). Retrying…`);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
