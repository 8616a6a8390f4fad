// The Lobby panel: the demo devices join a room through client.join(), and the panel shows its members, their status and meta, and the count, live.
/* global Option */

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The meta field as typed: JSON when it parses (`{"seat": 3}`, `7`), otherwise the text as a string; empty is no meta. */
function readMeta(text) {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  try {
    return JSON.parse(trimmed);
  } catch {
    return trimmed;
  }
}

/**
 * Mounts the panel. `devices` is the page's set of simulated devices (each with `client`, `label`,
 * `phase`); `log` writes to the activity list. Answers `devicesChanged()`, which the page calls
 * when a device is added or removed.
 */
export function mountLobby({ devices, log }) {
  /** Device -> the PresenceRoom it joined (the live object client.join() answered). */
  const joined = new Map();
  /** The device whose view of the room the panel shows: the first one joined still in. */
  let viewer;

  /** A key per device for the select (two devices may share a label). */
  const keys = new WeakMap();
  let nextKey = 0;
  const keyOf = (device) => {
    if (!keys.has(device)) keys.set(device, String(++nextKey));
    return keys.get(device);
  };

  const room = () => $('#lobby-room').value.trim() || 'lobby';

  function fillDevices() {
    const select = $('#lobby-device');
    const chosen = select.value;
    select.replaceChildren();
    for (const device of devices) {
      const option = new Option(device.label + (joined.has(device) ? ' (in)' : ''), keyOf(device));
      option.dataset.label = device.label;
      select.append(option);
    }
    if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
    $('#lobby-join').disabled = select.options.length === 0;
  }

  function deviceOf(key) {
    for (const device of devices) if (keyOf(device) === key) return device;
    return undefined;
  }

  /** A kicked or logged-out device's room object no longer hears the room: look through a live one. */
  function pickViewer() {
    if (viewer && joined.has(viewer) && viewer.phase === 'online') return;
    const live = [...joined.keys()].filter((device) => device.phase === 'online');
    viewer = live[0] ?? joined.keys().next().value;
  }

  function render() {
    pickViewer();
    const view = viewer ? joined.get(viewer) : undefined;
    const panel = $('#lobby');
    panel.dataset.count = view ? String(view.count) : '';
    $('#lobby-count').textContent = view ? `${view.count} member${view.count === 1 ? '' : 's'} in ${view.name}` : 'nobody joined yet';
    $('#lobby-seen-by').textContent = view ? `as seen by ${viewer.label}` : '';
    const list = $('#lobby-members');
    list.replaceChildren();
    if (view && view.members === null) list.append(el('li', 'muted', `more than the server's roomMemberLimit: count only`));
    for (const member of view?.members ?? []) {
      const item = el('li', 'lobby-member');
      item.dataset.user = member.userId;
      item.dataset.status = member.status;
      item.dataset.meta = JSON.stringify(member.meta);
      item.append(el('b', '', member.userId), el('span', `badge ${member.status.toLowerCase()}`, member.status));
      const devicesText = member.devices.map((device) => `${device.platform} ${device.instanceId.slice(0, 6)}`).join(', ');
      item.append(el('span', 'muted small', devicesText));
      if (member.customStatus) item.append(el('span', 'custom', member.customStatus));
      item.append(el('code', 'lobby-meta', member.meta === null ? 'no meta' : JSON.stringify(member.meta)));
      list.append(item);
    }
    const mine = $('#lobby-joined');
    mine.replaceChildren();
    for (const [device, presenceRoom] of joined) {
      const chip = el('span', 'chip online');
      chip.dataset.label = device.label;
      chip.append(el('b', '', device.label), el('span', 'muted', ` in ${presenceRoom.name}`));
      const leave = el('button', 'icon', '×');
      leave.type = 'button';
      leave.title = `${device.label} leaves ${presenceRoom.name}`;
      leave.setAttribute('aria-label', `${device.label} leaves`);
      leave.addEventListener('click', () => leaveRoom(device));
      chip.append(leave);
      mine.append(chip);
    }
    fillDevices();
  }

  async function joinRoom(device, name, meta) {
    const previous = joined.get(device);
    if (previous && previous.name !== name) await leaveRoom(device);
    try {
      const presenceRoom = await device.client.join(name, meta);
      if (!joined.has(device)) {
        presenceRoom.on('join', (member) => log(`lobby: ${member.userId} joined ${name}`, 'good'));
        presenceRoom.on('leave', (userId) => log(`lobby: ${userId} left ${name}`));
        presenceRoom.on('update', (member) => log(`lobby: ${member.userId} is now ${member.status}, meta ${JSON.stringify(member.meta)}`));
        presenceRoom.on('change', render);
      }
      joined.set(device, presenceRoom);
      log(`${device.label} joined ${name} (${presenceRoom.count} in it)`, 'good');
    } catch (error) {
      log(`${device.label}: join ${name} refused: ${error.code ?? ''} ${error.message}`, 'bad');
    }
    render();
  }

  async function leaveRoom(device) {
    const presenceRoom = joined.get(device);
    if (!presenceRoom) return;
    joined.delete(device);
    render();
    try {
      await presenceRoom.leave();
      log(`${device.label} left ${presenceRoom.name}`);
    } catch (error) {
      log(`${device.label}: leave failed: ${error.message}`, 'bad');
    }
  }

  $('#lobby-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const device = deviceOf($('#lobby-device').value);
    if (!device) return;
    const meta = readMeta($('#lobby-meta').value);
    const presenceRoom = joined.get(device);
    // Already in this room with new meta: an update, which the others see as one, never a leave and a join.
    if (presenceRoom && presenceRoom.name === room() && meta !== undefined) {
      presenceRoom.update(meta).then(
        () => log(`${device.label} set its meta in ${presenceRoom.name} to ${JSON.stringify(meta)}`),
        (error) => log(`${device.label}: meta refused: ${error.code ?? ''} ${error.message}`, 'bad'),
      );
      return;
    }
    void joinRoom(device, room(), meta);
  });

  render();
  return {
    /** A device was added or removed: a removed one (logged out) is out of the room on the server already. */
    devicesChanged() {
      for (const device of [...joined.keys()]) if (!devices.has(device)) joined.delete(device);
      render();
    },
  };
}
