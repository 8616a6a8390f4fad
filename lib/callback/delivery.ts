// The status-change callback's delivery: one ordered queue per user, users in parallel, retries with backoff, bounded per user and in all.

import http from 'node:http';
import https from 'node:https';
import createDebug from 'debug';
import type { PresenceEngine } from '../engine/engine.js';
import type { TimerHandle } from '../core/clock.js';
import type { PresenceChange } from '../core/types.js';
import type { ResolvedConfig } from '../options.js';
import { availabilityBody, callbackBody, callbackUrl, customStatusBody, seqOf, signCallback, SIGNATURE_HEADER, type PresenceCallbackBody } from './body.js';

export type { StateChangeCallbackBody, StatusChangeCallbackBody, PresenceCallbackBody, KickedDeviceEntry } from './body.js';

const debug = createDebug('express-presence:callback');

/** The longest wait between two attempts, whatever `backoff` and the attempt count. */
export const MAX_BACKOFF = 30_000;
/** A receiver's answer is read up to this many bytes; more is a failure (it should be tiny). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Counts of one mount's callback deliveries (events, not attempts, except `retried`). */
export interface CallbackDeliveryStats {
  /** Events the receiver acknowledged. */
  delivered: number;
  /** Events given up after `maxRetries` (or at `close()`), each passed to `callback-failed`. */
  failed: number;
  /**
   * Events not sent because a queue was full, each passed to `callback-failed`: coalesced away (replaced by a later event of
   * the same user, whose backlog reached `maxQueuePerUser` or was the longest when `maxQueue` was reached), or refused
   * because `maxQueue` events were waiting and no backlog could give one up.
   */
  dropped: number;
  /** Attempts that failed and were retried. */
  retried: number;
  /** Events waiting now, in flight included. */
  queued: number;
}

/** Why an event was not delivered; passed to `callback-failed`. */
export class CallbackDeliveryError extends Error {
  constructor(
    message: string,
    /** Attempts made (0 for an event dropped because the queue was full). */
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CallbackDeliveryError';
  }
}

class PendingEvent {
  /** Serialised once, at the first attempt; signature likewise. */
  payload: string | undefined;
  signature: string | undefined;
  url: string | undefined;
  failures = 0;
  constructor(
    readonly body: PresenceCallbackBody,
    readonly clientIp: string | undefined,
  ) {}
}

/** One user's events, delivered strictly one after the other. */
class UserQueue {
  readonly events: PendingEvent[] = [];
  head = 0;
  /** Ready, in flight or waiting for a retry: some part of the machinery holds this queue. */
  scheduled = false;
  retryTimer: TimerHandle | undefined;
  request: http.ClientRequest | undefined;
  /** Events of this user coalesced away since its backlog last emptied. */
  coalesced = 0;
  constructor(readonly userId: string) {}

  get size(): number {
    return this.events.length - this.head;
  }

  first(): PendingEvent | undefined {
    return this.events[this.head];
  }

  shift(): PendingEvent | undefined {
    const event = this.events[this.head];
    this.events[this.head++] = undefined as unknown as PendingEvent;
    // Compact now and then so a long-lived busy queue does not keep a long dead prefix.
    if (this.head > 64 && this.head * 2 > this.events.length) {
      this.events.splice(0, this.head);
      this.head = 0;
    }
    return event;
  }
}

/** A FIFO of queues ready for an attempt. */
class ReadyList {
  private items: UserQueue[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(queue: UserQueue): void {
    this.items.push(queue);
  }
  shift(): UserQueue | undefined {
    if (this.head >= this.items.length) return undefined;
    const queue = this.items[this.head++];
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return queue;
  }
}

/**
 * Sends every change of one mount to the callback URL. Events of one user go one at a time, in
 * order (a failing event holds back that user's later ones); different users go in parallel, at
 * most `callback.concurrency` at once. The engine's listener only builds the body and queues it.
 */
export class CallbackDelivery {
  private readonly settings: NonNullable<ResolvedConfig['callback']>;
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly queues = new Map<string, UserQueue>();
  private readonly ready = new ReadyList();
  private readonly counts: CallbackDeliveryStats = { delivered: 0, failed: 0, dropped: 0, retried: 0, queued: 0 };
  private inFlight = 0;
  /** Users whose events are in flight at once (`callback.concurrency`); also the keep-alive agent's socket limit. */
  private readonly concurrency: number;
  private pumpScheduled = false;
  /**
   * The longest backlog as last seen (and its size then), asked to give up an event when the total is full. Deliveries
   * shrink it unseen; once it is half what it was, the queues are looked through again (so at most once per halving).
   */
  private longest: UserQueue | undefined;
  private longestSize = 0;
  /** Coalescing episode: from the first event coalesced until no backlog that lost one is left (logged at both ends). */
  private coalescingUsers = 0;
  private coalescedInEpisode = 0;
  /** Overflow episode: from the first drop until the queue is back to half full. */
  private droppedInEpisode = -1;
  /** Failure episode: from the first event given up until the next delivery. */
  private failedInEpisode = -1;
  private closing = false;
  private abandoning: Error | undefined;
  private drained: (() => void) | undefined;

