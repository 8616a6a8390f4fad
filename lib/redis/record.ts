// A user as RedisStore's scripts keep it (lib/redis/scripts.ts "Layout"), and the changes and states they answer, as the store
// reads them.

import type { Availability } from '../core/availability.js';
import type { Platform } from '../core/platforms.js';
import type { InstanceStatus, UserStatus } from '../core/types.js';
import type { StoreChange, StoreKicked, StoredInstance, StoredUser, StoreUserState } from '../core/store.js';

/** What the scripts encode: cjson writes empty arrays as {} and nil as false; seq is a decimal string (cjson rounds numbers to 14 digits). */
export interface RawChange extends Omit<StoreChange, 'kicked' | 'lastSeen' | 'customStatus' | 'seq' | 'availability' | 'idleSince'> {
  seq: string;
  kicked: StoreKicked[] | Record<string, never>;
  lastSeen: number | false;
  customStatus: string | false;
  availability?: Availability | false;
  idleSince?: number | false;
}

/** The user's state as SET_CUSTOM_STATUS and SET_AVAILABILITY answer it (STATE_OF in scripts.ts). */
export interface RawState {
  status: UserStatus;
  ls: number | false;
  cs: string | false;
  cx: number | false;
  v: Availability;
  i: number | false;
  f: number | false;
  fc: string | false;
}

export function toState(userId: string, raw: RawState): StoreUserState {
  return {
    userId,
    userStatus: raw.status,
    lastSeen: raw.ls === false ? null : raw.ls,
    customStatus: raw.cs === false ? null : raw.cs,
    customStatusExpiresAt: raw.cx === false ? null : raw.cx,
    availability: raw.v,
    idleSince: raw.i === false ? null : raw.i,
    frozenLastSeen: raw.f === false ? null : raw.f,
    frozenCustomStatus: raw.fc === false ? null : raw.fc,
  };
}

export function toChange(raw: RawChange): StoreChange {
  return {
    ...raw,
    seq: Number(raw.seq),
    kicked: Array.isArray(raw.kicked) ? raw.kicked : [],
    version: raw.version === '' ? undefined : raw.version,
    lastSeen: raw.lastSeen === false ? null : raw.lastSeen,
    customStatus: raw.customStatus === false ? null : raw.customStatus,
    availability: raw.availability === false || raw.availability === undefined ? 'available' : raw.availability,
    idleSince: raw.idleSince === false || raw.idleSince === undefined ? null : raw.idleSince,
  };
}

/** The changes a script answers as one JSON list. */
export function toChanges(raw: unknown): StoreChange[] {
  const list = JSON.parse(raw as string) as RawChange[] | Record<string, never>;
  return Array.isArray(list) ? list.map(toChange) : [];
}

/** One device of a user's record. */
export type StoredDevice = [
  instanceId: string,
  platform: Platform,
  status: InstanceStatus,
  since: number,
  order: number,
  sessionId: string,
  /** The processes holding it live: '' none, one owner, or a list while several do (tabs on several processes). */
  owners: string | string[],
  version: string,
];

/** A user as the scripts keep it (see scripts.ts); cjson writes an empty list as {}. */
export interface UserRecord {
  /** seq (a decimal string; a number from older versions) and order: only the scripts read them. */
  s: string | number;
  /** The Redis run that last numbered it (8 hex digits of its run_id). */
  e?: string;
  o: number;
  l?: number;
  c?: string;
  /** When the custom status expires (ms). */
  x?: number;
  /** Availability: chosen, idleSince, last activity, frozen last seen and custom status (while invisible). */
  a?: { v?: Availability; i?: number; t?: number; f?: number; fc?: string };
  i: StoredDevice[] | Record<string, never>;
}

/** One user's record, in the shape every store answers; a custom status past its expiry (`now`) is answered as none. */
export function toStoredUser(userId: string, record: UserRecord, now: number): StoredUser {
  const list = Array.isArray(record.i) ? record.i : [];
  const instances: StoredInstance[] = new Array(list.length);
  for (let j = 0; j < list.length; j++) {
    const [instanceId, platform, status, since, order, sessionId, , version] = list[j]!;
    instances[j] = { instanceId, platform, status, since, order, sessionId, version: version === '' ? undefined : version };
  }
  const expired = record.x !== undefined && record.x <= now;
  const a = record.a;
  return {
    userId,
    instances,
    lastSeen: record.l ?? null,
    customStatus: expired ? null : (record.c ?? null),
    customStatusExpiresAt: expired ? null : (record.x ?? null),
    availability: a?.v ?? 'available',
    idleSince: a?.i ?? null,
    frozenLastSeen: a?.f ?? null,
    frozenCustomStatus: a?.fc ?? null,
  };
}
