// The express-presence demo server: Express 5 + Socket.IO with presence mounted as an app would, plus the device simulator page.
//
// Run it with `npm start` (in-memory store) or `npm run example:cluster` (two processes sharing
// Redis). Everything presence-related below is what a real app writes; the parts marked DEMO ONLY
// (who a socket is, who may use the admin routes) stand in for the app's own authentication.

import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { Server } from 'socket.io';
// The package's own entry points, by name: Node resolves them through package.json's exports map
// once `npm run build` has written dist/, exactly as in an app that installed express-presence.
import { createPresence, PLATFORMS, platformClass } from 'express-presence';

const here = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// Options from the environment, so each behaviour can be tried without editing code.
// ---------------------------------------------------------------------------------------------

const env = process.env;

/** Reads a duration such as `15000`, `15s`, `2m`, `1h` or `7d` (a bare number is milliseconds). */
function readDuration(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(raw);
  if (!match) fail(`${name} must be a duration such as 15000, 15s, 2m or 7d; got ${JSON.stringify(raw)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(match[2] ?? 'ms').toLowerCase()];
  return Math.round(Number(match[1]) * unit);
}

/** A per-class duration: `NAME` sets every class, `NAME_MOBILE` (…_DESKTOP, _WEB, _MINIPROGRAM) one of them. */
function readPerClass(name, defaults) {
  const all = env[name] === undefined ? undefined : readDuration(name);
  return {
    mobile: readDuration(`${name}_MOBILE`, all ?? defaults.mobile),
    desktop: readDuration(`${name}_DESKTOP`, all ?? defaults.desktop),
    web: readDuration(`${name}_WEB`, all ?? defaults.web),
    miniProgram: readDuration(`${name}_MINIPROGRAM`, all ?? defaults.miniProgram),
  };
}

/** A number when the text is one; otherwise the text itself, so createPresence names the option in its error. */
function readNumber(name) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  return /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
}

function fail(message) {
  console.error(`express-presence demo: ${message}`);
  process.exit(1);
}

// The library's defaults are minutes (400 s heartbeat timeout on mobile, 7 days of PushOnline):
// right for production, too slow to watch. The demo shortens them so every transition of SPEC.md
// happens within seconds; each can still be set from the environment.
const demoOptions = {
  loginPolicy: env.LOGIN_POLICY || 'single',
  maxInstancesPerPlatform: readNumber('MAX_INSTANCES_PER_PLATFORM'),
  maxWebInstances: readNumber('MAX_WEB_INSTANCES'),
  heartbeatInterval: readDuration('HEARTBEAT_INTERVAL', 5_000),
  heartbeatTimeout: readPerClass('HEARTBEAT_TIMEOUT', { mobile: 20_000, desktop: 20_000, web: 15_000, miniProgram: 15_000 }),
  backgroundTimeout: readPerClass('BACKGROUND_TIMEOUT', { mobile: 0, desktop: 0, web: 0, miniProgram: 10_000 }),
  pushOnlineTtl: readDuration('PUSH_ONLINE_TTL', 60_000),
  reconnectGrace: readPerClass('RECONNECT_GRACE', { mobile: 0, desktop: 0, web: 0, miniProgram: 0 }),
  // Away after this long without input (the page's devices report it); short, so the demo shows it.
  idleTimeout: readPerClass('IDLE_TIMEOUT', { mobile: 0, desktop: 30_000, web: 30_000, miniProgram: 30_000 }),
};
// Unset limits are left out, so the library's own defaults (1 and 1) apply.
for (const key of Object.keys(demoOptions)) if (demoOptions[key] === undefined) delete demoOptions[key];

const port = readNumber('PORT') ?? 3000;
if (typeof port !== 'number') fail(`PORT must be a port number; got ${JSON.stringify(port)}`);
const redisUrl = env.REDIS_URL || undefined;
/** REDIS_CLUSTER=host:port,...: a Redis Cluster instead of one Redis (an ioredis Cluster and the sharded adapter). */
const redisCluster = env.REDIS_CLUSTER
  ? env.REDIS_CLUSTER.split(',').map((node) => {
      const [host, portText] = node.trim().split(':');
      const clusterPort = Number(portText);
      if (!host || !Number.isInteger(clusterPort)) fail(`REDIS_CLUSTER must be host:port,host:port,...; got ${JSON.stringify(env.REDIS_CLUSTER)}`);
      return { host, port: clusterPort };
    })
  : undefined;
/** Other processes of `npm run example:cluster`, offered on the page as servers a device may connect to. */
const peers = (env.PEERS ?? '')
  .split(',')
  .map((peer) => peer.trim())
  .filter(Boolean);

// DEMO ONLY: the page needs admin access to the router (batch query, kick) straight from the
// browser. A real app never gives an admin credential to browsers: its own backend calls these
// routes, with whatever authentication the app already has.
const DEMO_ADMIN_TOKEN = env.DEMO_ADMIN_TOKEN || 'demo-admin-token';

// ---------------------------------------------------------------------------------------------
// The store: in memory by default; with REDIS_URL (or REDIS_CLUSTER), shared by every process through Redis.
// ---------------------------------------------------------------------------------------------

/** Everything opened for Redis mode, closed on shutdown. */
const redisClients = [];

async function redisMode(io) {
  // Imported only here: a single-process app never loads a Redis client.
  const [{ Redis, Cluster }, { createAdapter, createShardedAdapter }, { RedisStore }] = await Promise.all([
    import('ioredis'),
    import('@socket.io/redis-adapter'),
    import('express-presence/redis'),
  ]);
  const prefix = env.REDIS_PREFIX || 'presence-demo:';
  if (redisCluster) {
    // ioredis needs shardedSubscribers for sharded pub/sub: without it the adapter's MOVED errors crash the process.
    const cluster = new Cluster(redisCluster, { shardedSubscribers: true });
    const adapterSub = cluster.duplicate();
    redisClients.push(cluster, adapterSub);
    io.adapter(createShardedAdapter(cluster, adapterSub, { channelPrefix: `${prefix}socket.io` }));
    return new RedisStore({ client: cluster, prefix });
  }
  const client = new Redis(redisUrl);
  const adapterPub = client.duplicate();
  const adapterSub = client.duplicate();
  redisClients.push(client, adapterPub, adapterSub);
  // Socket.IO's own Redis adapter carries kicks and `presence:changed` to sockets on other
  // processes; RedisStore keeps the presence itself and runs the login policy atomically.
  io.adapter(createAdapter(adapterPub, adapterSub, { key: `${prefix}socket.io` }));
  return new RedisStore({ client, prefix });
}

// ---------------------------------------------------------------------------------------------
// The app.
// ---------------------------------------------------------------------------------------------

const app = express();
const httpServer = createServer(app);
const io = new Server(httpServer, {
  // The cluster page connects devices to the other process too (another port is another origin).
  // Loopback pages only: this is a demo, not a public service.
  cors: { origin: /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/ },
});

let presence;
try {
  presence = createPresence({
    ...demoOptions,
    ...(redisUrl || redisCluster ? { store: await redisMode(io) } : {}),

    // DEMO ONLY: whoever connects says who they are in `auth.user`, so the page can play any user.
    // A real app checks its own credential here (a session cookie, a JWT in `auth.token`) and
    // answers the user id it proves, or null to refuse the handshake.
    authenticate: (handshake) => {
      const user = handshake.auth.user;
      return typeof user === 'string' && /^[\w.@-]{1,64}$/.test(user) ? { userId: user } : null;
    },

    // DEMO ONLY: the router's admin routes (querystate, kick, stats) accept the demo token. A real
    // app puts its own admin check here: an API key, an mTLS identity, an internal network.
    authorize: (req) => req.headers.authorization === `Bearer ${DEMO_ADMIN_TOKEN}`,

    // Lobby panel: who may join a room from the client. DEMO ONLY: everyone may join any room. A
    // real app checks membership here (is this user in this chat, may they open this document).
    canJoin: (_userId, _room) => true,
  });
} catch (error) {
  // An option from the environment was wrong; the library's message names it and what it accepts.
  fail(error instanceof Error ? error.message : String(error));
}

// Presence is now two lines: the admin routes and the Socket.IO wiring.
app.use('/presence', presence.router());
presence.attach(io);

// DEMO ONLY: the availability panel sets a user's availability from the server (a user's own
// device would send presence:set-availability). Behind the demo admin token like the router.
app.post('/demo/availability', express.json(), async (req, res) => {
  if (req.headers.authorization !== `Bearer ${DEMO_ADMIN_TOKEN}`) return res.status(401).json({ error: 'unauthorised' });
  try {
    res.json({ change: await presence.setAvailability(String(req.body?.userId ?? ''), req.body?.availability) });
  } catch (error) {
    res.status(400).json({ error: error instanceof Error ? error.message : String(error) });
  }
});

// What the page shows in its "this mount" panel: the resolved configuration, not the raw
// environment, so it is exactly what the library enforces.
app.get('/config', (_req, res) => {
  const { config } = presence;
  res.json({
    loginPolicy: config.loginPolicy,
    maxInstancesPerPlatform: config.maxInstancesPerPlatform,
    maxWebInstances: config.maxWebInstances,
    heartbeatInterval: config.heartbeatInterval,
    heartbeatTimeout: config.heartbeatTimeout,
    backgroundTimeout: config.backgroundTimeout,
    pushOnlineTtl: config.pushOnlineTtl,
    reconnectGrace: config.reconnectGrace,
    idleTimeout: config.idleTimeout,
    platforms: PLATFORMS,
    platformClasses: Object.fromEntries(PLATFORMS.map((platform) => [platform, platformClass(platform)])),
    store: redisCluster ? 'redis-cluster' : redisUrl ? 'redis' : 'memory',
    server: { pid: process.pid, port: httpServer.address()?.port },
    peers,
    // DEMO ONLY (see DEMO_ADMIN_TOKEN above).
    adminToken: DEMO_ADMIN_TOKEN,
  });
});

// The browser helper, straight from the package's build: the page imports `express-presence/client`
// through an import map that points here, and `socket.io-client` at the ESM build that Socket.IO
// serves itself at /socket.io/socket.io.esm.min.js. No bundler anywhere.
const clientDir = dirname(fileURLToPath(import.meta.resolve('express-presence/client')));
app.use('/vendor/express-presence/client', express.static(clientDir, { index: false }));
app.use(express.static(join(here, 'public')));

// ---------------------------------------------------------------------------------------------
// Start and stop.
// ---------------------------------------------------------------------------------------------

// A busy port is the commonest first-run problem: say so in one line, not with a stack.
httpServer.once('error', (error) => {
  if (error.code === 'EADDRINUSE') fail(`port ${port} is already in use (another demo still running?); pick another port: PORT=${port + 10} npm start`);
  if (error.code === 'EACCES') fail(`port ${port} needs privileges this user lacks; pick another port: PORT=${port + 3000} npm start`);
  fail(`cannot listen on port ${port}: ${error.message}`);
});

// One short line per status change, as an app would log them; LOG_CHANGES=0 keeps the console quiet.
if (env.LOG_CHANGES !== '0') {
  presence.on('change', (change) => {
    const kicked =
      change.kicked.length > 0 ? `, kicked ${change.kicked.map((device) => `${device.platform} ${device.instanceId.slice(0, 6)}`).join(', ')}` : '';
    console.log(
      `change: ${change.userId} ${change.platform} ${change.instanceId.slice(0, 6)} ${change.action}/${change.reason}: device ${change.instanceStatus}, user ${change.previousUserStatus} -> ${change.userStatus}${kicked}`,
    );
  });
}

httpServer.listen(port, () => {
  const { port: actualPort } = httpServer.address();
  const { config } = presence;
  const seconds = (ms) => (ms === 0 ? 'never' : `${ms / 1000} s`);
  const perClass = (value) =>
    `mobile ${seconds(value.mobile)}, desktop ${seconds(value.desktop)}, web ${seconds(value.web)}, miniProgram ${seconds(value.miniProgram)}`;
  console.log(
    `express-presence demo (pid ${process.pid}, ${redisCluster ? `Redis Cluster at ${env.REDIS_CLUSTER}` : redisUrl ? `Redis at ${redisUrl}` : 'in-memory store'})`,
  );
  console.log(`  login policy ${config.loginPolicy}; ${config.maxInstancesPerPlatform} per platform, ${config.maxWebInstances} across Web + MiniProgram`);
  console.log(`  heartbeat every ${seconds(config.heartbeatInterval)}; timeout ${perClass(config.heartbeatTimeout)}`);
  console.log(`  background timeout ${perClass(config.backgroundTimeout)}; PushOnline kept ${seconds(config.pushOnlineTtl)}`);
  if (peers.length > 0) console.log(`  cluster peers: ${peers.join(', ')}`);
  // The test harness (spec/example.spec.ts) reads this line to find the port when PORT=0.
  console.log(`Open http://localhost:${actualPort}/`);
});

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`express-presence demo: ${signal}, stopping`);
  // Closing presence first stops its timers and, in Redis mode, hands this process's devices over:
  // those reconnecting to another process within handoverGrace carry on with no transition (in
  // memory mode it ends them). The connections io.close() then closes change nothing more.
  await presence.close().catch((error) => console.error(error));
  io.close();
  for (const client of redisClients) client.disconnect();
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
