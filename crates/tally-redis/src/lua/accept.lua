-- Accepts a batch of events atomically: the synchronous half of the write. On one Redis a
-- beacon's first try of a batch whose sites are all far from the page cap goes instead as a
-- transaction of plain commands writing the same (tally-redis/src/write.rs): this script is
-- for retries (it checks the batch marker first), sites near the cap, and a cluster. A batch holds
-- the events of one or more partitions: on one Redis a beacon sends all of them in one call
-- (the call's fixed cost — the batch marker, the script's own, a round trip — is then paid
-- once for every site's events); to a Redis Cluster, whose partitions live in different
-- slots, one call per partition.
--
-- KEYS     the incoming stream (tally:{pN}:incoming) of each part, in order; every other
--          key this script touches is built from a part's prefix and carries the same {pN}
--          hash tag as its stream.
-- ARGV     the header (A_*: batch id, now (ms), page cap (0 = none), parts), then per part
--          its values (P_*: prefix, event count, the incoming layout version and the events'
--          JSON in it — one line per event, LZ4-compressed in layout 2 —, their context,
--          "session-candidate day" per event joined by ',', and its sites) and what
--          its events add to the live counters, added up by the beacon: per site its values
--          (S_*: site, crawler hits, unverified hits, views, pages, custom event fields),
--          then per page of it G_* (page, views, events, their places in the part's batch
--          joined by ','), then per custom event field C_* (field "name<TAB>target", count).
--          The positions are named in the wire layout below, which tally-redis/src/wire.rs
--          owns. The work here is per site and page, not per event.
-- Returns  {events accepted, events recorded live under "other pages"}, or -1 when this
--          batch id was already accepted (a retry after a lost reply must not count twice).
--          The batch marker lives under the first part's prefix.
--
-- What a reader must see at once is counted here: a page's views and the site's views (read
-- your writes: the tracker reads the counter right after sending the view), crawlers,
-- unverified hits and custom event counts. Everything else — visits, reloads, online
-- presence, unique visitors, titles, and the views of the minute for the realtime chart —
-- is applied by the worker's applier (tally-redis/src/apply.rs), in bulk, a moment later:
-- it names this entry in the events stream with the visit figures, and takes back the view
-- of a page view it finds to be a reload.
--
-- Page cap: the live state of a site (its view-count and title hashes, which never expire,
-- and the readers of pages) holds at most `cap` pages. A page not yet in the view-count
-- hash while that hash has `cap` fields is recorded live under the page key '' ("other
-- pages", never a real page key: page keys are never empty). The entry's `o` field lists the
-- events so recorded (their places in the batch, joined by ','), for the applier. The entry
-- keeps the real page, so ClickHouse has every page; the site's totals count every view. It
-- costs one HLEN per site and batch; only a site within one batch of its cap has its pages
-- looked up one by one. The custom event counts (`event_counts:`) are capped the same way.
--
-- Each part is one entry of its partition's incoming stream: `v` = the incoming layout's
-- version, `b` = the events' JSON lines as the beacon sent them (this script never reads
-- them), `c` = their context, `n` = now, `o` = the events recorded under "other pages".
--
-- Numbers reach Redis as strings made with '%d': Lua's own number-to-string conversion goes
-- through the C library's floating-point printf, a visible cost here.

-- wire layout (tally-redis/src/wire.rs: lua_layout)
local A_BATCH_ID, A_NOW, A_MAX_PAGES, A_PARTS = 1, 2, 3, 4
local P_PREFIX, P_COUNT, P_LAYOUT, P_LINES, P_CONTEXT, P_SITES = 0, 1, 2, 3, 4, 5
local S_SITE, S_BOTS, S_UNVERIFIED, S_VIEWS, S_PAGES, S_FIELDS = 0, 1, 2, 3, 4, 5
local G_PAGE, G_VIEWS, G_EVENTS, G_AT = 0, 1, 2, 3
local C_FIELD, C_COUNT = 0, 1
local PART_ARGS, SITE_ARGS, PAGE_ARGS, FIELD_ARGS, FIRST_PART = 6, 6, 4, 2, 5
local F_VERSION, F_BATCH, F_CONTEXT, F_NOW, F_OVER = 'v', 'b', 'c', 'n', 'o'
local now_arg = ARGV[A_NOW]
local cap = tonumber(ARGV[A_MAX_PAGES])
local parts = tonumber(ARGV[A_PARTS])

if not redis.call('SET', ARGV[FIRST_PART + P_PREFIX] .. 'batch:' .. ARGV[A_BATCH_ID], '1', 'NX', 'EX', '3600') then
  return -1
end

-- Whether `member` has room in the capped hash `key` (a site's view counts or event counts)
-- when `n` members of this part may add to it: it is there already, or the hash has fewer
-- than `cap` fields as this batch grows it.
local known_members = {} -- key -> member -> fits
local hash_sizes = {}    -- key -> fields (as this batch grows it)
local function fits(key, member, n)
  if cap == 0 then
    return true
  end
  if not hash_sizes[key] then
    hash_sizes[key] = redis.call('HLEN', key)
  end
  -- Far from the cap, every member fits, however many of the part's are new: one HLEN per
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
local at = FIRST_PART
for part = 1, parts do
  local prefix = ARGV[at + P_PREFIX]
  local n = tonumber(ARGV[at + P_COUNT])
  local layout, lines, context = ARGV[at + P_LAYOUT], ARGV[at + P_LINES], ARGV[at + P_CONTEXT]
  local sites = tonumber(ARGV[at + P_SITES])
  local over = {}
  at = at + PART_ARGS
  for _ = 1, sites do
    local site, views = ARGV[at + S_SITE], ARGV[at + S_VIEWS]
    local pages, fields = tonumber(ARGV[at + S_PAGES]), tonumber(ARGV[at + S_FIELDS])
    local totals = prefix .. 'totals:' .. site
    if ARGV[at + S_BOTS] ~= '0' then
      redis.call('HINCRBY', totals, 'bots', ARGV[at + S_BOTS])
    end
    if ARGV[at + S_UNVERIFIED] ~= '0' then
      redis.call('HINCRBY', totals, 'unverified', ARGV[at + S_UNVERIFIED])
    end
    at = at + SITE_ARGS
    local counts = prefix .. 'views:' .. site
    local others = 0
    for _ = 1, pages do
      local page, page_views = ARGV[at + G_PAGE], ARGV[at + G_VIEWS]
      if fits(counts, page, pages) then
        if page_views ~= '0' then
          redis.call('HINCRBY', counts, page, page_views)
        end
      else
        others = others + tonumber(page_views)
        over[#over + 1] = ARGV[at + G_AT]
        total_over = total_over + tonumber(ARGV[at + G_EVENTS])
      end
      at = at + PAGE_ARGS
    end
    if others > 0 then
      redis.call('HINCRBY', counts, '', string.format('%d', others))
    end
    if views ~= '0' then
      redis.call('HINCRBY', totals, 'views', views)
    end
    local events = prefix .. 'event_counts:' .. site
    for _ = 1, fields do
      local field = ARGV[at + C_FIELD]
      if fits(events, field, fields) then
        redis.call('HINCRBY', events, field, ARGV[at + C_COUNT])
      end
      at = at + FIELD_ARGS
    end
  end
  redis.call('XADD', KEYS[part], '*', F_VERSION, layout, F_BATCH, lines,
    F_CONTEXT, context, F_NOW, now_arg, F_OVER, table.concat(over, ','))
  total = total + n
end
return {total, total_over}