  constructor(
    private readonly engine: PresenceEngine,
    private readonly config: ResolvedConfig,
    private readonly onFailed: (body: PresenceCallbackBody, error: Error) => void,
  ) {
    if (!config.callback) throw new TypeError('CallbackDelivery needs the callback option');
    this.settings = config.callback;
    this.base = new URL(this.settings.url);
    this.concurrency = this.settings.concurrency;
    const https_ = this.base.protocol === 'https:';
    this.transport = https_ ? https : http;
    this.agent = new (https_ ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: this.concurrency });
    engine.on('change', this.onChange);
    engine.on('custom-status', (change) => this.enqueue(change.userId, customStatusBody(change), undefined));
    engine.on('availability', (change) => this.enqueue(change.userId, availabilityBody(change), undefined));
  }

  /** A copy of the counts. */
  get stats(): CallbackDeliveryStats {
    return { ...this.counts };
  }

  /** The live path: build the body, queue it, and return; sending happens later. */
  private readonly onChange = (change: PresenceChange): void => {
    this.enqueue(change.userId, callbackBody(change), change.clientIp);
  };

  /** Queues one body behind the user's earlier ones. */
  private enqueue(userId: string, body: PresenceCallbackBody, clientIp: string | undefined): void {
    const event = new PendingEvent(body, clientIp);
    let queue = this.queues.get(userId);
    // One user's backlog is bounded: beyond it, the newest waiting event gives way to this one (the latest state still goes).
    if (queue && queue.size >= this.settings.maxQueuePerUser && this.replaceNewest(queue, event)) return;
    if (this.counts.queued >= this.settings.maxQueue && !this.makeRoom()) {
      // Every backlog is one event (or only in flight): the receiver is behind for many users, not for one.
      if (queue && this.replaceNewest(queue, event)) return;
      this.drop(body);
      return;
    }
    if (!queue) {
      queue = new UserQueue(userId);
      this.queues.set(userId, queue);
    }
    queue.events.push(event);
    this.counts.queued++;
    if (!this.longest || queue.size >= this.longest.size) {
      this.longest = queue;
      this.longestSize = queue.size;
    }
    if (!queue.scheduled) {
      queue.scheduled = true;
      this.ready.push(queue);
      this.schedulePump();
    }
  }

  /**
   * Coalesces: the user's newest event not yet attempted is given up to `callback-failed` and `event` takes its place (the
   * body carries the user's status after the change, so the receiver still learns the latest; `Seq` shows the gap). False
   * when there is none (only the event in flight).
   */
  private replaceNewest(queue: UserQueue, event: PendingEvent): boolean {
    const last = queue.events.length - 1;
    const newest = queue.events[last];
    if (last < queue.head || !newest || newest.payload !== undefined) return false;
    queue.events[last] = event;
    this.coalesce(queue, newest, event);
    return true;
  }

  /**
   * The total is full: the longest backlog gives up its second newest waiting event (its newest, the latest state, stays),
   * so a user with a short queue never loses an event to another's backlog. False when no backlog has one to spare.
   */
  private makeRoom(): boolean {
    let longest = this.longest;
    if (!longest || longest.size * 2 < this.longestSize) {
      longest = undefined;
      for (const queue of this.queues.values()) if (!longest || queue.size > longest.size) longest = queue;
      this.longest = longest;
      this.longestSize = longest?.size ?? 0;
    }
    if (!longest || longest.size < 2) return false;
    const index = longest.events.length - 2;
    const victim = longest.events[index];
    // The second newest may be the one in flight (a backlog of two): nothing to spare then.
    if (index < longest.head || !victim || victim.payload !== undefined) return false;
    longest.events.splice(index, 1);
    this.counts.queued--;
    this.longestSize = longest.size;
    this.coalesce(longest, victim, longest.events[index] as PendingEvent);
    return true;
  }

