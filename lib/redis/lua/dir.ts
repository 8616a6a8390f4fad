// The folder of the .lua files, which the build copies next to this module. This is the ES module's; the CommonJS build
// replaces this file with one that answers its __dirname (scripts/build.mjs).

import { fileURLToPath } from 'node:url';

// eslint-disable-next-line @typescript-eslint/ban-ts-comment -- an error only in the CommonJS build (which replaces this file)
// @ts-ignore -- import.meta is ES module syntax: the CommonJS build compiles this file, then replaces it.
export const LUA_DIR: string = fileURLToPath(new URL('.', import.meta.url));
