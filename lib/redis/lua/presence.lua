#!lua name=__LIBRARY__
-- RedisStore's Lua, loaded once per Redis as a function library (FUNCTION LOAD): these helpers are defined once per load, not
-- per call. lib/redis/scripts.ts names the functions and documents the key layout and the arguments of each.
--
-- Every function but plannedBatch (see there) takes the bucket's keys as KEYS[1..5] (stats, expiry, owned, leases, gone),
-- then 3 keys per user it touches (record, revoked, kicks), and ARGV[1..6]: now, the PushOnline TTL, offlineTtl, the publish
-- command, the store's maxRevokedSessionsPerUser, and the calling process's owner when it has ended its own connections of
-- the sessions the call ends ('' otherwise: every holder is told). A call runs alone (Redis runs one function at a time), so
-- the upvalues below are simply set again by each call (begin) before it reads them.

local KEYS, ARGV
local STATS, EXPIRY, OWNED, LEASES, GONE
-- The start of the bucket's keys (`<prefix>{<tag>}:`), which names its ended channels.
local BASE
local NOW, TTL, OFFLINE_TTL, PUBLISH, MAX_REVOKED_PER_USER, CALLER
-- The two TTLs as given, for the commands that take them (a number would be formatted again at each call).
local TTL_TEXT, OFFLINE_TTL_TEXT
-- The user's record as the call last read or wrote it (login and remove answer it, so that the caller can plan its next change).
local TEXT
-- While a batch of planned changes runs, its counts are summed first (DELTAS) and written once each at its end; nil otherwise
-- (every other function starts by setting it so, even after a batch that failed half-way).
local DELTAS = nil

local function begin(keys, args)
  KEYS, ARGV, TEXT, DELTAS = keys, args, nil, nil
  STATS, EXPIRY, OWNED, LEASES, GONE = keys[1], keys[2], keys[3], keys[4], keys[5]
  BASE = string.sub(STATS, 1, -6)
  NOW, TTL, OFFLINE_TTL, PUBLISH = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]), args[4]
  TTL_TEXT, OFFLINE_TTL_TEXT = args[2], args[3]
  MAX_REVOKED_PER_USER, CALLER = tonumber(args[5]), args[6]
end

-- The keys of the n-th user a script touches.
local function userKeys(n)
  local k = 5 + (n - 1) * 3
  return {u = KEYS[k + 1], r = KEYS[k + 2], kk = KEYS[k + 3]}
end
local function member(userId, instanceId, sid) return cjson.encode({userId, instanceId, sid}) end
local function ownedMember(owner, userId, instanceId, sid) return owner .. '\0' .. member(userId, instanceId, sid) end

local function isMobile(p) return p == 'Android' or p == 'iPhone' or p == 'iPad' end

local function leaseAlive(owner)
  local ends = redis.call('ZSCORE', LEASES, owner)
  return ends and tonumber(ends) > NOW
end

-- A device's owners as stored ('', one owner, or a list of them) and back: see the layout above.
local function ownersOf(stored)
  if type(stored) == 'table' then return stored end
  if stored == nil or stored == '' then return {} end
  return {stored}
end
local function packOwners(owners)
  if #owners == 0 then return '' end
  if #owners == 1 then return owners[1] end
  return owners
end
local function holds(r, owner)
  for _, o in ipairs(r.owners) do if o == owner then return true end end
  return false
end
-- The process takes the device up (a login, a resume, a re-assertion): one more holder.
local function hold(user, r, owner)
  if not holds(r, owner) then table.insert(r.owners, owner) end
  redis.call('ZADD', OWNED, 0, ownedMember(owner, user.id, r.id, r.sid))
end
local function unhold(user, r, owner)
  for i, o in ipairs(r.owners) do if o == owner then table.remove(r.owners, i) break end end
  redis.call('ZREM', OWNED, ownedMember(owner, user.id, r.id, r.sid))
end
-- A device resumed by `owner` that processes without a lease (closed, dead) still hold moves to it: their handover or reaping
-- no longer ends it. Each is noted gone (if not yet), so that one that was only frozen re-asserts its devices when it renews.
local function takeOver(user, r, owner)
  for i = #r.owners, 1, -1 do
    local o = r.owners[i]
    if o ~= owner and not leaseAlive(o) then
      table.remove(r.owners, i)
      redis.call('ZREM', OWNED, ownedMember(o, user.id, r.id, r.sid))
      if redis.call('ZSCORE', LEASES, o) then redis.call('HSETNX', GONE, o .. ':at', NOW) end
    end
  end
end
local function unholdAll(user, r)
  for _, o in ipairs(r.owners) do redis.call('ZREM', OWNED, ownedMember(o, user.id, r.id, r.sid)) end
  r.owners = {}
end

