// Meetecho's janus-whep-server (npm janus-whep-server, pinned in conformance/package.json)
// in front of a Janus whose streaming plugin serves mountpoint 1: the WHEP peer server
// tests/janus.rs plays from.
//
// Usage: node conformance/janus/whep-server.mjs [--server-offers] JANUS_WS_URL REST_PORT ENDPOINT_ID [TOKEN]
//   e.g. node conformance/janus/whep-server.mjs ws://127.0.0.1:8188 7090 cam
// Serves POST /whep/endpoint/ENDPOINT_ID (mountpoint 1; with TOKEN, a Bearer token is
// required) on REST_PORT, every address. Once it serves, prints one line on stdout:
//   {"event":"ready","url":"http://127.0.0.1:REST_PORT/whep/endpoint/ENDPOINT_ID","offers":"viewer"}
// and then runs until killed. The library logs on stdout too ("[WHEP] ...").
//
// Offers: janus-whep-server passes the viewer's offer to Janus whenever Janus is 1.x
// ("offers":"viewer", standard WHEP: 201 with Janus's SDP). Janus's streaming plugin
// answers viewers' offers only from 1.1.4 on; older ones (Debian 12 has 1.1.2) ignore
// the offer and send their own offer back, which the library then returns with 201 as
// if it were the answer. With --server-offers the library runs the way it does for
// Janus 0.x ("offers":"server"): the POST's body is not passed on, the response is 406
// with Janus's offer, and the viewer PATCHes its answer (application/sdp) to the
// Location. That is the pre-standard WHEP flow (draft-murillo-whep-01).
//
// janode, which janus-whep-server talks to Janus with, imports its Unix-socket
// transport (the native module unix-dgram) even when only WebSockets are used. Where
// that module did not build, a stub stands in for it: the WebSocket transport is all
// this script needs.

import { register } from 'node:module';

const args = process.argv.slice(2);
const serverOffers = args[0] === '--server-offers';
if (serverOffers) args.shift();
const [janusUrl, restPort, endpointId, token] = args;
if (!janusUrl || !restPort || !endpointId) {
  console.error('usage: whep-server.mjs [--server-offers] JANUS_WS_URL REST_PORT ENDPOINT_ID [TOKEN]');
  process.exit(2);
}

try {
  await import('unix-dgram');
} catch (e) {
  console.error(`[whep-server] unix-dgram unavailable (${String(e.message).split('\n')[0]}): stubbed`);
  const stub = 'export function createSocket() { throw new Error("unix-dgram is not built"); }';
  const hooks = `export async function resolve(spec, ctx, next) {
    if (spec === 'unix-dgram') return { url: 'data:text/javascript,${encodeURIComponent(stub)}', shortCircuit: true };
    return next(spec, ctx);
  }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}

const { JanusWhepServer } = await import('janus-whep-server');

// The library picks its offer mode each time it connects to Janus (`multistream`:
// whether Janus is 1.x); --server-offers overrides that choice after each connect.
class Server extends JanusWhepServer {
  async _connectToJanus() {
    await super._connectToJanus();
    if (serverOffers) this.multistream = false;
  }
}

const server = new Server({
  janus: { address: janusUrl },
  rest: { port: Number(restPort), basePath: '/whep' },
});
await server.start();
server.createEndpoint({ id: endpointId, mountpoint: 1, token: token || undefined });
// start() resolves before the HTTP server listens: wait for it.
if (server.server && !server.server.listening) {
  await new Promise((resolve) => server.server.once('listening', resolve));
}
console.log(JSON.stringify({
  event: 'ready',
  url: `http://127.0.0.1:${restPort}/whep/endpoint/${endpointId}`,
  offers: serverOffers ? 'server' : 'viewer',
}));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.destroy().catch(() => {}).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
