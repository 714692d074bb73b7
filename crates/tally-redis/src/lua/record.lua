-- Records a batch of events of one partition atomically.
--
-- KEYS[1]  the partition's events stream (tally:{pN}:events); every other key this script
--          touches is built from ARGV[1] and carries the same {pN} hash tag, so the whole
--          batch lives in one cluster slot.
-- ARGV     prefix, batch id, now (ms), online window (ms), visit timeout (s), event count,
--          then 9 values per event: kind, site, page, visitor, session candidate, day,
--          title, json, time (ms).
-- Returns  the number of events recorded, or -1 when this batch id was already applied
--          (a retry after a lost reply must not count twice).
--
-- A visit key holds "session:last event (ms):page views so far". Each stream entry gets the
-- session, whether it started the visit, the page view's ordinal in the visit (0 for pings
-- and leaves) and the time since the visit's previous event — so bounce rates and visit
-- lengths are sums over events, and statistics never group by visit.
--
-- Cost: per event the XADD, and per visitor and batch one GET and one SET; counters, online
-- sets, unique-visitor sketches and titles are accumulated in Lua tables and written once per
-- key at the end of the batch.
local prefix = ARGV[1]
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local timeout = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local minute = math.floor(now / 60000)

if not redis.call('SET', prefix .. 'batch:' .. ARGV[2], '1', 'NX', 'EX', 3600) then
  return -1
end

local incr = {}      -- hash key -> field -> increment
local incr_order = {}
local function add(key, field, by)
  local h = incr[key]
  if not h then
    h = {}
    incr[key] = h
    incr_order[#incr_order + 1] = key
  end
  h[field] = (h[field] or 0) + by
end

local zsets = {}     -- sorted-set key -> member -> true (present now) / false (left)
local zset_order = {}
local function presence(key, member, here)
  local z = zsets[key]
  if not z then
    z = {}
    zsets[key] = z
    zset_order[#zset_order + 1] = key
  end
  z[member] = here
end

local sketches = {}  -- HyperLogLog key -> list of visitors
local sketch_order = {}
local titles = {}    -- titles key -> page -> title
local visits = {}    -- visit key -> {session, last ms, page views} or false (no visit)
local visit_order = {}

local function visit_state(key, ts)
  local v = visits[key]
  if v == nil then
    local raw = redis.call('GET', key)
    if raw then
      local s, last, pv = string.match(raw, '^(%d+):(%d+):(%d+)$')
      if s then
        v = {s, tonumber(last), tonumber(pv)}
      else
        v = {raw, ts, 1}
      end
    else
      v = false
    end
    visits[key] = v
  end
  return v
end

for i = 0, n - 1 do
  local base = 7 + i * 9
  local kind, site, page = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local visitor, candidate, day = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local title, json, ts = ARGV[base + 6], ARGV[base + 7], tonumber(ARGV[base + 8])
  local session, new_visit, seq, gap = '0', '0', 0, 0
  if kind == 'bot' then
    add(prefix .. 'totals:' .. site, 'bots', 1)
  else
    local visit = prefix .. 'visit:' .. site .. ':' .. visitor
    local v = visit_state(visit, ts)
    if kind == 'pageview' then
      if not v then
        v = {candidate, ts, 0}
        visits[visit] = v
        new_visit = '1'
        add(prefix .. 'totals:' .. site, 'visits', 1)
      else
        gap = math.max(0, ts - v[2])
      end
      v[3] = v[3] + 1
      seq = v[3]
      add(prefix .. 'views:' .. site, page, 1)
      add(prefix .. 'totals:' .. site, 'views', 1)
      add(prefix .. 'vpm:' .. site .. ':' .. minute, 'n', 1)
      local uv = prefix .. 'uv:' .. site .. ':' .. day
      if not sketches[uv] then
        sketches[uv] = {}
        sketch_order[#sketch_order + 1] = uv
      end
      local list = sketches[uv]
      list[#list + 1] = visitor
      if title ~= '' then
        local tk = prefix .. 'titles:' .. site
        titles[tk] = titles[tk] or {}
        titles[tk][page] = title
      end
    elseif v then
      -- Pings and leaves keep a running visit alive (and long) but never start one.
      gap = math.max(0, ts - v[2])
    end
    if v then
      session = v[1]
      if ts > v[2] then
        v[2] = ts
      end
      if not v.dirty then
        v.dirty = true
        visit_order[#visit_order + 1] = visit
      end
    end
    presence(prefix .. 'online:' .. site, visitor, true)
    presence(prefix .. 'online:' .. site .. ':' .. page, visitor, kind ~= 'leave')
    if kind ~= 'leave' then
      presence(prefix .. 'active:' .. site, page, true)
    end
  end
  redis.call('XADD', KEYS[1], '*', 'e', json, 'se', session, 'n', new_visit, 'q', seq, 'g', gap)
end

for _, key in ipairs(visit_order) do
  local v = visits[key]
  redis.call('SET', key, v[1] .. ':' .. string.format('%d', v[2]) .. ':' .. v[3], 'EX', timeout)
end

-- Counters. View-per-minute keys are plain strings; the rest are hashes.
for _, key in ipairs(incr_order) do
  for field, by in pairs(incr[key]) do
    if field == 'n' and string.find(key, ':vpm:', 1, true) then
      redis.call('INCRBY', key, by)
      redis.call('EXPIRE', key, 3600)
    else
      redis.call('HINCRBY', key, field, by)
    end
  end
end

-- Presence: add who is here, remove who left, drop members older than the window.
for _, key in ipairs(zset_order) do
  local here, gone = {}, {}
  for member, present in pairs(zsets[key]) do
    if present then
      here[#here + 1] = now
      here[#here + 1] = member
    else
      gone[#gone + 1] = member
    end
  end
  if #gone > 0 then
    redis.call('ZREM', key, unpack(gone))
  end
  if #here > 0 then
    redis.call('ZADD', key, unpack(here))
    redis.call('PEXPIRE', key, window)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
end

for _, key in ipairs(sketch_order) do
  redis.call('PFADD', key, unpack(sketches[key]))
  redis.call('EXPIRE', key, 172800)
end

for key, pages in pairs(titles) do
  local args = {}
  for page, title in pairs(pages) do
    args[#args + 1] = page
    args[#args + 1] = title
  end
  redis.call('HSET', key, unpack(args))
end
return n
