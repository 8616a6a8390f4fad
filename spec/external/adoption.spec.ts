// An existing Express + Socket.IO app (its own express.json(), bearer auth, io.use() and events) adopts the packed tarball, builds with tsc and runs.
//
// The project's sources are spec/external/adoption/src; this spec packs the library, installs it
// beside express, socket.io and TypeScript in a temporary folder, and checks each source under two
// resolutions: nodenext (emitted and run) and classic `node` (node10, type-checked only). The last
// tests need fixes from other branches (named in each title) and fail until those are merged.

import { expect } from 'chai';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { devVersion, npm, run } from './run.js';

const root = resolve(import.meta.dirname, '..', '..');

const STRICT = {
  target: 'ES2022',
  strict: true,
  noUncheckedIndexedAccess: true,
  esModuleInterop: true,
  skipLibCheck: false,
  types: ['node'],
};

describe('an existing app adopting the packed tarball', function () {
  let work: string;
  let dir: string;

  before(function () {
    work = mkdtempSync(join(tmpdir(), 'express-presence-adoption-'));
    if (!existsSync(join(root, 'dist', 'esm', 'index.js'))) run(npm, ['run', 'build', '--silent'], root);
    run(npm, ['pack', '--ignore-scripts', '--pack-destination', work, '--silent'], root);
    const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'));
    if (!tarball) throw new Error('npm pack made no tarball');
    dir = join(work, 'app');
    cpSync(join(import.meta.dirname, 'adoption'), dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'adoption', private: true, type: 'module' }));
    const dependencies = ['express', 'socket.io', 'socket.io-client', 'typescript', '@types/express', '@types/node'].map(devVersion);
    run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', join(work, tarball), ...dependencies], dir);
  });

  after(function () {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const compiled = new Set<string>();

  /** Type-checks `files` (under src/) with a strict tsconfig, once; nodenext emits to out/, node10 only checks. */
  function compile(name: string, files: string[], resolution: 'nodenext' | 'node10'): void {
    if (compiled.has(`${name} ${resolution}`)) return;
    const compilerOptions =
      resolution === 'nodenext'
        ? { ...STRICT, module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'out', rootDir: 'src' }
        : // Classic resolution (no exports map): the subpaths are found through typesVersions only.
          // TypeScript 6 deprecates node10, hence ignoreDeprecations; TypeScript 5 needs none.
          { ...STRICT, module: 'ES2022', moduleResolution: 'node', ignoreDeprecations: '6.0', noEmit: true };
    const config = `tsconfig.${name}.${resolution}.json`;
    writeFileSync(join(dir, config), JSON.stringify({ compilerOptions, files: files.map((file) => `src/${file}`) }));
    run(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], dir);
    compiled.add(`${name} ${resolution}`);
  }

  /** Runs a compiled source and parses the JSON line it prints. */
  function execute(file: string): Record<string, unknown> {
    const output = run(process.execPath, [join(dir, 'out', file.replace(/\.ts$/, '.js'))], dir)
      .trim()
      .split('\n');
    return JSON.parse(output[output.length - 1] as string) as Record<string, unknown>;
  }

  it('builds with tsc under strict TypeScript, with nodenext and with classic node resolution', function () {
    compile('core', ['app.ts', 'main.ts', 'host-parser.ts'], 'nodenext');
    compile('core', ['app.ts', 'main.ts', 'host-parser.ts'], 'node10');
  });

  it("runs: the router behind the app's own express.json() and bearer auth, and a socket login through its own io.use()", function () {
    compile('core', ['app.ts', 'main.ts', 'host-parser.ts'], 'nodenext');
    const results = execute('main.ts');
    expect(results.ownRoute).to.deep.equal({ status: 200, body: { userId: 'alice' } });
    expect(results.noToken).to.deep.include({ status: 401 });
    expect((results.noToken as { body: unknown }).body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90009 });
    expect(results.notAdmin).to.deep.include({ status: 403 });
    // The host's express.json() parsed the body first; the router uses what it parsed.
    expect(results.before).to.deep.include({ status: 200 });
    expect((results.before as { body: unknown }).body).to.deep.include({
      QueryResult: [{ To_Account: 'alice', Status: 'Offline', Availability: 'available', Detail: [] }],
    });
    expect(results.session).to.deep.equal({ userId: 'alice', platform: 'Web' });
    expect(results.ownEvent).to.equal('pong hi for alice');
    const after = (results.after as { body: { QueryResult: { To_Account: string; Status: string; Detail: { Platform: string }[] }[] } }).body;
    expect(after.QueryResult.map((user) => `${user.To_Account}:${user.Status}:${user.Detail.map((device) => device.Platform).join(',')}`)).to.deep.equal([
      'alice:Online:Web',
    ]);
    expect(results.refusal).to.equal('bad token');
  });

  // Needs wip-outage's error mapping for body-parser errors (issue 15, point 2).
  it("bad JSON the app's express.json() refused is answered in the router's formats, not Express's HTML page", function () {
    compile('core', ['app.ts', 'main.ts', 'host-parser.ts'], 'nodenext');
    const { source, plain } = execute('host-parser.ts') as Record<string, { status: number; type: string; body: unknown }>;
    expect(source?.type, 'querystate content type').to.match(/^application\/json/);
    expect(source?.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
    expect(plain?.type, 'users/query content type').to.match(/^application\/problem\+json/);
    expect(plain?.status).to.equal(400);
  });

  // Needs wip-api's Express-typed authorize (issue 15, point 5).
  it('an authorize typed (req: express.Request) => boolean compiles without a cast, in both resolutions', function () {
    compile('typed', ['app.ts', 'typed-authorize.ts'], 'node10');
    compile('typed', ['app.ts', 'typed-authorize.ts'], 'nodenext');
    expect(execute('typed-authorize.ts')).to.deep.equal({ router: 'function' });
  });

  // Needs wip-api's authenticate(handshake, socket) and socket.data.presence (issue 15, point 7).
  it("reuses the user io.use() put on socket.data, and the app's handlers see socket.data.presence", function () {
    compile('socket-data', ['app.ts', 'socket-data.ts'], 'nodenext');
    const { checks, presence, session } = execute('socket-data.ts');
    expect(checks).to.equal(1);
    expect(presence).to.deep.equal(session);
    expect(session).to.include({ userId: 'alice', platform: 'Android' });
  });

  // Needs wip-api's client error events (issue 15, point 3).
  it("the client helper emits error for the app's io.use() refusal (REFUSED) and throws BAD_OPTIONS for a missing url in Node", function () {
    compile('client-refusal', ['app.ts', 'client-refusal.ts'], 'nodenext');
    const { refusal, noUrl } = execute('client-refusal.ts') as Record<string, { code: string; message: string }>;
    expect(refusal).to.deep.equal({ code: 'REFUSED', message: 'bad token' });
    expect(noUrl?.code).to.equal('BAD_OPTIONS');
    expect(noUrl?.message).to.match(/url/);
  });
});
