// WHIP/WHEP signalling shared by the publish page and the player: one offer/answer
// exchange over HTTP (RFC 9725, draft-ietf-wish-whep), the links the answer offers
// (the WHEP extensions), the session's DELETE, the server's reason for a refusal,
// and readable numbers from getStats().

/** How long a WHIP/WHEP POST may take before it is abandoned. */
const POST_TIMEOUT_MS = 10000;
/** An endpoint's OPTIONS (its ICE servers) may hold the start of a session this long. */
const OPTIONS_TIMEOUT_MS = 3000;

/** A refused WHIP/WHEP request: the HTTP status, the server's one-line reason and
 *  its Retry-After in seconds (or null). */
export class HttpError extends Error {
  constructor(status, reason, retryAfter) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

/** The one-line reason in an error answer: `detail` (or `title`) of an RFC 9457
 *  application/problem+json body, else the text/plain body, else the status text. */
export async function reasonOf(resp) {
  let text = '';
  try {
    text = await resp.text();
  } catch {
    // A body that cannot be read leaves the status text.
  }
  const type = resp.headers.get('content-type') || '';
  if (/json/i.test(type) || /^\s*\{/.test(text)) {
    try {
      const p = JSON.parse(text);
      const line = p.detail || p.title;
      if (line) return String(line).trim();
    } catch {
      // Not JSON after all: fall through to the text.
    }
  }
  return text.trim() || resp.statusText || `HTTP ${resp.status}`;
}

function retryAfterOf(resp) {
  const v = resp.headers.get('retry-after');
  if (v === null) return null;
  const secs = Number(v);
  if (Number.isFinite(secs)) return Math.max(0, secs);
  const when = Date.parse(v);
  return Number.isFinite(when) ? Math.max(0, (when - Date.now()) / 1000) : null;
}

/** Resolves when ICE gathering is complete or after `ms`, whichever is first. wishd
 *  is an ICE-lite server that puts its candidates in the answer and learns ours from
 *  our checks, so an offer without every candidate still connects. */
export function iceGathered(pc, ms = 1500) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** `signal`, also aborted after `ms` where the browser can combine signals. */
function withTimeout(signal, ms) {
  const timeout = AbortSignal.timeout ? AbortSignal.timeout(ms) : undefined;
  if (!signal) return timeout;
  return timeout && AbortSignal.any ? AbortSignal.any([signal, timeout]) : signal;
}

/** Offers `pc`'s transceivers to a WHIP or WHEP endpoint and applies the answer.
 *  Returns the session URL (absolute) for the DELETE. Throws HttpError on refusal. */
export async function negotiate(pc, endpoint, options) {
  return (await negotiateSession(pc, endpoint, options)).location;
}

/** Link relations of the WHEP extensions (draft-ietf-wish-whep §4.9). */
export const REL_EVENTS = 'urn:ietf:params:whep:ext:core:server-sent-events';
export const REL_LAYER = 'urn:ietf:params:whep:ext:core:layer';

/** The links of a `Link` header (RFC 8288) as [{ uri, params }], parameter names
 *  lowercased. fetch() joins several Link headers with ", ", and a quoted value
 *  (events="active,inactive", a TURN password) may hold commas, semicolons and
 *  backslash escapes, so the header is read character by character. Only what CORS
 *  exposes is seen: an older server or another vendor's may send none, which is []. */
export function parseLinkHeader(header) {
  const text = header || '';
  const links = [];
  let i = 0;
  const skip = (re) => { while (i < text.length && re.test(text[i])) i += 1; };
  const token = () => {
    const start = i;
    while (i < text.length && !/[\s=;,]/.test(text[i])) i += 1;
    return text.slice(start, i);
  };
  const quoted = () => {
    let v = '';
    for (i += 1; i < text.length && text[i] !== '"'; i += 1) {
      if (text[i] === '\\' && i + 1 < text.length) i += 1;
      v += text[i];
    }
    i += 1;
    return v;
  };
  while (i < text.length) {
    skip(/[\s,]/);
    if (text[i] !== '<') {
      // Not a link: skip to the next one.
      while (i < text.length && text[i] !== ',') i += 1;
      continue;
    }
    const close = text.indexOf('>', i);
    if (close < 0) break;
    const uri = text.slice(i + 1, close).trim();
    i = close + 1;
    const params = {};
    for (;;) {
      skip(/\s/);
      if (text[i] !== ';') break;
      i += 1;
      skip(/\s/);
      const name = token().toLowerCase();
      skip(/\s/);
      let value = '';
      if (text[i] === '=') {
        i += 1;
        skip(/\s/);
        value = text[i] === '"' ? quoted() : token();
      }
      if (name && !(name in params)) params[name] = value.trim();
    }
    links.push({ uri, params });
  }
  return links;
}

/** The `Link` header of an answer as { rel: { url, params } }, URLs made absolute
 *  against `base` (the first link of each relation type). */
export function parseLinks(header, base) {
  const links = {};
  for (const { uri, params } of parseLinkHeader(header)) {
    let url;
    try {
      url = new URL(uri, base).href;
    } catch {
      continue;
    }
    // rel may hold several relation types, separated by spaces.
    for (const rel of (params.rel || '').split(/\s+/).filter(Boolean)) {
      if (!links[rel]) links[rel] = { url, params };
    }
  }
  return links;
}

/** The ICE servers of a `Link` header (RFC 9725 §4.6: rel="ice-server", TURN
 *  credentials in `username` and `credential`) as RTCIceServer objects. */
export function parseIceServers(header) {
  const servers = [];
  for (const { uri, params } of parseLinkHeader(header)) {
    if (!(params.rel || '').split(/\s+/).includes('ice-server')) continue;
    if (!/^(stun|stuns|turn|turns):/i.test(uri)) continue;
    const server = { urls: uri };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

/** The ICE servers an endpoint offers this client: an OPTIONS on the endpoint before
 *  the offer (RFC 9725 §4.6), so that relayed candidates (TURN, short-lived
 *  credentials the server mints) are gathered into it. A server that offers none, or
 *  an OPTIONS that fails, gives []: ICE then uses the host candidates alone. */
export async function iceServersFor(endpoint, { token, signal } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const resp = await fetch(endpoint, {
      method: 'OPTIONS',
      headers,
      signal: withTimeout(signal, OPTIONS_TIMEOUT_MS),
    });
    return resp.ok ? parseIceServers(resp.headers.get('link')) : [];
  } catch (e) {
    if (signal && signal.aborted) throw e;
    return [];
  }
}

/** negotiate(), also returning the answer's links: { location, links }. */
export async function negotiateSession(pc, endpoint, { token, signal, onPost } = {}) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (onPost) onPost();
  // A POST lost in a dead network must not hang for minutes: give up after 10 s.
  const resp = await fetch(endpoint, {
    method: 'POST',
    headers,
    body: pc.localDescription.sdp,
    signal: withTimeout(signal, POST_TIMEOUT_MS),
  });
  if (resp.status !== 201) {
    throw new HttpError(resp.status, await reasonOf(resp), retryAfterOf(resp));
  }
  const location = resp.headers.get('location');
  const links = parseLinks(resp.headers.get('link'), endpoint);
  const answer = await resp.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return { location: location ? new URL(location, endpoint).href : null, links };
}

/** POSTs `body` as JSON to a session's extension URL (events, layer). Returns the
 *  Response when it is 2xx, else throws HttpError with the server's reason. */
export async function postJson(url, body, { token, signal } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    signal: withTimeout(signal, POST_TIMEOUT_MS),
  });
  if (!resp.ok) throw new HttpError(resp.status, await reasonOf(resp), retryAfterOf(resp));
  return resp;
}

