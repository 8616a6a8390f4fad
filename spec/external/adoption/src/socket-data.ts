// authenticate(handshake, socket) and socket.data.presence: the token io.use() checked is reused, and the app's handlers see the device.

import { createPresence } from 'express-presence';
import { createPresenceClient, type SessionPayload } from 'express-presence/client';
import { startApp, userFromBearer } from './app.js';

let checks = 0;
const app = await startApp(() =>
  createPresence({
    // The app's io.use() already proved who the socket is: no second token check.
    authenticate: (_handshake, socket) => {
      checks++;
      const user = socket.data.user as { userId: string } | undefined;
      return user ? { userId: user.userId } : null;
    },
    authorize: (req) => userFromBearer(req.get('authorization'))?.admin === true,
  }),
);
try {
  const seen = new Promise<unknown>((resolve) => {
    app.io.on('connection', (socket) => setImmediate(() => resolve((socket.data as { presence?: unknown }).presence)));
  });
  const client = createPresenceClient({ url: app.url, platform: 'Android', auth: { token: 'alice-token' } });
  const session = await new Promise<SessionPayload>((resolve, reject) => {
    client.on('session', resolve);
    client.on('error', reject);
    setTimeout(() => reject(new Error('no presence:session within 10 s')), 10_000).unref();
  });
  const presence = await seen;
  client.close();
  console.log(
    JSON.stringify({
      checks,
      presence,
      session: { userId: session.userId, instanceId: session.instanceId, sessionId: session.sessionId, platform: session.platform },
    }),
  );
} finally {
  await app.close();
}
