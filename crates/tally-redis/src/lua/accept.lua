-- Accepts a batch of events atomically: the synchronous half of the write. A batch holds
-- the events of one or more partitions: on one Redis a beacon sends all of them in one call
-- (the call's fixed cost — the batch marker, the script's own, a round trip — is then paid
-- once for every site's events); to a Redis Cluster, whose partitions live in different
-- slots, one call per partition.
--
-- KEYS     the incoming stream (tally:{pN}:incoming) of each part, in order; every other
--          key this script touches is built from a part's prefix and carries the same {pN}
--          hash tag as its stream.
-- ARGV     the header (A_*: batch id, now (ms), page cap (0 = none), parts), then per part
--          its values (P_*: prefix, event count, the events' JSON, one line per event, and
--          their context, "session-candidate day" per event joined by ',') followed by
--          EVENT_ARGS values per event (E_*: kind, site, page, and a custom event's counter
--          field "name<TAB>target", else ''). The positions are named in the wire layout
--          below, which tally-redis/src/wire.rs owns.
-- Returns  {events accepted, events recorded live under "other pages"}, or -1 when this
--          batch id was already accepted (a retry after a lost reply must not count twice).
--          The batch marker lives under the first part's prefix.
--
-- What a reader must see at once is counted here: a page's views and the site's views (read
-- your writes: the tracker reads the counter right after sending the view), the views of
-- the minute, crawlers, unverified hits and custom event counts. Everything that needs the
-- visitor's state — visits, reloads, online presence, unique visitors, titles — is applied
-- by the worker's applier (tally-redis/src/apply.rs), in bulk, a moment later: it moves
-- this entry to the events stream with the visit figures, and takes back the view of a
-- page view it finds to be a reload.
--
-- Page cap: the live state of a site (its view-count and title hashes, which never expire,
-- and the readers of pages) holds at most `cap` pages. A page not yet in the view-count
-- hash while that hash has `cap` fields is recorded live under the page key '' ("other
-- pages", never a real page key: page keys are never empty). The entry's `o` field lists the
-- events so recorded (their place in the batch, joined by ','), for the applier. The entry
-- keeps the real page, so ClickHouse has every page; the site's totals count every view. It
-- costs one HLEN per site and batch; only a site within one batch of its cap has its pages
-- looked up one by one. The custom event counts (`event_counts:`) are capped the same way.
--
-- Each part is one entry of its partition's incoming stream: `v` = the incoming layout's
-- version, `b` = the events' JSON lines as the beacon sent them, `c` = their context, `n` =
-- now, `o` = the events recorded under "other pages".
--
-- Numbers reach Redis as strings made with '%d': Lua's own number-to-string conversion goes
-- through the C library's floating-point printf, a visible cost here.

-- wire layout (tally-redis/src/wire.rs: lua_layout)
local A_BATCH_ID, A_NOW, A_MAX_PAGES, A_PARTS = 1, 2, 3, 4
local P_PREFIX, P_COUNT, P_LINES, P_CONTEXT = 0, 1, 2, 3
local E_KIND, E_SITE, E_PAGE, E_FIELD = 0, 1, 2, 3
local PART_ARGS, EVENT_ARGS, FIRST_PART = 4, 4, 5
local F_VERSION, F_BATCH, F_CONTEXT, F_NOW, F_OVER, VERSION = 'v', 'b', 'c', 'n', 'o', '1'
local now_arg = ARGV[A_NOW]
local cap = tonumber(ARGV[A_MAX_PAGES])
local parts = tonumber(ARGV[A_PARTS])
local minute = string.format('%d', math.floor(tonumber(now_arg) / 60000))

if not redis.call('SET', ARGV[FIRST_PART + P_PREFIX] .. 'batch:' .. ARGV[A_BATCH_ID], '1', 'NX', 'EX', '3600') then
  return -1
end

local incr = {}      -- hash key -> field -> increment
local incr_order = {}
local function add(key, field)
  local h = incr[key]
  if not h then
    h = {}
    incr[key] = h
    incr_order[#incr_order + 1] = key
  end
  h[field] = (h[field] or 0) + 1
end

-- Whether `member` has room in the capped hash `key` (a site's view counts or event counts)
-- when `n` events of the site's part may add to it: it is there already, or the hash has
-- fewer than `cap` fields as this batch grows it.
local known_members = {} -- key -> member -> fits
local hash_sizes = {}    -- key -> fields (as this batch grows it)
local function fits(key, member, n)
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

local total, total_over = 0, 0
local minute_views = {} -- views key prefix of the minute -> views this minute
local minute_keys = {}
local at = FIRST_PART
for part = 1, parts do
  local prefix = ARGV[at + P_PREFIX]
  local n = tonumber(ARGV[at + P_COUNT])
  local first = at + PART_ARGS
  local over = {}
  for i = 0, n - 1 do
    local base = first + i * EVENT_ARGS
    local kind, site = ARGV[base + E_KIND], ARGV[base + E_SITE]
    if kind == 'bot' then
      add(prefix .. 'totals:' .. site, 'bots')
    elseif kind == 'unverified' then
      -- A pixel hit naming no page of the site: a count only.
      add(prefix .. 'totals:' .. site, 'unverified')
    else
      local page = ARGV[base + E_PAGE]
      local views = prefix .. 'views:' .. site
      local live = page
      if not fits(views, page, n) then
        live = ''
        over[#over + 1] = string.format('%d', i)
      end
      if kind == 'pageview' then
        add(views, live)
        add(prefix .. 'totals:' .. site, 'views')
        local key = prefix .. 'vpm:' .. site .. ':' .. minute
        if not minute_views[key] then
          minute_views[key] = 0
          minute_keys[#minute_keys + 1] = key
        end
        minute_views[key] = minute_views[key] + 1
      elseif kind == 'event' then
        local counts = prefix .. 'event_counts:' .. site
        local field = ARGV[base + E_FIELD]
        if fits(counts, field, n) then
          add(counts, field)
        end
      end
    end
  end
  redis.call('XADD', KEYS[part], '*', F_VERSION, VERSION, F_BATCH, ARGV[at + P_LINES],
    F_CONTEXT, ARGV[at + P_CONTEXT], F_NOW, now_arg, F_OVER, table.concat(over, ','))
  total, total_over = total + n, total_over + #over
  at = first + n * EVENT_ARGS
end

for _, key in ipairs(incr_order) do
  for field, by in pairs(incr[key]) do
    redis.call('HINCRBY', key, field, string.format('%d', by))
  end
end
for _, key in ipairs(minute_keys) do
  local by = minute_views[key]
  -- Expiry set once, when this call created the key.
  if redis.call('INCRBY', key, string.format('%d', by)) == by then
    redis.call('EXPIRE', key, '3600')
  end
end
return {total, total_over}
