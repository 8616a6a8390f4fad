// The plain JSON routes: one user, a batch query, an admin kick, statistics and Prometheus metrics.

import type { ServerResponse } from 'node:http';
import { parsePlatform, PLATFORM_NAMES_FOR_ERRORS, type Platform } from '../core/platforms.js';
import type { InstanceRef, UserPresence } from '../core/types.js';
import type { HttpService } from './service.js';
import { checkId, distinctIds, InputError, isPlainObject, refuseUnknownFields } from './input.js';
import { MetricsUnavailableError } from './metrics.js';
import { describeValue, sendJson, sendProblem, sendText, SourceErrorCode } from '../util/respond.js';

const QUERY_FIELDS = ['userIds', 'detail'] as const;
const KICK_FIELDS = ['platform', 'instanceId'] as const;

/** The answer of `POST /users/query`. */
export interface UsersQueryResponse {
  users: UserPresence[];
}

/** The answer of `POST /users/:userId/kick`. */
export interface UserKickResponse {
  kicked: InstanceRef[];
}

/** `GET /users/:userId`: the user's presence with every device. */
export async function getUser(presence: HttpService, res: ServerResponse, userId: string): Promise<void> {
  const [user] = await presence.query([userId]);
  sendJson(res, 200, user);
}

/** `POST /users/query` `{ userIds, detail? }`: distinct users, in the order given. */
export async function queryUsers(presence: HttpService, res: ServerResponse, body: unknown): Promise<void> {
  if (body === undefined) throw new InputError(SourceErrorCode.BadRequest, 'the body is empty; send JSON { "userIds": [...] }');
  if (!isPlainObject(body)) throw new InputError(SourceErrorCode.BadRequest, `the body must be a JSON object { "userIds": [...] }; got ${describeValue(body)}`);
  refuseUnknownFields(body, QUERY_FIELDS, 'the body');
  const userIds = distinctIds(body.userIds, 'userIds', true);
  if (body.detail !== undefined && typeof body.detail !== 'boolean') {
    throw new InputError(SourceErrorCode.BadRequest, `detail must be true or false; got ${describeValue(body.detail)}`);
  }
  const users = await presence.query(userIds, { detail: body.detail !== false });
  const answer: UsersQueryResponse = { users };
  sendJson(res, 200, answer);
}

/** `POST /users/:userId/kick` `{ platform?, instanceId? }`: no body, or `{}`, kicks every device. */
export async function kickUser(presence: HttpService, res: ServerResponse, userId: string, body: unknown): Promise<void> {
  const filter: { platform?: Platform; instanceId?: string } = {};
  if (body !== undefined) {
    if (!isPlainObject(body)) {
      throw new InputError(SourceErrorCode.BadRequest, `the body must be a JSON object { "platform"?, "instanceId"? }; got ${describeValue(body)}`);
    }
    refuseUnknownFields(body, KICK_FIELDS, 'the body');
    if (body.platform !== undefined) {
      const platform = parsePlatform(body.platform);
      if (!platform)
        throw new InputError(SourceErrorCode.BadRequest, `platform must be one of ${PLATFORM_NAMES_FOR_ERRORS}; got ${describeValue(body.platform)}`);
      filter.platform = platform;
    }
    if (body.instanceId !== undefined) filter.instanceId = checkId(body.instanceId, 'instanceId', SourceErrorCode.BadRequest);
  }
  const kicked = await presence.kick(userId, filter);
  const answer: UserKickResponse = { kicked };
  sendJson(res, 200, answer);
}

/** `GET /stats`: users and devices by status and platform. */
export async function getStats(presence: HttpService, res: ServerResponse): Promise<void> {
  sendJson(res, 200, await presence.stats());
}

/** `GET /metrics`: Prometheus text, or 404 saying how to get it when prom-client is not installed. */
export async function getMetrics(presence: HttpService, res: ServerResponse): Promise<void> {
  try {
    const { contentType, text } = await presence.metrics.prometheus();
    sendText(res, 200, contentType, text);
  } catch (error) {
    if (!(error instanceof MetricsUnavailableError)) throw error;
    sendProblem(res, 404, error.message);
  }
}
