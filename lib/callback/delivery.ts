// PLACEHOLDER (being written): the status-change callback's delivery queues.
import type { PresenceEngine } from '../engine/engine.js';
import type { ResolvedConfig } from '../options.js';

/** The body POSTed to the callback URL. */
export interface StateChangeCallbackBody {
  CallbackCommand: 'State.StateChange';
  EventTime: number;
  Info: { Action: string; To_Account: string; Reason: string };
  KickedDevice: { Platform: string }[];
}

export class CallbackDelivery {
  constructor(_engine: PresenceEngine, _config: ResolvedConfig, _onFailed: (body: StateChangeCallbackBody, error: Error) => void) {}
  async close(): Promise<void> {}
}
