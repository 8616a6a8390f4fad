// The public types as a strict-TypeScript user meets them: fixtures compiled with the compiler API against @types/express 5.

import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';

const fixtures = resolve(import.meta.dirname, 'fixtures', 'typed');

/** The options a strict user project compiles with. */
const COMPILER_OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  esModuleInterop: true,
  types: ['node'],
};

/** Code that must not compile: proves the check can fail. */
const WRONG = `import type express from 'express';
import { createPresence } from '../../../../lib/index.js';
createPresence({ authorize: (req: express.Request) => req.get('x') ?? 'no' });
createPresence({ authenticate: (_handshake, socket: { id: number }) => ({ userId: String(socket.id) }) });
`;

describe('public types under strict TypeScript', function () {
  this.timeout(90_000);
  let tmp: string;
  /** Diagnostics by file name (base name), as `line: message`. */
  const found = new Map<string, string[]>();

  before(() => {
    tmp = mkdtempSync(join(fixtures, '.tmp-'));
    const wrong = join(tmp, 'wrong.ts');
    writeFileSync(wrong, WRONG);
    // One program for every fixture: the compiler loads the libraries' types once.
    const program = ts.createProgram([join(fixtures, 'express-app.ts'), wrong], COMPILER_OPTIONS);
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const name = diagnostic.file ? diagnostic.file.fileName.split('/').pop()! : '(global)';
      const line = diagnostic.file && diagnostic.start !== undefined ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line + 1 : 0;
      found.set(name, [...(found.get(name) ?? []), `${line}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`]);
    }
  });

  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('an Express app compiles: an Express-typed authorize (mount and router), authenticate(handshake, socket), socket.data.presence, callbackReceiver', () => {
    expect(found.get('express-app.ts') ?? []).to.deep.equal([]);
    expect(found.get('(global)') ?? []).to.deep.equal([]);
  });

  it('still refuses what does not fit: an authorize answering a string, an authenticate taking something that is no socket', () => {
    const lines = (found.get('wrong.ts') ?? []).map((entry) => entry.split(':')[0]);
    expect(lines).to.deep.equal(['3', '4']);
  });
});
