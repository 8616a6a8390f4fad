// The status-change callback's wire format: body, URL parameters and signature (also used by receivers to verify it).

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AvailabilityChange, ChangeAction, ChangeReason, CustomStatusChange, PresenceChange, UserStatus } from '../core/types.js';
import type { Availability } from '../core/availability.js';
import type { Platform } from '../core/platforms.js';

/** The header carrying `sha256=<hex HMAC-SHA256 of the raw body>` when a secret is set. */
export const SIGNATURE_HEADER = 'X-Presence-Signature';

/** One device named in `KickedDevice`. */
export interface KickedDeviceEntry {
  Platform: Platform;
  /** Our extension: which instance of that platform was kicked. */
  InstId: string;
}

/**
 * The body POSTed to the callback URL: the source document's fields, then our extensions
 * (`Platform`, `InstId`, `Status`, `UserStatus`, `PreviousUserStatus`, `Seq`).
 */
export interface StateChangeCallbackBody {
  CallbackCommand: 'State.StateChange';
  /** When the change happened (ms since the epoch). */
  EventTime: number;
  Info: { Action: ChangeAction; To_Account: string; Reason: ChangeReason };
  /** Devices a Login displaced (empty otherwise); a kicked device gets no callback of its own. */
  KickedDevice: KickedDeviceEntry[];
  /** The device that changed. */
  Platform: Platform;
  InstId: string;
  /** The device's status after the change: `Offline` when it is gone. */
  Status: UserStatus;
  /** The user's status after the change, derived from all their devices. */
  UserStatus: UserStatus;
  PreviousUserStatus: UserStatus;
  /** The user's availability after the change (the truth: `invisible` users are marked so; `away` while idle). Always present. */
  Availability: Availability;
  /**
   * Per-user sequence number: strictly increases with each change of that user, across restarts (one more per change while
   * the store remembers the user; a jump ahead when a store run numbers the user afresh), so a receiver can order the changes
   * and spot gaps (README "Sequence numbers").
   */
  Seq: number;
}

/** The callback body of one change. */
export function callbackBody(change: PresenceChange): StateChangeCallbackBody {
  const kicked: KickedDeviceEntry[] = new Array(change.kicked.length);
  for (let i = 0; i < change.kicked.length; i++) {
    const device = change.kicked[i]!;
    kicked[i] = { Platform: device.platform, InstId: device.instanceId };
  }
  return {
    CallbackCommand: 'State.StateChange',
    EventTime: change.at,
    Info: { Action: change.action, To_Account: change.userId, Reason: change.reason },
    KickedDevice: kicked,
    Platform: change.platform,
    InstId: change.instanceId,
    Status: change.instanceStatus,
    UserStatus: change.userStatus,
    PreviousUserStatus: change.previousUserStatus,
    Availability: change.availability,
    Seq: change.seq,
  };
}

/**
 * The body POSTed when a user's custom status or availability changes (`CallbackCommand` `State.StatusChange`): the source
 * service's envelope (`CallbackCommand`, `EventTime`, `Info` with `To_Account`, `Action`, `Reason`) and the user's state after
 * the change. It carries no `Seq`: it changes no device, and is delivered in order with the user's other callbacks.
 */
export interface StatusChangeCallbackBody {
  CallbackCommand: 'State.StatusChange';
  EventTime: number;
  Info: {
    Action: 'SetCustomStatus' | 'SetAvailability';
    To_Account: string;
    /** `Set` (by a device or the server), `Expired` (a custom status ttl ran out), `Idle` (idleTimeout), `Active` (back from idle). */
    Reason: 'Set' | 'Expired' | 'Idle' | 'Active';
  };
  /** The custom status after the change; `""` when none. */
  CustomStatus: string;
  /** The availability after the change (`away` while idle); always present. */
  Availability: Availability;
  /** The availability before it (`SetAvailability` only). */
  PreviousAvailability?: Availability;
  /** While away by idleness: the user's last activity (ms); null otherwise. */
  IdleSince: number | null;
  UserStatus: UserStatus;
}

/** Any body the callback sends. */
export type PresenceCallbackBody = StateChangeCallbackBody | StatusChangeCallbackBody;

/** The callback body of a custom status change. */
export function customStatusBody(change: CustomStatusChange): StatusChangeCallbackBody {
  return {
    CallbackCommand: 'State.StatusChange',
    EventTime: change.at,
    Info: { Action: 'SetCustomStatus', To_Account: change.userId, Reason: change.reason === 'expired' ? 'Expired' : 'Set' },
    CustomStatus: change.customStatus ?? '',
    Availability: change.availability,
    IdleSince: null,
    UserStatus: change.userStatus,
  };
}

/** The callback body of an availability change. */
export function availabilityBody(change: AvailabilityChange): StatusChangeCallbackBody {
  const reasons = { set: 'Set', idle: 'Idle', active: 'Active' } as const;
  return {
    CallbackCommand: 'State.StatusChange',
    EventTime: change.at,
    Info: { Action: 'SetAvailability', To_Account: change.userId, Reason: reasons[change.reason] },
    CustomStatus: change.customStatus ?? '',
    Availability: change.availability,
    PreviousAvailability: change.previousAvailability,
    IdleSince: change.idleSince === null ? null : Date.parse(change.idleSince),
    UserStatus: change.userStatus,
  };
}

/** The sequence number of a body, for messages (`-` for a status change, which has none). */
export function seqOf(body: PresenceCallbackBody): number | '-' {
  return body.CallbackCommand === 'State.StateChange' ? body.Seq : '-';
}

/**
 * The URL of one callback: the configured URL (its own query parameters kept) plus the source
 * document's `CallbackCommand`, `contenttype`, `ClientIP` (empty when unknown) and `OptPlatform`
 * (the device's platform; `RESTAPI` for an admin kick, which an HTTP call made).
 */
export function callbackUrl(base: URL, body: PresenceCallbackBody, clientIp: string | undefined): string {
  const url = new URL(base.href);
  url.searchParams.set('CallbackCommand', body.CallbackCommand);
  url.searchParams.set('contenttype', 'json');
  url.searchParams.set('ClientIP', clientIp ?? '');
  // A status change names no device.
  url.searchParams.set('OptPlatform', body.CallbackCommand === 'State.StatusChange' ? '' : body.Info.Reason === 'Kicked' ? 'RESTAPI' : body.Platform);
  return url.href;
}

/** `sha256=<hex>`: the HMAC-SHA256 of the raw body under `secret`. */
export function signCallback(rawBody: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}

/**
 * For receivers: does `signature` (the `X-Presence-Signature` header) sign `rawBody` (the bytes as
 * received, before any JSON parsing) under `secret`? Compares in constant time.
 */
export function verifyCallbackSignature(rawBody: string | Buffer, signature: string | string[] | undefined, secret: string): boolean {
  if (typeof signature !== 'string') return false;
  const expected = Buffer.from(signCallback(rawBody, secret));
  const given = Buffer.from(signature.trim());
  return given.length === expected.length && timingSafeEqual(given, expected);
}
