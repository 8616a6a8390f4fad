// PLACEHOLDER (being written): the Express router of a presence mount.
import type { Presence } from '../presence.js';

export interface RouterOptions {
  /** Overrides the mount's bodyLimit for this router. */
  bodyLimit?: number | string;
}

export type PresenceRouter = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, next: (error?: unknown) => void) => void;

export function createPresenceRouter(_presence: Presence, _options?: RouterOptions): PresenceRouter {
  throw new Error('router() is not built yet');
}
