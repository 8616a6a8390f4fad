// The demo page's logic: simulated devices on express-presence/client, a live board of their users, and the mount's admin routes.
/* global fetch, location, setInterval, Option */

// `express-presence/client` and `socket.io-client` are bare names the page's import map resolves
// (see index.html); with a bundler the same two lines work unchanged.
import { createPresenceClient } from 'express-presence/client';
import { NetworkLink } from './network.js';
import { mountLobby } from './lobby.js';

const $ = (selector, root = document) => root.querySelector(selector);

/** Creates an element with a class and text. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const shortId = (id) => (id ? id.slice(0, 6) : '…');

function seconds(ms) {
  if (ms === 0) return 'never';
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 120_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

function ago(iso) {
  if (!iso) return 'never';
  const elapsed = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (elapsed < 3) return 'now';
  if (elapsed < 90) return `${elapsed} s ago`;
  return `${Math.round(elapsed / 60)} min ago`;
}

// ---------------------------------------------------------------------------------------------
// The mount's configuration and its admin routes.
// ---------------------------------------------------------------------------------------------

const config = await (await fetch('/config')).json();
/** Platform -> class (mobile, desktop, web, miniProgram), as the library defines it. */
const CLASS_OF = config.platformClasses;

/**
 * Calls the presence router. DEMO ONLY: the page holds the admin token so you can click the
 * admin routes; in a real app the browser never does, the app's backend calls them.
 */
