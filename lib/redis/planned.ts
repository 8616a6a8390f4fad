// Planned changes: the common login (a new device that kicks nobody) and a device's end (a logout, a link lost), computed by the
// process from the user's record as it last saw it. Redis then only checks that it still holds exactly that record and writes
// the planned one (plannedBatch in presence.lua, many users per call), instead of decoding and re-encoding it in Lua: the work moves
// from the one Redis every process shares to the processes. A plan mirrors what op_login and op_remove do in those cases; any
// other case, or a record that changed meanwhile, goes to the full function.

import { LRUCache } from 'lru-cache';
import { kickOldestBeyondLimit } from '../core/policy.js';
import type { UserStatus } from '../core/types.js';
import type { StoreLoginRequest, StoreRemoveRequest } from '../core/store.js';
import type { RawChange, StoredDevice, UserRecord } from './record.js';

/** Users whose record a process remembers, most recently used first. */
const REMEMBERED_USERS = 10_000;

/** The record each user had when this process last read or wrote it: what its next plan starts from. */
export class RecordMemory {
  private readonly texts = new LRUCache<string, string>({ max: REMEMBERED_USERS });

  get(userId: string): string | undefined {
    return this.texts.get(userId);
  }

  /** After a call that answered the user's record (false: it did not read one). */
  set(userId: string, text: unknown): void {
    if (typeof text === 'string') this.texts.set(userId, text);
    else this.texts.delete(userId);
  }

  forget(userId: string): void {
    this.texts.delete(userId);
  }
}

/** A change planned from a record: its arguments in plannedBatch (after its kind and count), the record it writes, the change it reports. */
export interface Plan {
  readonly args: (string | number)[];
  readonly next: string;
  readonly change: RawChange;
}

function devicesOf(record: UserRecord): StoredDevice[] {
  return Array.isArray(record.i) ? record.i : [];
}

function ownersOf(stored: string | string[]): string[] {
  if (Array.isArray(stored)) return stored;
  return stored === '' ? [] : [stored];
}

/** The user's status from its devices, as the scripts' status(). */
function statusOf(devices: readonly StoredDevice[]): UserStatus {
  let status: UserStatus = 'Offline';
  for (const device of devices) {
    if (device[2] === 'Online') return 'Online';
    status = 'PushOnline';
  }
  return status;
}

/**
 * The record as read, when a plan can start from it: numbered in a Redis run (the script checks it is this one) with a sequence
 * a double holds exactly, and an order.
 */
function readable(text: string): { record: UserRecord; run: string; seen: string; seq: string } | null {
  let record: UserRecord;
  try {
    record = JSON.parse(text) as UserRecord;
  } catch {
    return null;
  }
  const seq = Number(record.s);
  if (typeof record.e !== 'string' || typeof record.o !== 'number' || !Number.isSafeInteger(seq + 1)) return null;
  return { record, run: record.e, seen: String(seq), seq: String(seq + 1) };
}

/** What change() in presence.lua reports. */
function changeOf(
  record: UserRecord,
  userId: string,
  device: StoredDevice,
  instanceStatus: UserStatus,
  previous: UserStatus,
  now: UserStatus,
  seq: string,
  at: number,
): RawChange {
  return {
    userId,
    instanceId: device[0],
    platform: device[1],
    sessionId: device[5],
    instanceStatus,
    userStatus: now,
    previousUserStatus: previous,
    seq,
    at,
    kicked: [],
    version: device[7],
    lastSeen: record.l ?? false,
    customStatus: record.c ?? false,
    availability: record.a?.v ?? false,
    idleSince: record.a?.i ?? false,
  };
}

/**
 * A JSON array of strings as the scripts' cjson writes it (member() and ownedMember() in presence.lua), or null when one of
 * them has a character cjson escapes otherwise than JSON.stringify would (then the full function runs).
 */
function cjsonStrings(values: readonly string[]): string | null {
  for (const value of values) if (!PLAIN.test(value)) return null;
  return `["${values.map((value) => value.replaceAll('/', '\\/')).join('","')}"]`;
}
/** Printable ASCII but `"` and `\`: the same in cjson and JSON.stringify, but `/` (cjson writes `\/`). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A device's member of the owned set: `<owner>\0<cjson [userId, instanceId, sessionId]>`. */
function ownedMember(owner: string, device: string): string {
  return `${owner}\0${device}`;
}

