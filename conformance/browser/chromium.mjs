// Launches Debian's Chromium headless for the tests, the way it was found to work on
// this machine: a persistent context in a fresh profile directory (playwright refuses
// --user-data-dir in args), fake camera and microphone, loopback candidates allowed,
// no mDNS host names.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';

export const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/** Chromium's version, e.g. "156.0.8078.79". */
export function version() {
  try {
    const v = execFileSync(EXECUTABLE, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return (v.match(/\d+(\.\d+)+/) || [v.trim()])[0];
  } catch {
    return 'unknown';
  }
}

/** A browser context with `newPage()` and `close()` (which also removes the profile). */
export async function launch(chromium, options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wishd-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: EXECUTABLE,
    headless: true,
    args: ARGS,
    viewport: { width: 1100, height: 560 },
    ...options,
  });
  const close = context.close.bind(context);
  context.close = async () => {
    await close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  return context;
}
