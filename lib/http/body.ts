// Reading a JSON request body with a size limit, or taking the one a host body parser already read.

import type { IncomingMessage } from 'node:http';

/** What reading a body came to. */
export type BodyResult =
  | { readonly kind: 'empty' }
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'malformed'; readonly message: string }
  | { readonly kind: 'too-large'; readonly limit: number; readonly closeConnection: boolean }
  | { readonly kind: 'unsupported'; readonly message: string }
  /** The body did not arrive within `bodyTimeout`: answered 408 and the connection closed (the rest is never read). */
  | { readonly kind: 'timeout'; readonly timeout: number }
  /** Another middleware read the stream and kept nothing we can use: a host misconfiguration. */
  | { readonly kind: 'consumed' }
  /** The client went away; there is nobody to answer. */
  | { readonly kind: 'aborted' };

/** The fields body parsers (body-parser, Express 4 and 5) leave on the request. */
interface ParsedRequest extends IncomingMessage {
  body?: unknown;
  _body?: boolean;
}

const EMPTY: BodyResult = Object.freeze({ kind: 'empty' });
const ABORTED: BodyResult = Object.freeze({ kind: 'aborted' });
const CONSUMED: BodyResult = Object.freeze({ kind: 'consumed' });

/** Per-request reading state, hung on the request so the stream listeners can be shared functions. */
class BodyRead {
  readonly chunks: Buffer[] = [];
  received = 0;
  done = false;
  timer: NodeJS.Timeout | undefined;
  constructor(
    readonly limit: number,
    readonly resolve: (result: BodyResult) => void,
  ) {}
}

const READ = Symbol('express-presence body read');
type ReadingRequest = IncomingMessage & { [READ]?: BodyRead };

function finish(req: ReadingRequest, result: BodyResult): void {
  const read = req[READ];
  if (!read || read.done) return;
  read.done = true;
  read.chunks.length = 0;
  clearTimeout(read.timer);
  req.removeListener('end', onEnd);
  req.removeListener('error', onError);
  req.removeListener('close', onClose);
  read.resolve(result);
}

function onData(this: ReadingRequest, chunk: Buffer): void {
  const read = this[READ];
  // Past the limit (or answered), the rest is drained and dropped so the answer can go out.
  if (!read || read.done) return;
  read.received += chunk.length;
  if (read.received > read.limit) {
    finish(this, { kind: 'too-large', limit: read.limit, closeConnection: true });
    return;
  }
  read.chunks.push(chunk);
}

function onEnd(this: ReadingRequest): void {
  const read = this[READ];
  if (!read || read.done) return;
  const bytes = read.chunks.length === 1 ? (read.chunks[0] as Buffer) : Buffer.concat(read.chunks, read.received);
  finish(this, parseJson(bytes.toString('utf8')));
}

function onError(this: ReadingRequest): void {
  finish(this, ABORTED);
}

function onClose(this: ReadingRequest): void {
  if (!this.readableEnded) finish(this, ABORTED);
}

/** JSON text to a result; a byte-order mark is tolerated, whitespace alone is an empty body. */
export function parseJson(text: string): BodyResult {
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let onlySpace = true;
  for (let i = start; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) {
      onlySpace = false;
      break;
    }
  }
  if (onlySpace) return EMPTY;
  try {
    return { kind: 'json', value: JSON.parse(start === 0 ? text : text.slice(start)) };
  } catch (error) {
    return { kind: 'malformed', message: `the body is not valid JSON (${cut((error as Error).message)})` };
  }
}

/** A parser's message, cut short: it may quote the input (V8 quotes the text around a JSON error). */
function cut(message: string, max = 160): string {
  return message.length <= max ? message : `${message.slice(0, max)}…`;
}

/**
 * The request's JSON body. A body already read by a host parser (`express.json()` before the
 * router) is taken as it is; otherwise the stream is read here, refusing more than `limit` bytes
 * (at once when Content-Length says so), and giving up on a body that has not fully arrived
 * within `timeout` ms. Only identity encoding is read: compressed bodies are refused.
 */
export function readJsonBody(request: IncomingMessage, limit: number, timeout = 0): Promise<BodyResult> | BodyResult {
  const req = request as ParsedRequest;
  const declared = req.headers['content-length'];
  const length = declared === undefined ? -1 : Number(declared);
  // Refused before reading (or despite a host parser's own, larger limit): Node drains an unread
  // body after the answer, keeping the connection usable.
  if (length > limit) return { kind: 'too-large', limit, closeConnection: false };
  if (req._body === true) return fromParsed(req.body);
  if (req.readableEnded) return req.body === undefined ? CONSUMED : fromParsed(req.body);

  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    return { kind: 'unsupported', message: `Content-Encoding ${JSON.stringify(encoding)} is not supported; send the JSON uncompressed` };
  }
  if (length === 0) return EMPTY;

  return new Promise<BodyResult>((resolve) => {
    const reading = req as ReadingRequest;
    const read = new BodyRead(limit, resolve);
    reading[READ] = read;
    if (timeout > 0) {
      // A stalled body would otherwise hold the request (and its memory) until Node's own 300 s request timeout.
      read.timer = setTimeout(() => finish(reading, { kind: 'timeout', timeout }), timeout);
      read.timer.unref();
    }
    reading.on('data', onData);
    reading.on('end', onEnd);
    reading.on('error', onError);
    reading.on('close', onClose);
  });
}

/** The error a body parser (body-parser, i.e. `express.json()`) passes to `next`, as far as we read it. */
interface BodyParserError {
  type: string;
  status?: unknown;
  statusCode?: unknown;
  message: string;
  limit?: unknown;
  charset?: unknown;
}

function isBodyParserError(error: unknown): error is BodyParserError {
  return error instanceof Error && typeof (error as { type?: unknown }).type === 'string';
}

/**
 * What a host body parser's failure means for our routes (`express.json()` before the router refused the body), or
 * undefined for an error that is not a body parser's (left to the host's error handlers).
 */
export function fromHostParserError(error: unknown): BodyResult | undefined {
  if (!isBodyParserError(error)) return undefined;
  const status = Number(error.status ?? error.statusCode);
  switch (error.type) {
    case 'entity.parse.failed':
      return { kind: 'malformed', message: `the body is not valid JSON (${cut(error.message)})` };
    case 'entity.too.large':
      return { kind: 'too-large', limit: typeof error.limit === 'number' ? error.limit : 0, closeConnection: false };
    case 'encoding.unsupported':
      return { kind: 'unsupported', message: `${cut(error.message)}; send the JSON uncompressed` };
    case 'charset.unsupported':
      return {
        kind: 'unsupported',
        message: `the charset ${typeof error.charset === 'string' ? JSON.stringify(error.charset.slice(0, 40)) : ''} is not supported; send UTF-8 JSON`,
      };
    case 'request.aborted':
      return ABORTED;
    case 'request.size.invalid':
      return { kind: 'malformed', message: 'the body is shorter or longer than its Content-Length' };
    default:
      // Another 4xx of a body parser (a host `verify` refusing it, too many parameters): answered in our shape.
      return status >= 400 && status < 500 ? { kind: 'malformed', message: `the host's body parser refused the body (${cut(error.message)})` } : undefined;
  }
}

function fromParsed(body: unknown): BodyResult {
  if (body === undefined) return EMPTY;
  if (typeof body === 'string') return parseJson(body);
  if (Buffer.isBuffer(body)) return parseJson(body.toString('utf8'));
  return { kind: 'json', value: body };
}