/** The counts a change moves, as plannedBatch takes them: `+field` or `-field`, the user's status only when it changed. */
function countsOf(instance: string, previous: UserStatus, now: UserStatus): string[] {
  const fields = [instance];
  if (previous !== now) {
    if (previous !== 'Offline') fields.push(`-u:${previous}`);
    if (now !== 'Offline') fields.push(`+u:${now}`);
  }
  return fields;
}

/** The end notice of a logout, as presence.lua's LOGOUT. */
const LOGOUT = '{"reason":"Logout"}';

/** A fresh login (no session to resume) of a device the user does not have, that the policy lets in beside the others. */
export function planLogin(text: string, request: StoreLoginRequest, owner: string): Plan | null {
  if (request.resumeSessionId !== undefined && request.resumeSessionId !== '') return null;
  const read = readable(text);
  if (!read) return null;
  const { record, run, seq } = read;
  const devices = devicesOf(record);
  const others = [];
  for (const device of devices) {
    if (device[0] === request.instanceId) return null;
    others.push({ platform: device[1], instanceId: device[0], order: device[4] });
  }
  if (kickOldestBeyondLimit(others, request.platform, request.limits).length > 0) return null;
  const member = cjsonStrings([request.userId, request.instanceId, request.newSessionId]);
  if (member === null) return null;
  const previous = statusOf(devices);
  const order = record.o + 1;
  const device: StoredDevice = [request.instanceId, request.platform, 'Online', request.at, order, request.newSessionId, owner, request.version ?? ''];
  const next: UserRecord = { ...record, s: seq, o: order, l: request.at, i: [...devices, device] };
  const written = JSON.stringify(next);
  return {
    next: written,
    args: [text, run, written, ownedMember(owner, member), ...countsOf(`+i:${request.platform}:Online`, previous, 'Online')],
    change: changeOf(next, request.userId, device, 'Online', previous, 'Online', seq, request.at),
  };
}

/**
 * A device found by its session and gone: a logout (revoke), or a link lost for good on the process that was its only holder. A
 * link lost while other processes still hold the device only lets go of it: the full function. `caller`: the calling process
 * when its engine has ended its own connection to the device already (it is not told again), '' otherwise. `mayPublish`:
 * false on a Redis Cluster, where a logout whose end must be published (to another holder, or to every process) is left to
 * the full function (plannedBatch in presence.lua says why).
 */
export function planRemove(text: string, request: StoreRemoveRequest, caller: string, mayPublish: boolean): Plan | null {
  const sid = request.sessionId ?? '';
  if (sid === '') return null;
  const read = readable(text);
  if (!read) return null;
  const { record, run, seen, seq } = read;
  const owner = request.owner ?? '';
  const devices = devicesOf(record);
  const index = devices.findIndex((d) => d[0] === request.instanceId && d[5] === sid && (owner === '' || ownersOf(d[6]).includes(owner)));
  if (index < 0) return null;
  const device = devices[index] as StoredDevice;
  const holders = ownersOf(device[6]);
  if (owner !== '' && !request.revoke && device[2] === 'Online' && holders.length > 1) return null;
  // The end is published to the holders of the session's device: this one, unless another device holds the same session.
  if (devices.findLastIndex((d) => d[5] === sid) !== index) return null;
  const member = cjsonStrings([request.userId, device[0], sid]);
  if (member === null) return null;
  const previous = statusOf(devices);
  const rest = devices.filter((_, i) => i !== index);
  const now = statusOf(rest);
  const next: UserRecord = { ...record, s: seq, i: rest };
  if (device[2] === 'Online' && (record.l === undefined || request.lastSeen > record.l)) next.l = request.lastSeen;
  const written = JSON.stringify(next);
  const at = Math.trunc(request.at);
  // A logout's end goes to the device's holders but the caller, or to every process when none is known to hold it ('').
  const targets = !request.revoke ? [] : holders.length === 0 ? [''] : holders.filter((holder) => holder !== caller);
  if (targets.length > 0 && !mayPublish) return null;
  return {
    next: written,
    args: [
      text,
      run,
      written,
      at,
      now === 'Offline' ? 'px' : '',
      sid,
      request.revoke ? `${at}|${seen}|${LOGOUT}` : '',
      device[2] === 'PushOnline' ? member : '',
      holders.length,
      ...holders.map((holder) => ownedMember(holder, member)),
      targets.length,
      ...targets,
      ...countsOf(`-i:${device[1]}:${device[2]}`, previous, now),
    ],
    change: changeOf(next, request.userId, device, 'Offline', previous, now, seq, request.at),
  };
}