-- The user: a list of device records, plus sequence (and the run that numbered it), order, last seen, custom status, and the
-- sessions a reap ended lately. found: false when Redis has no record of the user (new, forgotten, or lost with an empty restart).
-- stored: the record as read, so that fields this version does not know are written back untouched.
local function load(userId, keys)
  local user = {id = userId, keys = keys, instances = {}, seq = 0, run = nil, reaped = {}, order = 0, ls = nil, cs = nil, found = false, stored = {}}
  local text = redis.call('GET', keys.u)
  TEXT = text
  if not text then return user end
  local stored = cjson.decode(text)
  user.found = true
  user.stored = stored
  user.seq, user.run, user.order, user.ls, user.cs = tonumber(stored.s) or 0, stored.e, stored.o, stored.l, stored.c
  user.cx, user.av = stored.x, stored.a
  if type(stored.g) == 'table' then user.reaped = stored.g end
  for _, a in ipairs(stored.i) do
    table.insert(user.instances, {id = a[1], platform = a[2], status = a[3], since = a[4], order = a[5], sid = a[6], owners = ownersOf(a[7]), version = a[8]})
  end
  return user
end

local function status(user)
  local s = 'Offline'
  for _, r in ipairs(user.instances) do
    if r.status == 'Online' then return 'Online' end
    s = 'PushOnline'
  end
  return s
end

-- Writes the user back whole; an Offline user is kept OFFLINE_TTL (for its last seen, custom status and sequence).
local function save(user)
  local list = {}
  for i, r in ipairs(user.instances) do list[i] = {r.id, r.platform, r.status, r.since, r.order, r.sid, packOwners(r.owners), r.version} end
  local g = nil
  if #user.reaped > 0 then g = user.reaped end
  local out = user.stored
  out.s, out.e, out.g, out.o, out.l, out.c, out.x, out.a, out.i = string.format('%d', user.seq), user.run, g, user.order, user.ls, user.cs, user.cx, user.av, list
  local text = cjson.encode(out)
  TEXT = text
  if status(user) == 'Offline' then redis.call('SET', user.keys.u, text, 'PX', OFFLINE_TTL_TEXT)
  else redis.call('SET', user.keys.u, text) end
end

local function count(field, delta)
  if DELTAS then DELTAS[field] = (DELTAS[field] or 0) + delta
  else redis.call('HINCRBY', STATS, field, delta) end
end
local function countInstance(r, delta) count('i:' .. r.platform .. ':' .. r.status, delta) end
local function countUser(s, delta) if s ~= 'Offline' then count('u:' .. s, delta) end end

local function dropFromList(user, r)
  for i, x in ipairs(user.instances) do
    if x == r then table.remove(user.instances, i) return end
  end
end

-- Takes a device out of every index and the user's list (written back by the caller).
local function detach(user, r)
  countInstance(r, -1)
  if r.status == 'PushOnline' then redis.call('ZREM', EXPIRY, member(user.id, r.id, r.sid)) end
  unholdAll(user, r)
  dropFromList(user, r)
end

local function noteLastSeen(user, at)
  if user.ls == nil or at > user.ls then user.ls = at end
end

-- Sequence numbers strictly increase per user, whatever Redis forgot (README "Sequence numbers"): each change adds one, but a
-- user this Redis run has not numbered yet (new, expired, lost with an empty restart, or written by another run: an older
-- snapshot, a promoted replica) starts from Redis's clock in microseconds, above every earlier number, since no user makes
-- more than one change per microsecond. A decimal string keeps all 16 digits (cjson would round the number to 14).
-- The run id is read once per load of the library: a restarted Redis or a promoted replica runs its own copy of the library
-- (loaded again, from its RDB or by replication, or by RedisStore when it answers that the function is missing), so RUN starts
-- as nil there and is read from that server's INFO.
local RUN = nil
local function runId()
  if RUN == nil then RUN = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or '', 1, 8) end
  return RUN
end
local function nextSeq(user)
  local run = runId()
  if user.run == run then return user.seq + 1 end
  user.run = run
  local t = redis.call('TIME')
  local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if base > user.seq then return base end
  return user.seq + 1
end

-- A reap ended a device its process may still hold (one stalled past its lease): noted, so that its re-assertion is a new login.
local function noteReaped(user, sid)
  table.insert(user.reaped, sid)
  if #user.reaped > 8 then table.remove(user.reaped, 1) end
end
local function wasReaped(user, sid)
  for i, s in ipairs(user.reaped) do
    if s == sid then
      table.remove(user.reaped, i)
      return true
    end
  end
  return false
end

-- A string as JSON (for the few messages built as text).
local function js(v)
  if string.find(v, '[%c"\\]') then return cjson.encode(v) end
  return '"' .. v .. '"'
end

-- Bumps the user's sequence, writes the user back, keeps counts, and describes the change.
local function change(user, r, instanceStatus, previous, kicked)
  user.seq = nextSeq(user)
  local now = status(user)
  save(user)
  if previous ~= now then
    countUser(previous, -1)
    countUser(now, 1)
  end
  return {
    userId = user.id, instanceId = r.id, platform = r.platform, sessionId = r.sid,
    instanceStatus = instanceStatus, userStatus = now, previousUserStatus = previous,
    seq = string.format('%d', user.seq), at = NOW, kicked = kicked or {}, version = r.version,
    lastSeen = user.ls or false, customStatus = user.cs or false,
    availability = (user.av and user.av.v) or false, idleSince = (user.av and user.av.i) or false,
  }
end

