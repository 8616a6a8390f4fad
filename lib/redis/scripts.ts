// The Lua behind RedisStore: lib/redis/lua/presence.lua, one Redis function library. Each store operation is one function on
// one hash slot, so each is atomic across processes; the library is loaded once per Redis (FUNCTION LOAD), not sent per call.

import { luaLibrary, type LuaLibrary } from './functions.js';

/*
 * Layout (lib/redis/layout.ts; P is the key prefix, T the tag of the user's bucket, one of BUCKETS):
 *   P{T}:u:<userId>  string, the whole user as JSON, read and written whole by each script (so that a query of 500 users is an
 *                    MGET per slot): {"s": seq (a decimal string: cjson keeps only 14 digits of a number), "e"?: the Redis run
 *                    that last numbered it (8 hex digits of its run_id), "g"?: sessions a reap ended lately, "o": order,
 *                    "l"?: last seen (ms), "c"?: custom status, "x"?: when it expires (ms), "a"?: availability {"v": chosen,
 *                    "i"?: idleSince, "t"?: last activity, "f"?: frozen last seen, "fc"?: frozen custom status (while
 *                    invisible)}, "i": [[instanceId, platform, status, since, order, sessionId, owners, version], ...]} ("i" is {} when empty, as cjson writes an empty table); fields this version does
 *                    not know are kept as they are. Kept offlineTtl once the user is Offline.
 *                    owners: the processes holding the device live (each with a connection to it: tabs of one device can sit
 *                    on several): '' none (PushOnline), the owner itself when one holds it (the usual case), a list only while
 *                    several do.
 *   P{T}:r:<userId>  hash: the user's revoked sessions, sid -> "<revokedAt (ms)>|<n>|<the end notice as JSON, {reason, by?}>"
 *                    (the notice is what a re-asserted device that missed its `ended` message is told; n is the user's sequence
 *                    number when it was revoked, 0 when the call did not read it, so that those of one millisecond are forgotten
 *                    oldest first). A
 *                    revocation is answered while revokedAt + the PushOnline TTL is ahead; the hash expires the PushOnline TTL
 *                    after the user's last revocation. At most maxRevokedSessionsPerUser per user: once over it, trimmed (the
 *                    expired first, then the oldest) to a tenth under it; until then an expired one lingers unanswered.
 *   P{T}:kk:<userId> recent admin kicks of the user (PX: the store's end memory): cjson [[platform, instanceId, at], ...]
 *                    ('' for any); a device re-asserted later that was taken up at or before `at` and matches yields
 *   P{T}:stats       hash: u:Online, u:PushOnline, i:<platform>:<status>: counts moved by the changes made in the bucket, and by
 *                    batches of planned changes whose first change is of the bucket (stats() adds the buckets up; one bucket's
 *                    own count may be off, or below zero)
 *   P{T}:expiry      sorted set of the bucket's PushOnline devices by due time; member cjson [userId, instanceId, sessionId]
 *   P{T}:owned       sorted set (all scores 0, read by lex range): "<owner>\0<cjson [userId, instanceId, sessionId]>" for each
 *                    Online device of the bucket a process holds
 *   P{T}:leases      sorted set: owner -> when its lease ends (ms); each process renews its entry in every bucket, and the
 *                    bucket's devices of an owner whose entry ran out are reaped (in slices) by whichever process sweeps first
 *   P{T}:gone        hash, once an owner's lease ran out and until its devices of the bucket are all reaped: <owner>:at (when
 *                    it went: its close, or when a sweep first found its lease gone), <owner>:until (the end of the handover a
 *                    closing process asked for), <owner>:next (when its next device is due). A renewal deletes them.
 *   P{T}:ended:<owner>  channel: {sid, reason, by?} for sessions of the bucket ended by kicks and logouts, sent to the processes
 *                    holding the device (SPUBLISH on a Redis Cluster, PUBLISH on one Redis), but the process whose engine made
 *                    the end (it has ended its own connections already); P{T}:ended: the same for sessions no process is known
 *                    to hold (every process hears it)
 *   P layout         the layout version (lib/redis/layout.ts LAYOUT_VERSION)
 *
 * Every function takes the bucket's keys as KEYS[1..5] (stats, expiry, owned, leases, gone), then 3 keys per user it touches
 * (record, revoked, kicks), and ARGV[1..6]: now, the PushOnline TTL, offlineTtl, the publish command, maxRevokedSessionsPerUser,
 * and the calling process's owner when the engine has already ended its own connections of the sessions the call ends (a
 * logout, a login's kicks, an admin kick: those ends are not published to it), '' otherwise (commonArgs in redis-store.ts).
 * The ended channels are named from the stats key (its prefix and tag). plannedBatch, which carries the planned changes of
 * many users and buckets, takes its own layout (presence.lua).
 */

/** The store's operations: each is the function `<library>_<name>` of the library. */
export type ScriptName =
  'login' | 'linkLost' | 'remove' | 'plannedBatch' | 'kick' | 'setCustomStatus' | 'setAvailability' | 'expireDue' | 'reap' | 'reapplyEnds' | 'renew' | 'leave';

/** KEYS and ARGV every function starts with. */
export const SHARED_KEYS = 5;
export const USER_KEYS = 3;
export const COMMON_ARGS = 6;

/** The store's library, read once per process (lib/redis/functions.ts). */
export function presenceLibrary(): LuaLibrary {
  return luaLibrary('presence.lua', 'express_presence_');
}
