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

import { explain, hangUp, negotiate, readStats } from './wish.js';

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
button { position: absolute; top: 8px; right: 8px; border: 0; border-radius: 4px; padding: 6px 10px;
  background: rgba(255,255,255,.9); color: #000; font: inherit; cursor: pointer; }
button[hidden] { display: none; }
.card { position: absolute; inset: 0; display: grid; place-items: center; font-size: 20px;
  letter-spacing: .04em; color: #ddd; pointer-events: none; }
.card[hidden] { display: none; }
`;

/** Time from the WHEP POST without frames after which a stalled session is replaced. */
const STALL_MS = 15000;
/** How long ICE may stay `disconnected` before the player reconnects. */
const DISCONNECTED_MS = 4000;
const MAX_BACKOFF_S = 15;

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

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style><video playsinline autoplay muted></video>
      <pre class="stats" part="stats"></pre><div class="msg" part="message" role="status"></div>
      <div class="card" part="audio-only" hidden>♪ Audio only</div>
      <button type="button" part="unmute" hidden>Unmute</button>`;
    this.#video = root.querySelector('video');
    this.#msg = root.querySelector('.msg');
    this.#stats = root.querySelector('.stats');
    this.#unmute = root.querySelector('button');
    this.#card = root.querySelector('.card');
    this.#unmute.addEventListener('click', () => this.#toggleMute());
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
    if (!this.src) return;
    const abort = new AbortController();
    this.#abort = abort;
    this.#run(abort.signal);
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
    const pc = new RTCPeerConnection();
    const media = new MediaStream();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      media.addTrack(e.track);
      if (this.#video.srcObject !== media) this.#video.srcObject = media;
    };
    let location = null;
    let played = false;
    const token = this.token;
    try {
      this.#setState('connecting', 'Connecting…');
      this.metrics.firstFrameMs = null;
      location = await negotiate(pc, this.src, {
        token,
        signal,
        onPost: () => { this.metrics.postAt = performance.now(); },
      });
      this.metrics.connects += 1;
      this.kinds = fedKinds(pc);
      this.#card.hidden = this.kinds.includes('video') || !this.kinds.includes('audio');
      const why = await this.#watch(pc, signal, () => { played = true; });
      return { played, why };
    } catch (error) {
      if (signal.aborted) return { played };
      return { played, error };
    } finally {
      pc.close();
      this.#video.srcObject = null;
      this.#card.hidden = true;
      hangUp(location, token);
    }
  }

  /** Follows a connected session until it ends; resolves with why it ended. */
  #watch(pc, signal, onPlaying) {
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
      const tick = async () => {
        if (signal.aborted) return;
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
          if (this.state !== 'playing') {
            onPlaying();
            this.#setState('playing', '');
          }
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