-- notice: the end as JSON ({reason, by?}), kept so that a device that missed its 'ended' message is told what ended it. Each
-- is one field of the user's hash, "<revokedAt>|<n>|<notice>" (n: the user's sequence number when it was revoked, 0 when not
-- read, so that those of one millisecond are still forgotten oldest first); the hash lives the PushOnline TTL from the user's
-- last revocation. Each user keeps at most MAX_REVOKED_PER_USER (a user kicking themselves in a loop only shortens their own
-- memory).
-- revokeAs: the same, given the hash and the value.
local function revokeAs(key, sid, value)
  redis.call('HSET', key, sid, value)
  redis.call('PEXPIRE', key, TTL_TEXT)
  local over = redis.call('HLEN', key) - MAX_REVOKED_PER_USER
  if over <= 0 then return end
  -- Over the cap: those past their time go first (revokedNotice no longer answers them), then the oldest, down to a tenth
  -- under the cap, so that a user at the cap reads the whole hash once per tenth of it, not at each revocation. Until then an
  -- expired one just waits, and the whole hash goes with its expiry.
  over = over + math.floor(MAX_REVOKED_PER_USER / 10)
  local all = redis.call('HGETALL', key)
  local drop, live = {}, {}
  for i = 1, #all, 2 do
    local field = all[i]
    if field ~= sid then
      local at, k = string.match(all[i + 1], '^(%d+)|(%d+)|')
      at, k = tonumber(at) or 0, tonumber(k) or 0
      if at + TTL <= NOW then table.insert(drop, field) else table.insert(live, {at, k, field}) end
    end
  end
  if #drop < over then
    table.sort(live, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    for i = 1, math.min(over - #drop, #live) do table.insert(drop, live[i][3]) end
  end
  for i = 1, #drop, 500 do redis.call('HDEL', key, unpack(drop, i, math.min(i + 499, #drop))) end
end
local function revoke(user, sid, notice)
  revokeAs(user.keys.r, sid, string.format('%d', NOW) .. '|' .. string.format('%d', user.seq or 0) .. '|' .. notice)
end
local ADMIN_KICK, LOGOUT = '{"reason":"AdminKick"}', '{"reason":"Logout"}'
-- The notice of a session revoked less than the PushOnline TTL ago, or nil.
local function revokedNotice(user, sid)
  local value = redis.call('HGET', user.keys.r, sid)
  if not value then return nil end
  local at, notice = string.match(value, '^(%d+)|%d+|(.*)$')
  if not at or tonumber(at) + TTL <= NOW then return nil end
  return notice
end

-- An end goes to the processes holding the device; one nobody is known to hold, to every process. The calling process
-- (CALLER) has ended its own connections to it already: it is not told again (another holder still is). The message is
-- {sid, reason, by?}: the notice (a JSON object) with the sid added.
-- endMessage and endChannel: that message, and the channel of one process ('' for every process) under a bucket's BASE.
local function endMessage(sid, notice) return '{"sid":' .. js(sid) .. ',' .. string.sub(notice, 2) end
local function endChannel(base, owner)
  if owner == '' then return base .. 'ended' end
  return base .. 'ended:' .. owner
end
local function publishEnd(owners, sid, notice)
  if #owners == 0 then
    redis.call(PUBLISH, endChannel(BASE, ''), endMessage(sid, notice))
    return
  end
  for _, o in ipairs(owners) do
    if o ~= CALLER then redis.call(PUBLISH, endChannel(BASE, o), endMessage(sid, notice)) end
  end
end

local function find(user, instanceId, sid, owner)
  for _, r in ipairs(user.instances) do
    if r.id == instanceId and (sid == '' or r.sid == sid) and (owner == '' or holds(r, owner)) then return r end
  end
  return nil
end

-- Online -> PushOnline (mobile) or gone (others): the transport's end of a device.
local function linkLost(user, r, lastSeen)
  local previous = status(user)
  if r.status == 'Online' then noteLastSeen(user, lastSeen) end
  if isMobile(r.platform) then
    unholdAll(user, r)
    countInstance(r, -1)
    r.status = 'PushOnline'
    r.since = NOW
    countInstance(r, 1)
    redis.call('ZADD', EXPIRY, NOW + TTL, member(user.id, r.id, r.sid))
    return change(user, r, 'PushOnline', previous)
  end
  detach(user, r)
  return change(user, r, 'Offline', previous)
end

-- A process lets go of an Online device it holds (its last connection there closed or timed out, or the process died). Answers
-- true when other processes still hold it: it stays Online for their connections (written back here, its last seen noted), and
-- only the last holder's end is the device's (the caller's linkLost).
local function release(user, r, owner, lastSeen)
  unhold(user, r, owner)
  if #r.owners == 0 then return false end
  noteLastSeen(user, lastSeen)
  save(user)
  return true
end
-- The user's state after an availability or custom-status write, as RedisStore decodes it (StoreUserState).
local function stateOf(user)
  local av = user.av or {}
  return {status = status(user), ls = user.ls or false, cs = user.cs or false, cx = user.cx or false, v = av.v or 'available',
    i = av.i or false, f = av.f or false, fc = av.fc or false}
end


-- The policy, as lib/core/policy.ts decides it.
local function group(p) if p == 'Web' or p == 'MiniProgram' then return 'Web' end return p end
local function class(p)
  if isMobile(p) then return 'mobile' end
  if p == 'Windows' or p == 'Mac' or p == 'Linux' then return 'desktop' end
  return 'web'
end
local function category(policy, p)
  if policy == 'single' then return 'any' end
  if policy == 'dual' then if group(p) == 'Web' then return 'web' end return 'native' end
  if policy == 'triple' then if group(p) == 'Web' then return 'web' end return class(p) end
  return group(p)
end
local function byOrder(a, b) return a.order < b.order end

-- KEYS: bucket, user. ARGV: common, userId, platform, instanceId, resumeSid, newSid, version, policy, maxPerPlatform, maxWeb,
-- owner, reassert (0/1), takenUpAt (a re-asserted device: when its process took it up, ms; '' unknown). A revoked session
-- answers the notice it was ended with.
local function op_login()
  local userId, platform, instanceId, resumeSid, newSid, version = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
  local policy, maxPer, maxWeb, owner, reassert = ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15]), ARGV[16], ARGV[17] == '1'
  local takenUpAt = tonumber(ARGV[18]) or 0
  local keys = userKeys(1)

  if resumeSid ~= '' then
    local notice = revokedNotice({keys = keys}, resumeSid)
    if notice then return cjson.encode({outcome = 'revoked', notice = notice}) end
  end
  -- A device coming back after an outage that an admin kick made meanwhile should have ended (it was not in Redis to be found then).
  if reassert then
    local kicks = redis.call('GET', keys.kk)
    if kicks then
      for _, k in ipairs(cjson.decode(kicks)) do
        if (k[1] == '' or k[1] == platform) and (k[2] == '' or k[2] == instanceId) and takenUpAt <= k[3] then
          revoke({keys = keys}, newSid, ADMIN_KICK)
          return cjson.encode({outcome = 'revoked', notice = ADMIN_KICK})
        end
      end
    end
  end
  local user = load(userId, keys)
  local previous = status(user)
  local existing = nil
  for _, r in ipairs(user.instances) do if r.id == instanceId then existing = r end end
  -- A device re-asserted into a Redis that lost it (an empty restart) was Online all along: not a transition, no change reported.
  -- One a reap ended meanwhile (its end was reported) is a new login. Only a creation can be quiet: it kicks nobody.
  local quiet = reassert and not wasReaped(user, resumeSid)

  if existing and resumeSid ~= '' and existing.sid == resumeSid and existing.platform == platform then
    -- Online: another tab of the device, here or on another process (or a re-assertion): this process holds it too.
    takeOver(user, existing, owner)
    hold(user, existing, owner)
    if existing.status == 'Online' then
      save(user)
      return cjson.encode({outcome = 'resumed', sessionId = existing.sid})
    end
    redis.call('ZREM', EXPIRY, member(userId, existing.id, existing.sid))
    countInstance(existing, -1)
    existing.status = 'Online'
    existing.since = NOW
    user.order = user.order + 1
    existing.order = user.order
    countInstance(existing, 1)
    user.ls = NOW
    return cjson.encode({outcome = 'resumed', sessionId = existing.sid, change = change(user, existing, 'Online', previous)})
  end

  -- A fresh login made before the device's current state began yields to it rather than displace it: an attempt the engine
  -- gave up on that Redis ran late (during a failover ioredis retries each command on its own timer, so a refused attempt can
  -- run after the retry that was answered). A re-assertion yields by its own rule below.
  if existing and not reassert and NOW < existing.since then
    local by = cjson.encode({reason = 'LoginElsewhere', by = {platform = existing.platform, instanceId = existing.id}})
    return cjson.encode({outcome = 'revoked', notice = by})
  end

  local own, ownCategory = group(platform), category(policy, platform)
  local displaced, same = {}, {}
  for _, r in ipairs(user.instances) do
    if r ~= existing then
      if group(r.platform) == own then table.insert(same, r)
      elseif category(policy, r.platform) == ownCategory then table.insert(displaced, r) end
    end
  end
  local limit = maxPer
  if own == 'Web' then limit = maxWeb end
  if #same + 1 > limit then
    table.sort(same, byOrder)
    for i = 1, #same + 1 - limit do table.insert(displaced, same[i]) end
  end
  if reassert and (#displaced > 0 or existing) then
    -- A device coming back after an outage yields to what happened meanwhile: to the newest login in its way.
    local newest = existing
    for _, r in ipairs(displaced) do if newest == nil or r.order > newest.order then newest = r end end
    local notice = cjson.encode({reason = 'LoginElsewhere', by = {platform = newest.platform, instanceId = newest.id}})
    revoke(user, newSid, notice)
    return cjson.encode({outcome = 'revoked', notice = notice})
  end
  -- Kicks are listed oldest first, the device's own earlier session among them.
  if existing then table.insert(displaced, existing) end
  local kicked = {}
  local kickNotice = nil
  if #displaced > 0 then
    table.sort(displaced, byOrder)
    kickNotice = cjson.encode({reason = 'LoginElsewhere', by = {platform = platform, instanceId = instanceId}})
  end
  for _, r in ipairs(displaced) do
    local holders = r.owners
    detach(user, r)
    revoke(user, r.sid, kickNotice)
    table.insert(kicked, {platform = r.platform, instanceId = r.id, sessionId = r.sid})
    publishEnd(holders, r.sid, kickNotice)
  end
  user.order = user.order + 1
  local r = {id = instanceId, platform = platform, status = 'Online', since = NOW, order = user.order, sid = newSid, owners = {}, version = version}
  table.insert(user.instances, r)
  countInstance(r, 1)
  hold(user, r, owner)
  user.ls = NOW
  return cjson.encode({outcome = 'created', sessionId = newSid, change = change(user, r, 'Online', previous, kicked), quiet = quiet})
end

-- The transport lost a device on one process. KEYS: bucket, user. ARGV: common, userId, instanceId, sid, lastSeen, owner (''
-- any: every holder). While other processes still hold it, only this one lets go of it.
local function op_linkLost()
  local userId, instanceId, sid, lastSeen, owner = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11]
  local user = load(userId, userKeys(1))
  local r = find(user, instanceId, sid, owner)
  if r == nil or r.status ~= 'Online' then return false end
  if owner ~= '' and release(user, r, owner, lastSeen) then return false end
  return cjson.encode(linkLost(user, r, lastSeen))
end

-- A device is gone (logout, or a non-mobile link lost). KEYS: bucket, user. ARGV: common, userId, instanceId, sid ('' any),
-- lastSeen, revoke (0/1), owner ('' any). A link lost on one process (owner given, no revoke) while others still hold the
-- device only lets go of it there. A logout (revoke) ends the session on every process, even one that took it up again just
-- before (another tab, a resume): revoked, and published to its holders (to every process when none is known), found here or
-- not (a holder that re-asserts it later is refused).
local function op_remove()
  local userId, instanceId, sid, lastSeen, doRevoke, owner = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11] == '1', ARGV[12]
  local user = load(userId, userKeys(1))
  local r = find(user, instanceId, sid, owner)
  if doRevoke and sid ~= '' then
    revoke(user, sid, LOGOUT)
    local holders = {}
    for _, x in ipairs(user.instances) do if x.sid == sid then holders = x.owners end end
    publishEnd(holders, sid, LOGOUT)
  end
  if r == nil then return false end
  if owner ~= '' and not doRevoke and r.status == 'Online' and release(user, r, owner, lastSeen) then return false end
  local previous = status(user)
  if r.status == 'Online' then noteLastSeen(user, lastSeen) end
  local holders = r.owners
  detach(user, r)
  if doRevoke and sid == '' then
    revoke(user, r.sid, LOGOUT)
    publishEnd(holders, r.sid, LOGOUT)
  end
  return cjson.encode(change(user, r, 'Offline', previous))
