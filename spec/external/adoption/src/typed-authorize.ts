// An authorize written against express.Request fits under strict TypeScript, no cast.

import type express from 'express';
import { createPresence } from 'express-presence';
import { userFromBearer } from './app.js';

const authorize = (req: express.Request): boolean => userFromBearer(req.get('authorization'))?.admin === true;
const presence = createPresence({ authorize, authenticate: () => null });
const router = presence.router({ authorize });
console.log(JSON.stringify({ router: typeof router }));
await presence.close();
