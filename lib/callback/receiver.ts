// The status-change callback's receiving end: an Express (or plain Node) middleware that verifies, parses, hands over and answers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseByteSize } from '../options.js';
import type { Logger } from '../core/types.js';
import { sendJson } from '../util/respond.js';
import { refuseUnknownKeys } from '../util/did-you-mean.js';
import { seqOf, SIGNATURE_HEADER, verifyCallbackSignature, type PresenceCallbackBody } from './body.js';

/** Handles one status-change event; may be async. A throw (or rejection) answers 500, so the sender retries the event. */
/** Takes each callback: a device's state change (`State.StateChange`) or a custom status / availability change (`State.StatusChange`). */
export type CallbackHandler = (event: PresenceCallbackBody, req: IncomingMessage) => void | Promise<void>;

export interface CallbackReceiverOptions {
  /**
   * The sender's `callback.secret`: an event whose `X-Presence-Signature` does not sign its body is refused with 401.
   * Without one, unsigned events are taken from anyone who can reach the route. Defaults to none (`presence.callbackReceiver`:
   * the mount's `callback.secret`).
   */
  secret?: string;
  /** The largest body taken, in bytes or as `'500kb'`, `'1mb'`; 413 beyond. Defaults to `'1mb'`. */
  bodyLimit?: number | string;
  /** Where a failing handler is reported. Defaults to `console` (`presence.callbackReceiver`: the mount's `logger`). */
  logger?: Logger;
}

/** A Node/Connect/Express middleware: `app.post('/presence-hook', receiver)` or `app.use('/presence-hook', receiver)`. */
export type CallbackReceiver = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

/** What the sender takes as delivered. */
const ACKNOWLEDGED = Object.freeze({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' });

/** The source document's codes, as the router answers them. */
const BAD_REQUEST = 90001;
const UNAUTHORIZED = 90009;
const INTERNAL = 90994;

const OPTION_NAMES = ['secret', 'bodyLimit', 'logger'] as const satisfies readonly (keyof CallbackReceiverOptions)[];

/** The fields body parsers leave on the request: `rawBody` is the usual name for bytes a `verify` hook kept. */
interface ParsedRequest extends IncomingMessage {
  body?: unknown;
  rawBody?: unknown;
  _body?: boolean;
}

/** The body as signed, or why there is none. */
type RawBody =
  | { readonly kind: 'bytes'; readonly text: string }
  | { readonly kind: 'too-large'; readonly closeConnection: boolean }
  | { readonly kind: 'unsupported'; readonly message: string }
  | { readonly kind: 'consumed' }
  | { readonly kind: 'aborted' };

function bytes(value: Buffer | string): RawBody {
  return { kind: 'bytes', text: typeof value === 'string' ? value : value.toString('utf8') };
}

/**
 * The body's bytes. Bytes another middleware kept (`req.rawBody` from a `verify` hook, or a Buffer or string `req.body`
 * from `express.raw()` / `express.text()`) are taken as they are. A body a global `express.json()` already parsed is
 * serialised again: the sender signs `JSON.stringify` of the event, which parsing and serialising gives back byte for byte.
 * Otherwise the stream is read here.
 */
function readRawBody(request: IncomingMessage, limit: number): RawBody | Promise<RawBody> {
  const req = request as ParsedRequest;
  if (Buffer.isBuffer(req.rawBody) || typeof req.rawBody === 'string') return bytes(req.rawBody);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return { kind: 'too-large', closeConnection: false };
  if (req._body === true || req.readableEnded) {
    const body = req.body;
    if (Buffer.isBuffer(body) || typeof body === 'string') return bytes(body);
    if (typeof body === 'object' && body !== null) return bytes(JSON.stringify(body));
    return { kind: 'consumed' };
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    return { kind: 'unsupported', message: `Content-Encoding ${JSON.stringify(encoding)} is not supported` };
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (result: RawBody): void => {
      if (done) return;
      done = true;
      resolve(result);
    };
    // Past the limit the rest is drained and dropped, so the 413 can go out.
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      received += chunk.length;
      if (received > limit) finish({ kind: 'too-large', closeConnection: true });
      else chunks.push(chunk);
    });
    req.on('end', () => finish(bytes(Buffer.concat(chunks, received))));
    req.on('error', () => finish({ kind: 'aborted' }));
    req.on('close', () => {
      if (!req.readableEnded) finish({ kind: 'aborted' });
    });
  });
}

function fail(res: ServerResponse, status: number, code: number, info: string, headers: Record<string, string> = {}): void {
  if (!res.headersSent) for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendJson(res, status, { ActionStatus: 'FAIL', ErrorCode: code, ErrorInfo: info });
}

