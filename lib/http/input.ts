// Checking request input for the HTTP routes: refusals carry both the HTTP status and the source document's ErrorCode.

import { MAX_ID_LENGTH } from '../engine/engine.js';
import { didYouMean } from '../util/did-you-mean.js';
import { describeValue, excerpt, SourceErrorCode } from '../util/respond.js';

/** Most user ids in one query, on both query routes. */
export const MAX_QUERY_IDS = 500;

/** Bad input: answered 4xx in the route's own error shape, never logged as a fault. */
export class InputError extends Error {
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'InputError';
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A user id from a body or a path: a non-empty string of at most MAX_ID_LENGTH characters. */
export function checkId(value: unknown, name: string, code: SourceErrorCode = SourceErrorCode.BadAccountList): string {
  if (typeof value !== 'string') throw new InputError(code, `${name} must be a string; got ${describeValue(value)}`);
  if (value.length === 0) throw new InputError(code, `${name} must not be empty`);
  if (value.length > MAX_ID_LENGTH) throw new InputError(code, `${name} must be at most ${MAX_ID_LENGTH} characters; got ${value.length}`);
  return value;
}

/**
 * A list of user ids: the distinct ones, in the order first given. `missing` is the code for an
 * absent or empty list (the source document's 90001), wrong types get 90003, too many 90011.
 */
export function distinctIds(value: unknown, name: string, allowEmpty: boolean): string[] {
  if (value === undefined || value === null)
    throw new InputError(SourceErrorCode.BadRequest, `${name} is missing: give a list of 1 to ${MAX_QUERY_IDS} user ids`);
  if (!Array.isArray(value)) throw new InputError(SourceErrorCode.BadAccountList, `${name} must be a list of user ids; got ${describeValue(value)}`);
  if (value.length === 0 && !allowEmpty) throw new InputError(SourceErrorCode.BadRequest, `${name} is empty: give 1 to ${MAX_QUERY_IDS} user ids`);
  if (value.length > MAX_QUERY_IDS) {
    throw new InputError(SourceErrorCode.TooManyAccounts, `${name} has ${value.length} entries; at most ${MAX_QUERY_IDS} per call`);
  }
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const id: unknown = value[i];
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) checkId(id, `${name}[${i}]`);
    seen.add(id as string);
  }
  // The common case, no repeats: the list itself, uncopied.
  return seen.size === value.length ? (value as string[]) : [...seen];
}

/** A source-document flag: absent, 0 or 1 (booleans tolerated). */
export function flag(body: Record<string, unknown>, name: string): boolean {
  const value = body[name];
  if (value === undefined || value === null || value === 0 || value === false) return false;
  if (value === 1 || value === true) return true;
  throw new InputError(SourceErrorCode.BadRequest, `${name} must be 0 or 1; got ${describeValue(value)}`);
}

/** Plain routes refuse unknown fields: a misspelt `platfrom` must not turn a one-device kick into an all-device kick. */
export function refuseUnknownFields(body: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const key of Object.keys(body)) {
    if (known.includes(key)) continue;
    // A suggestion only for names of a plausible length: the edit distance of a 900 KB name costs, and suggests nothing.
    const near = key.length <= 64 ? didYouMean(key, known) : undefined;
    const accepted = known.length > 0 ? `accepted: ${known.join(', ')}` : 'it takes no fields';
    throw new InputError(
      SourceErrorCode.BadRequest,
      `unknown field ${excerpt(key)} in ${where}${near ? `; did you mean ${JSON.stringify(near)}?` : ''} (${accepted})`,
    );
  }
}
