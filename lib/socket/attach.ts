// PLACEHOLDER (being written): attaching a presence mount to a Socket.IO server or namespace.
import type { Namespace, Server } from 'socket.io';
import type { Presence } from '../presence.js';

export function attachPresence(_presence: Presence, _target: Server | Namespace): void {
  throw new Error('attach() is not built yet');
}
