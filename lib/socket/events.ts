// The client events of a presence namespace: each validates its payload and answers through its acknowledgement, never throws.

import { parseCustomStatus, parseCustomStatusTtl, type PresenceEngine } from '../engine/engine.js';
import { parseAvailability } from '../core/availability.js';
import { isPromiseLike, type MaybePromise } from '../core/store.js';
import { isStoreUnavailable } from '../core/errors.js';
import type { ResolvedConfig } from '../options.js';
import { takeToken } from './fair-use.js';
import type { Answer, ClientToServerEvents, FailedAnswer, RoomClientToServerEvents } from './protocol.js';
import { PRESENCE, type PresenceSocket, type SocketPresence } from './session.js';
import { readUserIds, type Subscriptions } from './subscriptions.js';

type Ack = (answer: Answer) => void;
export type Run = (socket: PresenceSocket, state: SocketPresence, payload: unknown) => MaybePromise<Answer>;
/** Handles one client event, `[name, ...args]`, for any socket of the namespace. */
export type EventHandler = (socket: PresenceSocket, event: readonly unknown[]) => void;
/** A socket middleware (`socket.use`) that takes the presence events and passes the app's on. */
export type EventDispatch = (socket: PresenceSocket, event: readonly unknown[], next: (error?: Error) => void) => void;

const OK: Answer = Object.freeze({ ok: true });
const NOT_LOGGED_IN: FailedAnswer = Object.freeze({ ok: false, code: 'NOT_LOGGED_IN', message: 'this connection is no longer logged in' });
const SERVER_ERROR: FailedAnswer = Object.freeze({ ok: false, code: 'SERVER_ERROR', message: 'the server failed to handle this event; try again' });
const STORE_UNAVAILABLE: FailedAnswer = Object.freeze({ ok: false, code: 'SERVER_ERROR', message: 'the presence store is unavailable; try again shortly' });

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  return Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value;
}

/** Events without a payload accept none, null or an object (for later extension); anything else is junk. */
function refuseJunk(event: string, payload: unknown): FailedAnswer | undefined {
  if (payload === undefined || payload === null || isObject(payload)) return undefined;
  return { ok: false, code: 'BAD_REQUEST', message: `${event} takes no payload (or an object); got ${kindOf(payload)}` };
}

/** The acknowledgement of an event, `[name, ...args]`: its last argument when the client asked for one. */
function ackOf(args: readonly unknown[]): Ack | undefined {
  const last = args[args.length - 1];
  return args.length > 1 && typeof last === 'function' ? (last as Ack) : undefined;
}

function reply(ack: Ack | undefined, answer: Answer): void {
  if (!ack) return;
  try {
    ack(answer);
  } catch {
    // socket.io's acknowledgement does not throw; a wrapped one that does must not reach the server.
  }
}

/**
 * Wraps an event's work: finds the acknowledgement (the last argument, whatever came before it),
 * refuses sockets no longer logged in, and turns any failure into a `SERVER_ERROR` answer.
 */
export function listener(engine: PresenceEngine, event: string, run: Run, afterReply?: (socket: PresenceSocket) => void): EventHandler {
  const logFailure = (error: unknown): Answer => {
    // A store outage is the store's to log (once per episode), not once per client event.
    if (isStoreUnavailable(error)) return STORE_UNAVAILABLE;
    engine.config.logger.error(`express-presence: ${event} failed`, error);
    return SERVER_ERROR;
  };
  return (socket, args) => {
    // args[0] is the event name; socket.io appends the acknowledgement when the client asked for one.
    const ack = ackOf(args);
    const payload = args.length > (ack ? 2 : 1) ? args[1] : undefined;
    const state = socket[PRESENCE];
    let answer: MaybePromise<Answer>;
    try {
      answer = state && state.connection.open ? run(socket, state, payload) : NOT_LOGGED_IN;
    } catch (error) {
      answer = logFailure(error);
    }
    const finish = (result: Answer): void => {
      reply(ack, result);
      if (afterReply) afterReply(socket);
    };
    if (isPromiseLike(answer)) answer.then(finish, (error: unknown) => finish(logFailure(error)));
    else finish(answer);
  };
}

/**
 * One socket middleware for every presence event, shared by the sockets of one mount: a single
 * `socket.use` entry costs each connection far less memory than seven event listeners.
 */
