// callback.concurrency: how many users' events are in flight at once, and its validation.

import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPresence } from '../lib/index.js';

async function receiver(delayMs: number): Promise<{ server: Server; url: string; maxInFlight: () => number; received: () => number }> {
  let inFlight = 0;
  let maxInFlight = 0;
  let received = 0;
  const server = createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        inFlight--;
        received++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' }));
      }, delayMs),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/hook`, maxInFlight: () => maxInFlight, received: () => received };
}

describe('callback.concurrency', function () {
  for (const concurrency of [1, 4]) {
    it(`keeps at most ${concurrency} users' events in flight`, async function () {
      const hook = await receiver(30);
      const presence = createPresence({ loginPolicy: 'multi', callback: { url: hook.url, concurrency } });
      for (let i = 0; i < 8; i++) await presence.engine.connect({ userId: `u${i}`, platform: 'Web', instanceId: 'w' }, () => {});
      const deadline = Date.now() + 5000;
      while (hook.received() < 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(hook.received()).to.equal(8);
      expect(hook.maxInFlight()).to.equal(concurrency);
      await presence.close();
      hook.server.close();
    });
  }

  it('is refused outside 1..1024 with a TypeError naming it', function () {
    expect(() => createPresence({ callback: { url: 'http://127.0.0.1:1/x', concurrency: 0 } })).to.throw(
      TypeError,
      /callback\.concurrency must be an integer from 1 to 1024; got 0/,
    );
  });
});
