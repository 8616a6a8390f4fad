#!lua name=__LIBRARY__
-- The rooms of RedisStore (lib/redis/rooms.ts), loaded once per Redis as a function library (lib/redis/functions.ts). Each
-- function touches one room, whose keys share one hash slot ({r:<room>}), and declares them.

-- After a member's change: the room's new count and version, its counters expiring once the room is empty (kept while it is
-- not), and the change published on `channel`. Answers the message.
local function announce(KEYS, room, userId, kind, parts, meta, channel, ttl, by)
  local count = redis.call('ZCARD', KEYS[1])
  local version = redis.call('INCR', KEYS[5])
  if count == 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('PEXPIRE', KEYS[5], ttl)
  else
    redis.call('PERSIST', KEYS[2])
    redis.call('PERSIST', KEYS[5])
  end
  local message = cjson.encode({ room = room, version = version, userId = userId, kind = kind, parts = parts, meta = meta, count = count, by = by })
  redis.call('PUBLISH', channel, message)
  return message
end

-- Sets one process's part of a member. KEYS: order (zset userId -> join seq; its size is the count), seq, parts (hash
-- userId -> {owner: devices}), meta (hash userId -> JSON), version. ARGV: room, owner, userId, devices JSON ('' removes the
-- part), meta JSON ('' keeps it), channel, ttl of an emptied room's counters. Publishes and answers the change, or false when
-- nothing changed.
local function set(KEYS, ARGV)
  local userId = ARGV[3]
  local raw = redis.call('HGET', KEYS[3], userId)
  local owners = {}
  if raw then owners = cjson.decode(raw) end
  if ARGV[4] == '' then owners[ARGV[2]] = nil else owners[ARGV[2]] = cjson.decode(ARGV[4]) end
  local kind
  if next(owners) ~= nil then
    redis.call('HSET', KEYS[3], userId, cjson.encode(owners))
    if raw then kind = 'updated' else
      kind = 'joined'
      redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), userId)
    end
    if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], userId, ARGV[5]) end
  else
    if not raw then return false end
    kind = 'left'
    redis.call('HDEL', KEYS[3], userId)
    redis.call('HDEL', KEYS[4], userId)
    redis.call('ZREM', KEYS[1], userId)
  end
  local meta = redis.call('HGET', KEYS[4], userId) or 'null'
  local parts = false
  if kind ~= 'left' then parts = redis.call('HGET', KEYS[3], userId) end
  return announce(KEYS, ARGV[1], userId, kind, parts, meta, ARGV[6], ARGV[7], ARGV[8])
end

-- Removes a dead process's parts of every member of a room. KEYS as set. ARGV: room, dead owner, channel, ttl, this owner.
-- Publishes each change; answers how many members lost a part.
local function reap(KEYS, ARGV)
  local all = redis.call('HGETALL', KEYS[3])
  local touched = 0
  for i = 1, #all, 2 do
    local userId = all[i]
    local owners = cjson.decode(all[i + 1])
    if owners[ARGV[2]] ~= nil then
      touched = touched + 1
      owners[ARGV[2]] = nil
      local kind = 'updated'
      local parts = false
      if next(owners) ~= nil then
        parts = cjson.encode(owners)
        redis.call('HSET', KEYS[3], userId, parts)
      else
        kind = 'left'
        redis.call('HDEL', KEYS[3], userId)
        redis.call('ZREM', KEYS[1], userId)
      end
      local meta = redis.call('HGET', KEYS[4], userId) or 'null'
      if kind == 'left' then redis.call('HDEL', KEYS[4], userId) end
      announce(KEYS, ARGV[1], userId, kind, parts, meta, ARGV[3], ARGV[4], ARGV[5])
    end
  end
  return touched
end

-- The 4 fields of a member as state and page answer them: userId, join position, parts, meta (KEYS[2] parts, KEYS[3] meta).
local function addMember(out, KEYS, userId, position)
  table.insert(out, userId)
  table.insert(out, position)
  table.insert(out, redis.call('HGET', KEYS[2], userId) or '{}')
  table.insert(out, redis.call('HGET', KEYS[3], userId) or 'null')
end

-- The whole room, atomically with its version. KEYS: order, parts, meta, version.
local function state(KEYS, ARGV)
  local order = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local out = { tonumber(redis.call('GET', KEYS[4]) or '0') }
  for i = 1, #order, 2 do addMember(out, KEYS, order[i], order[i + 1]) end
  return out
end

-- A page after a join position. KEYS: order, parts, meta. ARGV: after, limit. Answers count, more (0/1), then 4 fields per
-- member.
local function page(KEYS, ARGV)
  local limit = tonumber(ARGV[2])
  local order = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  local out = { redis.call('ZCARD', KEYS[1]), 0 }
  for i = 1, #order, 2 do
    if (i + 1) / 2 > limit then
      out[2] = 1
      break
    end
    addMember(out, KEYS, order[i], order[i + 1])
  end
  return out
end

redis.register_function('__LIBRARY___set', set)
redis.register_function('__LIBRARY___reap', reap)
redis.register_function{function_name = '__LIBRARY___state', callback = state, flags = {'no-writes'}}
redis.register_function{function_name = '__LIBRARY___page', callback = page, flags = {'no-writes'}}