/** Ends a session (DELETE on its URL). A session the server already closed (404)
 *  or a network error is not worth reporting: the peer connection is gone anyway. */
export async function hangUp(location, token) {
  if (!location) return;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    await fetch(location, { method: 'DELETE', headers, keepalive: true });
  } catch {
    // Nothing to do: see above.
  }
}

/** What to tell a person about a failed publish or play. `action` is 'publish' or
 *  'play'; `hadToken` says whether a token was sent. Returns { text, retry } where
 *  retry is seconds to wait, null to stop, or undefined to back off. */
export function explain(err, action, hadToken = false) {
  if (!(err instanceof HttpError)) {
    return { text: `Cannot reach the server (${err.message || err})`, retry: undefined };
  }
  const why = err.reason;
  switch (err.status) {
    case 401:
      if (hadToken) return { text: `The server does not accept this token. (${why})`, retry: null };
      return {
        text: action === 'play'
          ? `This stream needs a play token: enter one and press Play. (${why})`
          : `Publishing needs a token: enter one. (${why})`,
        retry: null,
      };
    case 403:
      return { text: `This token may not ${action} this stream. (${why})`, retry: null };
    case 409:
      return action === 'play'
        ? { text: 'Nobody is publishing this stream yet. Waiting for it to start…', retry: err.retryAfter ?? 2 }
        : { text: `This stream already has a source. (${why})`, retry: null };
    case 422:
      return { text: `The server cannot take this offer: ${why}`, retry: null };
    case 429:
    case 503:
      return { text: `The server is busy (${why}).`, retry: err.retryAfter ?? 2 };
    default:
      return { text: `Refused with ${err.status}: ${why}`, retry: null };
  }
}

