// The packed tarball, installed into a CommonJS, an ESM and a TypeScript project, works in each.

import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
}

/** What each project does with the package: log in a device, close it, query, and print the answer. */
const USAGE = `
const presence = createPresence({ clock: new ManualClock(), loginPolicy: 'dual' });
const changes = [];
presence.on('change', (change) => changes.push(change.action + '/' + change.reason));
const { connection } = await presence.engine.connect({ userId: 'u1', platform: 'iOS', instanceId: 'phone' }, () => {});
presence.engine.disconnect(connection, 'closed');
const [user] = await presence.query(['u1']);
if (!(presence.config.store instanceof MemoryStore)) throw new Error('default store is not a MemoryStore');
console.log(JSON.stringify({ status: user.status, platform: user.instances[0].platform, changes }));
await presence.close();
`;

const EXPECTED = { status: 'PushOnline', platform: 'iPhone', changes: ['Login/Register', 'Disconnect/LinkClose'] };

describe('the packed tarball', function () {
  let work: string;
  let tarball: string;

  before(function () {
    work = mkdtempSync(join(tmpdir(), 'express-presence-pack-'));
    // `npm test` built dist/ just before; build here only when run alone without one.
    if (!existsSync(join(root, 'dist', 'esm', 'index.js'))) run(npm, ['run', 'build', '--silent'], root);
    run(npm, ['pack', '--ignore-scripts', '--pack-destination', work, '--silent'], root);
    const packed = readdirSync(work).find((name) => name.endsWith('.tgz'));
    if (!packed) throw new Error('npm pack made no tarball');
    tarball = join(work, packed);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function project(name: string, packageJson: object, files: Record<string, string>, extra: string[] = []): string {
    const dir = join(work, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `pack-${name}`, private: true, ...packageJson }));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
    run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', tarball, ...extra], dir);
    return dir;
  }

  it('works from CommonJS (require)', function () {
    const dir = project(
      'cjs',
      {},
      {
        'index.cjs': `const { createPresence, MemoryStore, ManualClock } = require('express-presence');\n(async () => {${USAGE}})().catch((e) => { console.error(e); process.exit(1); });\n`,
        'subpaths.cjs': `for (const entry of ['client', 'redis', 'sqlite']) console.log(require.resolve('express-presence/' + entry));\n`,
      },
    );
    expect(JSON.parse(run(process.execPath, ['index.cjs'], dir))).to.deep.equal(EXPECTED);
    expect(run(process.execPath, ['subpaths.cjs'], dir).trim().split('\n'))
      .to.have.length(3)
      .and.satisfy((paths: string[]) => paths.every((path) => path.includes(join('dist', 'cjs'))));
  });

  it('works from ESM (import)', function () {
    const dir = project(
      'esm',
      { type: 'module' },
      {
        'index.js': `import { createPresence, MemoryStore, ManualClock } from 'express-presence';\n${USAGE}`,
        'subpaths.js': `for (const entry of ['client', 'redis', 'sqlite']) console.log(import.meta.resolve('express-presence/' + entry));\n`,
      },
    );
    expect(JSON.parse(run(process.execPath, ['index.js'], dir))).to.deep.equal(EXPECTED);
    expect(run(process.execPath, ['subpaths.js'], dir).trim().split('\n'))
      .to.have.length(3)
      .and.satisfy((paths: string[]) => paths.every((path) => path.includes('dist/esm')));
  });

  it('type-checks and runs from TypeScript', function () {
    const typed = USAGE.replace('const changes = [];', 'const changes: string[] = [];')
      .replace('const [user] =', 'const [user] =')
      .replace('user.status', 'user!.status')
      .replace('user.instances[0].platform', 'user!.instances![0]!.platform');
    const dir = project(
      'ts',
      { type: 'module' },
      {
        'tsconfig.json': JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            strict: true,
            noUncheckedIndexedAccess: true,
            outDir: 'out',
            types: ['node'],
          },
        }),
        'index.ts': `import { createPresence, MemoryStore, ManualClock, type PresenceChange, type UserPresence } from 'express-presence';\nconst seen: PresenceChange[] = [];\nvoid seen;\nconst typedQuery: (ids: string[]) => Promise<UserPresence[]> = (ids) => createPresence({ authorize: (req) => req.get('authorization') === 'Bearer t' }).query(ids);\nvoid typedQuery;\n${typed}`,
      },
      ['typescript', '@types/node@20'],
    );
    run(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], dir);
    expect(JSON.parse(run(process.execPath, [join(dir, 'out', 'index.js')], dir))).to.deep.equal(EXPECTED);
  });
});
