// The package as users import it: by name, which resolves to dist/ through package.json's exports.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..', '..');

/** The newest modification time under a folder. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/** Code that imports the package by name runs dist/: build it when missing or older than lib/. */
export function ensureBuild(): void {
  const entries = ['dist/esm/index.js', 'dist/esm/client/index.js', 'dist/esm/redis/index.js'].map((path) => join(root, path));
  const built = entries.every((path) => existsSync(path)) ? Math.min(...entries.map((path) => statSync(path).mtimeMs)) : 0;
  if (built > newest(join(root, 'lib'))) return;
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
}
