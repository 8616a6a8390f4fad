// Redis function libraries (FUNCTION LOAD, FCALL): read from lib/redis/lua/, loaded on the Redis (or every master of a
// cluster) at the first call and again whenever one lost them, and called with one retry after such a load.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { LUA_DIR } from './lua/dir.js';

/** A library as FUNCTION LOAD takes it, and its name (`<prefix>` and a hash of its source). */
export interface LuaLibrary {
  readonly name: string;
  readonly code: string;
}

const libraries = new Map<string, LuaLibrary>();

/**
 * A library of lib/redis/lua/, read once per process; `__LIBRARY__` in its source becomes its name. The name carries a hash of
 * the source, and so do its functions' names (`<name>_<function>`): two versions of a library (processes of two releases
 * during a rolling deploy) live side by side on one Redis, each calling its own.
 */
export function luaLibrary(file: string, prefix: string): LuaLibrary {
  let library = libraries.get(file);
  if (library) return library;
  const source = readFileSync(join(LUA_DIR, file), 'utf8');
  const name = `${prefix}${createHash('sha1').update(source).digest('hex').slice(0, 16)}`;
  library = { name, code: source.replaceAll('__LIBRARY__', name) };
  libraries.set(file, library);
  return library;
}

/** A Redis that lost a library (restarted empty, a promoted replica, a new master) answers this to FCALL. */
export const FUNCTION_MISSING = /Function not found/i;

/** A Redis older than 7.0 answers this to FUNCTION LOAD. */
function isUnknownCommand(error: unknown): error is Error {
  return error instanceof Error && error.name === 'ReplyError' && /unknown command/i.test(error.message);
}

/** Loads one library where the client's commands go, and calls its functions. */
export class LibraryLoader {
  private loading: Promise<void> | undefined;
  private readonly names = new Map<string, string>();

  /** `tooOld`: the error a Redis without functions (older than 7.0) is refused with, given its answer. */
  constructor(
    private readonly client: Redis | Cluster,
    readonly library: LuaLibrary,
    private readonly tooOld: (answer: string) => Error,
  ) {}

  /** The Redis function `<library>_<name>`. */
  functionOf(name: string): string {
    let fn = this.names.get(name);
    if (fn === undefined) this.names.set(name, (fn = `${this.library.name}_${name}`));
    return fn;
  }

  /**
   * FUNCTION LOAD REPLACE on the Redis, or on every master of a cluster (call it once the cluster client knows them). Concurrent
   * calls share one load.
   */
  load(): Promise<void> {
    this.loading ??= (async () => {
      const client = this.client as { isCluster?: boolean };
      const nodes = client.isCluster === true ? (this.client as Cluster).nodes('master') : [this.client as Redis];
      try {
        await Promise.all(nodes.map((node) => node.call('FUNCTION', 'LOAD', 'REPLACE', this.library.code)));
      } catch (error) {
        if (isUnknownCommand(error)) throw this.tooOld(error.message.split(',')[0]?.slice(0, 100) ?? '');
        throw error;
      }
    })().finally(() => (this.loading = undefined));
    return this.loading;
  }

  /** FCALL, loading the library and calling once more when the Redis answers that it lost it. */
  async call(name: string, keys: readonly (string | number)[], args: readonly (string | number)[]): Promise<unknown> {
    const fn = this.functionOf(name);
    try {
      return await this.client.fcall(fn, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !FUNCTION_MISSING.test(error.message)) throw error;
      await this.load();
      return this.client.fcall(fn, keys.length, ...keys, ...args);
    }
  }
}