/** One reading of a peer connection's RTP statistics, with rates computed against
 *  the previous reading `prev` (or none). Direction is 'inbound' or 'outbound'. */
export async function readStats(pc, direction, prev) {
  const report = await pc.getStats();
  const now = performance.now();
  const s = {
    at: now, video: null, audio: null, bytes: 0, codec: null, audioCodec: null, path: null, remoteAddress: null,
  };
  for (const r of report.values()) {
    // The candidate pair ICE chose: how the media reaches the server ("host udp",
    // "relay udp", "host tcp"), for a person asking why a stream does not play.
    if (r.type === 'transport' && r.selectedCandidatePairId) {
      const pair = report.get(r.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      if (local) s.path = `${local.candidateType} ${local.relayProtocol || local.protocol}`;
      if (remote) s.remoteAddress = remote.address || remote.ip || null;
    }
    if (r.type !== `${direction}-rtp` || !r.kind) continue;
    s[r.kind] = r;
    s.bytes += (direction === 'inbound' ? r.bytesReceived : r.bytesSent) || 0;
    const c = r.codecId && report.get(r.codecId);
    if (c && r.kind === 'video') s.codec = c.mimeType.replace(/^video\//, '');
    if (c && r.kind === 'audio') s.audioCodec = c.mimeType.replace(/^audio\//, '');
  }
  const v = s.video || {};
  const dt = prev ? (now - prev.at) / 1000 : 0;
  s.width = v.frameWidth || 0;
  s.height = v.frameHeight || 0;
  s.kbps = dt > 0 ? Math.max(0, ((s.bytes - prev.bytes) * 8) / dt / 1000) : 0;
  const frames = direction === 'inbound' ? v.framesDecoded : v.framesEncoded;
  const pv = (prev && prev.video) || {};
  const prevFrames = direction === 'inbound' ? pv.framesDecoded : pv.framesEncoded;
  s.fps = v.framesPerSecond ?? (dt > 0 ? ((frames || 0) - (prevFrames || 0)) / dt : 0);
  s.frames = frames || 0;
  if (direction === 'inbound') {
    s.lost = (v.packetsLost || 0) + ((s.audio && s.audio.packetsLost) || 0);
    s.audioPackets = (s.audio && s.audio.packetsReceived) || 0;
    // The video's jitter buffer, or the audio's in a stream without video.
    const jb = s.video ? v : s.audio || {};
    const pjb = (prev && (s.video ? prev.video : prev.audio)) || {};
    const dDelay = (jb.jitterBufferDelay || 0) - (pjb.jitterBufferDelay || 0);
    const dCount = (jb.jitterBufferEmittedCount || 0) - (pjb.jitterBufferEmittedCount || 0);
    s.jitterMs = dCount > 0 ? (dDelay / dCount) * 1000 : 0;
  } else {
    s.audioPackets = (s.audio && s.audio.packetsSent) || 0;
    s.encoder = v.encoderImplementation || '';
  }
  return s;
}