  private coalesce(queue: UserQueue, given: PendingEvent, by: PendingEvent): void {
    this.counts.dropped++;
    if (queue.coalesced++ === 0 && this.coalescingUsers++ === 0) {
      this.config.logger.warn(
        `express-presence: the status-change callbacks of user ${queue.userId} are behind (maxQueuePerUser ${this.settings.maxQueuePerUser}, maxQueue ${this.settings.maxQueue}); waiting events of users this far behind are coalesced (the latest kept, the others passed to 'callback-failed') until their backlogs empty`,
      );
    }
    this.coalescedInEpisode++;
    this.fail(
      given.body,
      new CallbackDeliveryError(
        `user ${queue.userId} had too many undelivered callbacks (maxQueuePerUser ${this.settings.maxQueuePerUser}, maxQueue ${this.settings.maxQueue}); this event (seq ${seqOf(given.body)}) was coalesced into a later one (seq ${seqOf(by.body)})`,
        0,
      ),
    );
  }

  private drop(body: PresenceCallbackBody): void {
    this.counts.dropped++;
    if (this.droppedInEpisode < 0) {
      this.droppedInEpisode = 0;
      this.config.logger.warn(
        `express-presence: the status-change callback queue is full (maxQueue ${this.settings.maxQueue}); new events are dropped and passed to 'callback-failed' until it drains`,
      );
    }
    this.droppedInEpisode++;
    this.fail(body, new CallbackDeliveryError(`the callback queue was full (maxQueue ${this.settings.maxQueue}); the event was dropped`, 0));
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(this.pump);
  }

  private readonly pump = (): void => {
    this.pumpScheduled = false;
    while (this.inFlight < this.concurrency) {
      const queue = this.ready.shift();
      if (!queue) break;
      this.attempt(queue);
    }
  };

  private attempt(queue: UserQueue): void {
    const event = queue.first();
    if (!event) {
      this.release(queue);
      return;
    }
    if (this.abandoning) {
      this.abandon(queue, this.abandoning);
      return;
    }
    event.payload ??= JSON.stringify(event.body);
    event.url ??= callbackUrl(this.base, event.body, event.clientIp);
    if (this.settings.secret !== undefined) event.signature ??= signCallback(event.payload, this.settings.secret);
    this.inFlight++;
    this.post(queue, event);
  }

  private post(queue: UserQueue, event: PendingEvent): void {
    const payload = event.payload as string;
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(payload),
      'User-Agent': 'express-presence',
    };
    if (event.signature !== undefined) headers[SIGNATURE_HEADER] = event.signature;