export function presenceEvents(
  engine: PresenceEngine,
  config: Pick<ResolvedConfig, 'eventRateLimit' | 'maxSubscriptions'>,
  subscriptions: Subscriptions,
  /** More events served the same way (the room events of lib/socket/rooms.ts), built with `listener`. */
  more: Readonly<Record<string, EventHandler>> = {},
): EventDispatch {
  const handlers = new Map<unknown, EventHandler>([...Object.entries(eventHandlers(engine, config.maxSubscriptions, subscriptions)), ...Object.entries(more)]);
  const limit = config.eventRateLimit;
  const clock = engine.config.clock;
  if (!limit) {
    return (socket, event, next) => {
      const handler = handlers.get(event[0]);
      if (handler) handler(socket, event);
      else next();
    };
  }
  const rateLimited: FailedAnswer = Object.freeze({
    ok: false,
    code: 'RATE_LIMITED',
    message: `this connection sent more than ${limit.perSecond} presence events per second (eventRateLimit, burst ${limit.burst}); the event was not handled, retry later`,
  });
  return (socket, event, next) => {
    const handler = handlers.get(event[0]);
    if (!handler) return next();
    // Heartbeats are exempt: a client keeping its link alive is never refused for it. The packet
    // counted as a heartbeat anyway (SocketPresence.heartbeat), refused or not.
    const state = socket[PRESENCE];
    if (state && event[0] !== 'presence:heartbeat' && !takeToken(state, limit, clock.now())) reply(ackOf(event), rateLimited);
    else handler(socket, event);
  };
}

function eventHandlers(
  engine: PresenceEngine,
  max: number,
  subscriptions: Subscriptions,
): Record<Exclude<keyof ClientToServerEvents, keyof RoomClientToServerEvents>, EventHandler> {
  const clock = engine.config.clock;
  return {
    'presence:heartbeat': listener(engine, 'presence:heartbeat', (_socket, state, payload) => {
      // The packet itself already counted as a heartbeat; this answers the client's clock question.
      engine.heartbeat(state.connection);
      return refuseJunk('presence:heartbeat', payload) ?? { ok: true, serverTime: clock.now() };
    }),
    'presence:background': listener(engine, 'presence:background', (_socket, state, payload) => {
      const junk = refuseJunk('presence:background', payload);
      if (junk) return junk;
      engine.background(state.connection);
      return OK;
    }),
    'presence:foreground': listener(engine, 'presence:foreground', (_socket, state, payload) => {
      const junk = refuseJunk('presence:foreground', payload);
      if (junk) return junk;
      engine.foreground(state.connection);
      return OK;
    }),
    'presence:logout': listener(
      engine,
      'presence:logout',
      async (_socket, state, payload) => {
        const junk = refuseJunk('presence:logout', payload);
        if (junk) return junk;
        await engine.logout(state.connection);
        return OK;
      },
      // The answer goes first, then the server ends the socket (unless the payload was refused).
      (socket) => {
        if (!socket[PRESENCE]?.connection.open) socket.disconnect();
      },
    ),
    'presence:subscribe': listener(engine, 'presence:subscribe', (socket, state, payload) => {
      const userIds = readUserIds('presence:subscribe', payload, max);
      return Array.isArray(userIds) ? subscriptions.subscribe(socket, state, userIds) : userIds;
    }),
    'presence:unsubscribe': listener(engine, 'presence:unsubscribe', (socket, state, payload) => {
      const userIds = readUserIds('presence:unsubscribe', payload, max);
      return Array.isArray(userIds) ? subscriptions.unsubscribe(socket, state, userIds) : userIds;
    }),
    'presence:set-status': listener(engine, 'presence:set-status', async (_socket, state, payload) => {
      if (!isObject(payload) || !('customStatus' in payload)) {
        return { ok: false, code: 'BAD_REQUEST', message: `presence:set-status takes { customStatus: string | null }; got ${kindOf(payload)}` };
      }
      let customStatus: string | null;
      let ttl: number | undefined;
      try {
        customStatus = parseCustomStatus(payload.customStatus);
        ttl = parseCustomStatusTtl(payload.ttl);
      } catch (error) {
        return { ok: false, code: 'BAD_REQUEST', message: (error as Error).message };
      }
      await engine.setCustomStatus(state.connection.userId, customStatus, ttl === undefined ? {} : { ttl });
      return { ok: true, customStatus };
    }),
    'presence:set-availability': listener(engine, 'presence:set-availability', async (_socket, state, payload) => {
      if (!isObject(payload) || !('availability' in payload)) {
        return {
          ok: false,
          code: 'BAD_REQUEST',
          message: `presence:set-availability takes { availability: 'available' | 'away' | 'dnd' | 'invisible' }; got ${kindOf(payload)}`,
        };
      }
      let availability;
      try {
        availability = parseAvailability(payload.availability);
      } catch (error) {
        return { ok: false, code: 'BAD_REQUEST', message: (error as Error).message };
      }
      await engine.setAvailability(state.connection.userId, availability, state.connection);
      return { ok: true, availability };
    }),
    'presence:activity': listener(engine, 'presence:activity', (_socket, state, payload) => {
      const junk = refuseJunk('presence:activity', payload);
      if (junk) return junk;
      engine.activity(state.connection);
      return OK;
    }),
  };
}
