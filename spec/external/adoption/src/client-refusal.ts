// The client helper tells what went wrong: the app's io.use() refusal as an error event, a missing url in Node as a TypeError at once.

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
  // Nothing could listen yet, so a missing url throws (code BAD_OPTIONS) instead of retrying `undefined` forever.
  let noUrl: { code: string; message: string } | undefined;
  try {
    createPresenceClient({ platform: 'Web', auth: { token: 'alice-token' } }).close();
  } catch (error) {
    noUrl = { code: (error as { code: string }).code, message: (error as Error).message };
  }
  console.log(JSON.stringify({ refusal, noUrl }));
} finally {
  await app.close();
}
