// <wishd-player>: a WHEP player for wishd streams, usable on any site.
//
//   <script type="module" src="https://wishd.example.com/player.js"></script>
//   <wishd-player src="https://wishd.example.com/whep/cam" stats></wishd-player>
//
// Attributes: src (the WHEP endpoint), token (bearer token, optional), stats (show
// the live statistics overlay). It starts muted (browsers only autoplay muted video)
// with an unmute button, plays what the stream has (a camera without a microphone as
// video alone, a radio stream as audio with an "Audio only" card), reconnects with
// backoff when the stream ends or the network
// drops, waits for a stream nobody publishes yet (409 + Retry-After), and says why
// when the server refuses (401, 403, 422). Events: `statechange` (detail: { state,
// message }). Read `metrics` for the time to the first frame (the first audio packet
// of an audio-only stream), `kinds` for what the session carries and `lastStats` for
// the latest statistics.
//
// When the server's answer links the WHEP extensions (wishd does), the player also
// follows the stream's server-sent events: a live viewer count (`viewerCount`, event
// `viewercount`), "waiting" while the source is away and back to playing when its
// frames return, a reconnect when the server asks for one, and, for a simulcast
// stream, a quality menu: Auto or one of its layers (`layers`, `layerChoice`,
// `chooseLayer(rid | null)`, event `layers`). A server without them gets neither.

import {
  explain, hangUp, HttpError, iceServersFor, negotiateSession, postJson, readStats, REL_EVENTS,
  REL_LAYER,
} from './wish.js';

const STYLE = `
:host { display: block; position: relative; background: #000; aspect-ratio: 16 / 9;
  color: #fff; font: 13px/1.4 system-ui, sans-serif; overflow: hidden; }
video { width: 100%; height: 100%; object-fit: contain; display: block; }
.msg { position: absolute; inset: auto 0 0 0; padding: 8px 12px; background: rgba(0,0,0,.65); }
.msg:empty { display: none; }
.stats { position: absolute; top: 8px; left: 8px; margin: 0; padding: 6px 8px;
  background: rgba(0,0,0,.6); border-radius: 4px; font: 12px/1.35 ui-monospace, monospace;
  white-space: pre; pointer-events: none; }
.stats:empty, :host(:not([stats])) .stats { display: none; }
[hidden] { display: none !important; }
.bar { position: absolute; top: 8px; right: 8px; display: flex; gap: 6px; align-items: center; }
.bar > * { border: 0; border-radius: 4px; padding: 5px 9px; font: inherit; }
.viewers { display: flex; gap: 5px; align-items: center; background: rgba(0,0,0,.6);
  font-variant-numeric: tabular-nums; cursor: default; }
select { background: rgba(0,0,0,.6); color: #fff; cursor: pointer; }
option { background: #222; color: #fff; }
button { background: rgba(255,255,255,.9); color: #000; cursor: pointer; }
.note { position: absolute; top: 44px; right: 8px; max-width: 70%; padding: 6px 10px;
  border-radius: 4px; background: rgba(150,25,25,.9); }
.card { position: absolute; inset: 0; display: grid; place-items: center; font-size: 20px;
  letter-spacing: .04em; color: #ddd; pointer-events: none; }
`;

/** The viewer count's icon: an eye, drawn (an emoji needs a font that has it). */
const EYE = '<svg viewBox="0 0 24 24" width="15" height="15" aria-hidden="true"><path fill="currentColor" '
  + 'fill-rule="evenodd" d="M12 5C6.5 5 2.7 9.1 1.5 12c1.2 2.9 5 7 10.5 7s9.3-4.1 10.5-7C21.3 9.1 17.5 5 12 5z'
  + 'm0 2.5a4.5 4.5 0 1 0 0 9 4.5 4.5 0 0 0 0-9zm0 2.5a2 2 0 1 1 0 4 2 2 0 0 1 0-4z"/></svg>';

/** Time from the WHEP POST without frames after which a stalled session is replaced. */
const STALL_MS = 15000;
/** How long ICE may stay `disconnected` before the player reconnects. */
const DISCONNECTED_MS = 4000;
const MAX_BACKOFF_S = 15;
/** How long a refused quality change stays on screen. */
const NOTE_MS = 4000;
/** The server-sent events the player uses (it asks only for those the server offers). */
const EVENTS = ['active', 'inactive', 'layers', 'viewercount', 'reconnect'];

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

export class WishdPlayer extends HTMLElement {
  static observedAttributes = ['src', 'token'];

