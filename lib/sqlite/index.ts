// express-presence/sqlite: MemoryStore persistence in SQLite through better-sqlite3 (a worked adapter).

import type { PersistedRevokedSession, PersistedState, PersistedUser, Persistence, PersistenceBatch } from '../store/persistence.js';

/** The part of a better-sqlite3 `Database` this adapter uses. */
export interface SqliteDatabase {
  exec(sql: string): unknown;
  prepare(sql: string): SqliteStatement;
  transaction<A extends unknown[]>(body: (...args: A) => void): (...args: A) => void;
}

export interface SqliteStatement {
  run(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

export interface SqlitePersistenceOptions {
  /** Table name prefix. Defaults to `'presence'` (tables `presence_users` and `presence_revoked`). */
  table?: string;
  /** Milliseconds between batches. Defaults to 1000. */
  flushInterval?: number;
  /** Clock for dropping expired revocations. Defaults to Date.now. */
  now?: () => number;
}

/**
 * Keeps a MemoryStore's presence in SQLite:
 * `new MemoryStore({ persistence: sqlitePersistence(new Database('presence.db')) })`.
 * One row per user (its record as JSON) and one per revoked session; each batch is one transaction.
 */
export function sqlitePersistence(db: SqliteDatabase, options: SqlitePersistenceOptions = {}): Persistence {
  const table = options.table ?? 'presence';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table))
    throw new TypeError(`sqlitePersistence: table must be a plain SQL identifier; got ${JSON.stringify(table)}`);
  const now = options.now ?? Date.now;
  db.exec(`CREATE TABLE IF NOT EXISTS ${table}_users (user_id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
           CREATE TABLE IF NOT EXISTS ${table}_revoked (session_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;`);
  const upsertUser = db.prepare(`INSERT INTO ${table}_users (user_id, record) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET record = excluded.record`);
  const deleteUser = db.prepare(`DELETE FROM ${table}_users WHERE user_id = ?`);
  const upsertRevoked = db.prepare(
    `INSERT INTO ${table}_revoked (session_id, expires_at) VALUES (?, ?) ON CONFLICT(session_id) DO UPDATE SET expires_at = excluded.expires_at`,
  );
  const dropExpired = db.prepare(`DELETE FROM ${table}_revoked WHERE expires_at <= ?`);
  const selectUsers = db.prepare(`SELECT record FROM ${table}_users`);
  const selectRevoked = db.prepare(`SELECT session_id AS sessionId, expires_at AS expiresAt FROM ${table}_revoked WHERE expires_at > ?`);

  const write = db.transaction((batch: PersistenceBatch) => {
    for (const user of batch.users) {
      // A user with nothing worth keeping leaves no row behind.
      if (user.instances.length === 0 && user.lastSeen === null && user.customStatus === null) deleteUser.run(user.userId);
      else upsertUser.run(user.userId, JSON.stringify(user));
    }
    for (const revoked of batch.revokedSessions) upsertRevoked.run(revoked.sessionId, revoked.expiresAt);
    dropExpired.run(now());
  });

  return {
    flushInterval: options.flushInterval ?? 1000,
    load(): PersistedState {
      const users = (selectUsers.all() as { record: string }[]).map((row) => JSON.parse(row.record) as PersistedUser);
      const revokedSessions = selectRevoked.all(now()) as PersistedRevokedSession[];
      return { users, revokedSessions };
    },
    save(batch: PersistenceBatch): void {
      write(batch);
    },
  };
}
