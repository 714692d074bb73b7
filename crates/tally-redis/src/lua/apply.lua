-- Commits what the applier (tally-redis/src/apply.rs) worked out for a run of incoming
-- entries, atomically: it checks that the applier's cursor is still where the run was read
-- from, appends the run's entry to the events stream — the ids of its incoming entries and
-- their events' visit figures: the JSON stays in the incoming entries until the worker has
-- stored it, so it is written to Redis (and its append-only file) once —, moves the cursor
-- past the run and applies the run's changes.
--
-- KEYS[1]  the partition's incoming stream, KEYS[2] its events stream; every other key is
--          named in the operations and carries the same {pN} hash tag (one cluster slot).
-- ARGV     1: the incoming stream's cursor group (its last delivered id is the last entry
--          applied); 2: the cursor the run was read after; 3: the run's last id; 4-9: the
--          events entry's fields (version, the run's ids joined by ' ', figures; the
--          figures are empty when the run holds no events: no entry then, and the incoming
--          entries are deleted here, as nobody else will); then operations, each
--          `command key count` and `count` arguments.
-- Returns  1, or 0 when the cursor is no longer the one read: another applier moved the run
--          first, and nothing is written. An error, and nothing written, when the events
--          stream's key holds something else (the XADD is the first write).
--
-- The commands are the ones the applier sends (the list below); TRIMHERE drops the slots of
-- a `here:` hash below its one argument.

local cursor
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for j = 1, #group - 1, 2 do
    if group[j] == 'name' then
      name = group[j + 1]
    elseif group[j] == 'last-delivered-id' then
      last = group[j + 1]
    end
  end
  if name == ARGV[1] then
    cursor = last
  end
end
if cursor ~= ARGV[2] then
  return 0
end
if ARGV[9] ~= '' then
  redis.call('XADD', KEYS[2], '*', ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
else
  local ids = {}
  for id in string.gmatch(ARGV[7], '%S+') do
    ids[#ids + 1] = id
  end
  for j = 1, #ids, 1000 do
    redis.call('XDEL', KEYS[1], unpack(ids, j, math.min(j + 999, #ids)))
  end
end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[3])

local allowed = {
  HSET = true, HINCRBY = true, INCRBY = true, EXPIRE = true, PEXPIRE = true, ZADD = true,
  ZREMRANGEBYSCORE = true, PFADD = true,
}
local i = 10
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
