// The source document's REST routes: querystate / query_online_status and the login service's kick.

import type { ServerResponse } from 'node:http';
import type { Platform } from '../core/platforms.js';
import type { UserStatus } from '../core/types.js';
import { effectiveAvailability, type Availability } from '../core/availability.js';
import { deriveUserStatus, type StoredUser } from '../core/store.js';
import type { HttpService } from './service.js';
import { checkId, distinctIds, flag, InputError, isPlainObject } from './input.js';
import { describeValue, sendText, SourceErrorCode } from '../util/respond.js';

/** One `Detail` entry of a querystate answer. */
export interface QueryStateDetail {
  Platform: Platform;
  Status: 'Online' | 'PushOnline';
  /** Only with `IsReturnInstid: 1`. */
  InstId?: string;
}

/** One `QueryResult` entry: one per distinct account, in request order. */
export interface QueryStateResult {
  To_Account: string;
  Status: UserStatus;
  /** The user's availability (the truth: `invisible` users are marked so; `away` while idle). Always present. */
  Availability: Availability;
  /** Only with `IsReturnCustomStatus: 1`: the custom status, `""` when none. */
  CustomStatus?: string;
  /** Only with `IsNeedDetail: 1`; empty for an Offline user. */
  Detail?: QueryStateDetail[];
}

/** The answer of `POST /v4/openim/querystate` and `/v4/openim/query_online_status`. */
export interface QueryStateResponse {
  ActionStatus: 'OK';
  ErrorCode: 0;
  ErrorInfo: '';
  QueryResult: QueryStateResult[];
}

/** The answer of `POST /v4/im_open_login_svc/kick`; `KickedDevice` is our extension. */
export interface SourceKickResponse {
  ActionStatus: 'OK';
  ErrorCode: 0;
  ErrorInfo: '';
  KickedDevice: { Platform: Platform; InstId: string }[];
}

const JSON_TYPE = 'application/json; charset=utf-8';

function requireObject(body: unknown, shape: string): Record<string, unknown> {
  if (body === undefined) throw new InputError(SourceErrorCode.BadRequest, `the body is empty; send JSON ${shape}`);
  if (!isPlainObject(body)) throw new InputError(SourceErrorCode.BadRequest, `the body must be a JSON object ${shape}; got ${describeValue(body)}`);
  return body;
}

/** The hot path: validate, one engine query, one pass building the answer, one stringify. */
export async function queryState(presence: HttpService, res: ServerResponse, body: unknown): Promise<void> {
  const request = requireObject(body, '{ "To_Account": [...], "IsNeedDetail": 0|1, "IsReturnInstid": 0|1, "IsReturnCustomStatus": 0|1 }');
  const accounts = distinctIds(request.To_Account, 'To_Account', false);
  const needDetail = flag(request, 'IsNeedDetail');
  const returnInstId = flag(request, 'IsReturnInstid');
  const returnCustomStatus = flag(request, 'IsReturnCustomStatus');
  // The lean read: the stored records, straight into the answer, with no dates formatted that querystate never shows.
  const users = await presence.engine.lookup(accounts);
  const results: QueryStateResult[] = new Array(users.length);
  for (let i = 0; i < users.length; i++) {
    const result = queryResult(accounts[i] as string, users[i], needDetail, returnInstId);
    if (returnCustomStatus) result.CustomStatus = users[i]?.customStatus ?? '';
    results[i] = result;
  }
  const answer: QueryStateResponse = { ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '', QueryResult: results };
  sendText(res, 200, JSON_TYPE, JSON.stringify(answer));
}

function queryResult(account: string, user: StoredUser | undefined, needDetail: boolean, returnInstId: boolean): QueryStateResult {
  const instances = user?.instances ?? [];
  const status = deriveUserStatus(instances);
  const availability = user
    ? effectiveAvailability(user.availability, (user.availability ?? 'available') === 'available' ? user.idleSince : null)
    : 'available';
  if (!needDetail) return { To_Account: account, Status: status, Availability: availability };
  const detail: QueryStateDetail[] = new Array(instances.length);
  for (let j = 0; j < instances.length; j++) {
    const instance = instances[j]!;
    detail[j] = returnInstId
      ? { Platform: instance.platform, Status: instance.status, InstId: instance.instanceId }
      : { Platform: instance.platform, Status: instance.status };
  }
  return { To_Account: account, Status: status, Availability: availability, Detail: detail };
}

/** Every device of `UserID` is kicked (and its session revoked). */
export async function sourceKick(presence: HttpService, res: ServerResponse, body: unknown): Promise<void> {
  const request = requireObject(body, '{ "UserID": "..." }');
  if (request.UserID === undefined || request.UserID === null) {
    const near = Object.keys(request).find((key) => key.toLowerCase() === 'userid');
    throw new InputError(SourceErrorCode.BadRequest, `UserID is missing${near ? ` (got ${JSON.stringify(near)}; the name is case-sensitive)` : ''}`);
  }
  const userId = checkId(request.UserID, 'UserID');
  const kicked = await presence.kick(userId);
  const answer: SourceKickResponse = {
    ActionStatus: 'OK',
    ErrorCode: 0,
    ErrorInfo: '',
    KickedDevice: kicked.map((device) => ({ Platform: device.platform, InstId: device.instanceId })),
  };
  sendText(res, 200, JSON_TYPE, JSON.stringify(answer));
}
