// The router of a presence mount: a plain Node middleware (no Express at runtime) that works in Express 4 and 5 at any path.

import type { IncomingMessage, ServerResponse } from 'node:http';
import createDebug from 'debug';
import type { Authorize } from '../options.js';
import type { Logger } from '../core/types.js';
import { parseByteSize } from '../options.js';
import type { HttpService } from './service.js';
import { didYouMean } from '../util/did-you-mean.js';
import { isStoreUnavailable } from '../core/errors.js';
import { fromHostParserError, readJsonBody, type BodyResult } from './body.js';
import { checkId, InputError } from './input.js';
import { getMetrics, getStats, getUser, kickUser, queryUsers } from './plain-routes.js';
import { excerpt, sendProblem, sendSourceFailure, SourceErrorCode, type ErrorExtras } from '../util/respond.js';
import { queryState, sourceKick } from './source-routes.js';
import { getRoom, onlineMemberNum, queryRooms, ROOMS_PREFIX } from './room-routes.js';

const debug = createDebug('express-presence:http');

export interface RouterOptions {
  /** Admits requests to this router; overrides the mount's `authorize`. Defaults to the mount's. */
  authorize?: Authorize;
  /** The largest request body, in bytes or as `'500kb'`, `'1mb'`. Defaults to the mount's `bodyLimit` (1 MB). */
  bodyLimit?: number | string;
  /**
   * The HTTP status of the source-format routes' refusals: `'http-status'` answers 400/401/403/413/415/503... with
   * `ActionStatus: 'FAIL'`; `'always-200'` answers HTTP 200 with the same body, as the source service does, for
   * clients ported from it. Defaults to `'http-status'`.
   */
  sourceHttpStatus?: SourceHttpStatus;
}

export type SourceHttpStatus = 'http-status' | 'always-200';
const SOURCE_HTTP_STATUSES: readonly SourceHttpStatus[] = ['http-status', 'always-200'];