async function presenceApi(method, path, body) {
  const response = await fetch(`/presence${path}`, {
    method,
    headers: { authorization: `Bearer ${config.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail ?? answer.ErrorInfo ?? `${path} answered ${response.status}`);
  return answer;
}

// ---------------------------------------------------------------------------------------------
// Activity log.
// ---------------------------------------------------------------------------------------------

function log(text, tone = '') {
  const list = $('#activity');
  const item = el('li', tone);
  item.append(el('time', 'muted', new Date().toLocaleTimeString()), document.createTextNode(` ${text}`));
  list.prepend(item);
  while (list.children.length > 60) list.lastElementChild.remove();
}

// ---------------------------------------------------------------------------------------------
// The board: the users of the simulated devices, watched live.
// ---------------------------------------------------------------------------------------------

/** What the board knows of each user, by id, in the order they were added. */
const board = new Map();

// The board watches through a connection of its own, logged in as a "viewer" user, exactly like
// an app's contact list: any logged-in client may subscribe to the users it can see (the
// `canSee` option decides; the demo lets everyone see everyone). A random id per page keeps two
// open tabs from displacing each other's viewer under the login policy.
const viewerId = `viewer-${Math.random().toString(36).slice(2, 7)}`;
const viewer = createPresenceClient({ platform: 'Web', auth: { user: viewerId }, trackVisibility: false });
viewer.on('session', () => {
  $('#board-note').dataset.live = 'true';
  scheduleRefresh();
});
viewer.on('disconnect', () => delete $('#board-note').dataset.live);

/** Applies a subscription update (`presence:changed`, or the answer of `presence:subscribe`). */
function applyWatched(user) {
  const row = board.get(user.userId);
  if (!row) return;
  const changed = row.status !== undefined && row.status !== user.status;
  Object.assign(row, { status: user.status, customStatus: user.customStatus, lastSeen: user.lastSeen });
  if (changed) {
    log(`board: ${user.userId} is now ${user.status}`, 'board');
    row.flash = true;
  }
  renderBoard();
  // Device detail is not part of a subscription: ask the router for it.
  scheduleRefresh();
}

function watchUser(userId) {
  if (board.has(userId)) return;
  board.set(userId, { userId, status: undefined, customStatus: null, lastSeen: null, instances: [] });
  renderBoard();
  viewer.subscribe([userId], applyWatched).then(
    (answer) => answer.users.forEach(applyWatched),
    (error) => log(`board: could not watch ${userId}: ${error.message}`, 'bad'),
  );
}

let refreshTimer;
/** Coalesces refresh requests: many events in a burst make one query. */
function scheduleRefresh(delay = 120) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshDetail, delay);
}

/**
 * Refreshes every user's devices through the batch route. Subscriptions tell when a *user's*
 * status changes; a device coming or going without changing it (a kick by another device of the
 * same user, a timeout beside a live device) shows up here, so the board also refreshes on a timer.
 */
async function refreshDetail() {
  if (board.size === 0) return;
  try {
    const { users } = await presenceApi('POST', '/users/query', { userIds: [...board.keys()] });
    for (const user of users) {
      const row = board.get(user.userId);
      if (!row) continue;
      if (row.status !== undefined && row.status !== user.status) row.flash = true;
      Object.assign(row, user);
    }
    renderBoard();
  } catch (error) {
    log(`board: query failed: ${error.message}`, 'bad');
  }
}
setInterval(refreshDetail, 2000);

function statusBadge(status) {
  return el('span', `badge ${(status ?? 'unknown').toLowerCase()}`, status ?? '…');
}

function deviceChip(user, instance) {
  const chip = el('span', `chip ${instance.status.toLowerCase()}`);
  chip.dataset.platform = instance.platform;
  chip.dataset.instance = instance.instanceId;
  chip.append(el('span', 'dot'), el('b', '', instance.platform), el('span', 'muted', ` ${shortId(instance.instanceId)}`));
  if (instance.status === 'PushOnline') {
    const left = Math.max(0, Math.round((Date.parse(instance.since) + config.pushOnlineTtl - Date.now()) / 1000));
    chip.title = `PushOnline since ${new Date(instance.since).toLocaleTimeString()}; expires in about ${left} s without a new login`;
    chip.append(el('span', 'muted', ` · push ${seconds(left * 1000)}`));
  } else {
    chip.title = `Online since ${new Date(instance.since).toLocaleTimeString()}`;
  }
  const kick = el('button', 'icon', '×');
  kick.type = 'button';
  kick.title = `Admin kick: this ${instance.platform} device only`;
  kick.setAttribute('aria-label', `Kick ${user.userId}'s ${instance.platform}`);
  kick.addEventListener('click', () => adminKick(user.userId, { instanceId: instance.instanceId }));
  chip.append(kick);
  return chip;
}

function renderBoard() {
  const body = $('#board-rows');
  body.replaceChildren();
  if (board.size === 0) {
    const empty = el('tr', 'empty-row');
    const cell = el('td', '', 'Users appear here as you add their devices.');
    cell.colSpan = 6;
    empty.append(cell);
    body.append(empty);
    return;
  }
  for (const user of board.values()) {
    const tr = el('tr');
    tr.dataset.user = user.userId;
    tr.dataset.status = user.status ?? '';
    if (user.flash) {
      tr.classList.add('flash');
      user.flash = false;
    }
    const devices = el('td', 'devices-cell');
    if (user.instances?.length) for (const instance of user.instances) devices.append(deviceChip(user, instance));
    else devices.append(el('span', 'muted', 'none'));
    const kickAll = el('button', 'small-button', 'Kick all');
    kickAll.type = 'button';
    kickAll.disabled = !user.instances?.length;
    kickAll.addEventListener('click', () => adminKick(user.userId, {}));
    const status = el('td');
    status.append(statusBadge(user.status));
    const actions = el('td');
    actions.append(kickAll);
    tr.append(el('td', 'user-cell', user.userId), status, devices, el('td', 'custom', user.customStatus ?? ''), el('td', 'muted', ago(user.lastSeen)), actions);
    body.append(tr);
  }
}

// ---------------------------------------------------------------------------------------------
// Admin tools: the batch query and the kick, through the router.
// ---------------------------------------------------------------------------------------------

function showOutput(title, value) {
  const output = $('#tool-output');
  output.hidden = false;
  output.textContent = `${title}\n${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}`;
}

async function adminKick(userId, filter) {
  try {
    const answer = await presenceApi('POST', `/users/${encodeURIComponent(userId)}/kick`, filter);
    showOutput(`POST /presence/users/${userId}/kick ${JSON.stringify(filter)}`, answer);
    log(`admin kicked ${answer.kicked.length} device(s) of ${userId}`, 'admin');
    // Connected devices hear the kick themselves; closed ones are told here.
    for (const device of devices) {
      if (device.user === userId && answer.kicked.some((ref) => ref.instanceId === device.client.instanceId)) device.kickedWhileAway();
    }
    scheduleRefresh(0);
  } catch (error) {
    showOutput('kick failed', error.message);
  }
}

$('#query-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('#query-users');
  const accounts = (input.value.trim() ? input.value : [...board.keys()].join(','))
    .split(',')
    .map((id) => id.trim())
    .filter(Boolean);
  const body = { To_Account: accounts, IsNeedDetail: $('#query-detail').checked ? 1 : 0, IsReturnInstid: 1 };
  try {
    showOutput('POST /presence/v4/openim/querystate', await presenceApi('POST', '/v4/openim/querystate', body));
  } catch (error) {
    showOutput('querystate failed', error.message);
  }
});

$('#kick-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const platform = $('#kick-platform').value;
  void adminKick($('#kick-user').value.trim(), platform ? { platform } : {});
});

// ---------------------------------------------------------------------------------------------
// Simulated devices.
// ---------------------------------------------------------------------------------------------

/** The phases a simulated device goes through, as its card shows them. */
const PHASE_TEXT = {
  connecting: 'Connecting…',
  online: 'Online',
  closed: 'App closed',
  offline: 'Network lost',
  kicked: 'Kicked',
  'logged-out': 'Logged out',
  refused: 'Refused',
  reconnecting: 'Reconnecting…',
  'timed-out': 'Timed out',
};

/** Phases in which the device is not logged in on a live connection and waits for a click. */
const ENDED = ['closed', 'kicked', 'logged-out', 'refused', 'timed-out'];

class SimulatedDevice {
  constructor({ user, platform, server }) {
    this.user = user;
    this.platform = platform;
    this.platformClass = CLASS_OF[platform];
    this.server = server;
    this.phase = 'connecting';
    this.inBackground = false;
    this.networkDownSince = 0;
    this.backgroundSince = 0;
    /** Set when an admin kick ended this device while it was not connected (see kickedWhileAway). */
    this.needsFreshLogin = false;
    this.link = new NetworkLink();
    this.card = this.buildCard();
    this.client = this.createClient();
    this.listen();
  }

  /** A client for this device; given the instanceId of an earlier one, the same device logs in afresh (no session to resume). */
  createClient(instanceId) {
    return createPresenceClient({
      // Another process of `npm run example:cluster`, or this page's own server.
      url: this.server,
      ...(instanceId ? { instanceId } : {}),
      platform: this.platform,
      // DEMO ONLY: the server's authenticate takes the user id as given; a real app sends a token.
      auth: { user: this.user },
      // One page plays many devices: background / foreground come from the buttons, not from the tab.
      trackVisibility: false,
      // `io` could be injected here (say, a global from /socket.io/socket.io.js); the import map
      // makes the helper's own `import { io } from 'socket.io-client'` work instead.
      socketOptions: { transports: [this.link.transport], reconnectionDelay: 500, reconnectionDelayMax: 2000 },
    });
  }

  /**
   * An admin kick from this page ended this device while its app was closed (or the server had
   * dropped it): no socket heard the kick, so the card says it here, and the next "Log in again"
   * is a fresh login rather than a resume of the revoked session.
   */
  kickedWhileAway() {
    if (this.phase !== 'closed' && this.phase !== 'timed-out') return;
    this.phase = 'kicked';
    this.needsFreshLogin = true;
    this.showBanner('Signed out by an administrator while the app was closed');
    log(`${this.label} was kicked by an admin while its app was closed`, 'bad');
    this.render();
  }

  get label() {
    return `${this.user}/${this.platform}`;
  }

  listen() {
    const client = this.client;
    client.on('session', (session) => {
      this.phase = 'online';
      this.hideBanner();
      const displaced = session.kicked.map((device) => `${device.platform} ${shortId(device.instanceId)}`).join(', ');
      log(
        `${this.label} ${session.resumed ? 'resumed its session' : 'logged in'} as instance ${shortId(session.instanceId)}${displaced ? `, displacing ${displaced}` : ''}`,
        'good',
      );
      this.render();
      scheduleRefresh();
    });
    client.on('kicked', (notice) => {
      this.phase = 'kicked';
      if (notice.reason === 'LoginElsewhere' && notice.by) {
        const by = `${notice.by.platform} ${shortId(notice.by.instanceId)}`;
        this.showBanner(`Signed out: ${this.user} logged in on ${by}`, notice.by);
        log(`${this.label} was kicked by ${by} (LoginElsewhere)`, 'bad');
      } else {
        this.showBanner('Signed out by an administrator');
        log(`${this.label} was kicked by an admin`, 'bad');
      }
      this.render();
      scheduleRefresh();
    });
    client.on('error', (error) => {
      if (error.code === 'SESSION_REVOKED') {
        // A kick or logout that happened while this device could not hear it (network lost).
        this.phase = 'kicked';
        this.showBanner('Signed out while offline: the session was revoked');
      } else if (['UNAUTHENTICATED', 'BAD_PLATFORM', 'BAD_REQUEST'].includes(error.code)) {
        this.phase = 'refused';
      }
      log(`${this.label}: ${error.code} ${error.message}`, 'bad');
      this.render();
    });
    client.on('disconnect', (reason) => {
      // Our own close or logout, or a kick: the phase is already set. Otherwise the server ended
      // the connection without a notice (a background timeout: the helper then stays stopped), or
      // the link broke (socket.io-client reconnects by itself and the session resumes).
      if (this.phase === 'online') {
        this.phase = reason === 'io server disconnect' ? 'timed-out' : 'reconnecting';
        if (this.phase === 'timed-out') log(`${this.label} was disconnected by the server (${this.inBackground ? 'background timeout' : 'timeout'})`, 'bad');
      }
      this.render();
      scheduleRefresh();
    });
  }

  buildCard() {
    const card = $('#device-template').content.firstElementChild.cloneNode(true);
    card.dataset.user = this.user;
    card.dataset.platform = this.platform;
    $('.device-user', card).textContent = this.user;
    $('.device-platform', card).textContent = this.platform;
    // With several processes, say which one this device talks to.
    const host = this.server ? new URL(this.server).host : location.host;
    $('.device-class', card).textContent = config.peers.length > 0 ? `${this.platformClass} · ${host}` : this.platformClass;
    for (const button of card.querySelectorAll('[data-action]')) {
      button.addEventListener('click', () => this.act(button.dataset.action));
    }
    $('.remove', card).addEventListener('click', () => this.remove());
    $('.status-form', card).addEventListener('submit', (event) => {
      event.preventDefault();
      const text = $('.status-input', card).value.trim();
      this.client.setStatus(text || null).then(
        () => log(`${this.label} set the custom status to ${text ? JSON.stringify(text) : 'nothing'}`),
        (error) => log(`${this.label}: set status failed: ${error.message}`, 'bad'),
      );
    });
    return card;
  }

  act(action) {
    switch (action) {
      case 'visibility':
        this.inBackground = !this.inBackground;
        this.backgroundSince = Date.now();
        if (this.inBackground) this.client.background();
        else this.client.foreground();
        log(`${this.label} went to the ${this.inBackground ? 'background' : 'foreground'}`);
        if (!this.inBackground && this.phase === 'timed-out') {
          // Back in the foreground after the server gave up on it: an app reconnects here itself.
          this.phase = 'connecting';
          this.client.connect();
        }
        break;
      case 'app':
        if (ENDED.includes(this.phase)) {
          // After a kick or logout this is a fresh login (the client dropped the revoked session);
          // after "close app" the kept session is resumed.
          this.phase = 'connecting';
          this.hideBanner();
          if (this.needsFreshLogin) {
            // The old client still holds the revoked session; a new one for the same device logs in (and connects) itself.
            this.needsFreshLogin = false;
            this.client.close();
            this.client = this.createClient(this.client.instanceId);
            this.listen();
          } else {
            this.client.connect();
          }
        } else {
          // Closing without logging out: the socket closes, and a phone stays reachable by push.
          this.phase = 'closed';
          this.client.close();
          log(`${this.label} closed the app (no logout)`);
        }
        break;
      case 'network':
        if (this.link.down) {
          this.link.restore();
          this.networkDownSince = 0;
          if (this.phase === 'offline') this.phase = this.client.socket.connected ? 'online' : 'reconnecting';
          log(`${this.label} has network again`);
        } else {
          this.link.cut();
          this.networkDownSince = Date.now();
          if (this.phase === 'online' || this.phase === 'reconnecting' || this.phase === 'connecting') this.phase = 'offline';
          log(`${this.label} lost the network (nothing is closed; the server waits for its heartbeat timeout)`);
        }
        break;
      case 'logout':
        this.phase = 'logged-out';
        this.client.logout().then(
          () => log(`${this.label} logged out`),
          (error) => log(`${this.label}: logout failed: ${error.message}`, 'bad'),
        );
        break;
    }
    this.render();
    scheduleRefresh();
  }

  remove() {
    // Logging out first keeps the board honest: a removed card leaves no device behind.
    if (this.client.socket.connected && !this.link.down) void this.client.logout().catch(() => undefined);
    else this.client.close();
    this.link.restore();
    this.card.remove();
    devices.delete(this);
    lobby.devicesChanged();
    renderEmptyState();
    scheduleRefresh(300);
  }

  showBanner(text, by) {
    const banner = $('.banner', this.card);
    banner.textContent = text;
    banner.hidden = false;
    if (by) banner.dataset.by = by.instanceId;
  }

  hideBanner() {
    const banner = $('.banner', this.card);
    banner.hidden = true;
    delete banner.dataset.by;
  }

  /** A line saying what the server will do next and when, so the timers of SPEC.md can be watched. */
  countdown() {
    if (this.phase === 'offline' && this.networkDownSince) {
      const left = Math.ceil((this.networkDownSince + config.heartbeatTimeout[this.platformClass] - Date.now()) / 1000);
      const outcome = this.platformClass === 'mobile' ? 'PushOnline' : 'gone';
      return left > 0 ? `server hears nothing; ${outcome} in ~${left} s (heartbeat timeout)` : `server timed it out: ${outcome}`;
    }
    const background = config.backgroundTimeout[this.platformClass];
    if (this.phase === 'online' && this.inBackground && background > 0) {
      const left = Math.ceil((this.backgroundSince + background - Date.now()) / 1000);
      return left > 0 ? `in background: gone in ~${left} s unless brought back` : 'in background too long: timed out';
    }
    return '';
  }

  render() {
    const card = this.card;
    card.dataset.phase = this.phase;
    card.dataset.instance = this.client.instanceId ?? '';
    const conn = $('.conn', card);
    conn.textContent = PHASE_TEXT[this.phase];
    conn.className = `conn ${this.phase}`;
    const flags = [];
    if (this.inBackground) flags.push('background');
    if (this.link.down) flags.push('no network');
    $('.flags', card).textContent = flags.join(' · ');
    const meta = [`instance ${shortId(this.client.instanceId)}`];
    const next = this.countdown();
    if (next) meta.push(next);
    $('.device-meta', card).textContent = meta.join(' — ');

    const ended = ENDED.includes(this.phase) && this.phase !== 'timed-out';
    const live = this.phase === 'online';
    const button = (action) => $(`[data-action="${action}"]`, card);
    button('visibility').textContent = this.inBackground ? 'Foreground' : 'Background';
    button('visibility').disabled = ended;
    button('app').textContent = this.phase === 'closed' || this.phase === 'timed-out' ? 'Open app' : ENDED.includes(this.phase) ? 'Log in again' : 'Close app';
    button('app').disabled = this.link.down;
    button('network').textContent = this.link.down ? 'Restore network' : 'Lose network';
    button('network').classList.toggle('active', this.link.down);
    button('logout').disabled = !live || this.link.down;
    $('.status-form button', card).disabled = !live || this.link.down;
  }
}

const devices = new Set();
/** The Lobby panel (lobby.js): rooms joined by these devices. */
const lobby = mountLobby({ devices, log });

function renderEmptyState() {
  $('#devices-empty').hidden = devices.size > 0;
}

function addDevice(user, platform, server) {
  const device = new SimulatedDevice({ user, platform, server });
  devices.add(device);
  $('#devices').append(device.card);
  lobby.devicesChanged();
  renderEmptyState();
  device.render();
  watchUser(user);
}

// Countdowns tick once a second.
setInterval(() => {
  for (const device of devices) if (device.countdown()) device.render();
}, 1000);

// ---------------------------------------------------------------------------------------------
// The page around it.
// ---------------------------------------------------------------------------------------------

function renderConfig() {
  const perClass = (value) =>
    Object.entries(value)
      .filter(([, ms]) => ms > 0)
      .map(([cls, ms]) => `${cls} ${seconds(ms)}`)
      .join(' · ') || 'none';
  const items = [
    ['Login policy', config.loginPolicy, 'mount-policy'],
    ['Per native platform', `${config.maxInstancesPerPlatform} device(s)`],
    ['Web + MiniProgram', `${config.maxWebInstances} device(s) together`],
    ['Heartbeat', `every ${seconds(config.heartbeatInterval)}`],
    ['Heartbeat timeout', perClass(config.heartbeatTimeout)],
    ['Background timeout', perClass(config.backgroundTimeout)],
    ['PushOnline kept', seconds(config.pushOnlineTtl)],
    ['Reconnect grace', perClass(config.reconnectGrace)],
    ['Store', config.store === 'redis' ? 'RedisStore (shared by every process)' : 'MemoryStore (this process)'],
  ];
  const list = $('#config');
  for (const [term, value, id] of items) {
    const dd = el('dd', '', value);
    if (id) dd.id = id;
    list.append(el('dt', '', term), dd);
  }
  $('#server-info').textContent = `${config.store === 'redis' ? 'Redis mode' : 'in-memory'} · port ${config.server.port} · pid ${config.server.pid}`;
}

function fillPlatforms() {
  const select = $('#add-platform');
  const kickPlatform = $('#kick-platform');
  kickPlatform.append(new Option('every device', ''));
  for (const platform of config.platforms) {
    select.append(new Option(`${platform} (${CLASS_OF[platform]})`, platform));
    kickPlatform.append(new Option(platform, platform));
  }
  // Several processes (npm run example:cluster): devices may connect to any of them.
  if (config.peers.length > 0) {
    const servers = $('#add-server');
    for (const peer of config.peers) {
      const here = new URL(peer).port === location.port;
      servers.append(new Option(`${new URL(peer).host}${here ? ' (this page)' : ''}`, here ? '' : peer));
    }
    $('#add-server-label').hidden = false;
  }
}

$('#add-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const user = $('#add-user').value.trim();
  if (!user) return;
  addDevice(user, $('#add-platform').value, $('#add-server').value || undefined);
});

renderConfig();
fillPlatforms();
renderEmptyState();
log(`board watching as ${viewerId} (a Web connection of its own)`);
document.body.dataset.ready = 'true';
