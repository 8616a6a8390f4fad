// The host-parser case: bad JSON that the app's own express.json() failed to parse is answered in the router's formats.

import { post, startApp } from './app.js';

const app = await startApp();
try {
  const source = await post(`${app.url}/presence/v4/openim/querystate`, '{"To_Account": [', 'ops-token');
  const plain = await post(`${app.url}/presence/users/query`, '{"userIds": [', 'ops-token');
  // The app's own routes keep Express's handling (the router's error mapping covers its routes only).
  console.log(JSON.stringify({ source, plain }));
} finally {
  await app.close();
}