end

-- Admin kick. KEYS: bucket, user. ARGV: common, userId, platform ('' any), instanceId ('' any), kickAt (when it was asked, ms),
-- memory (ms). It also leaves a mark for `memory` ms, so that a matching device re-asserted later (one that was not in Redis,
-- restarted empty, when the kick ran) yields instead of coming back.
local function op_kick()
  local userId, platform, instanceId, kickAt, memory = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
  local keys = userKeys(1)
  local marks = {}
  local text = redis.call('GET', keys.kk)
  if text then
    for _, k in ipairs(cjson.decode(text)) do if k[3] >= NOW - memory and #marks < 31 then table.insert(marks, k) end end
  end
  table.insert(marks, {platform, instanceId, kickAt})
  redis.call('SET', keys.kk, cjson.encode(marks), 'PX', memory)
  local user = load(userId, keys)
  local targets = {}
  for _, r in ipairs(user.instances) do
    if (platform == '' or r.platform == platform) and (instanceId == '' or r.id == instanceId) then table.insert(targets, r) end
  end
  local changes = {}
  for _, r in ipairs(targets) do
    local previous = status(user)
    if r.status == 'Online' then noteLastSeen(user, NOW) end
    local holders = r.owners
    detach(user, r)
    revoke(user, r.sid, ADMIN_KICK)
    publishEnd(holders, r.sid, ADMIN_KICK)
    table.insert(changes, change(user, r, 'Offline', previous))
  end
  return cjson.encode(changes)
