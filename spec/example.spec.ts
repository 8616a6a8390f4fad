// The example app: its server serves the page, the router and the client module, and the page works in headless Chromium.

import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { io as connectSocket } from 'socket.io-client';
import { deleteKeys, REDIS_URL, redisClient, uniquePrefix } from './helpers/redis.js';
import { ensureBuild } from './helpers/build.js';
import { skipBecause } from './helpers/skip.js';

const root = resolve(import.meta.dirname, '..');
/** CHROMIUM_PATH points elsewhere (a missing path shows what a machine without Chromium gets). */
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** Debian's Chromium, never a downloaded browser; flags keep it quiet and offline. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const ADMIN = { authorization: 'Bearer demo-admin-token' };
/** The example's environment, without whatever the shell (or CI's REDIS_URL) would change. */
const BASE_ENV = {
  ...process.env,
  REDIS_URL: '',
  LOGIN_POLICY: 'single',
  MAX_INSTANCES_PER_PLATFORM: '',
  MAX_WEB_INSTANCES: '',
  PEERS: '',
  DEMO_ADMIN_TOKEN: '',
};

/** What the example's GET /config answers (the parts checked here). */
interface DemoConfig {
  loginPolicy: string;
  maxInstancesPerPlatform: number;
  maxWebInstances: number;
  store: string;
  heartbeatInterval: number;
  heartbeatTimeout: Record<string, number>;
  platforms: string[];
}

async function readConfig(base: string): Promise<DemoConfig> {
  return (await (await fetch(new URL('config', base))).json()) as DemoConfig;
}

interface Running {
  child: ChildProcess;
  output: () => string;
}

/** Starts a script of the example and waits until it has printed every URL it is expected to. */
function start(script: string, env: Record<string, string | undefined>, urls = 1): Promise<Running & { urls: string[] }> {
  const child = spawn(process.execPath, [join(root, 'example-app', script)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => fail(new Error(`${script} printed no URL within 20 s:\n${output}`)), 20_000);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    const read = (chunk: Buffer): void => {
      output += chunk.toString();
      const found = [...output.matchAll(/Open (http:\/\/localhost:\d+\/)/g)].map((match) => match[1] as string);
      if (found.length >= urls) {
        clearTimeout(timer);
        resolvePromise({ child, urls: found, output: () => output });
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.once('exit', (code) => fail(new Error(`${script} exited (${code}) before printing its URL:\n${output}`)));
  });
}

async function stop(running: Running | undefined): Promise<void> {
  const child = running?.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolvePromise) => child.once('exit', resolvePromise));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Waits until `check` holds, polling, within a deadline (a loaded machine is slow, not wrong). */
async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 50));
  }
}

