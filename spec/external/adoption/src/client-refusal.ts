// Needs the client helper's error event for app refusals (wip-api): the app's io.use() refusal and a missing url in Node are told, not silent.

import { createPresenceClient, type PresenceClientError } from 'express-presence/client';
import { startApp } from './app.js';

function firstError(client: ReturnType<typeof createPresenceClient>): Promise<{ code: string; message: string }> {
  return new Promise((resolve, reject) => {
    client.on('error', (error: PresenceClientError) => resolve({ code: error.code, message: error.message }));
    setTimeout(() => reject(new Error('no error event within 10 s')), 10_000).unref();
  });
}

const app = await startApp();
try {
  const refused = createPresenceClient({ url: app.url, platform: 'Web', auth: { token: 'wrong' } });
  const refusal = await firstError(refused);
  refused.close();
  const nowhere = createPresenceClient({ platform: 'Web', auth: { token: 'alice-token' } });
  const noUrl = await firstError(nowhere);
  nowhere.close();
  console.log(JSON.stringify({ refusal, noUrl }));
} finally {
  await app.close();
}
