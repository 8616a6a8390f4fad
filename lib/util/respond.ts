// Writing answers on a bare ServerResponse, so the router needs no Express at runtime and behaves alike in 4 and 5.

import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';

const JSON_TYPE = 'application/json; charset=utf-8';
const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

/** Source-document error codes (the REST API's `ErrorCode`). */
export const SourceErrorCode = {
  /** The body is not JSON, is not an object, or a required field is missing or empty. */
  BadRequest: 90001,
  /** `To_Account` (or `UserID`) has the wrong type: not a list of non-empty strings. */
  BadAccountList: 90003,
  /** The caller is not authorised. */
  Unauthorized: 90009,
  /** More than 500 accounts in one call. */
  TooManyAccounts: 90011,
  /** Our own: something failed inside the server (a throwing `authorize`, a failing store). */
  Internal: 90994,
} as const;

export type SourceErrorCode = (typeof SourceErrorCode)[keyof typeof SourceErrorCode];

/** An RFC 9457 problem document, the error shape of the plain JSON routes. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

/** The error shape of the source-document routes. */
export interface SourceFailure {
  ActionStatus: 'FAIL';
  ErrorCode: SourceErrorCode;
  ErrorInfo: string;
}

/** Writes a JSON text that is already serialised: one stringify per answer, done by the caller. */
export function sendText(res: ServerResponse, status: number, contentType: string, text: string, closeConnection = false): void {
  if (res.headersSent) {
    // An answer already started (it cannot be replaced): end it so the client is not left waiting.
    if (!res.writableEnded) res.end();
    return;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  // Presence is live data: no cache or proxy may keep an answer.
  res.setHeader('Cache-Control', 'no-store');
  if (closeConnection) res.setHeader('Connection', 'close');
  res.end(text);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  sendText(res, status, JSON_TYPE, JSON.stringify(value));
}

export interface ErrorExtras {
  /** Extra headers, e.g. `Allow` on a 405. */
  headers?: Record<string, string>;
  /** Close the connection after the answer (a body left unread). */
  closeConnection?: boolean;
}

function applyHeaders(res: ServerResponse, extras: ErrorExtras | undefined): void {
  if (!extras?.headers || res.headersSent) return;
  for (const name of Object.keys(extras.headers)) res.setHeader(name, extras.headers[name] as string);
}

/** Answers an error on a plain JSON route as `application/problem+json`. */
export function sendProblem(res: ServerResponse, status: number, detail: string, extras?: ErrorExtras): void {
  applyHeaders(res, extras);
  const problem: Problem = { type: 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, detail };
  sendText(res, status, PROBLEM_TYPE, JSON.stringify(problem), extras?.closeConnection);
}

/** Answers an error on a source-document route: `ActionStatus: "FAIL"` with its `ErrorCode`. */
export function sendSourceFailure(res: ServerResponse, status: number, code: SourceErrorCode, info: string, extras?: ErrorExtras): void {
  applyHeaders(res, extras);
  const failure: SourceFailure = { ActionStatus: 'FAIL', ErrorCode: code, ErrorInfo: info };
  sendText(res, status, JSON_TYPE, JSON.stringify(failure), extras?.closeConnection);
}

/** Longest excerpt of the caller's own text quoted back in an error. */
export const MAX_EXCERPT = 40;

/** A text the caller sent, quoted for an error message: cut to MAX_EXCERPT characters, saying how long it was. */
export function excerpt(text: string): string {
  if (text.length <= MAX_EXCERPT) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_EXCERPT))}… (${text.length} characters)`;
}

/** How to describe a value the caller sent, in an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
    case 'object':
      return 'an object';
    case 'number':
    case 'boolean':
      return String(value);
    default:
      return typeof value;
  }
}
