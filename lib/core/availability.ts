// Availability and last-seen privacy: the values, their checks, and what a viewer other than the user may be shown.

import { didYouMean } from '../util/did-you-mean.js';

/** A user's availability, shared by all their devices: `away` is also what automatic idleness shows. */
export type Availability = 'available' | 'away' | 'dnd' | 'invisible';

export const AVAILABILITIES: readonly Availability[] = ['available', 'away', 'dnd', 'invisible'];

/** How much of a user's last seen one viewer is shown (the `lastSeenVisibility` option's answer). */
export type LastSeenVisibility = 'exact' | 'approximate' | 'hidden';

export const LAST_SEEN_VISIBILITIES: readonly LastSeenVisibility[] = ['exact', 'approximate', 'hidden'];

/** What `approximate` shows instead of a time (Telegram's buckets). */
export type LastSeenApprox = 'recently' | 'week' | 'month' | 'long-ago';

const DAY = 24 * 3600 * 1000;

/** Checks an availability value; a TypeError names the accepted ones and the nearest. */
export function parseAvailability(value: unknown, name = 'availability'): Availability {
  if (typeof value === 'string' && (AVAILABILITIES as readonly string[]).includes(value)) return value as Availability;
  const near = typeof value === 'string' ? didYouMean(value, AVAILABILITIES) : undefined;
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : value === null ? 'null' : typeof value;
  throw new TypeError(`${name} must be one of ${AVAILABILITIES.map((a) => `"${a}"`).join(', ')}; got ${shown}${near ? `; did you mean "${near}"?` : ''}`);
}

/** The availability shown: the chosen one, or `away` while automatic idleness holds over a chosen `available`. */
export function effectiveAvailability(chosen: Availability | undefined, idleSince: number | null | undefined): Availability {
  const value = chosen ?? 'available';
  return value === 'available' && idleSince !== null && idleSince !== undefined ? 'away' : value;
}

/** The bucket of a last seen `lastSeen` ms before `now`: within 3 days, a week, a month, or longer. */
export function lastSeenBucket(lastSeen: number, now: number): LastSeenApprox {
  const age = now - lastSeen;
  if (age <= 3 * DAY) return 'recently';
  if (age <= 7 * DAY) return 'week';
  if (age <= 30 * DAY) return 'month';
  return 'long-ago';
}

/** A user as the backend knows them (the truth), with what viewers are shown while they are invisible. */
export interface UserTruth {
  readonly userId: string;
  readonly status: 'Online' | 'PushOnline' | 'Offline';
  /** Shown availability (`away` while idle). */
  readonly availability: Availability;
  readonly idleSince: number | null;
  readonly customStatus: string | null;
  /** Last Online (ms): the moment of the truth for a user who is Online; null if never seen. */
  readonly lastSeen: number | null;
  /** While invisible: the last seen and custom status frozen when the user went invisible. */
  readonly frozenLastSeen: number | null;
  readonly frozenCustomStatus: string | null;
}

/** A user as one viewer is shown them (`presence:subscribe`, `presence:changed`, the contacts snapshot). */
export interface ViewedUser {
  userId: string;
  status: 'Online' | 'PushOnline' | 'Offline';
  availability: Availability;
  /** ISO 8601 while the user is away by idleness (and the viewer sees exact last seen); null otherwise. */
  idleSince: string | null;
  customStatus: string | null;
  /** ISO 8601; null when never seen, or when the viewer is shown no time (`approximate`, `hidden`). */
  lastSeen: string | null;
  /** With `approximate`: the bucket instead of a time (absent when never seen). */
  lastSeenApprox?: LastSeenApprox;
}

function isoOf(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * What a viewer other than the user is shown. An invisible user is exactly an Offline one: Offline users are shown
 * `available` and not idle (whatever they chose), with the last seen and custom status frozen when they went invisible.
 * `visibility` then cuts the last seen (and `idleSince`, which would tell the last activity) to a bucket or nothing.
 */
export function viewFor(truth: UserTruth, visibility: LastSeenVisibility, now: number): ViewedUser {
  const invisible = truth.availability === 'invisible';
  const status = invisible ? 'Offline' : truth.status;
  const lastSeen = invisible ? truth.frozenLastSeen : truth.lastSeen;
  const shown: ViewedUser = {
    userId: truth.userId,
    status,
    availability: status === 'Offline' ? 'available' : truth.availability,
    idleSince: status === 'Offline' || visibility !== 'exact' ? null : isoOf(truth.idleSince),
    customStatus: invisible ? truth.frozenCustomStatus : truth.customStatus,
    lastSeen: visibility === 'exact' ? isoOf(lastSeen) : null,
  };
  if (visibility === 'approximate' && lastSeen !== null) shown.lastSeenApprox = lastSeenBucket(lastSeen, now);
  return shown;
}

/** What the user's own devices are shown of themselves: the whole truth. */
export function viewForSelf(truth: UserTruth): ViewedUser {
  return {
    userId: truth.userId,
    status: truth.status,
    availability: truth.availability,
    idleSince: isoOf(truth.idleSince),
    customStatus: truth.customStatus,
    lastSeen: isoOf(truth.lastSeen),
  };
}