    let settled = false;
    const settle = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      queue.request = undefined;
      this.inFlight--;
      if (error) this.attemptFailed(queue, event, error);
      else this.delivered(queue);
      this.schedulePump();
    };
    // An I/O deadline, not a delay: a real timer, whatever clock the mount uses.
    const timeout = this.settings.timeout;
    const deadline = setTimeout(() => request.destroy(new Error(`no answer within ${timeout} ms`)), timeout);
    deadline.unref();

    const request = this.transport.request(event.url as string, { method: 'POST', agent: this.agent, headers }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) request.destroy(new Error(`the receiver's answer exceeded ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(chunk);
      });
      response.on('error', (error) => settle(error));
      response.on('end', () => settle(acknowledgement(response.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
    });
    queue.request = request;
    request.on('error', (error) => settle(error));
    request.end(payload);
  }

  private delivered(queue: UserQueue): void {
    queue.shift();
    this.counts.delivered++;
    this.counts.queued--;
    if (this.failedInEpisode >= 0) {
      this.config.logger.warn(`express-presence: the callback receiver accepts events again; ${this.failedInEpisode} event(s) failed meanwhile`);
      this.failedInEpisode = -1;
    }
    this.afterDequeue(queue);
  }

  private attemptFailed(queue: UserQueue, event: PendingEvent, error: Error): void {
    event.failures++;
    debug('attempt %d for %s failed: %s', event.failures, queue.userId, error.message);
    if (this.abandoning) {
      this.abandon(queue, this.abandoning);
      return;
    }
    if (event.failures > this.settings.maxRetries) {
      queue.shift();
      this.counts.queued--;
      this.giveUp(event, new CallbackDeliveryError(`not delivered after ${event.failures} attempt(s): ${error.message}`, event.failures, { cause: error }));
      this.afterDequeue(queue);
      return;
    }
    this.counts.retried++;
    if (this.closing) {
      // Flushing: no waiting, the deadline bounds it all.
      this.ready.push(queue);
      return;
    }
    queue.retryTimer = this.config.clock.setTimeout(
      () => {
        queue.retryTimer = undefined;
        this.ready.push(queue);
        this.schedulePump();
      },
      retryDelay(this.settings.backoff, event.failures),
    );
    queue.retryTimer.unref?.();
  }

  private giveUp(event: PendingEvent, error: CallbackDeliveryError): void {
    this.counts.failed++;
    if (this.failedInEpisode < 0) {
      this.failedInEpisode = 0;
      this.config.logger.error(
        `express-presence: a status-change callback for ${event.body.Info.To_Account} (seq ${seqOf(event.body)}) was given up: ${error.message}; it goes to 'callback-failed', and further failures are only counted until the receiver accepts again`,
      );
    }
    this.failedInEpisode++;
    this.fail(event.body, error);
  }

  private fail(body: PresenceCallbackBody, error: Error): void {
    try {
      this.onFailed(body, error);
    } catch (listenerError) {
      this.config.logger.error("express-presence: a 'callback-failed' listener threw", listenerError);
    }
  }

  /** After an event left the queue: the queue goes to the back of the line, or away if empty. */
  private afterDequeue(queue: UserQueue): void {
    if (this.droppedInEpisode >= 0 && this.counts.queued <= this.settings.maxQueue / 2) {
      this.config.logger.warn(`express-presence: the status-change callback queue drained; ${this.droppedInEpisode} event(s) were dropped while it was full`);
      this.droppedInEpisode = -1;
    }
    if (queue.size > 0) this.ready.push(queue);
    else this.release(queue);
  }

  private release(queue: UserQueue): void {
    queue.scheduled = false;
    this.queues.delete(queue.userId);
    if (this.longest === queue) this.longest = undefined;
    if (queue.coalesced > 0) {
      queue.coalesced = 0;
      if (--this.coalescingUsers === 0) {
        this.config.logger.warn(`express-presence: the status-change callbacks caught up; ${this.coalescedInEpisode} event(s) were coalesced meanwhile`);
        this.coalescedInEpisode = 0;
      }
    }
    if (this.counts.queued === 0) this.drained?.();
  }

  /** Gives up every event of a queue that is not in flight. */
  private abandon(queue: UserQueue, error: Error): void {
    for (let event = queue.shift(); event; event = queue.shift()) {
      this.counts.queued--;
      this.giveUp(event, new CallbackDeliveryError(error.message, event.failures, { cause: error }));
    }
    this.release(queue);
  }

  /**
   * Stops taking events, then flushes: retries waiting for their backoff go at once, and
   * everything gets until the per-attempt `timeout` to be delivered. What is left then is given
   * up to `callback-failed`, so the app can keep it.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.engine.off('change', this.onChange);
    for (const queue of this.queues.values()) {
      if (queue.retryTimer === undefined) continue;
      this.config.clock.clearTimeout(queue.retryTimer);
      queue.retryTimer = undefined;
      this.ready.push(queue);
    }
    this.pump();
    if (this.counts.queued > 0) {
      const drained = new Promise<void>((resolve) => (this.drained = resolve));
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.settings.timeout)));
      await Promise.race([drained, deadline]);
      clearTimeout(timer);
      if (this.counts.queued > 0) {
        this.abandoning = new Error(`presence closed before the callback was delivered (flush deadline ${this.settings.timeout} ms)`);
        for (const queue of [...this.queues.values()]) {
          if (queue.request) queue.request.destroy(this.abandoning);
          else this.abandon(queue, this.abandoning);
        }
        await drained;
      }
    }
    this.agent.destroy();
  }
}

/** Full jitter: a uniform wait up to `backoff` doubled per failure so far, capped at MAX_BACKOFF. */
export function retryDelay(backoff: number, failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF, backoff * 2 ** Math.min(failures - 1, 30));
  return Math.floor(random() * ceiling);
}

/** Undefined when the receiver acknowledged (a 2xx with `{ ActionStatus: "OK", ErrorCode: 0 }`, an empty body or `{}`), else why not. */
function acknowledgement(status: number, text: string): Error | undefined {
  if (status < 200 || status >= 300) return new Error(`the receiver answered HTTP ${status}`);
  // A plain `res.sendStatus(204)` or `res.json({})` receiver said nothing against the event: it took it.
  if (text.trim() === '') return undefined;
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    return new Error(`the receiver's answer is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
  const fields = answer as { ActionStatus?: unknown; ErrorCode?: unknown } | null;
  if (fields?.ActionStatus === 'OK' && fields.ErrorCode === 0) return undefined;
  if (typeof answer === 'object' && answer !== null && !Array.isArray(answer) && Object.keys(answer).length === 0) return undefined;
  return new Error(`the receiver answered ${text.slice(0, 120)} instead of { "ActionStatus": "OK", "ErrorCode": 0 } (or an empty body, or {})`);
}
