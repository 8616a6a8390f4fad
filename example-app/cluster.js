// Starts two demo servers (ports 3000 and 3001) sharing presence through Redis, so a kick can cross processes.
//
// `npm run example:cluster` runs this after a build. Redis must be running (REDIS_URL, default
// redis://127.0.0.1:6379). Open http://localhost:3000/, add alice on Android at :3000 and alice on
// Web at :3001: the Web login in one process kicks the Android in the other.

import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const basePort = Number(process.env.PORT || 3000);
const ports = [basePort, basePort + 1];
const peers = ports.map((port) => `http://localhost:${port}`).join(',');

/** Fails early with a useful message instead of two servers retrying a missing Redis forever. */
function checkRedis() {
  const { hostname, port } = new URL(redisUrl);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname || '127.0.0.1', port: Number(port || 6379) });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

if (!(await checkRedis())) {
  console.error(`express-presence demo cluster: no Redis answers at ${redisUrl}.`);
  console.error('Start one (for instance `redis-server` or `docker run -p 6379:6379 redis`), or set REDIS_URL.');
  process.exit(1);
}

const children = ports.map((port) => {
  const child = spawn(process.execPath, [join(here, 'server.js')], {
    // Same options for both, so the two processes form one mount, as behind a load balancer.
    env: { ...process.env, PORT: String(port), REDIS_URL: redisUrl, PEERS: peers },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = `[:${port}] `;
  const relay = (stream, out) => {
    let buffered = '';
    stream.on('data', (chunk) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) out.write(prefix + line + '\n');
    });
  };
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  child.on('exit', (code, signal) => {
    console.log(`${prefix}exited (${signal ?? code})`);
    // One process gone: stop the other too rather than leave half a cluster running.
    shutdown(code ?? 0);
  });
  return child;
});

let stopping = false;
function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  setTimeout(() => process.exit(code), 3000).unref();
  Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : null))).then(() => process.exit(code));
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
