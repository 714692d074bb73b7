-- Records a batch of events of one partition atomically.
--
-- KEYS[1]  the partition's events stream (tally:{pN}:events); every other key this script
--          touches is built from ARGV[1] and carries the same {pN} hash tag, so the whole
--          batch lives in one cluster slot.
-- ARGV     prefix, batch id, now (ms), online window (ms), visit timeout (s), event count,
--          then 7 values per event: kind, site, page, visitor, session candidate, day, json.
-- Returns  the number of events recorded, or -1 when this batch id was already applied
--          (a retry after a lost reply must not count twice).
local prefix = ARGV[1]
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local timeout = tonumber(ARGV[5])
local n = tonumber(ARGV[6])

if not redis.call('SET', prefix .. 'batch:' .. ARGV[2], '1', 'NX', 'EX', 3600) then
  return -1
end

local trimmed = {}
local function touch_online(key, visitor)
  redis.call('ZADD', key, now, visitor)
  if not trimmed[key] then
    trimmed[key] = true
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('PEXPIRE', key, window)
  end
end

for i = 0, n - 1 do
  local base = 7 + i * 7
  local kind, site, page = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local visitor, candidate, day, json = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5], ARGV[base + 6]
  local totals = prefix .. 'totals:' .. site
  local session, new_visit = '0', '0'
  if kind == 'bot' then
    redis.call('HINCRBY', totals, 'bots', 1)
  else
    local visit = prefix .. 'visit:' .. site .. ':' .. visitor
    if kind == 'pageview' then
      if redis.call('SET', visit, candidate, 'NX', 'EX', timeout) then
        session, new_visit = candidate, '1'
        redis.call('HINCRBY', totals, 'visits', 1)
      else
        session = redis.call('GET', visit)
        redis.call('EXPIRE', visit, timeout)
      end
      redis.call('HINCRBY', prefix .. 'views:' .. site, page, 1)
      redis.call('HINCRBY', totals, 'views', 1)
      local uv = prefix .. 'uv:' .. site .. ':' .. day
      redis.call('PFADD', uv, visitor)
      redis.call('EXPIRE', uv, 172800)
      touch_online(prefix .. 'online:' .. site, visitor)
      touch_online(prefix .. 'online:' .. site .. ':' .. page, visitor)
    else
      -- Pings and leaves keep a running visit alive but never start one.
      session = redis.call('GET', visit) or '0'
      if session ~= '0' then
        redis.call('EXPIRE', visit, timeout)
      end
      touch_online(prefix .. 'online:' .. site, visitor)
      if kind == 'ping' then
        touch_online(prefix .. 'online:' .. site .. ':' .. page, visitor)
      else
        redis.call('ZREM', prefix .. 'online:' .. site .. ':' .. page, visitor)
      end
    end
  end
  redis.call('XADD', KEYS[1], '*', 'e', json, 'se', session, 'n', new_visit)
end
return n
