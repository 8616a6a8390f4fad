// The status-change callback's wire format: body, URL parameters and signature (also used by receivers to verify it).

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ChangeAction, ChangeReason, PresenceChange, UserStatus } from '../core/types.js';
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
    Seq: change.seq,
  };
}

/**
 * The URL of one callback: the configured URL (its own query parameters kept) plus the source
 * document's `CallbackCommand`, `contenttype`, `ClientIP` (empty when unknown) and `OptPlatform`
 * (the device's platform; `RESTAPI` for an admin kick, which an HTTP call made).
 */
export function callbackUrl(base: URL, body: StateChangeCallbackBody, clientIp: string | undefined): string {
  const url = new URL(base.href);
  url.searchParams.set('CallbackCommand', body.CallbackCommand);
  url.searchParams.set('contenttype', 'json');
  url.searchParams.set('ClientIP', clientIp ?? '');
  url.searchParams.set('OptPlatform', body.Info.Reason === 'Kicked' ? 'RESTAPI' : body.Platform);
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