/** Two free ports in a row, for the cluster script (it takes PORT and PORT + 1). */
async function freePortPair(): Promise<number> {
  const tryListen = (port: number): Promise<boolean> =>
    new Promise((resolvePromise) => {
      const server = createServer();
      server.once('error', () => resolvePromise(false));
      server.listen(port, () => server.close(() => resolvePromise(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below Linux's ephemeral range (32768 and up), where other tests' outgoing connections take ports meanwhile.
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if ((await tryListen(port)) && (await tryListen(port + 1))) return port;
  }
  throw new Error('no two free ports in a row');
}

async function openBrowser(): Promise<{ context: BrowserContext; profile: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'presence-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1360, height: 900 },
  });
  return { context, profile };
}

/** Adds a simulated device through the page's form and waits until it is logged in. */
async function addDevice(page: Page, user: string, platform: string, server = ''): Promise<void> {
  await page.fill('#add-user', user);
  await page.selectOption('#add-platform', platform);
  if (server) await page.selectOption('#add-server', server);
  await page.click('#add-device');
  await page.waitForSelector(`.device[data-user="${user}"][data-platform="${platform}"][data-phase="online"]`);
}

/** Joins a demo device (by its `user/Platform` label) to the Lobby's room with meta as typed. */
async function lobbyJoin(page: Page, label: string, meta: string): Promise<void> {
  // The options' values are per-device keys; the label is in data-label.
  const value = await page.$eval(`#lobby-device option[data-label="${label}"]`, (option) => option.getAttribute('value'));
  expect(value, `the Lobby offers ${label}`).to.be.a('string');
  await page.selectOption('#lobby-device', value as string);
  await page.fill('#lobby-meta', meta);
  await page.click('#lobby-join');
}

/** The devices the board shows for a user, as `Platform:status` in order. */
function boardDevices(page: Page, user: string): Promise<string[]> {
  return page.$$eval(`tr[data-user="${user}"] .chip`, (chips) => chips.map((chip) => `${chip.getAttribute('data-platform')}:${chip.classList[1]}`));
}

function needChromium(context: Mocha.Context): void {
  if (existsSync(CHROMIUM)) return;
  // CI installs it (.ci/run); a developer without it is told how, rather than failing.
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`);
  skipBecause(context, `${CHROMIUM} is missing (install it: apt-get update && apt-get install -y chromium; under CI=1 this is a failure)`);
}

describe('example app', function () {
  this.timeout(30_000);

  before(function () {
    this.timeout(180_000);
    ensureBuild();
  });

  describe('server (in-memory)', function () {
    let server: Running & { urls: string[] };
    let base: string;

    before(async function () {
      server = await start('server.js', { ...BASE_ENV, PORT: '0' });
      base = server.urls[0] as string;
    });

    after(() => stop(server));

    it('prints its URL and the demo timings', function () {
      expect(base).to.match(/^http:\/\/localhost:\d+\/$/);
      expect(server.output()).to.include('login policy single').and.include('web 15 s');
    });

    it('serves the page with an import map for the client helper and socket.io-client', async function () {
      const response = await fetch(base);
      expect(response.status).to.equal(200);
      expect(response.headers.get('content-type')).to.match(/text\/html/);
      const html = await response.text();
      expect(html).to.include('"express-presence/client": "/vendor/express-presence/client/index.js"');
      expect(html).to.include('"socket.io-client": "/socket.io/socket.io.esm.min.js"');
    });

    it('serves the browser modules: the client helper from dist, socket.io-client from Socket.IO', async function () {
      for (const path of ['vendor/express-presence/client/index.js', 'vendor/express-presence/client/core.js', 'socket.io/socket.io.esm.min.js', 'app.js']) {
        const response = await fetch(new URL(path, base));
        expect(response.status, path).to.equal(200);
        expect(response.headers.get('content-type'), path).to.match(/javascript/);
      }
      const helper = await (await fetch(new URL('vendor/express-presence/client/index.js', base))).text();
      expect(helper).to.include('export function createPresenceClient');
    });

    it('answers querystate through the router with the demo authorization, and refuses without it', async function () {
      const body = JSON.stringify({ To_Account: ['nobody'], IsNeedDetail: 1 });
      const ok = await fetch(new URL('presence/v4/openim/querystate', base), {
        method: 'POST',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body,
      });
      expect(ok.status).to.equal(200);
      expect(await ok.json()).to.deep.equal({
        ActionStatus: 'OK',
        ErrorCode: 0,
        ErrorInfo: '',
        QueryResult: [{ To_Account: 'nobody', Status: 'Offline', Availability: 'available', Detail: [] }],
      });
      const refused = await fetch(new URL('presence/v4/openim/querystate', base), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(refused.status).to.equal(401);
      expect(await refused.json()).to.include({ ActionStatus: 'FAIL', ErrorCode: 90009 });
    });

    it('sets availability through the demo route (behind the demo token) and serves the availability panel', async function () {
      const set = await fetch(new URL('demo/availability', base), {
        method: 'POST',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify({ userId: 'dora', availability: 'invisble' }),
      });
      expect(set.status).to.equal(400);
      expect(((await set.json()) as { error: string }).error).to.match(/did you mean "invisible"/);
      const ok = await fetch(new URL('demo/availability', base), {
        method: 'POST',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify({ userId: 'dora', availability: 'dnd' }),
      });
      expect(((await ok.json()) as { change: object }).change).to.include({ availability: 'dnd' });
      const refused = await fetch(new URL('demo/availability', base), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(refused.status).to.equal(401);
      const page = await (await fetch(base)).text();
      expect(page).to.include('/availability.js');
      expect((await fetch(new URL('availability.js', base))).status).to.equal(200);
    });

    it('serves the resolved configuration the page shows', async function () {
      const config = await readConfig(base);
      expect(config).to.include({ loginPolicy: 'single', maxInstancesPerPlatform: 1, maxWebInstances: 1, store: 'memory', heartbeatInterval: 5000 });
      expect(config.heartbeatTimeout).to.deep.equal({ mobile: 20_000, desktop: 20_000, web: 15_000, miniProgram: 15_000 });
      expect(config.platforms).to.have.length(8);
    });
  });

  it('logs each status change in one line, and LOG_CHANGES=0 keeps it quiet', async function () {
    for (const quiet of [false, true]) {
      const server = await start('server.js', { ...BASE_ENV, PORT: '0', LOG_CHANGES: quiet ? '0' : '' });
      const socket = connectSocket(server.urls[0] as string, {
        auth: { user: 'erin', platform: 'Android', instanceId: 'erin-phone' },
        transports: ['websocket'],
      });
      try {
        await new Promise<void>((resolvePromise, reject) => {
          socket.once('presence:session', () => resolvePromise());
          socket.once('connect_error', reject);
        });
        socket.close();
        if (quiet) {
          // The disconnect's change would be logged by now too; give the server a moment past the close.
          await new Promise((resolvePromise) => setTimeout(resolvePromise, 500));
          expect(server.output()).to.not.include('change:');
        } else {
          await waitFor(() => server.output().includes('Disconnect/LinkClose'), 'the Disconnect line');
          const lines = server
            .output()
            .split('\n')
            .filter((line) => line.startsWith('change:'));
          expect(lines).to.deep.equal([
            'change: erin Android erin-p Login/Register: device Online, user Offline -> Online',
            'change: erin Android erin-p Disconnect/LinkClose: device PushOnline, user Online -> PushOnline',
          ]);
        }
      } finally {
        socket.close();
        await stop(server);
      }
    }
  });

  it('on a busy port, says so in one line with how to pick another, and exits 1', async function () {
    const busy = createServer();
    await new Promise<void>((resolvePromise) => busy.listen(0, resolvePromise));
    const { port } = busy.address() as { port: number };
    try {
      const child = spawn(process.execPath, [join(root, 'example-app', 'server.js')], {
        cwd: root,
        env: { ...BASE_ENV, PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const code = await new Promise<number | null>((resolvePromise) => child.once('exit', resolvePromise));
      expect(code).to.equal(1);
      expect(output.trim()).to.equal(
        `express-presence demo: port ${port} is already in use (another demo still running?); pick another port: PORT=${port + 10} npm start`,
      );
    } finally {
      busy.close();
    }
  });

  it('npm start stops on SIGTERM and on SIGINT, closing presence (no server left behind)', async function () {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      // --ignore-scripts skips prestart (the build, done above): npm still runs `start` itself.
      const npmStart = spawn('npm', ['start', '--ignore-scripts'], { cwd: root, env: { ...BASE_ENV, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      npmStart.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      npmStart.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<void>((resolvePromise) => npmStart.once('exit', () => resolvePromise()));
      try {
        await waitFor(() => /Open http:\/\/localhost:\d+\//.test(output), 'the demo URL', 20_000);
        const url = (/Open (http:\/\/localhost:\d+\/)/.exec(output) as RegExpExecArray)[1] as string;
        npmStart.kill(signal);
        await exited;
        expect(output).to.include(`express-presence demo: ${signal}, stopping`);
        // The server process itself is gone, not only npm: its port no longer answers.
        await waitFor(
          () =>
            fetch(url).then(
              () => false,
              () => true,
            ),
          'the server to stop listening',
        );
      } finally {
        if (npmStart.exitCode === null) npmStart.kill('SIGKILL');
        // Should the server have outlived npm (the bug this checks), do not leave it running.
        const pid = Number(/\(pid (\d+),/.exec(output)?.[1]);
        if (pid) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone already, as it should be
          }
        }
      }
    }
  });

  it('takes its options from the environment, and exits naming a bad one', async function () {
    const custom = await start('server.js', { ...BASE_ENV, PORT: '0', LOGIN_POLICY: 'triple', HEARTBEAT_TIMEOUT: '30s', HEARTBEAT_TIMEOUT_WEB: '8s' });
    try {
      const config = await readConfig(custom.urls[0] as string);
      expect(config.loginPolicy).to.equal('triple');
      expect(config.heartbeatTimeout).to.deep.equal({ mobile: 30_000, desktop: 30_000, web: 8_000, miniProgram: 30_000 });
    } finally {
      await stop(custom);
    }
    const result = await start('server.js', { ...BASE_ENV, PORT: '0', LOGIN_POLICY: 'duel' }).then(
      () => expect.fail('the server started with LOGIN_POLICY=duel'),
      (error: Error) => error.message,
    );
    expect(result).to.include('loginPolicy must be one of').and.include('did you mean "dual"');
  });

  describe('in headless Chromium', function () {
    let server: Running & { urls: string[] };
    let browser: { context: BrowserContext; profile: string } | undefined;
    let page: Page;
    const pageErrors: string[] = [];

    before(async function () {
      needChromium(this);
      server = await start('server.js', { ...BASE_ENV, PORT: '0' });
      browser = await openBrowser();
      page = browser.context.pages()[0] ?? (await browser.context.newPage());
      page.on('pageerror', (error) => pageErrors.push(error.message));
      await page.goto(server.urls[0] as string);
      await page.waitForSelector('body[data-ready="true"]');
    });

    after(async function () {
      await browser?.context.close();
      if (browser) rmSync(browser.profile, { recursive: true, force: true });
      await stop(server);
    });

    it('shows the mount: single policy and the demo limits', async function () {
      expect(await page.textContent('#mount-policy')).to.equal('single');
      expect(await page.textContent('#config')).to.include('web 15 s');
    });

    it('kicks the Android when the same user logs in on Web, naming the Web device, and the board follows', async function () {
      await addDevice(page, 'alice', 'Android');
      await page.waitForSelector('tr[data-user="alice"] .chip[data-platform="Android"]');
      expect(await boardDevices(page, 'alice')).to.deep.equal(['Android:online']);

      await addDevice(page, 'alice', 'Web');
      const android = page.locator('.device[data-user="alice"][data-platform="Android"]');
      const banner = android.locator('.banner');
      await banner.waitFor({ state: 'visible' });
      const webInstance = await page.getAttribute('.device[data-user="alice"][data-platform="Web"]', 'data-instance');
      expect(await banner.textContent())
        .to.include('logged in on Web')
        .and.include((webInstance as string).slice(0, 6));
      expect(await banner.getAttribute('data-by')).to.equal(webInstance);
      expect(await android.getAttribute('data-phase')).to.equal('kicked');

      // The user stays Online, so no presence:changed comes: the device list is the router's answer.
      await page.waitForSelector('tr[data-user="alice"] .chip[data-platform="Android"]', { state: 'detached' });
      expect(await boardDevices(page, 'alice')).to.deep.equal(['Web:online']);
      expect(await page.getAttribute('tr[data-user="alice"]', 'data-status')).to.equal('Online');
    });

    it('shows a phone whose app was closed as PushOnline', async function () {
      await addDevice(page, 'bob', 'iPhone');
      await page.waitForSelector('tr[data-user="bob"][data-status="Online"]');
      await page.click('.device[data-user="bob"] [data-action="app"]');
      await page.waitForSelector('tr[data-user="bob"][data-status="PushOnline"]');
      await page.waitForSelector('tr[data-user="bob"] .chip.pushonline[data-platform="iPhone"]');
      expect(await page.getAttribute('.device[data-user="bob"]', 'data-phase')).to.equal('closed');
    });

    it('after an admin kick, a closed app offers "Log in again" (not "Open app"), which logs the same device in afresh', async function () {
      const card = '.device[data-user="bob"]';
      const instance = await page.getAttribute(card, 'data-instance');
      await page.click('tr[data-user="bob"] button.small-button');
      await page.waitForSelector(`${card}[data-phase="kicked"]`);
      expect(await page.textContent(`${card} [data-action="app"]`)).to.equal('Log in again');
      expect(await page.textContent(`${card} .banner`)).to.include('administrator');
      await page.waitForSelector('tr[data-user="bob"][data-status="Offline"]');

      await page.click(`${card} [data-action="app"]`);
      await page.waitForSelector(`${card}[data-phase="online"]`);
      expect(await page.getAttribute(card, 'data-instance')).to.equal(instance);
      expect(await page.textContent('#activity')).to.not.include('SESSION_REVOKED');
      await page.waitForSelector('tr[data-user="bob"][data-status="Online"]');
      // Closed again, so the board is as the next test expects it.
      await page.click(`${card} [data-action="app"]`);
      await page.waitForSelector('tr[data-user="bob"][data-status="PushOnline"]');
    });

    it('shows a custom status and runs the batch query through the router', async function () {
      await addDevice(page, 'carol', 'Mac');
      await page.fill('.device[data-user="carol"] .status-input', 'In a meeting');
      await page.click('.device[data-user="carol"] .status-form button');
      await page.locator('tr[data-user="carol"] .custom', { hasText: 'In a meeting' }).waitFor();

      await page.click('#query-form button');
      await page.waitForSelector('#tool-output:not([hidden])');
      const output = (await page.textContent('#tool-output')) as string;
      const answer = JSON.parse(output.slice(output.indexOf('\n') + 1));
      expect(answer.QueryResult.map((result: { To_Account: string; Status: string }) => `${result.To_Account}:${result.Status}`)).to.deep.equal([
        'alice:Online',
        'bob:PushOnline',
        'carol:Online',
      ]);
    });

    it('Lobby: devices join a room and every member, status, meta and the count show live', async function () {
      const join = (label: string, meta: string): Promise<void> => lobbyJoin(page, label, meta);
      const members = (): Promise<string[]> =>
        page.$$eval('#lobby-members .lobby-member', (items) =>
          items.map((item) => `${item.getAttribute('data-user')}:${item.getAttribute('data-status')}:${item.getAttribute('data-meta')}`),
        );

      await join('alice/Web', '{"seat": 1}');
      await page.waitForSelector('#lobby[data-count="1"]');
      expect(await members()).to.deep.equal(['alice:Online:{"seat":1}']);

      // carol joins from another device: alice's room object (the panel's view) hears it as a diff.
      await join('carol/Mac', 'by the window');
      await page.waitForSelector('#lobby[data-count="2"]');
      expect(await members()).to.deep.equal(['alice:Online:{"seat":1}', 'carol:Online:"by the window"']);
      expect(await page.textContent('#lobby-seen-by')).to.include('alice/Web');
      expect(await page.textContent('#lobby-members .lobby-member[data-user="carol"] .custom')).to.equal('In a meeting');

      // New meta for a member already in: an update, never a leave and a join.
      await join('carol/Mac', '{"seat": 2}');
      await page.waitForSelector('#lobby-members .lobby-member[data-user="carol"][data-meta=\'{"seat":2}\']');
      // A custom status set on the device shows in the room too.
      await page.fill('.device[data-user="carol"] .status-input', 'Lunch');
      await page.click('.device[data-user="carol"] .status-form button');
      await page.locator('#lobby-members .lobby-member[data-user="carol"] .custom', { hasText: 'Lunch' }).waitFor();
      expect(await page.textContent('#activity'))
        .to.include('lobby: carol joined lobby')
        .and.not.include('lobby: carol left');

      // A device logged out (removed) leaves the room; the count follows.
      await addDevice(page, 'dave', 'Android');
      await join('dave/Android', '');
      await page.waitForSelector('#lobby[data-count="3"]');
      expect(await page.getAttribute('#lobby-members .lobby-member[data-user="dave"]', 'data-meta')).to.equal('null');
      await page.click('.device[data-user="dave"] .remove');
      await page.waitForSelector('#lobby[data-count="2"]');
      await page.waitForSelector('#lobby-members .lobby-member[data-user="dave"]', { state: 'detached' });

      // carol leaves with her chip's button.
      await page.click('#lobby-joined .chip[data-label="carol/Mac"] button');
      await page.waitForSelector('#lobby[data-count="1"]');
      expect(await members()).to.deep.equal(['alice:Online:{"seat":1}']);
      expect(await page.textContent('#activity')).to.include('lobby: carol left lobby');
    });

    it('takes a screenshot for README.md', async function () {
      // The committed docs/screenshot.png is rewritten only on request (UPDATE_SCREENSHOT=1) or when
      // missing, so an ordinary test run leaves the work tree clean.
      const update = process.env.UPDATE_SCREENSHOT === '1' || !existsSync(join(root, 'docs', 'screenshot.png'));
      const path = update ? join(root, 'docs', 'screenshot.png') : join(root, '.tmp', 'example-screenshot.png');
      mkdirSync(resolve(path, '..'), { recursive: true });
      await page.screenshot({ path, fullPage: true, animations: 'disabled' });
      expect(statSync(path).size).to.be.greaterThan(10_000);
      expect(pageErrors).to.deep.equal([]);
    });
  });

  describe('cluster (two processes, Redis)', function () {
    let cluster: (Running & { urls: string[] }) | undefined;
    let browser: { context: BrowserContext; profile: string } | undefined;
    const prefix = uniquePrefix('example');

    before(async function () {
      needChromium(this);
      const probe = redisClient();
      const reachable = await probe.ping().then(
        () => true,
        () => false,
      );
      probe.disconnect();
      if (!reachable) {
        if (process.env.CI) throw new Error(`Redis does not answer at ${REDIS_URL}`);
        skipBecause(this, `Redis does not answer at ${REDIS_URL} (start redis-server or set REDIS_URL; under CI=1 this is a failure)`);
      }
      const port = await freePortPair();
      cluster = await start('cluster.js', { ...BASE_ENV, PORT: String(port), REDIS_URL, REDIS_PREFIX: prefix }, 2);
      browser = await openBrowser();
    });

    after(async function () {
      await browser?.context.close();
      if (browser) rmSync(browser.profile, { recursive: true, force: true });
      await stop(cluster);
      // Skipped before the cluster started (no Chromium, no Redis): no keys to delete, and no Redis to wait for.
      if (!cluster) return;
      const client = redisClient();
      await deleteKeys(client, prefix);
      client.disconnect();
    });

    it('shows a kick crossing processes', async function () {
      const [first, second] = (cluster as { urls: string[] }).urls.sort();
      const page = browser?.context.pages()[0] ?? (await (browser as { context: BrowserContext }).context.newPage());
      await page.goto(first as string);
      await page.waitForSelector('body[data-ready="true"]');
      expect(await page.textContent('#config')).to.include('RedisStore');

      await addDevice(page, 'alice', 'Android');
      // The board shows the Android first (its detail comes from a query after the change), so
      // "detached" below is the kick and not a board that had not caught up yet.
      await page.waitForSelector('tr[data-user="alice"] .chip[data-platform="Android"]');
      await addDevice(page, 'alice', 'Web', (second as string).replace(/\/$/, ''));
      const banner = page.locator('.device[data-user="alice"][data-platform="Android"] .banner');
      await banner.waitFor({ state: 'visible' });
      expect(await banner.textContent()).to.include('logged in on Web');
      await page.waitForSelector('tr[data-user="alice"] .chip[data-platform="Android"]', { state: 'detached' });
      await page.waitForSelector('tr[data-user="alice"] .chip[data-platform="Web"]');
      expect(await boardDevices(page, 'alice')).to.deep.equal(['Web:online']);
    });
    it('Lobby: members on two processes are in one room, with one count', async function () {
      const [first, second] = (cluster as { urls: string[] }).urls.sort();
      const page = (browser as { context: BrowserContext }).context.pages()[0] as Page;
      await addDevice(page, 'bob', 'Mac');
      await lobbyJoin(page, 'bob/Mac', '{"seat": 1}');
      await page.waitForSelector('#lobby[data-count="1"]');
      // alice's Web device talks to the other process: bob's room (the panel's view) hears her join from there.
      await lobbyJoin(page, 'alice/Web', '"by the window"');
      await page.waitForSelector('#lobby[data-count="2"]');
      expect(await page.textContent('#lobby-seen-by')).to.include('bob/Mac');
      expect(await page.getAttribute('#lobby-members .lobby-member[data-user="alice"]', 'data-meta')).to.equal('"by the window"');
      // Both processes' routers count the same.
      for (const base of [first, second]) {
        const answer = (await (await fetch(new URL('presence/rooms/lobby', base), { headers: ADMIN })).json()) as { count: number };
        expect(answer.count, base).to.equal(2);
      }
      await page.click('#lobby-joined .chip[data-label="alice/Web"] button');
      await page.waitForSelector('#lobby[data-count="1"]');
    });
  });
});