end

-- KEYS: bucket, user. ARGV: common, userId, customStatus, clear (0/1), expiresAt ('' none), ifExpiresAt ('' any). Answers the
-- user's state as JSON; false when ifExpiresAt is given and the status does not expire then (a newer one replaced it).
local function op_setCustomStatus()
  local userId, text, clear, expiresAt, ifExpiresAt = ARGV[7], ARGV[8], ARGV[9] == '1', tonumber(ARGV[10]), tonumber(ARGV[11])
  local user = load(userId, userKeys(1))
  if ifExpiresAt ~= nil and user.cx ~= ifExpiresAt then return false end
  -- Clearing what was never set leaves nothing behind for a user never seen.
  if not (clear and user.cs == nil) then
    if clear then user.cs, user.cx = nil, nil else user.cs, user.cx = text, expiresAt end
    save(user)
  end
  return cjson.encode(stateOf(user))
end

-- KEYS: bucket, user. ARGV: common, userId, kind ('set' | 'activity' | 'idle'), availability (set) or idleSince (idle). The
-- rules of StoreAvailabilityRequest (lib/core/store.ts). Answers {state, previous, previousIdle} as JSON, or false when nothing
-- shown changed.
local function op_setAvailability()
  local userId, kind, arg = ARGV[7], ARGV[8], ARGV[9]
  local user = load(userId, userKeys(1))
  if kind == 'idle' and not user.found then return false end
  local av = user.av or {v = 'available'}
  local function shown(a) if a.v == 'available' and a.i ~= nil then return 'away' end return a.v end
  local previous, previousIdle = shown(av), av.i
  if kind == 'set' then
    if arg == 'invisible' and av.v ~= 'invisible' then
      -- Others keep seeing what they saw at this moment, as if the user had gone offline now.
      if status(user) == 'Online' then av.f = NOW else av.f = user.ls end
      av.fc = user.cs
    end
    av.v, av.i = arg, nil
    if av.t == nil or NOW > av.t then av.t = NOW end
  elseif kind == 'activity' then
    if av.t == nil or NOW > av.t then av.t = NOW end
    av.i = nil
  else
    local since = tonumber(arg)
    if av.v ~= 'available' or av.i ~= nil or (av.t ~= nil and av.t > since) then return false end
    av.i = since
  end
  user.av = av
  save(user)
  if shown(av) == previous and av.i == previousIdle then return false end
  return cjson.encode({state = stateOf(user), previous = previous, previousIdle = previousIdle or false})
