// What a client holds of a room in the specs: its join answer (taken inside the acknowledgement) with every presence:room applied in order.

import { expect } from 'chai';
import type { RoomMember, RoomMessage, RoomSnapshot } from '../../lib/index.js';
import type { Device } from '../fixtures/socket-harness.js';

/** What one connection holds of a room: its join answer with every presence:room applied in order. */
export class View {
  members = new Map<string, RoomMember>();
  count = 0;
  readonly messages: RoomMessage[] = [];
  constructor(
    readonly device: Device,
    readonly room: string,
  ) {
    device.socket.on('presence:room', (message: RoomMessage) => {
      if (message.room !== room) return;
      this.messages.push(message);
      if (message.members !== undefined) this.members = new Map((message.members ?? []).map((member) => [member.userId, member]));
      for (const member of [...message.joined, ...message.updated]) this.members.set(member.userId, member);
      for (const userId of message.left) this.members.delete(userId);
      this.count = message.count;
    });
  }
  reset(answer: RoomSnapshot): void {
    this.members = new Map((answer.members ?? []).map((member) => [member.userId, member]));
    this.count = answer.count;
  }
  get userIds(): string[] {
    return [...this.members.keys()].sort();
  }
}

export function emit<T>(device: Device, event: string, payload: unknown): Promise<T> {
  return device.socket.timeout(10_000).emitWithAck(event as 'presence:join', payload as never) as Promise<T>;
}

/** Joins; the view takes the answer inside the acknowledgement, so a presence:room read right behind it applies after it. */
export async function join(device: Device, room: string, meta?: unknown): Promise<{ view: View; answer: RoomSnapshot }> {
  const view = new View(device, room);
  const answer = await new Promise<{ ok: boolean; code?: string; message?: string } & RoomSnapshot>((resolve, reject) => {
    const loose = device.socket.timeout(10_000) as unknown as {
      emit(event: string, payload: unknown, ack: (error: Error | null, answer: never) => void): void;
    };
    loose.emit('presence:join', meta === undefined ? { room } : { room, meta }, (error, answer: { ok: boolean } & RoomSnapshot) => {
      if (error) return reject(error);
      if (answer.ok) view.reset(answer);
      resolve(answer);
    });
  });
  expect(answer.ok, `join refused: ${answer.code} ${answer.message}`).to.equal(true);
  return { view, answer };
}
