-- Records a batch of events of one partition atomically.
--
-- KEYS[1]  the partition's events stream (tally:{pN}:events); every other key this script
--          touches is built from ARGV[1] and carries the same {pN} hash tag, so the whole
--          batch lives in one cluster slot.
-- ARGV     the header (A_*: prefix, batch id, now (ms), online window (ms), visit timeout
--          (s), repeat-view window (ms, 0 = off), page cap (0 = none), event count, the
--          events' JSON, one line per event), then EVENT_ARGS values per event (E_*: kind,
--          site, page, visitor, session candidate, day, text, time (ms); the text is a page
--          view's title, or a custom event's counter field, "name<TAB>target"). The positions
--          are named in the wire layout below, which tally-redis/src/wire.rs owns.
-- Returns  {events recorded, events recorded live under "other pages"}, or -1 when this
--          batch id was already applied (a retry after a lost reply must not count twice).
--
-- Visits live in one hash per site and UTC day (visitor -> "session:last event ms:page
-- views:last counted view ms:last page"; records of earlier versions end after the page
-- views), read once per batch (today's, and yesterday's for visitors not in today's) and
-- written once per batch; a visit whose last event is older than the visit timeout is over.
-- Each stream entry gets the session, whether it started the visit, the page view's ordinal
-- in the visit (0 for pings and leaves) and the time since the visit's previous event — so
-- bounce rates and visit lengths are sums over events, and statistics never group by visit.
--
-- Repeats: a page view of the page the visitor viewed last, within the repeat-view window of
-- that page's last counted view, is a reload. It counts nowhere (views, visitors, minute
-- counts) but keeps the visitor online and the visit running, like a ping; its figures get a
-- fifth value `r` so the worker stores it as a repeat.
--
-- Page cap: the live state of a site (its view-count and title hashes, which never expire,
-- and the online sets of pages) holds at most `cap` pages. A page not yet in the view-count
-- hash while that hash has `cap` fields is recorded live under the page key '' ("other
-- pages", never a real page key: page keys are never empty) and gets no title. The stream
-- entry keeps the real page, so ClickHouse has every page; the site's totals count every
-- view. The script returns how many events went to '' so the beacon can count them. It costs
-- one HLEN per site and batch; only a site within one batch of its cap has its pages looked
-- up one by one.
--
-- Custom events (kind 'event': downloads, outbound links, buttons) keep the visitor online
-- and the visit running, like a ping, and count live in the site's `event_counts:` hash under
-- "name<TAB>target" (the public download counters read it). That hash holds at most `cap`
-- fields, as the view-count hash holds `cap` pages: past it, a new name and target is
-- counted in ClickHouse only.
--
-- The whole batch is one stream entry: `v` = the wire version, `b` = the events' JSON lines
-- as the beacon sent them, `m` = one "session new ordinal gap" per event, joined by ','. One
-- XADD per call instead of one per event, and the worker parses seven values per batch
-- instead of some per event.
--
-- Cost: everything else (visits, counters, online sets, unique-visitor sketches, titles) is
-- gathered in Lua tables and written once per key and batch. Aged members of the online
-- sets are trimmed in about one batch in eight (reads count by score, so trimming only
-- bounds memory). Numbers reach Redis as strings made with '%d': Lua's own number-to-string
-- conversion goes through the C library's floating-point printf, a visible cost here.

-- wire layout (tally-redis/src/wire.rs: lua_layout)
local A_PREFIX, A_BATCH_ID, A_NOW, A_ONLINE_WINDOW, A_VISIT_TIMEOUT, A_REPEAT_WINDOW, A_MAX_PAGES, A_COUNT, A_LINES = 1, 2, 3, 4, 5, 6, 7, 8, 9
local E_KIND, E_SITE, E_PAGE, E_VISITOR, E_CANDIDATE, E_DAY, E_TEXT, E_TS = 0, 1, 2, 3, 4, 5, 6, 7
local EVENT_ARGS, FIRST_EVENT = 8, 10
local F_VERSION, F_BATCH, F_FIGURES, VERSION = 'v', 'b', 'm', '2'
local prefix = ARGV[A_PREFIX]
local now_arg = ARGV[A_NOW]
local now = tonumber(now_arg)
local window = tonumber(ARGV[A_ONLINE_WINDOW])
local timeout = tonumber(ARGV[A_VISIT_TIMEOUT])
local repeat_ms = tonumber(ARGV[A_REPEAT_WINDOW])
local cap = tonumber(ARGV[A_MAX_PAGES])
local n = tonumber(ARGV[A_COUNT])
local lines = ARGV[A_LINES]
local minute = string.format('%d', math.floor(now / 60000))

if not redis.call('SET', prefix .. 'batch:' .. ARGV[A_BATCH_ID], '1', 'NX', 'EX', '3600') then
  return -1
end

-- Lua's unpack gives at most ~8,000 values, so commands with one argument per visitor, page
-- or member take them 1,000 at a time (an even number: field-value pairs stay whole).
local CHUNK = 1000
-- Runs `command key list...` in chunks; returns the sum of the integer replies.
local function call_chunked(command, key, list)
  local sum = 0
  for i = 1, #list, CHUNK do
    sum = sum + redis.call(command, key, unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
  return sum
end
-- HMGET of `fields`, in chunks; the replies in the order of `fields`.
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #part do
      out[i + j - 1] = part[j]
    end
  end
  return out
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
local today_n = math.floor(now / 86400000)
local today = string.format('%d', today_n)
local yesterday = string.format('%d', today_n - 1)
local timeout_ms = timeout * 1000
local trim = string.byte(ARGV[A_BATCH_ID], -1) % 8 == 0

-- Visits of the batch's visitors, per site: visitor -> {session, last ms, page views}.
local visits = {}
local visit_sites = {}
for i = 0, n - 1 do
  local base = FIRST_EVENT + i * EVENT_ARGS
  local kind, site, visitor = ARGV[base + E_KIND], ARGV[base + E_SITE], ARGV[base + E_VISITOR]
  if kind ~= 'bot' and kind ~= 'unverified' then
    if not visits[site] then
      visits[site] = {}
      visit_sites[#visit_sites + 1] = site
    end
    visits[site][visitor] = false
  end
end
for _, site in ipairs(visit_sites) do
  local who = {}
  for visitor in pairs(visits[site]) do
    who[#who + 1] = visitor
  end
  local found = hmget(prefix .. 'visits:' .. site .. ':' .. today, who)
  -- Yesterday's hash only for visitors not seen today (visits running over midnight).
  local missing = {}
  for j, visitor in ipairs(who) do
    if not found[j] then
      missing[#missing + 1] = j
    end
  end
  if #missing > 0 then
    local ask = {}
    for k, j in ipairs(missing) do
      ask[k] = who[j]
    end
    local old_key = prefix .. 'visits:' .. site .. ':' .. yesterday
    local old_day = hmget(old_key, ask)
    for k, j in ipairs(missing) do
      found[j] = old_day[k]
    end
  end
  for j, visitor in ipairs(who) do
    local raw = found[j]
    if raw then
      local s, last, pv, viewed, seen = string.match(raw, '^(%d+):(%d+):(%d+):(%d+):(.*)$')
      if not s then
        s, last, pv = string.match(raw, '^(%d+):(%d+):(%d+)$')
        viewed, seen = '0', ''
      end
      if s then
        visits[site][visitor] = {s, tonumber(last), tonumber(pv), tonumber(viewed), seen}
      end
    end
  end
end

-- Whether `member` has room in the capped hash `key` (a site's view counts or event counts):
-- it is there already, or the hash has fewer than `cap` fields as this batch grows it.
local known_members = {} -- key -> member -> fits
local hash_sizes = {}    -- key -> fields (as this batch grows it)
local function fits(key, member)
  if cap == 0 then
    return true
  end
  if not hash_sizes[key] then
    hash_sizes[key] = redis.call('HLEN', key)
  end
  -- Far from the cap, every member fits, however many of the batch's are new: one HLEN per
  -- hash and batch, no look-up per member.
  if hash_sizes[key] + n <= cap then
    return true
  end
  local known = known_members[key]
  if not known then
    known = {}
    known_members[key] = known
  end
  local k = known[member]
  if k ~= nil then
    return k
  end
  if redis.call('HEXISTS', key, member) == 1 then
    k = true
  elseif hash_sizes[key] < cap then
    k = true
    hash_sizes[key] = hash_sizes[key] + 1
  else
    k = false
  end
  known[member] = k
  return k
end

-- The key a page is recorded under live: itself while the site has room, else ''.
local over_cap = 0
local function live_key(site, page)
  if fits(prefix .. 'views:' .. site, page) then
    return page
  end
  return ''
end

local meta = {}
for i = 0, n - 1 do
  local base = FIRST_EVENT + i * EVENT_ARGS
  local kind, site, page = ARGV[base + E_KIND], ARGV[base + E_SITE], ARGV[base + E_PAGE]
  local visitor, candidate = ARGV[base + E_VISITOR], ARGV[base + E_CANDIDATE]
  local day, title = ARGV[base + E_DAY], ARGV[base + E_TEXT]
  local ts = tonumber(ARGV[base + E_TS])
  local session, new_visit, seq, gap, again = '0', '0', 0, 0, ''
  if kind == 'bot' then
    add(prefix .. 'totals:' .. site, 'bots', 1)
  elseif kind == 'unverified' then
    -- A pixel hit naming no page of the site: a count only.
    add(prefix .. 'totals:' .. site, 'unverified', 1)
  else
    local live = live_key(site, page)
    if live == '' then
      over_cap = over_cap + 1
    end
    local v = visits[site][visitor]
    if v and ts - v[2] > timeout_ms then
      v = false
    end
    if kind == 'pageview' and v and repeat_ms > 0 and v[5] == page
        and ts - v[4] <= repeat_ms then
      again = ' r'
      gap = math.max(0, ts - v[2])
    elseif kind == 'pageview' then
      if not v then
        v = {candidate, ts, 0, ts, page}
        visits[site][visitor] = v
        new_visit = '1'
        add(prefix .. 'totals:' .. site, 'visits', 1)
      else
        gap = math.max(0, ts - v[2])
      end
      v[3] = v[3] + 1
      v[4] = ts
      v[5] = page
      seq = v[3]
      add(prefix .. 'views:' .. site, live, 1)
      add(prefix .. 'totals:' .. site, 'views', 1)
      add(prefix .. 'vpm:' .. site .. ':' .. minute, 'n', 1)
      local uv = prefix .. 'uv:' .. site .. ':' .. day
      if not sketches[uv] then
        sketches[uv] = {}
        sketch_order[#sketch_order + 1] = uv
      end
      local list = sketches[uv]
      list[#list + 1] = visitor
      if title ~= '' and live ~= '' then
        local tk = prefix .. 'titles:' .. site
        titles[tk] = titles[tk] or {}
        titles[tk][page] = title
      end
    elseif v then
      -- Pings, leaves and custom events keep a running visit alive (and long) but never
      -- start one.
      gap = math.max(0, ts - v[2])
    end
    if kind == 'event' then
      local counts = prefix .. 'event_counts:' .. site
      if fits(counts, title) then
        add(counts, title, 1)
      end
    end
    if v then
      session = v[1]
      if ts > v[2] then
        v[2] = ts
      end
      v.dirty = true
    end
    presence(prefix .. 'online:' .. site, visitor, true)
    presence(prefix .. 'online:' .. site .. ':' .. live, visitor, kind ~= 'leave')
    if kind ~= 'leave' then
      presence(prefix .. 'active:' .. site, live, true)
    end
  end
  meta[i + 1] = string.format('%s %s %d %d', session, new_visit, seq, gap) .. again
end
redis.call('XADD', KEYS[1], '*', F_VERSION, VERSION, F_BATCH, lines, F_FIGURES, table.concat(meta, ','))

for _, site in ipairs(visit_sites) do
  local args = {}
  for visitor, v in pairs(visits[site]) do
    if v and v.dirty then
      args[#args + 1] = visitor
      args[#args + 1] = string.format('%s:%d:%d:%d:%s', v[1], v[2], v[3], v[4], v[5])
    end
  end
  if #args > 0 then
    -- A key gets its expiry when a visitor is added to it, which includes its creation.
    local key = prefix .. 'visits:' .. site .. ':' .. today
    if call_chunked('HSET', key, args) > 0 then
      redis.call('EXPIRE', key, '172800')
    end
  end
end

-- Counters. View-per-minute keys are plain strings; the rest are hashes.
for _, key in ipairs(incr_order) do
  for field, by in pairs(incr[key]) do
    if field == 'n' and string.find(key, ':vpm:', 1, true) then
      -- Expiry set once, when this call created the key.
      if redis.call('INCRBY', key, string.format('%d', by)) == by then
        redis.call('EXPIRE', key, '3600')
      end
    else
      redis.call('HINCRBY', key, field, string.format('%d', by))
    end
  end
end

-- Presence: add who is here, remove who left, drop members older than the window.
for _, key in ipairs(zset_order) do
  local here, gone = {}, {}
  for member, present in pairs(zsets[key]) do
    if present then
      here[#here + 1] = now_arg
      here[#here + 1] = member
    else
      gone[#gone + 1] = member
    end
  end
  if #gone > 0 then
    call_chunked('ZREM', key, gone)
  end
  if #here > 0 then
    call_chunked('ZADD', key, here)
    redis.call('PEXPIRE', key, ARGV[A_ONLINE_WINDOW])
  end
  if trim then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window))
  end
end

for _, key in ipairs(sketch_order) do
  -- PFADD answers 1 when the sketch changed, which includes its creation.
  if call_chunked('PFADD', key, sketches[key]) > 0 then
    redis.call('EXPIRE', key, '172800')
  end
end

for key, pages in pairs(titles) do
  local args = {}
  for page, title in pairs(pages) do
    args[#args + 1] = page
    args[#args + 1] = title
  end
  call_chunked('HSET', key, args)
end
return {n, over_cap}
