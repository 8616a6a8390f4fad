// The packed tarball, installed into a CommonJS, an ESM and a TypeScript project, works in each.

import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { devVersion, npm, run } from './run.js';

const root = resolve(import.meta.dirname, '..', '..');

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

  /** Every file under `dir`, as paths relative to it. */
  function filesUnder(dir: string, base = dir): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? filesUnder(join(dir, entry.name), base) : [relative(base, join(dir, entry.name))],
    );
  }

  it('ships a LICENSE, and source maps that carry their sources (lib/ is not shipped)', function () {
    const dir = project('contents', {}, {});
    const installed = join(dir, 'node_modules', 'express-presence');
    const files = filesUnder(installed);
    expect(files).to.include('LICENSE');
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).to.match(/^MIT License/);
    expect((JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { license: string }).license).to.equal('MIT');
    const maps = files.filter((file) => file.endsWith('.map'));
    expect(maps, 'source maps shipped').to.have.length.greaterThan(0);
    for (const file of maps) {
      const map = JSON.parse(readFileSync(join(installed, file), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      // A map is of use only if a debugger can show its sources: inlined, or present in the package.
      map.sources.forEach((source, index) => {
        const inlined = typeof map.sourcesContent?.[index] === 'string' && (map.sourcesContent[index] as string).length > 0;
        expect(inlined || existsSync(resolve(installed, dirname(file), source)), `${file}: ${source}`).to.equal(true);
      });
    }
  });

  it('type-checks every entry point under classic resolution (moduleResolution "node", no exports map)', function () {
    const dir = project(
      'classic',
      {},
      {
        'tsconfig.json': JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'CommonJS',
            moduleResolution: 'node',
            ignoreDeprecations: '6.0',
            strict: true,
            skipLibCheck: true,
            noEmit: true,
            types: ['node'],
          },
          files: ['index.ts'],
        }),
        'index.ts': [
          `import { createPresence, type PresenceChange } from 'express-presence';`,
          `import { createPresenceClient, type SessionPayload } from 'express-presence/client';`,
          `import { RedisStore } from 'express-presence/redis';`,
          `import { sqlitePersistence } from 'express-presence/sqlite';`,
          `export const used: [typeof createPresence, typeof createPresenceClient, typeof RedisStore, typeof sqlitePersistence] = [createPresence, createPresenceClient, RedisStore, sqlitePersistence];`,
          `export type Seen = [PresenceChange, SessionPayload];`,
          // A subpath that does not exist must still be an error, so the check above can fail.
          `// @ts-expect-error: no such entry point`,
          `import type { Nothing } from 'express-presence/nothing';`,
          `export type Unused = Nothing;`,
        ].join('\n'),
      },
      // The TypeScript this repository builds with: TypeScript 7 removed node10 resolution altogether.
      [devVersion('typescript'), '@types/node@20'],
    );
    run(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], dir);
  });

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

  it('ships the store conformance kit (express-presence/testing): node:test runs it against MemoryStore, and a store that loses data fails it', function () {
    const suite = (store: string) =>
      `import { describe, it, afterEach } from 'node:test';\nimport { MemoryStore } from 'express-presence';\nimport { storeConformance } from 'express-presence/testing';\n${store}\n`;
    const dir = project(
      'kit',
      { type: 'module' },
      {
        'good.test.js': suite(`storeConformance('MemoryStore', { create: (limits) => new MemoryStore(limits) }, { describe, it, afterEach });`),
        // A store that forgets a user's custom status: the kit must say so.
        'bad.test.js': suite(
          `class Forgetful extends MemoryStore { async setCustomStatus(request) { return super.setCustomStatus({ ...request, customStatus: null }); } }\nstoreConformance('Forgetful', { create: (limits) => new Forgetful(limits) }, { describe, it, afterEach });`,
        ),
      },
    );
    const good = run(process.execPath, ['--test', '--test-reporter=tap', 'good.test.js'], dir);
    expect(good).to.match(/# fail 0/);
    expect(Number(/# pass (\d+)/.exec(good)?.[1]), 'cases the kit ran').to.be.greaterThan(15);
    let bad = '';
    try {
      run(process.execPath, ['--test', '--test-reporter=tap', 'bad.test.js'], dir);
    } catch (error) {
      bad = String((error as { stdout?: unknown }).stdout ?? error);
    }
    expect(bad, 'the kit passed a store that forgets custom statuses').to.match(/# fail [1-9]/);
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