  #abort = null;
  #queued = false;
  #video;
  #msg;
  #stats;
  #unmute;
  #card;
  #viewers;
  #quality;
  #note;
  #noteTimer = null;
  /** The current session's layer URL and video m-line (`mediaId`), when offered. */
  #layerUrl = null;
  #mediaId = null;
  /** The quality menu's entries as last built, to rebuild it only when they change. */
  #menuKey = '';

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style><video playsinline autoplay muted></video>
      <pre class="stats" part="stats"></pre><div class="msg" part="message" role="status"></div>
      <div class="card" part="audio-only" hidden>♪ Audio only</div>
      <div class="bar">
        <span class="viewers" part="viewers" hidden>${EYE}<span></span></span>
        <select class="quality" part="quality" aria-label="Quality" hidden></select>
        <button type="button" part="unmute" hidden>Unmute</button>
      </div>
      <div class="note" part="notice" role="alert" hidden></div>`;
    this.#video = root.querySelector('video');
    this.#msg = root.querySelector('.msg');
    this.#stats = root.querySelector('.stats');
    this.#unmute = root.querySelector('button');
    this.#card = root.querySelector('.card');
    this.#viewers = root.querySelector('.viewers');
    this.#quality = root.querySelector('select');
    this.#note = root.querySelector('.note');
    this.#unmute.addEventListener('click', () => this.#toggleMute());
    this.#quality.addEventListener('change', () => this.chooseLayer(this.#quality.value || null));
    /** Figures for tests and dashboards: the time from the WHEP POST to the first
     *  decoded frame of the current connection, and how many connections were made. */
    this.metrics = { firstFrameMs: null, connects: 0, postAt: null };
    /** The latest statistics (see readStats in wish.js), or null. */
    this.lastStats = null;
    /** The kinds of media the current session carries: the server answers a kind the
     *  stream lacks inactive, e.g. ['video'] for a camera without a microphone. */
    this.kinds = [];
    /** 'idle' | 'connecting' | 'playing' | 'waiting' | 'retrying' | 'error' | 'stopped' */
    this.state = 'idle';
    /** The last message shown, also when it is no longer on screen. */
    this.message = '';
    /** What the server's answer offered: the events and layer extensions. */
    this.extensions = { events: false, layer: false };
    /** Viewers of the stream now (the `viewercount` event), or null when unknown. */
    this.viewerCount = null;
    /** The video's layers from the `layers` event, best first: { rid, width, height,
     *  bitrate, active }. Empty when unknown; one entry (no rid) without simulcast. */
    this.layers = [];
    /** The layer asked for: a rid, or null for automatic (the server picks from
     *  this viewer's bandwidth). Kept across reconnects and asked for again. */
    this.layerChoice = null;
    /** Whether the source is live (`active`/`inactive` events), or null when unknown. */
    this.sourceActive = null;
    /** The last refusal of a quality change, also after it left the screen. */
    this.notice = '';
  }

  get src() { return this.getAttribute('src') || ''; }
  set src(v) { this.setAttribute('src', v); }
  get token() { return this.getAttribute('token') || ''; }
  set token(v) { if (v) this.setAttribute('token', v); else this.removeAttribute('token'); }
  /** The <video> element, e.g. to go full screen. */
  get video() { return this.#video; }

  connectedCallback() { if (this.src) this.play(); }
  disconnectedCallback() { this.stop(); }
  attributeChangedCallback(_name, old, value) {
    if (old !== value && this.isConnected && this.#abort) this.play();
  }

  /** (Re)starts playback of `src`. Calls in the same task (setting `src` and
   *  `token`, then play()) make one start, not one WHEP session each. */
  play() {
    if (this.#queued) return;
    this.#queued = true;
    queueMicrotask(() => {
      this.#queued = false;
      this.#start();
    });
  }

  #start() {
    this.stop();
    // A new start (maybe another stream) is automatic; reconnects keep the choice.
    this.layerChoice = null;
    if (!this.src) return;
    const abort = new AbortController();
    this.#abort = abort;
    this.#run(abort.signal);
  }

  /** Asks the server for layer `rid` of the video, or automatic with null. Resolves
   *  true when the server took it; false (and a short note on screen with its reason)
   *  when it refused or there is nothing to choose. */
  async chooseLayer(rid) {
    const url = this.#layerUrl;
    if (!url || this.#mediaId === null) {
      this.#showNote('This stream has no qualities to choose from.');
      return false;
    }
    // mediaId is the video's m-line, as the layers event named it.
    const body = rid ? { mediaId: this.#mediaId, rid } : { mediaId: this.#mediaId };
    try {
      await postJson(url, body, { token: this.token });
      this.layerChoice = rid || null;
      return true;
    } catch (e) {
      const why = e instanceof HttpError ? e.reason : e.message || String(e);
      this.#showNote(`Cannot change the quality: ${why}`);
      return false;
    } finally {
      // Marks what is in force: the new choice, or the old one after a refusal.
      this.#renderLayers();
    }
  }

  /** Stops playback and ends the session on the server. */
  stop() {
    if (this.#abort) this.#abort.abort();
    this.#abort = null;
    this.#setState('stopped', '');
  }

  #toggleMute() {
    this.#video.muted = !this.#video.muted;
    this.#unmute.textContent = this.#video.muted ? 'Unmute' : 'Mute';
    this.#video.play().catch(() => {});
  }

  #setState(state, message) {
    this.state = state;
    // Nothing to unmute in a stream without audio.
    this.#unmute.hidden = state !== 'playing' || !this.kinds.includes('audio');
    if (message !== undefined) {
      this.#msg.textContent = message;
      if (message) this.message = message;
    }
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, message: this.message } }));
  }

  async #run(signal) {
    let backoff = 1;
    while (!signal.aborted) {
      const outcome = await this.#session(signal);
      if (signal.aborted) return;
      let wait;
      if (outcome.played) backoff = 1;
      if (outcome.error) {
        const { text, retry } = explain(outcome.error, 'play', Boolean(this.token));
        if (retry === null) {
          this.#setState('error', text);
          return;
        }
        wait = retry ?? backoff;
        this.#setState(outcome.error.status === 409 ? 'waiting' : 'retrying',
          retry === undefined ? `${text}. Retrying in ${Math.round(wait)} s…` : text);
      } else {
        wait = backoff;
        this.#setState('retrying', `${outcome.why}. Reconnecting in ${wait} s…`);
      }
      if (retryIsBackoff(outcome)) backoff = Math.min(backoff * 2, MAX_BACKOFF_S);
      await sleep(wait * 1000, signal);
    }
  }

  /** One WHEP session, from POST to its end. Resolves with { played, error, why }. */
  async #session(signal) {
    const token = this.token;
    // TURN servers the endpoint names are gathered into the offer (the pages do not
    // trickle), so a viewer whose network blocks the server's media reaches it relayed.
    let iceServers;
    try {
      iceServers = await iceServersFor(this.src, { token, signal });
    } catch {
      return { played: false };
    }
    const pc = new RTCPeerConnection({ iceServers });
    const media = new MediaStream();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      media.addTrack(e.track);
      if (this.#video.srcObject !== media) this.#video.srcObject = media;
    };
    let location = null;
    let played = false;
    // What the server's events tell about this session: `end` ends it early (a
    // `reconnect` event) and closes its event stream; `inactive` while the source is away.
    // `repin`: the layer chosen before is asked for again once the layers are known.
    const live = { end: new AbortController(), inactive: false, repin: this.layerChoice !== null, token };
    try {
      this.#setState('connecting', 'Connecting…');
      this.metrics.firstFrameMs = null;
      const answer = await negotiateSession(pc, this.src, {
        token,
        signal,
        onPost: () => { this.metrics.postAt = performance.now(); },
      });
      location = answer.location;
      this.metrics.connects += 1;
      this.kinds = fedKinds(pc);
      this.#card.hidden = this.kinds.includes('video') || !this.kinds.includes('audio');
      // Not awaited: the events are extras, the picture does not wait for them.
      this.#follow(answer.links, live);
      const why = await this.#watch(pc, signal, live, () => { played = true; });
      return { played, why };
    } catch (error) {
      if (signal.aborted) return { played };
      return { played, error };
    } finally {
      live.end.abort('ended');
      this.#forgetExtensions();
      pc.close();
      this.#video.srcObject = null;
      this.#card.hidden = true;
      hangUp(location, token);
    }
  }

  /** Opens the session's event stream when the answer linked one (POST the event
   *  types, then EventSource on the URL the 201 gives), and notes the layer URL. */
  async #follow(links, live) {
    const layer = links[REL_LAYER];
    const events = links[REL_EVENTS];
    this.#layerUrl = layer ? layer.url : null;
    this.extensions = { events: Boolean(events), layer: Boolean(layer) };
    if (!events) return;
    // A type the server does not send would make it refuse the whole list.
    const offered = events.params.events ? events.params.events.split(',').map((e) => e.trim()) : EVENTS;
    const wanted = EVENTS.filter((e) => offered.includes(e));
    if (wanted.length === 0) return;
    const { signal } = live.end;
    let url;
    try {
      const resp = await postJson(events.url, wanted, { token: live.token, signal });
      const where = resp.headers.get('location');
      if (!where) return;
      url = new URL(where, events.url).href;
    } catch (e) {
      // Playback goes on without the extras.
      if (!signal.aborted) console.warn('wishd-player: no server-sent events:', e.message || e);
      return;
    }
    if (signal.aborted) return;
    // The stream's URL is its own secret, so EventSource needs no token (it cannot send one).
    const source = new EventSource(url);
    signal.addEventListener('abort', () => source.close(), { once: true });
    for (const type of wanted) {
      source.addEventListener(type, (e) => this.#onEvent(type, e.data, live));
    }
    source.addEventListener('error', () => {
      // CLOSED: the server answered the (re)connection with an error, e.g. 404 once
      // the session ended. While the source is away the picture cannot tell that, so
      // reconnect; otherwise the frames (or their absence) say how the session is.
      if (source.readyState === EventSource.CLOSED && live.inactive) live.end.abort('The stream ended');
    });
  }

  /** One server-sent event of the current session. */
  #onEvent(type, raw, live) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      return;
    }
    switch (type) {
      case 'viewercount':
        if (Number.isFinite(data.viewercount)) {
          this.viewerCount = data.viewercount;
          this.#viewers.hidden = false;
          this.#viewers.lastElementChild.textContent = String(data.viewercount);
          this.#viewers.title = `${data.viewercount} watching now`;
          this.dispatchEvent(new CustomEvent('viewercount', { detail: { viewerCount: data.viewercount } }));
        }
        break;
      case 'layers': {
        // { "<video m-line>": [layer, …] }: one video, so one key.
        const [mediaId, list] = Object.entries(data)[0] || [];
        if (!Array.isArray(list)) return;
        this.#mediaId = mediaId;
        this.layers = list.map((l) => ({
          rid: l.rid ?? null, width: l.width ?? null, height: l.height ?? null,
          bitrate: l.bitrate ?? 0, active: (l.bitrate ?? 0) > 0,
        }));
        if (live.repin) {
          // A new session (or a new source) starts automatic: ask for the choice again.
          live.repin = false;
          if (this.layers.some((l) => l.rid === this.layerChoice)) this.chooseLayer(this.layerChoice);
          else this.layerChoice = null;
        }
        this.#renderLayers();
        this.dispatchEvent(new CustomEvent('layers', { detail: { layers: this.layers } }));
        break;
      }
      case 'inactive':
        // The source left, the session stays: wait for it here instead of
        // reconnecting when the frames stop. Its layers went with it.
        live.inactive = true;
        this.sourceActive = false;
        this.layers = [];
        this.#renderLayers();
        this.#setState('waiting', 'The stream is offline. Waiting for it to come back…');
        break;
      case 'active':
        // Back to playing with the new source's first frame (see #watch).
        this.sourceActive = true;
        if (live.inactive && this.state === 'waiting') this.#setState('waiting', 'The stream is back. Starting…');
        if (live.inactive) live.repin = this.layerChoice !== null;
        live.inactive = false;
        break;
      case 'reconnect':
        // The server is going away: the usual reconnect path, as after a failure.
        live.end.abort('The server asked to reconnect');
        break;
    }
  }

  /** Builds or updates the quality menu: Auto plus each layer, shown only when there
   *  are two or more to choose from. */
  #renderLayers() {
    const choosable = this.layers.filter((l) => l.rid);
    const show = choosable.length >= 2 && this.#layerUrl !== null && this.#mediaId !== null;
    this.#quality.hidden = !show;
    if (!show) return;
    const labels = choosable.map(layerLabel);
    // Two layers of one size (or without sizes) are told apart by their rids.
    const twice = (n) => labels.indexOf(n) !== labels.lastIndexOf(n);
    const names = labels.map((n, i) => (twice(n) ? `${n} (${choosable[i].rid})` : n));
    const key = choosable.map((l, i) => `${l.rid}=${names[i]}`).join('|');
    if (key !== this.#menuKey) {
      // Rebuilt only when the entries change: the bit rates come every few seconds,
      // and rebuilding would close a menu someone has open.
      this.#menuKey = key;
      const auto = new Option('Auto', '');
      auto.title = 'Chosen by the server from this connection\'s bandwidth';
      this.#quality.replaceChildren(auto, ...choosable.map((l, i) => new Option(names[i], l.rid)));
    }
    choosable.forEach((l, i) => {
      this.#quality.options[i + 1].title = `${l.rid} · ${l.bitrate > 0 ? formatRate(l.bitrate) : 'not sent now'}`;
    });
    const current = choosable.some((l) => l.rid === this.layerChoice) ? this.layerChoice : '';
    this.#quality.value = current;
    const name = names[choosable.findIndex((l) => l.rid === current)];
    this.#quality.title = current ? `Quality: ${name}` : 'Quality: automatic';
  }

  /** What the server's events told about the last session is no longer true. */
  #forgetExtensions() {
    this.#layerUrl = null;
    this.#mediaId = null;
    this.extensions = { events: false, layer: false };
    this.layers = [];
    this.viewerCount = null;
    this.sourceActive = null;
    this.#viewers.hidden = true;
    this.#renderLayers();
  }

  /** Shows `text` for a few seconds (a refused quality change). */
  #showNote(text) {
    this.notice = text;
    this.#note.textContent = text;
    this.#note.hidden = false;
    clearTimeout(this.#noteTimer);
    this.#noteTimer = setTimeout(() => { this.#note.hidden = true; }, NOTE_MS);
  }

  /** Follows a connected session until it ends; resolves with why it ended. */
  #watch(pc, signal, live, onPlaying) {
    return new Promise((resolve) => {
      let prev = null;
      let lastFrames = 0;
      // Decoded frames tell progress; without video, audio packets do.
      const progress = this.kinds.includes('video') ? (s) => s.frames : (s) => s.audioPackets;
      let lastProgress = performance.now();
      let disconnectedSince = null;
      let timer = null;
      const finish = (why) => {
        clearTimeout(timer);
        resolve(why);
      };
      signal.addEventListener('abort', () => finish('stopped'), { once: true });
      live.end.signal.addEventListener('abort', () => finish(live.end.signal.reason), { once: true });
      const tick = async () => {
        if (signal.aborted || live.end.signal.aborted) return;
        const now = performance.now();
        const st = pc.connectionState;
        if (st === 'failed' || st === 'closed') return finish('The connection was lost');
        if (pc.iceConnectionState === 'disconnected') {
          disconnectedSince ??= now;
          if (now - disconnectedSince > DISCONNECTED_MS) return finish('The network dropped');
        } else {
          disconnectedSince = null;
        }
        let s;
        try {
          s = await readStats(pc, 'inbound', prev);
        } catch {
          return finish('The connection was lost');
        }
        if (progress(s) > lastFrames) {
          if (lastFrames === 0 && this.metrics.firstFrameMs === null) {
            this.metrics.firstFrameMs = Math.round(now - this.metrics.postAt);
            this.#video.play().catch(() => this.#setState('playing', 'Press play to start'));
          }
          lastFrames = progress(s);
          lastProgress = now;
          // Frames still in flight when the source left do not end the wait: only
          // those after `active` do.
          if (this.state !== 'playing' && !live.inactive) {
            onPlaying();
            this.#setState('playing', '');
          }
        } else if (live.inactive) {
          // The server said the source left and keeps the session: no stall to detect.
          // The clock restarts when it is back.
          lastProgress = now;
        } else if (now - lastProgress > STALL_MS) {
          return finish('The stream stopped');
        } else if (lastFrames > 0 && now - lastProgress > 2000 && this.state === 'playing') {
          this.#setState('playing', 'The stream is paused. Waiting for it to resume…');
        }
        // Rates over about a second; the first frame is looked for more often.
        if (!prev || now - prev.at >= 900) {
          prev = s;
          this.lastStats = s;
          this.#stats.textContent = formatStats(s);
        }
        timer = setTimeout(tick, lastFrames === 0 ? 25 : 250);
      };
      tick();
    });
  }
}

/** The kinds the answer lets flow: a transceiver the server answered inactive (a kind
 *  the stream lacks) carries nothing. */
function fedKinds(pc) {
  return pc.getTransceivers()
    .filter((t) => t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv')
    .map((t) => t.receiver.track.kind);
}

/** A session that ended by itself (not a 409/429/503 with Retry-After) backs off. */
function retryIsBackoff(outcome) {
  return !outcome.error || outcome.error.retryAfter == null;
}

/** A layer's name in the quality menu: its picture size, else its rid. */
function layerLabel(l) {
  return l.width && l.height ? `${l.width}×${l.height}` : l.rid;
}

function formatRate(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}

function formatStats(s) {
  const ms = (v) => `${v.toFixed(0)} ms`;
  return [
    s.video ? `${s.codec || '?'} ${s.width}×${s.height} @ ${s.fps.toFixed(0)} fps` : `${s.audioCodec || '?'} audio only`,
    `${s.kbps.toFixed(0)} kbit/s`,
    `lost ${s.lost} packets`,
    `jitter buffer ${ms(s.jitterMs)}`,
  ].join('\n');
}

if (!customElements.get('wishd-player')) customElements.define('wishd-player', WishdPlayer);
