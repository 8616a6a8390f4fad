// README.md's examples, run as users would run them: each code block is taken from README.md as it
// stands, written beside the package (so `import 'express-presence'` resolves to dist/), and run in
// a child process. Only what a reader must supply is added: the app's own functions (verifyToken,
// areFriends...) as stubs, and a free port or a test URL where the block names a fixed one.

import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connectClient, type Socket } from 'socket.io-client';
import { ensureBuild, root } from './helpers/build.js';
import { deleteKeys, REDIS_URL, redisClient, uniquePrefix } from './helpers/redis.js';

const README = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...README.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1] as string);

/** The one ```js block of README.md containing `marker`. */
function block(marker: string): string {
  const found = blocks.filter((code) => code.includes(marker));
  if (found.length !== 1) throw new Error(`README.md has ${found.length} js blocks containing ${JSON.stringify(marker)}; expected 1`);
  return found[0] as string;
}

/** Replaces `from` in a block, failing if the block no longer has it (the README changed: update this spec). */
function swap(code: string, from: string, to: string): string {
  if (!code.includes(from)) throw new Error(`README block no longer contains ${JSON.stringify(from)}`);
  return code.replace(from, to);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Program {
  child: ChildProcess;
  output: () => string;
  /** Resolves once the output matches `pattern` (stdout and stderr together). */
  waitFor: (pattern: RegExp, what: string, ms?: number) => Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

describe('README examples', function () {
  this.timeout(30_000);
  const dir = join(root, '.tmp', `readme-${process.pid}`);
  const programs: Program[] = [];

  before(function () {
    this.timeout(180_000);
    ensureBuild();
    mkdirSync(dir, { recursive: true });
  });

  afterEach(async () => {
    for (const program of programs.splice(0)) {
      if (program.child.exitCode === null && program.child.signalCode === null) program.child.kill('SIGKILL');
      await program.exited;
    }
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes `code` as an ES module beside the package and runs it. */
  function run(name: string, code: string, env: Record<string, string> = {}, { cwd = dir, args = [] as string[] } = {}): Program {
    const file = join(dir, name);
    writeFileSync(file, code);
    const child = spawn(process.execPath, [file, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const waiters = new Set<() => void>();
    const read = (chunk: Buffer): void => {
      output += chunk.toString();
      for (const waiter of waiters) waiter();
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const program: Program = {
      child,
      output: () => output,
      exited,
      waitFor: (pattern, what, ms = 15_000) =>
        new Promise((resolve, reject) => {
          const check = (): void => {
            const match = output.match(pattern);
            if (!match) return;
            finish();
            resolve(match);
          };
          const timer = setTimeout(() => {
            finish();
            reject(new Error(`${name}: no ${what} within ${ms} ms; output:\n${output}`));
          }, ms);
          const finish = (): void => {
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          void exited.then((code) => {
            if (!waiters.has(check)) return;
            finish();
            reject(new Error(`${name} exited (${code}) before ${what}; output:\n${output}`));
          });
          check();
        }),
    };
    programs.push(program);
    return program;
  }

  /** Waits until an HTTP server answers on the port. */
  async function listening(port: number, program: Program): Promise<void> {
    for (let attempt = 0; attempt < 300; attempt++) {
      if (program.child.exitCode !== null) throw new Error(`the program exited (${program.child.exitCode}):\n${program.output()}`);
      const answered = await fetch(`http://127.0.0.1:${port}/`).then(
        () => true,
        () => false,
      );
      if (answered) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`nothing listens on ${port}:\n${program.output()}`);
  }

  function device(url: string, auth: Record<string, string>): Promise<{ socket: Socket; session: { userId: string; sessionId: string; kicked: unknown[] } }> {
    const socket = connectClient(url, { auth, transports: ['websocket'], reconnection: false });
    return new Promise((resolve, reject) => {
      socket.once('presence:session', (session: { userId: string; sessionId: string; kicked: unknown[] }) => resolve({ socket, session }));
      socket.once('connect_error', reject);
    });
  }

  it('Quick start: a device logs in through Socket.IO, the change is logged, querystate sees it', async () => {
    const port = await freePort();
    const code =
      swap(block("loginPolicy: 'dual'"), 'server.listen(3000);', 'server.listen(Number(process.env.PORT));') +
      '\nasync function verifyToken(token) { return typeof token === "string" && token !== "" ? { id: token } : null; }\n';
    const server = run('quick-start.mjs', code, { PORT: String(port), ADMIN_TOKEN: 'admin-secret' });
    await listening(port, server);
    const url = `http://127.0.0.1:${port}`;
    const phone = await device(url, { token: 'alice', platform: 'Android', instanceId: 'phone-1' });
    expect(phone.session.userId).to.equal('alice');
    await server.waitFor(/alice Android Login\/Register -> Online/, 'logged change');
    // dual: one native device plus the web, so the Web login kicks nobody.
    const web = await device(url, { token: 'alice', platform: 'Web', instanceId: 'tab-1' });
    expect(web.session.kicked).to.deep.equal([]);
    const refused = await new Promise<{ data?: { code?: string } }>((resolve) => {
      const socket = connectClient(url, { auth: { token: '', platform: 'Web' }, transports: ['websocket'], reconnection: false });
      socket.once('connect_error', (error) => {
        socket.close();
        resolve(error as { data?: { code?: string } });
      });
    });
    expect(refused.data?.code).to.equal('UNAUTHENTICATED');
    const answer = await fetch(`${url}/presence/v4/openim/querystate`, {
      method: 'POST',
      headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
      body: JSON.stringify({ To_Account: ['alice', 'bob'], IsNeedDetail: 1 }),
    });
    const body = (await answer.json()) as { QueryResult: { To_Account: string; Status: string; Detail: { Platform: string }[] }[] };
    expect(body.QueryResult.map((user) => `${user.To_Account}:${user.Status}:${user.Detail.map((d) => d.Platform).join('+')}`)).to.deep.equal([
      'alice:Online:Android+Web',
      'bob:Offline:',
    ]);
    phone.socket.close();
    web.socket.close();
  });

  it('The presence API: every call of the block runs against a live mount', async () => {
    const code = `import { createPresence } from 'express-presence';
const presence = createPresence();
const userIds = ['alice', 'bob'];
await presence.engine.connect({ userId: 'alice', platform: 'iPhone', instanceId: 'phone-1', version: '3.2.0' }, () => {});
await presence.engine.connect({ userId: 'alice', platform: 'Web', instanceId: 'tab-1' }, () => {});
${block('await presence.query(userIds, { detail: false })')}
console.log('ran to the end', JSON.stringify(alice));
`;
    const program = run('api.mjs', code);
    expect(await program.exited, program.output()).to.equal(0);
    expect(program.output()).to.match(/ran to the end \{"userId":"alice","status":"Online"/);
  });

  it('Mounting the router: routes behind authorize, no body parser needed', async () => {
    const port = await freePort();
    const code = swap(block('no body parser needed'), 'app.listen(3000);', 'app.listen(Number(process.env.PORT));');
    const server = run('router.mjs', code, { PORT: String(port), PRESENCE_ADMIN_TOKEN: 'admin-secret' });
    await listening(port, server);
    const url = `http://127.0.0.1:${port}/presence`;
    expect((await fetch(`${url}/stats`)).status).to.equal(401);
    const stats = await fetch(`${url}/stats`, { headers: { authorization: 'Bearer admin-secret' } });
    expect(stats.status).to.equal(200);
    expect(await stats.json()).to.deep.include({ users: { Online: 0, PushOnline: 0, Offline: 0 } });
    const query = await fetch(`${url}/users/query`, {
      method: 'POST',
      headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
      body: JSON.stringify({ userIds: ['alice'] }),
    });
    expect(await query.json()).to.deep.equal({
      users: [{ userId: 'alice', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] }],
    });
  });

  it('The status-change callback: the sender block signs, the receiver block (behind a global express.json()) verifies and logs', async () => {
    const port = await freePort();
    const receiver = run('receiver.mjs', swap(block('callbackReceiver('), 'receiver.listen(4001);', 'receiver.listen(Number(process.env.PORT));'), {
      PORT: String(port),
      PRESENCE_SECRET: 'hook-secret',
    });
    await listening(port, receiver);
    const sender = `import { createPresence } from 'express-presence';
const authorize = () => true;
function saveForLater(body, error) { console.log('failed', body.Info.To_Account, error.message); }
${swap(block("presence.on('callback-failed', (body, error) => saveForLater"), "'https://hooks.example.com/presence-hook'", 'process.env.HOOK_URL')}
const { connection } = await presence.engine.connect({ userId: 'u1', platform: 'Android', instanceId: 'phone-1' }, () => {});
presence.engine.disconnect(connection, 'closed');
await presence.close();
`;
    const program = run('sender.mjs', sender, { HOOK_URL: `http://127.0.0.1:${port}/presence-hook`, PRESENCE_SECRET: 'hook-secret' });
    expect(await program.exited, program.output()).to.equal(0);
    expect(program.output()).to.not.match(/failed/);
    const both = await receiver.waitFor(
      /u1 Login\/Register -> Online \(seq (\d+)\)[\s\S]*u1 Disconnect\/LinkClose -> PushOnline \(seq (\d+)\)/,
      'both events verified',
    );
    // README "Sequence numbers": the user's first change is numbered from the clock, the next one more.
    expect(Number(both[2]) - Number(both[1])).to.equal(1);
    // A wrong secret is refused by the receiver block: the sender gives the events up.
    const forged = run('forged.mjs', sender, { HOOK_URL: `http://127.0.0.1:${port}/presence-hook`, PRESENCE_SECRET: 'not-the-secret' });
    expect(await forged.exited).to.equal(0);
    expect(forged.output()).to.match(/failed u1/);
  });

  it('The client helper: logs in, subscribes and sets a status from Node', async () => {
    const port = await freePort();
    const serverCode =
      swap(block("loginPolicy: 'dual'"), 'server.listen(3000);', 'server.listen(Number(process.env.PORT));') +
      '\nasync function verifyToken(token) { return typeof token === "string" && token !== "" ? { id: token } : null; }\n';
    const server = run('client-server.mjs', serverCode, { PORT: String(port), ADMIN_TOKEN: 'admin-secret' });
    await listening(port, server);
    const bob = await device(`http://127.0.0.1:${port}`, { token: 'bob', platform: 'Mac', instanceId: 'mac-1' });
    const client = `const store = new Map();
globalThis.localStorage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, String(v)), removeItem: (k) => store.delete(k) };
function getToken() { return 'carol-viewer'; }
function showLoggedOutElsewhere(reason, by) { console.log('kicked', reason, by); }
function render(change) { console.log('change', JSON.stringify(change)); }
${swap(block("url: 'https://chat.example.com'"), "'https://chat.example.com'", 'process.env.APP_URL')}
console.log('subscribed', JSON.stringify({ users, denied }));
presence.close();
`;
    const program = run('client.mjs', client, { APP_URL: `http://127.0.0.1:${port}` });
    expect(await program.exited, program.output()).to.equal(0);
    expect(program.output()).to.match(/online as carol-viewer/);
    expect(program.output()).to.match(/subscribed \{"users":\[\{"userId":"bob","status":"Online"[^\]]*\},\{"userId":"carol","status":"Offline"/);
    await server.waitFor(/carol-viewer Web Login\/Register -> Online/, "the helper's login");
    bob.socket.close();
  });

  it("Socket.IO: authenticate reuses the app's own io.use() check, handlers read socket.data.presence", async () => {
    const port = await freePort();
    const code = `import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createPresence } from 'express-presence';
const http = createServer((_req, res) => res.writeHead(404).end());
const io = new Server(http);
let checks = 0;
async function verifyToken(token) { checks++; return typeof token === 'string' && token.startsWith('jwt:') ? { id: token.slice(4) } : null; }
${block('socket.data.user = user')}
io.on('connection', (socket) => socket.on('chat:send', () => console.log('token checks', checks)));
http.listen(Number(process.env.PORT));
`;
    const server = run('socket-data.mjs', code, { PORT: String(port) });
    await listening(port, server);
    const url = `http://127.0.0.1:${port}`;
    const { socket, session } = await device(url, { token: 'jwt:ann', platform: 'Web', instanceId: 'tab-1' });
    socket.emit('chat:send', 'hello');
    await server.waitFor(new RegExp(`ann Web tab-1 ${session.sessionId} hello`), 'the handler reading socket.data.presence');
    await server.waitFor(/token checks 1/, 'one token check for the connection');
    socket.close();
    const refused = await new Promise<Error>((resolve) => {
      const forged = connectClient(url, { auth: { token: 'forged', platform: 'Web' }, transports: ['websocket'], reconnection: false });
      forged.once('connect_error', (error) => {
        forged.close();
        resolve(error);
      });
    });
    expect(refused.message).to.equal('bad token');
  });

  it('A plain Socket.IO client: a dropped transport resumes the same session; after a kick the revoked session is forgotten', async () => {
    const port = await freePort();
    const serverCode =
      swap(block("loginPolicy: 'dual'"), 'server.listen(3000);', 'server.listen(Number(process.env.PORT));') +
      '\nasync function verifyToken(token) { return typeof token === "string" && token !== "" ? { id: token } : null; }\n';
    const server = run('plain-server.mjs', serverCode, { PORT: String(port), ADMIN_TOKEN: 'admin-secret' });
    await listening(port, server);
    // The block as README has it, then what the test does around it: drop the transport once, then (once
    // kicked) reconnect with the revoked session, as a device that missed the kick would.
    const client = `function getToken() { return 'pat'; }
function showLoggedOutElsewhere(reason, by) { console.log('kicked', reason, JSON.stringify(by)); }
${swap(block('// A plain socket.io-client'), "'https://chat.example.com'", 'process.env.APP_URL')}
let sessions = 0;
let revoked;
socket.on('presence:session', (s) => {
  sessions++;
  console.log('session', sessions, s.sessionId, s.resumed, JSON.stringify(s.kicked));
  if (sessions === 1) socket.io.engine.close();
});
socket.on('presence:kicked', () => {
  console.log('saved after the kick', JSON.stringify(saved));
  setTimeout(() => {
    saved.sessionId = revoked;
    socket.connect();
  }, 100);
});
socket.on('connect', () => (revoked = saved.sessionId));
socket.on('connect_error', (err) => {
  console.log('refused', err.data?.code, 'saved', JSON.stringify(saved));
  socket.close();
});
`;
    const program = run('plain-client.mjs', client, { APP_URL: `http://127.0.0.1:${port}` });
    const [, first] = await program.waitFor(/session 1 (\S+) false \[\]/, 'the first login');
    const [, second] = await program.waitFor(/session 2 (\S+) true \[\]/, 'the resumed session after the dropped transport');
    expect(second).to.equal(first);
    const kick = await fetch(`http://127.0.0.1:${port}/presence/v4/im_open_login_svc/kick`, {
      method: 'POST',
      headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
      body: JSON.stringify({ UserID: 'pat' }),
    });
    expect(kick.status).to.equal(200);
    await program.waitFor(/kicked AdminKick/, 'the kick notice');
    await program.waitFor(/saved after the kick \{"instanceId":"[^"]+"\}/, 'the session forgotten');
    await program.waitFor(/refused SESSION_REVOKED saved \{"instanceId":"[^"]+"\}/, 'the revoked session refused and forgotten');
    expect(await program.exited, program.output()).to.equal(0);
    expect(program.output().match(/session \d/g)).to.deep.equal(['session 1', 'session 2']);
  });

  describe('with Redis', () => {
    const prefix = uniquePrefix('readme');
    after(async () => {
      const client = redisClient();
      await deleteKeys(client, prefix);
      client.disconnect();
    });

    it('Running several processes: a login on one process kicks a device on the other; SIGTERM exits cleanly', async function () {
      this.timeout(60_000);
      const serverCode = swap(block('// server.mjs'), "prefix: 'myapp:presence:'", `prefix: ${JSON.stringify(prefix)}`);
      const [portA, portB] = [await freePort(), await freePort()];
      const env = { REDIS_URL, ADMIN_TOKEN: 'admin-secret' };
      const a = run('server-a.mjs', serverCode, { ...env, PORT: String(portA) });
      const b = run('server-b.mjs', serverCode, { ...env, PORT: String(portB) });
      await Promise.all([listening(portA, a), listening(portB, b)]);
      const deviceCode = block('// device.mjs');
      const withArgs = (name: string, args: string[]): Program => run(name, deviceCode, {}, { args });
      const phone = withArgs('device-phone.mjs', [`http://127.0.0.1:${portA}`, 'alice', 'Android']);
      await phone.waitFor(/Android logged in, kicked \[\]/, 'the Android login on process A');
      const tab = withArgs('device-tab.mjs', [`http://127.0.0.1:${portB}`, 'alice', 'Web']);
      await tab.waitFor(/Web logged in, kicked \[ \{ platform: 'Android'/, 'the Web login on process B naming the Android');
      await phone.waitFor(/Android kicked \{[\s\S]*reason: 'LoginElsewhere'[\s\S]*platform: 'Web'/, 'the kick told on process A');
      for (const server of [a, b]) server.child.kill('SIGTERM');
      expect(await a.exited, a.output()).to.equal(0);
      expect(await b.exited, b.output()).to.equal(0);
    });
  });

  it('Persistence: a PushOnline phone survives a restart through the SQLite adapter', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'presence-readme-sqlite-'));
    try {
      const code = `${block("from 'express-presence/sqlite'")}
const { connection } = await presence.engine.connect({ userId: 'u1', platform: 'iPhone', instanceId: 'phone-1' }, () => {});
presence.engine.disconnect(connection, 'closed');
await presence.close();
const again = createPresence({ store: new MemoryStore({ persistence: sqlitePersistence(new Database('presence.db')) }) });
const [u1] = await again.query(['u1']);
console.log('after restart', u1.status, u1.instances.map((i) => i.instanceId).join());
await again.close();
`;
      const program = run('sqlite.mjs', code, {}, { cwd });
      expect(await program.exited, program.output()).to.equal(0);
      expect(program.output()).to.match(/after restart PushOnline phone-1/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('Testing code that uses presence: the ManualClock block ends Offline', async () => {
    const code = `${block('new ManualClock()')}
console.log('status', (await presence.query(['u1']))[0].status);
await presence.close();
`;
    const program = run('testing.mjs', code);
    expect(await program.exited, program.output()).to.equal(0);
    expect(program.output()).to.match(/status Offline/);
  });

  it('Rooms: two clients in one document, the diffs, the count and a page', async () => {
    const port = await freePort();
    let code = swap(block('// rooms.mjs'), 'server.listen(3000, resolve)', 'server.listen(Number(process.env.PORT), resolve)');
    code = swap(code, "'http://localhost:3000'", '`http://127.0.0.1:${process.env.PORT}`');
    const program = run('rooms.mjs', code, { PORT: String(port) });
    expect(await program.exited, program.output()).to.equal(0);
    const output = program.output();
    expect(output).to.match(/occupied doc:42/);
    expect(output).to.match(/occupied everyone/);
    expect(output).to.match(/bob sees ann,bob 2/);
    expect(output).to.match(/ann sees join bob \{"name":"Bob"\}/);
    expect(output).to.match(/ann sees update bob \{"name":"Bob","cursor":7\}/);
    expect(output).to.match(/count 2/);
    expect(output).to.match(/members ann,bob null/);
    expect(output).to.match(/change doc:42 ann/);
  });

  it('Availability and privacy: dnd, invisible seen as Offline, the truth for the backend, approximate last seen, away after idleTimeout', async () => {
    const port = await freePort();
    let code = swap(block('// availability.mjs'), 'server.listen(3000, resolve)', 'server.listen(Number(process.env.PORT), resolve)');
    code = swap(code, "'http://localhost:3000'", '`http://127.0.0.1:${process.env.PORT}`');
    const program = run('availability.mjs', code, { PORT: String(port) });
    expect(await program.exited, program.output()).to.equal(0);
    const output = program.output();
    expect(output).to.match(/cy as ann sees Offline null recently/);
    expect(output).to.match(/ann sees bob Online available at lunch/);
    expect(output).to.match(/ann sees bob Online dnd at lunch/);
    expect(output).to.match(/ann sees bob Offline available at lunch/);
    expect(output).to.match(/backend sees bob Online invisible/);
    expect(output).to.match(/availability ann available -> away idle/);
    expect(output).to.match(/availability ann away -> available active/);
  });
});
