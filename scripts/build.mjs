// Builds dist/esm and dist/cjs with tsc, marks each folder's module format, and copies the Lua next to its loader.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
const tsc = ['node_modules/typescript/bin/tsc'];
execFileSync(process.execPath, [...tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
execFileSync(process.execPath, [...tsc, '-p', 'tsconfig.cjs.json'], { stdio: 'inherit' });
writeFileSync('dist/esm/package.json', JSON.stringify({ type: 'module' }) + '\n');
writeFileSync('dist/cjs/package.json', JSON.stringify({ type: 'commonjs' }) + '\n');
// RedisStore's function library (lib/redis/scripts.ts reads it from LUA_DIR at run time).
for (const format of ['esm', 'cjs']) {
  for (const file of readdirSync('lib/redis/lua')) if (file.endsWith('.lua')) copyFileSync(`lib/redis/lua/${file}`, `dist/${format}/redis/lua/${file}`);
}
// lib/redis/lua/dir.ts reads import.meta, which CommonJS has not: its CommonJS build answers __dirname instead.
rmSync('dist/cjs/redis/lua/dir.js.map');
writeFileSync(
  'dist/cjs/redis/lua/dir.js',
  '"use strict";\n// The folder of the .lua files (lib/redis/lua/dir.ts; written by scripts/build.mjs for CommonJS).\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.LUA_DIR = __dirname;\n',
);
