-- Commits what the applier (tally-redis/src/apply.rs) worked out for a run of incoming
-- entries, atomically: it runs in one MULTI right after the XADD that appends the run's
-- events, with their visit figures, to the events stream (that XADD is sent as a command,
-- not through this script: every string handed to Lua is hashed whole, byte by byte, and
-- the events' JSON was the largest share of that cost), then trims the run from the
-- incoming stream and applies its changes.
--
-- KEYS[1]  the partition's incoming stream, KEYS[2] its events stream; every other key is
--          named in the operations and carries the same {pN} hash tag (one cluster slot).
-- ARGV     1: the id of the run's first entry, as read; 2: the id just after its last (the
--          stream keeps what is at or above it); 3: '1' when the MULTI's XADD appended the
--          run's events entry before this script ('0': the run had no events); then
--          operations, each `command key count` and `count` arguments.
-- Returns  1, or 0 when the stream's first entry is no longer the one read: another applier
--          moved the run first; the entry the XADD just appended (the events stream's last:
--          nothing runs between the two) is deleted, and nothing is written. An error, and
--          nothing written, when the events stream's key is not a stream (the XADD failed).
--
-- The commands are the ones the applier sends (the list below); TRIMHERE drops the slots of
-- a `here:` hash below its one argument.

local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head == 0 or head[1][1] ~= ARGV[1] then
  if ARGV[3] == '1' then
    local appended = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    redis.call('XDEL', KEYS[2], appended[1][1])
  end
  return 0
end
-- A command that fails inside a MULTI does not stop the ones after it: if the XADD failed
-- (the key holds something else), the run must stay where it is.
if ARGV[3] == '1' and redis.call('TYPE', KEYS[2])['ok'] ~= 'stream' then
  return redis.error_reply('apply.lua: the events entry was not appended: ' .. KEYS[2] .. ' is not a stream')
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])

local allowed = {
  HSET = true, HINCRBY = true, INCRBY = true, EXPIRE = true, PEXPIRE = true, ZADD = true,
  ZREMRANGEBYSCORE = true, PFADD = true,
}
local i = 4
while i <= #ARGV do
  local command, key, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + count
  if command == 'TRIMHERE' then
    local below = tonumber(ARGV[first])
    local old = {}
    for _, slot in ipairs(redis.call('HKEYS', key)) do
      if tonumber(slot) < below then
        old[#old + 1] = slot
      end
    end
    for j = 1, #old, 1000 do
      redis.call('HDEL', key, unpack(old, j, math.min(j + 999, #old)))
    end
  elseif allowed[command] then
    redis.call(command, key, unpack(ARGV, first, last))
  else
    return redis.error_reply('apply.lua: command not allowed: ' .. command)
  end
  i = last + 1
end
return 1
