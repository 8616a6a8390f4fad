// The adoption today: the router behind the app's own parser and bearer auth, and a socket login through the app's own io.use().

import { io as connect, type Socket } from 'socket.io-client';
import { createPresenceClient, type SessionPayload } from 'express-presence/client';
import { post, startApp } from './app.js';

const app = await startApp();
const results: Record<string, unknown> = {};
try {
  const me = await fetch(`${app.url}/api/me`, { headers: { authorization: 'Bearer alice-token' } });
  results.ownRoute = { status: me.status, body: await me.json() };

  const query = JSON.stringify({ To_Account: ['alice'], IsNeedDetail: 1 });
  const querystate = `${app.url}/presence/v4/openim/querystate`;
  results.noToken = await post(querystate, query);
  results.notAdmin = await post(querystate, query, 'alice-token');
  results.before = await post(querystate, query, 'ops-token');

  // A device logs in with the client helper; the app's io.use() checks the same token first.
  const client = createPresenceClient({ url: app.url, platform: 'Web', auth: { token: 'alice-token' } });
  const session = await new Promise<SessionPayload>((resolve, reject) => {
    client.on('session', resolve);
    client.on('error', reject);
    setTimeout(() => reject(new Error('no presence:session within 10 s')), 10_000).unref();
  });
  results.session = { userId: session.userId, platform: session.platform };
  // The app's own event on the helper's socket.
  results.ownEvent = await (client.socket as unknown as Socket).timeout(5000).emitWithAck('chat:ping', 'hi');
  results.after = await post(querystate, query, 'ops-token');

  // The app's own refusal reaches a plain socket.io-client as its message.
  const refused = connect(app.url, { auth: { token: 'wrong' }, reconnection: false });
  results.refusal = await new Promise<string>((resolve) => refused.once('connect_error', (error) => resolve(error.message)));
  refused.close();
  client.close();
} finally {
  await app.close();
}
console.log(JSON.stringify(results));