/** An Express error handler (four arguments): the router's answer to a body the host's parser refused. */
export type PresenceErrorHandler = (error: unknown, req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

/**
 * A Node/Connect/Express middleware: mount it with `app.use(path, presence.router())`. Mounted so, it also places
 * `errorHandler` right after itself, so a body the host's own `express.json()` refused is answered in the route's
 * format; mounted on an `express.Router()`, add it yourself: `router.use(path, presenceRouter.errorHandler)`.
 */
export interface PresenceRouter {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  readonly errorHandler: PresenceErrorHandler;
}

const ROUTER_OPTION_NAMES = ['authorize', 'bodyLimit', 'sourceHttpStatus'] as const satisfies readonly (keyof RouterOptions)[];

type Family = 'source' | 'plain';

type Handler = (presence: HttpService, res: ServerResponse, userId: string, body: unknown, req: IncomingMessage) => Promise<void>;

interface Route {
  readonly family: Family;
  /** How the route is named in messages, e.g. `POST /users/query`. */
  readonly name: string;
  readonly readsBody: boolean;
  /** Where the path names a user (`/users/:userId`). */
  readonly takesUserId: boolean;
  readonly handle: Handler;
}

/** The routes at one path: at most one per method. */
interface PathRoutes {
  readonly family: Family;
  readonly get?: Route;
  readonly post?: Route;
}

function route(family: Family, name: string, readsBody: boolean, takesUserId: boolean, handle: Handler): Route {
  return { family, name, readsBody, takesUserId, handle };
}

const QUERY_STATE_ROUTE: PathRoutes = {
  family: 'source',
  post: route('source', 'querystate', true, false, (presence, res, _userId, body) => queryState(presence, res, body)),
};
const SOURCE_KICK_ROUTE: PathRoutes = {
  family: 'source',
  post: route('source', 'kick', true, false, (presence, res, _userId, body) => sourceKick(presence, res, body)),
};
const USERS_QUERY = route('plain', 'POST /users/query', true, false, (presence, res, _userId, body) => queryUsers(presence, res, body));
const GET_USER = route('plain', 'GET /users/:userId', false, true, (presence, res, userId) => getUser(presence, res, userId));
const USER_PATH: PathRoutes = { family: 'plain', get: GET_USER };
/** `/users/query` is both the batch query (POST) and the user named "query" (GET). */
const USERS_QUERY_PATH: PathRoutes = { family: 'plain', get: GET_USER, post: USERS_QUERY };
const KICK_USER_PATH: PathRoutes = {
  family: 'plain',
  post: route('plain', 'POST /users/:userId/kick', true, true, (presence, res, userId, body) => kickUser(presence, res, userId, body)),
};
const STATS_PATH: PathRoutes = { family: 'plain', get: route('plain', 'GET /stats', false, false, (presence, res) => getStats(presence, res)) };
const METRICS_PATH: PathRoutes = { family: 'plain', get: route('plain', 'GET /metrics', false, false, (presence, res) => getMetrics(presence, res)) };

const ROOM_PATH: PathRoutes = {
  family: 'plain',
  get: route('plain', 'GET /rooms/:room', false, false, (presence, res, _u, _b, req) => getRoom(presence, res, req)),
};
/** `/rooms/query` is both the batch count (POST) and the room named "query" (GET). */
const ROOMS_QUERY_PATH: PathRoutes = {
  family: 'plain',
  get: ROOM_PATH.get,
  post: route('plain', 'POST /rooms/query', true, false, (presence, res, _userId, body) => queryRooms(presence, res, body)),
};
const GROUP_MEMBER_NUM_ROUTE: PathRoutes = {
  family: 'source',
  post: route('source', 'get_online_member_num', true, false, (presence, res, _userId, body) => onlineMemberNum(presence, res, body)),
};

const STATIC_PATHS: ReadonlyMap<string, PathRoutes> = new Map([
  ['/rooms/query', ROOMS_QUERY_PATH],
  ['/v4/group_open_http_svc/get_online_member_num', GROUP_MEMBER_NUM_ROUTE],
  ['/v4/openim/querystate', QUERY_STATE_ROUTE],
  ['/v4/openim/query_online_status', QUERY_STATE_ROUTE],
  ['/v4/im_open_login_svc/kick', SOURCE_KICK_ROUTE],
  ['/users/query', USERS_QUERY_PATH],
  ['/stats', STATS_PATH],
  ['/metrics', METRICS_PATH],
]);

const USERS_PREFIX = '/users/';
const KICK_SUFFIX = '/kick';

/** The routes at `path` and, for `/users/:userId…`, the still-encoded user id; undefined when none of ours. */
function match(path: string): { routes: PathRoutes; encodedUserId: string } | undefined {
  const routes = STATIC_PATHS.get(path);
  if (routes) return { routes, encodedUserId: path === '/users/query' ? 'query' : '' };
  if (path.startsWith(ROOMS_PREFIX) && path.length > ROOMS_PREFIX.length && !path.includes('/', ROOMS_PREFIX.length))
    return { routes: ROOM_PATH, encodedUserId: '' };
  if (!path.startsWith(USERS_PREFIX)) return undefined;
  const rest = path.slice(USERS_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return rest.length > 0 ? { routes: USER_PATH, encodedUserId: rest } : undefined;
  if (slash > 0 && rest.length === slash + KICK_SUFFIX.length && rest.endsWith(KICK_SUFFIX)) {
    return { routes: KICK_USER_PATH, encodedUserId: rest.slice(0, slash) };
  }
  return undefined;
}

/** What one router holds: resolved once, read by every request. */
class Mount {
  private warnedVerdict = false;
  constructor(
    readonly presence: HttpService,
    readonly authorize: Authorize,
    readonly bodyLimit: number,
    readonly bodyTimeout: number,
    readonly sourceHttpStatus: SourceHttpStatus,
    readonly logger: Logger,
  ) {}

  /** True while the store refuses (or stalls): warned once per episode, not per request. */
  storeTrouble = false;

  /** An authorize that answers something other than a boolean is refused, and the app told once. */
  noteStrangeVerdict(verdict: unknown): void {
    if (this.warnedVerdict) return;
    this.warnedVerdict = true;
    this.logger.warn(`express-presence: authorize(req) must answer true or false; it answered ${typeof verdict}, which is treated as false`);
  }
}

/** Answers an error in the shape of the route's family (source refusals as HTTP 200 with `sourceHttpStatus: 'always-200'`). */
function refuse(mount: Mount, family: Family, res: ServerResponse, status: number, code: SourceErrorCode, message: string, extras?: ErrorExtras): void {
  if (family === 'source') sendSourceFailure(res, mount.sourceHttpStatus === 'always-200' ? 200 : status, code, message, extras);
  else sendProblem(res, status, message, extras);
}

/** Whether the request carries a body: a Content-Length above 0, or a chunked one. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * `application/json` or any `application/…+json`. Anything else is refused: a cross-site form can send `text/plain`
 * (or form types) with the admin's cookies and no preflight, and must not be able to kick.
 */
function isJsonType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const semicolon = contentType.indexOf(';');
  const type = (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/** 401 when the request carries nothing that could be a credential, 403 when what it carries was refused. */
function refusalStatus(req: IncomingMessage): 401 | 403 {
  const carriesCredentials = req.headers.authorization !== undefined || req.headers.cookie !== undefined || (req.url ?? '').includes('?');
  return carriesCredentials ? 403 : 401;
}

function refuseBody(family: Family, res: ServerResponse, result: BodyResult, mount: Mount, routeName: string): void {
  switch (result.kind) {
    case 'malformed':
      refuse(mount, family, res, 400, SourceErrorCode.BadRequest, result.message);
      return;
    case 'too-large':
      refuse(mount, family, res, 413, SourceErrorCode.BadRequest, `the body is larger than the limit of ${result.limit} bytes`, {
        closeConnection: result.closeConnection,
      });
      return;
    case 'unsupported':
      refuse(mount, family, res, 415, SourceErrorCode.BadRequest, result.message);
      return;
    case 'timeout':
      // The rest of the body is never read: the connection cannot be reused.
      refuse(mount, family, res, 408, SourceErrorCode.BadRequest, `the body did not arrive within bodyTimeout (${result.timeout} ms)`, {
        closeConnection: true,
      });
      return;
    case 'consumed':
      mount.logger.error(
        `express-presence: ${routeName}: the request body was read by an earlier middleware that left no req.body; mount the router before it, or use express.json()`,
      );
      refuse(mount, family, res, 500, SourceErrorCode.Internal, 'the request body was consumed before the presence router could read it');
      return;
    case 'aborted':
    case 'empty':
    case 'json':
      return;
    default: {
      const exhaustive: never = result;
      return exhaustive;
    }
  }
}

/**
 * Everything after the route is known: authorise, read, check, handle; every outcome is answered here. `hostBody` is
 * what a host body parser's failure came to, when the request reached us through the error handler.
 */
async function serve(mount: Mount, route: Route, req: IncomingMessage, res: ServerResponse, encodedUserId: string, hostBody?: BodyResult): Promise<void> {
  const family = route.family;
  try {
    // Mounted in Express, `req` is Express's request (req.get(), req.ip...), which is what authorize is typed to take.
    let verdict: unknown = mount.authorize(req as Parameters<Authorize>[0]);
    if (typeof verdict !== 'boolean') verdict = await verdict;
    if (verdict !== true) {
      if (verdict !== false) mount.noteStrangeVerdict(verdict);
      const status = refusalStatus(req);
      refuse(
        mount,
        family,
        res,
        status,
        SourceErrorCode.Unauthorized,
        status === 401 ? 'not authorised: the request carries no credentials' : 'not authorised',
      );
      return;
    }

    let userId = '';
    if (route.takesUserId) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(encodedUserId);
      } catch {
        throw new InputError(SourceErrorCode.BadRequest, 'userId in the path is not valid percent-encoding');
      }
      userId = checkId(decoded, 'userId in the path', SourceErrorCode.BadRequest);
    }

    let body: unknown;
    if (route.readsBody) {
      const contentType = req.headers['content-type'];
      // A Content-Type is checked even on an empty body (a body-less form post could otherwise kick every device).
      if (contentType === undefined ? hasBody(req) : !isJsonType(contentType)) {
        const given = contentType === undefined ? 'no Content-Type' : `Content-Type ${excerpt(contentType)}`;
        // Left unread: Node drains it after the answer, as for a 413 refused by its Content-Length.
        refuse(mount, family, res, 415, SourceErrorCode.BadRequest, `the body must be JSON sent as application/json; got ${given}`);
        return;
      }
      let result = hostBody ?? readJsonBody(req, mount.bodyLimit, mount.bodyTimeout);
      if (result instanceof Promise) result = await result;
      if (result.kind === 'json') body = result.value;
      else if (result.kind !== 'empty') {
        refuseBody(family, res, result, mount, route.name);
        return;
      }
    }
    await route.handle(mount.presence, res, userId, body, req);
    mount.storeTrouble = false;
  } catch (error) {
    if (error instanceof InputError) {
      refuse(mount, family, res, error.status, error.code, error.message);
      return;
    }
    if (isStoreUnavailable(error)) {
      // Refused, never guessed: an answer from a stale copy would call connected users Offline.
      if (!mount.storeTrouble) {
        mount.storeTrouble = true;
        mount.logger.warn(`express-presence: ${route.name} refused with 503 while the store is unavailable (quiet until a request succeeds)`, error);
      }
      const detail =
        error.reason === 'timeout'
          ? `the presence store did not answer within storeTimeout (${mount.presence.config.storeTimeout} ms); the outcome is unknown, try again shortly`
          : 'the presence store is unavailable; try again shortly';
      refuse(mount, family, res, 503, SourceErrorCode.Internal, detail, { headers: { 'Retry-After': '1' } });
      return;
    }
    mount.logger.error(`express-presence: ${route.name} failed`, error);
    refuse(mount, family, res, 500, SourceErrorCode.Internal, 'the presence service failed to answer; the server log has the details');
  }
}

/** Builds the router of a mount; throws a TypeError when no `authorize` is given or an option is invalid. */
export function createPresenceRouter(presence: HttpService, options: RouterOptions = {}): PresenceRouter {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`router options must be an object { authorize?, bodyLimit? }; got ${options === null ? 'null' : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if ((ROUTER_OPTION_NAMES as readonly string[]).includes(key)) continue;
    const near = didYouMean(key, ROUTER_OPTION_NAMES);
    throw new TypeError(`unknown router option ${key}${near ? `; did you mean ${near}?` : ''} (accepted: ${ROUTER_OPTION_NAMES.join(', ')})`);
  }
  if (options.authorize !== undefined && typeof options.authorize !== 'function') {
    throw new TypeError(`router authorize must be a function (req) => boolean; got ${typeof options.authorize}`);
  }
  const authorize = options.authorize ?? presence.config.authorize;
  if (!authorize) {
    throw new TypeError(
      'router() needs an authorize function deciding who may query and kick: createPresence({ authorize: (req) => boolean }) or presence.router({ authorize })',
    );
  }
  const bodyLimit = parseByteSize('router bodyLimit', options.bodyLimit, presence.config.bodyLimit);
  const sourceHttpStatus = options.sourceHttpStatus ?? 'http-status';
  if (!SOURCE_HTTP_STATUSES.includes(sourceHttpStatus)) {
    const near = typeof sourceHttpStatus === 'string' ? didYouMean(sourceHttpStatus, SOURCE_HTTP_STATUSES) : undefined;
    throw new TypeError(
      `router sourceHttpStatus must be one of ${SOURCE_HTTP_STATUSES.map((value) => `"${value}"`).join(', ')}; got ${typeof sourceHttpStatus === 'string' ? JSON.stringify(sourceHttpStatus.slice(0, 40)) : typeof sourceHttpStatus}${near ? `; did you mean "${near}"?` : ''}`,
    );
  }
  const mount = new Mount(presence, authorize, bodyLimit, presence.config.bodyTimeout, sourceHttpStatus, presence.config.logger);
  const presenceRouter = ((req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void =>
    dispatch(mount, req, res, next, undefined)) as PresenceRouter & ExpressMountHooks;
  const errorHandler: PresenceErrorHandler = (error, req, res, next) => {
    const hostBody = fromHostParserError(error);
    if (!hostBody) {
      next(error);
      return;
    }
    dispatch(mount, req, res, () => next(error), hostBody);
  };
  Object.defineProperty(presenceRouter, 'errorHandler', { value: errorHandler, enumerable: true });
  // Express mounts an object with `handle` and `set` as a sub-app and tells it its parent ('mount'): the one moment
  // the router can place its error handler right after itself, where the host parser's errors pass.
  Object.defineProperties(presenceRouter, {
    handle: { value: presenceRouter },
    set: { value: () => presenceRouter },
    emit: {
      value: (event: string, parent: unknown): boolean => {
        if (event !== 'mount' || typeof (parent as { use?: unknown } | null)?.use !== 'function') return false;
        (parent as { use(path: unknown, handler: PresenceErrorHandler): unknown }).use(presenceRouter.mountpath ?? '/', errorHandler);
        return true;
      },
    },
  });
  return presenceRouter;
}

/** What Express reads and writes on a sub-app it mounts (see createPresenceRouter). */
interface ExpressMountHooks {
  mountpath?: unknown;
}

/** Routes one request (or, with `hostBody`, one request whose body the host's parser refused) to its route. */
function dispatch(mount: Mount, req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void, hostBody: BodyResult | undefined): void {
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  let path = queryAt < 0 ? url : url.slice(0, queryAt);
  if (path.length > 1 && path.charCodeAt(path.length - 1) === 0x2f) path = path.slice(0, -1);
  const found = match(path);
  if (!found) {
    next();
    return;
  }
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const chosen = method === 'GET' ? found.routes.get : method === 'POST' ? found.routes.post : undefined;
  if (!chosen) {
    const allow = [found.routes.get ? 'GET, HEAD' : '', found.routes.post ? 'POST' : ''].filter(Boolean).join(', ');
    debug('%s %s: method not allowed', req.method, path);
    const shown = path.length > 80 ? `${path.slice(0, 80)}…` : path;
    refuse(mount, found.routes.family, res, 405, SourceErrorCode.BadRequest, `${shown} takes ${allow}; got ${req.method ?? 'no method'}`, {
      headers: { Allow: allow },
    });
    return;
  }
  void serve(mount, chosen, req, res, found.encodedUserId, hostBody);
}