end

-- PushOnline devices of the bucket past their TTL, as the caller found them in the expiry queue: each is taken by exactly one
-- caller (still queued and due). KEYS: bucket, the users. ARGV: common, cjson [[user's index in KEYS, userId, instanceId, sid],
-- ...].
local function op_expireDue()
  local changes = {}
  for _, e in ipairs(cjson.decode(ARGV[7])) do
    local userId, instanceId, sid = e[2], e[3], e[4]
    local m = member(userId, instanceId, sid)
    local due = redis.call('ZSCORE', EXPIRY, m)
    if due and tonumber(due) <= NOW then
      redis.call('ZREM', EXPIRY, m)
      local user = load(userId, userKeys(e[1]))
      local r = find(user, instanceId, sid, '')
      if r ~= nil and r.status == 'PushOnline' then
        local previous = status(user)
        detach(user, r)
        table.insert(changes, change(user, r, 'Offline', previous))
      end
    end
  end
  return cjson.encode(changes)
end

-- One slice of reaping the bucket's devices of a process whose lease ran out: each loses its link, once (those it was the last
-- holder of), when its grace is over: each class's reconnect grace from when the process went (its close, or when a sweep first
-- found its lease gone), and not before the end of the handover a closing process asked for. A device resumed elsewhere
-- meanwhile moved there (takeOver) and is not among them. KEYS: bucket, the users. ARGV: common, owner, the reconnect grace
-- (ms) of mobile, desktop, web and miniProgram, start (1: the first call of a pass, with no devices: answers whether any is
-- due), cjson [[user's index in KEYS, userId, instanceId, sid], ...] (a slice the caller read from the owned set). Answers
-- {state = 'alive' | 'done' | 'wait' | 'go', changes}.
local function op_reap()
  local owner = ARGV[7]
  local grace = {mobile = tonumber(ARGV[8]), desktop = tonumber(ARGV[9]), web = tonumber(ARGV[10]), miniProgram = tonumber(ARGV[11])}
  local start = ARGV[12] == '1'
  if leaseAlive(owner) then return '{"state":"alive","changes":[]}' end
  local atField, untilField, nextField = owner .. ':at', owner .. ':until', owner .. ':next'
  local function finished()
    if #redis.call('ZRANGEBYLEX', OWNED, '[' .. owner .. '\0', '(' .. owner .. '\1', 'LIMIT', 0, 1) > 0 then return false end
    redis.call('ZREM', LEASES, owner)
    redis.call('HDEL', GONE, atField, untilField, nextField)
    return true
  end
  redis.call('HSETNX', GONE, atField, NOW)
  local at = tonumber(redis.call('HGET', GONE, atField))
  local handover = tonumber(redis.call('HGET', GONE, untilField)) or 0
  local function dueOf(cls) return math.max(handover, at + grace[cls]) end
  local function classOf(p)
    if isMobile(p) then return 'mobile' end
    if p == 'Windows' or p == 'Mac' or p == 'Linux' then return 'desktop' end
    if p == 'MiniProgram' then return 'miniProgram' end
    return 'web'
  end
  if start then
    if finished() then return '{"state":"done","changes":[]}' end
    -- Until the first device is due, a sweep costs a few commands, however many devices wait.
    local firstDue = tonumber(redis.call('HGET', GONE, nextField))
    if firstDue == nil then
      firstDue = math.huge
      for cls in pairs(grace) do firstDue = math.min(firstDue, dueOf(cls)) end
    end
    if NOW < firstDue then
      redis.call('HSET', GONE, nextField, firstDue)
      return '{"state":"wait","changes":[]}'
    end
    redis.call('HDEL', GONE, nextField)
    return '{"state":"go","changes":[]}'
  end
  local changes, later = {}, nil
  for _, e in ipairs(cjson.decode(ARGV[13])) do
    local userId, instanceId, sid = e[2], e[3], e[4]
    local m = ownedMember(owner, userId, instanceId, sid)
    if redis.call('ZSCORE', OWNED, m) then
      local user = load(userId, userKeys(e[1]))
      local r = find(user, instanceId, sid, owner)
      if r == nil or r.status ~= 'Online' then
        redis.call('ZREM', OWNED, m)
      else
        local due = dueOf(classOf(r.platform))
        if due > NOW then
          if later == nil or due < later then later = due end
        -- A device other processes hold too stays Online for them; the process gone only lets go of it. Last seen: when it went.
        elseif not release(user, r, owner, at) then
          noteReaped(user, r.sid)
          table.insert(changes, linkLost(user, r, at))
        end
      end
    end
  end
  if later ~= nil then
    local next = tonumber(redis.call('HGET', GONE, nextField))
    if next == nil or later < next then redis.call('HSET', GONE, nextField, later) end
  end
  local state = 'go'
  if finished() then state = 'done' end
  return cjson.encode({state = state, changes = changes})
end

-- Ends this process made recently in the bucket, applied again after it reconnects (Redis may have restarted empty since, and
-- the holder of a device may have missed the `ended` message): each session is revoked again, removed if its holder re-asserted
-- it meanwhile, and published again; each admin kick's mark is written again. KEYS: bucket, the users. ARGV: common, memory
-- (ms), cjson ends [[user's index, userId, instanceId, sid, notice], ...], cjson kicks [[user's index, userId, platform,
-- instanceId, at], ...]. Answers the devices removed.
local function op_reapplyEnds()
  local memory = tonumber(ARGV[7])
  local changes = {}
  for _, e in ipairs(cjson.decode(ARGV[8])) do
    local keys, userId, instanceId, sid, notice = userKeys(e[1]), e[2], e[3], e[4], e[5]
    local user = load(userId, keys)
    revoke(user, sid, notice)
    local r = find(user, instanceId, sid, '')
    local holders = {}
    if r ~= nil then
      holders = r.owners
      local previous = status(user)
      if r.status == 'Online' then noteLastSeen(user, NOW) end
      detach(user, r)
      table.insert(changes, change(user, r, 'Offline', previous))
    end
    publishEnd(holders, sid, notice)
  end
  local byUser, keysOf = {}, {}
  for _, k in ipairs(cjson.decode(ARGV[9])) do
    local userId = k[2]
    if byUser[userId] == nil then
      byUser[userId] = {}
      keysOf[userId] = userKeys(k[1])
      local text = redis.call('GET', keysOf[userId].kk)
      if text then
        for _, m in ipairs(cjson.decode(text)) do if m[3] >= NOW - memory then table.insert(byUser[userId], m) end end
      end
    end
    local marks, known = byUser[userId], false
    for _, m in ipairs(marks) do if m[1] == k[3] and m[2] == k[4] and m[3] == k[5] then known = true end end
    if not known and #marks < 32 then table.insert(marks, {k[3], k[4], k[5]}) end
  end
  for userId, marks in pairs(byUser) do redis.call('SET', keysOf[userId].kk, cjson.encode(marks), 'PX', memory) end
  return cjson.encode(changes)
end

-- A process renews its lease in the bucket. KEYS: bucket. ARGV: common, owner, until (ms). Answers 1 when others found it gone
-- since it was last written (they may have reaped its devices, or taken some over), or when it was not listed (first lease, or
-- reaped since).
local function op_renew()
  local owner = ARGV[7]
  local had = redis.call('ZSCORE', LEASES, owner)
  redis.call('ZADD', LEASES, ARGV[8], owner)
  local noted = redis.call('HDEL', GONE, owner .. ':at', owner .. ':until', owner .. ':next')
  if had == false or noted > 0 then return 1 end
  return 0
end

-- A process gives up its lease in the bucket (close): its devices there are reaped once their grace is over, counted from now,
-- and not before the handover's end. KEYS: bucket. ARGV: common, owner, handover until (ms; '' none).
local function op_leave()
  local owner = ARGV[7]
  if not redis.call('ZSCORE', LEASES, owner) then return 0 end
  redis.call('ZADD', LEASES, 0, owner)
  redis.call('HSET', GONE, owner .. ':at', NOW)
  if ARGV[8] ~= '' then redis.call('HSET', GONE, owner .. ':until', ARGV[8]) end
  return 1
end


-- The fast path of a fresh login and of a device's end: the calling process planned the change itself from the user's record as
-- it last saw it (lib/redis/planned.ts), and sends that record as it saw it and as it becomes. When Redis still holds exactly
-- that text, numbered in this run, the change is the one op_login or op_remove would make: it is applied as planned, without
-- decoding the record; the indexes and counts below are theirs. Otherwise nothing is done and 0 is answered: the caller runs the
-- full function.
--
-- A process sends the plans of many users in one call (lib/redis/batch.ts: those queued while its previous call to the node was
-- in flight), so that the cost of a call is shared, and their counts are summed (in the stats of the call's first bucket:
-- stats() adds the buckets up). The keys: the stats key, then per change its user's record and its bucket's owned devices, and
-- for an end also the user's revoked sessions and the bucket's expiry queue. The first ones are declared (KEYS); on a Redis
-- Cluster a call's declared keys must share a slot, so those of the other changes (of the same node: the function's
-- allow-cross-slot-keys flag lets it reach them, and Redis refuses any another node serves) follow in ARGV. Every key a change
-- writes is read before anything is written (its record by GET, and on a cluster the others by EXISTS: a key missing from a
-- slot being migrated away is refused too), so a key the node does not serve fails the call before it changed anything; on a
-- cluster an end published to another process is not planned (its shard channel could be refused after the writes). A user
-- met again in the same call is answered 0 (planned from the record its first change replaces).
-- ARGV: how many keys follow in ARGV, those keys, the PushOnline TTL, offlineTtl, the publish command,
-- maxRevokedSessionsPerUser, '1' on a cluster ('' otherwise), then each change: its kind ('L' a login, 'R' an end), how
-- many arguments follow, and those, all made by the process (lib/redis/planned.ts: members as member() and ownedMember() write them, counts as count fields):
--   L: the record as seen, its run, the record as it becomes, the device's owned member, then the counts it moves;
--   R: the record as seen, its run, the record as it becomes, now, 'px' when the user becomes Offline ('' otherwise), sid, the
--      revocation's value ('' when it is not revoked), the device's expiry member ('' unless PushOnline), how many owned
--      members and those, how many processes its end is published to and those ('' for every process), then the counts.
-- A count is '+<field>' or '-<field>'. Answers 1 (applied) or 0 per change, in order.
local function countAll(a, from, to)
  for i = from, to do
    local f = a[i]
    if string.byte(f) == 45 then count(string.sub(f, 2), -1) else count(string.sub(f, 2), 1) end
  end
end

local function plannedLogin(record, owned, a, at, n)
  redis.call('SET', record, a[at + 3])
  redis.call('ZADD', owned, '0', a[at + 4])
  countAll(a, at + 5, at + n)
end

local function plannedEnd(record, owned, revoked, expiry, a, at, n)
  local sid = a[at + 6]
  if a[at + 7] ~= '' then
    NOW = tonumber(a[at + 4])
    revokeAs(revoked, sid, a[at + 7])
  end
  if a[at + 8] ~= '' then redis.call('ZREM', expiry, a[at + 8]) end
  local i = at + 10
  for j = i, i + tonumber(a[at + 9]) - 1 do redis.call('ZREM', owned, a[j]) end
  i = i + tonumber(a[at + 9])
  local targets = tonumber(a[i])
  if targets > 0 then
    local base, message = string.sub(owned, 1, -6), endMessage(sid, LOGOUT)
    for j = i + 1, i + targets do redis.call(PUBLISH, endChannel(base, a[j]), message) end
  end
  if a[at + 5] == 'px' then redis.call('SET', record, a[at + 3], 'PX', OFFLINE_TTL_TEXT)
  else redis.call('SET', record, a[at + 3]) end
  countAll(a, i + targets + 1, at + n)
end

local function op_plannedBatch(keys, args)
  local extra = tonumber(args[1])
  local all = keys
  if extra > 0 then
    all = {}
    for i = 1, #keys do all[i] = keys[i] end
    for i = 1, extra do all[#all + 1] = args[1 + i] end
  end
  local at = 2 + extra
  TTL, PUBLISH, MAX_REVOKED_PER_USER = tonumber(args[at]), args[at + 2], tonumber(args[at + 3])
  TTL_TEXT, OFFLINE_TTL_TEXT = args[at], args[at + 1]
  local cluster = args[at + 4] == '1'
  at = at + 5
  -- Each change: where its arguments start (at its count), its first key, and whether it applies (0: not).
  local starts, firsts, applies, run, met = {}, {}, {}, runId(), {}
  local k = 2
  while at <= #args do
    local record = all[k]
    local ok = not met[record] and args[at + 3] == run and redis.call('GET', record) == args[at + 2]
    met[record] = true
    starts[#starts + 1], firsts[#firsts + 1], applies[#applies + 1] = at + 1, k, ok and 1 or 0
    if args[at] == 'R' then
      if ok and cluster then redis.call('EXISTS', all[k + 1], all[k + 2], all[k + 3]) end
      k = k + 4
    else
      if ok and cluster then redis.call('EXISTS', all[k + 1]) end
      k = k + 2
    end
    at = at + 2 + tonumber(args[at + 1])
  end
  STATS, DELTAS = all[1], {}
  for i = 1, #starts do
    if applies[i] == 1 then
      local c, k = starts[i], firsts[i]
      if args[c - 1] == 'L' then plannedLogin(all[k], all[k + 1], args, c, tonumber(args[c]))
      else plannedEnd(all[k], all[k + 1], all[k + 2], all[k + 3], args, c, tonumber(args[c])) end
    end
  end
  for field, delta in pairs(DELTAS) do
    if delta ~= 0 then redis.call('HINCRBY', STATS, field, delta) end
  end
  DELTAS = nil
  return applies
end

-- Each store operation is one function: `<library>_<name>`, so that two versions of the library never clash.
local LIBRARY = '__LIBRARY__'
local function register(name, body)
  redis.register_function(LIBRARY .. '_' .. name, function(keys, args)
    begin(keys, args)
    return body()
  end)
end
-- The functions on one user also answer the user's record as they left it (false: not read), for the caller's next plan.
local function withRecord(body) return function() return {body(), TEXT or false} end end
register('login', withRecord(op_login))
register('linkLost', withRecord(op_linkLost))
register('remove', withRecord(op_remove))
redis.register_function{function_name = LIBRARY .. '_plannedBatch', callback = op_plannedBatch, flags = {'allow-cross-slot-keys'}}
register('kick', withRecord(op_kick))
register('setCustomStatus', withRecord(op_setCustomStatus))
register('setAvailability', withRecord(op_setAvailability))
register('expireDue', op_expireDue)
register('reap', op_reap)
register('reapplyEnds', op_reapplyEnds)
register('renew', op_renew)
register('leave', op_leave)
