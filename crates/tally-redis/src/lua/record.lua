-- Records a batch of events of one partition atomically.
--
-- KEYS[1]  the partition's events stream (tally:{pN}:events); every other key this script
--          touches is built from ARGV[1] and carries the same {pN} hash tag, so the whole
--          batch lives in one cluster slot.
-- ARGV     prefix, batch id, now (ms), online window (ms), visit timeout (s), event count,
--          then 8 values per event: kind, site, page, visitor, session candidate, day,
--          title, json.
-- Returns  the number of events recorded, or -1 when this batch id was already applied
--          (a retry after a lost reply must not count twice).
local prefix = ARGV[1]
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local timeout = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local minute = math.floor(now / 60000)

if not redis.call('SET', prefix .. 'batch:' .. ARGV[2], '1', 'NX', 'EX', 3600) then
  return -1
end

-- Sorted sets touched by this batch are trimmed of aged members once per batch.
local touched = {}
local function touch(key, member)
  redis.call('ZADD', key, now, member)
  if not touched[key] then
    touched[key] = true
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('PEXPIRE', key, window)
  end
end

for i = 0, n - 1 do
  local base = 7 + i * 8
  local kind, site, page = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local visitor, candidate, day = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local title, json = ARGV[base + 6], ARGV[base + 7]
  local session, new_visit = '0', '0'
  if kind == 'bot' then
    redis.call('HINCRBY', prefix .. 'totals:' .. site, 'bots', 1)
  else
    local visit = prefix .. 'visit:' .. site .. ':' .. visitor
    if kind == 'pageview' then
      if redis.call('SET', visit, candidate, 'NX', 'EX', timeout) then
        session, new_visit = candidate, '1'
        redis.call('HINCRBY', prefix .. 'totals:' .. site, 'visits', 1)
      else
        session = redis.call('GET', visit)
        redis.call('EXPIRE', visit, timeout)
      end
      redis.call('HINCRBY', prefix .. 'views:' .. site, page, 1)
      redis.call('HINCRBY', prefix .. 'totals:' .. site, 'views', 1)
      local uv = prefix .. 'uv:' .. site .. ':' .. day
      redis.call('PFADD', uv, visitor)
      redis.call('EXPIRE', uv, 172800)
      local vpm = prefix .. 'vpm:' .. site .. ':' .. minute
      redis.call('INCR', vpm)
      redis.call('EXPIRE', vpm, 3600)
      if title ~= '' then
        redis.call('HSET', prefix .. 'titles:' .. site, page, title)
      end
    else
      -- Pings and leaves keep a running visit alive but never start one.
      session = redis.call('GET', visit) or '0'
      if session ~= '0' then
        redis.call('EXPIRE', visit, timeout)
      end
    end
    touch(prefix .. 'online:' .. site, visitor)
    if kind == 'leave' then
      redis.call('ZREM', prefix .. 'online:' .. site .. ':' .. page, visitor)
    else
      touch(prefix .. 'online:' .. site .. ':' .. page, visitor)
      touch(prefix .. 'active:' .. site, page)
    end
  end
  redis.call('XADD', KEYS[1], '*', 'e', json, 'se', session, 'n', new_visit)
end
return n