/** The event in a parsed body, or undefined when it is not a status-change callback. */
function eventOf(value: unknown): PresenceCallbackBody | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const body = value as { CallbackCommand?: unknown; Info?: unknown };
  const info = body.Info as { To_Account?: unknown } | null | undefined;
  const command = body.CallbackCommand;
  if (
    (command !== 'State.StateChange' && command !== 'State.StatusChange') ||
    typeof info !== 'object' ||
    info === null ||
    typeof info.To_Account !== 'string'
  ) {
    return undefined;
  }
  return value as PresenceCallbackBody;
}

/**
 * An Express middleware receiving the status-change callback: reads the raw body itself (before or after a global body
 * parser), checks the signature (401 on a bad one), parses the event, awaits `handler(event, req)` and answers what the
 * sender takes as delivered, `{ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' }`; a handler that throws gets 500, so the
 * event is retried. Throws a TypeError for a bad handler or option.
 */
export function callbackReceiver(handler: CallbackHandler, options: CallbackReceiverOptions = {}): CallbackReceiver {
  if (typeof handler !== 'function') {
    throw new TypeError(`callbackReceiver(handler, options?) takes a handler (event, req) => void | Promise<void>; got ${typeof handler}`);
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`callbackReceiver options must be an object { secret?, bodyLimit?, logger? }; got ${options === null ? 'null' : typeof options}`);
  }
  refuseUnknownKeys('callbackReceiver', options, OPTION_NAMES);
  const { secret, logger = console } = options;
  if (secret !== undefined && (typeof secret !== 'string' || secret === '')) {
    throw new TypeError(`callbackReceiver secret must be a non-empty string (the sender's callback.secret); got ${typeof secret}`);
  }
  if (typeof logger !== 'object' || logger === null || typeof logger.error !== 'function') {
    throw new TypeError('callbackReceiver logger must be an object with warn() and error() methods, such as console');
  }
  const limit = parseByteSize('callbackReceiver bodyLimit', options.bodyLimit, 1024 * 1024);

  async function receive(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return fail(res, 405, BAD_REQUEST, 'the status-change callback is a POST', { Allow: 'POST' });
    const read = readRawBody(req, limit);
    const raw = read instanceof Promise ? await read : read;
    switch (raw.kind) {
      case 'bytes':
        break;
      case 'too-large':
        return fail(res, 413, BAD_REQUEST, `the body exceeds ${limit} bytes (bodyLimit)`, raw.closeConnection ? { Connection: 'close' } : {});
      case 'unsupported':
        return fail(res, 415, BAD_REQUEST, raw.message);
      case 'consumed':
        logger.error(
          'express-presence: callbackReceiver found the body read by an earlier middleware that kept neither the bytes nor a parsed body; mount it before that parser',
        );
        return fail(res, 500, INTERNAL, 'the body was read by another middleware before the receiver');
      case 'aborted':
        return; // the sender went away; nobody to answer
      default: {
        const unknownKind: never = raw;
        throw new Error(`unknown body result ${JSON.stringify(unknownKind)}`);
      }
    }
    if (secret !== undefined && !verifyCallbackSignature(raw.text, req.headers[SIGNATURE_HEADER.toLowerCase()], secret)) {
      return fail(res, 401, UNAUTHORIZED, `bad or missing ${SIGNATURE_HEADER}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.text.charCodeAt(0) === 0xfeff ? raw.text.slice(1) : raw.text);
    } catch (error) {
      return fail(res, 400, BAD_REQUEST, `the body is not valid JSON (${(error as Error).message})`);
    }
    const event = eventOf(parsed);
    if (!event)
      return fail(
        res,
        400,
        BAD_REQUEST,
        'the body is not a status-change callback { CallbackCommand: "State.StateChange" or "State.StatusChange", Info: { To_Account, ... } }',
      );
    try {
      await handler(event, req);
    } catch (error) {
      logger.error(
        `express-presence: the callbackReceiver handler failed for ${event.Info.To_Account} (seq ${seqOf(event)}); answered 500, so the sender retries`,
        error,
      );
      return fail(res, 500, INTERNAL, 'the receiver failed to handle the event; it will be retried');
    }
    sendJson(res, 200, ACKNOWLEDGED);
  }

  return (req, res) => {
    receive(req, res).catch((error: unknown) => {
      logger.error('express-presence: callbackReceiver failed', error);
      fail(res, 500, INTERNAL, 'the receiver failed');
    });
  };
}
