-- wrk script: POST /collect, Zipf-like pages, client addresses in X-Forwarded-For (the
-- bench server trusts 127.0.0.1). Arguments after `--`:
--   sites=1|4     one busy site (news) or four sites, one per partition (default 4)
--   readers=new   every request a page view from a reader never seen before (default)
--   readers=mix   a realistic mix: 45 % page views by returning readers (5,000 addresses per
--                 wrk thread), 30 % by new readers, 25 % heartbeats (pings) of returning
--                 readers
--   new=N         new readers' requests built per thread (default 250,000)
-- Every request is built in init(), before wrk's clock starts, as /healthz's single request
-- is: the load generator shares the machine's two cores with Tally, and formatting a
-- request per call cost it 14.8 µs of CPU per request against 13.5 when built ahead
-- (/healthz's cost it ~10: its requests and answers are smaller). New readers' requests each
-- carry an address no request of this run used before (a counter per thread from a random
-- start, so that later rounds of a run meet new readers too): none is a reload, every one
-- is a new visitor. `new=N` of them are built per thread (scripts/bench asks for 25,000 per
-- second of -d); past them the addresses come round again.
local all_sites = { {"news", "news.example"}, {"ward", "ward.example"}, {"hanoi", "hanoi.example"}, {"tech", "tech.example"} }
local sites, mode = all_sites, "new"
local bodies, returning, pings = {}, {}, {}
local n, fresh = 0, 0
local new_count = 250000
local thread_id = 0
local counter = 1
local UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"

setup = function(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

local function headers(site, address)
  return {
    ["Content-Type"] = "text/plain",
    ["Origin"] = "https://" .. site[2],
    ["User-Agent"] = UA,
    ["X-Forwarded-For"] = address,
  }
end

local function new_reader(i)
  fresh = fresh + 1
  local address = string.format("%d.%d.%d.%d", 10 + thread_id,
    math.floor(fresh / 65536) % 256, math.floor(fresh / 256) % 256, fresh % 256)
  return wrk.format("POST", "/collect", headers(bodies[i][1], address), bodies[i][2])
end

-- The new readers' requests, built by init(); `next_new` the last one sent.
local news, next_new = {}, 0

local function next_new_reader()
  next_new = next_new % new_count + 1
  return news[next_new]
end

init = function(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^(%w+)=(%w+)$")
    if k == "sites" and v == "1" then sites = { all_sites[1] } end
    if k == "readers" then mode = v end
    if k == "new" then new_count = tonumber(v) end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + thread_id)
  for i = 1, 20000 do
    local s = sites[(i % #sites) + 1]
    local page = math.floor(1 / (math.random() ^ 1.1))
    bodies[i] = { s, string.format(
      '{"t":"pageview","site":"%s","url":"https://%s/tin-tuc/bai-%d","title":"Bai viet %d","sid":"w%d","w":1280}',
      s[1], s[2], page, page, i % 5000) }
    -- Returning readers: 5,000 addresses of this thread, each on its own pages.
    local address = string.format("198.%d.%d.%d", 18 + thread_id, math.floor((i % 5000) / 250), (i % 5000) % 250 + 1)
    returning[i] = wrk.format("POST", "/collect", headers(s, address), bodies[i][2])
    pings[i] = wrk.format("POST", "/collect", headers(s, address), string.format(
      '{"t":"ping","site":"%s","url":"https://%s/tin-tuc/bai-%d","sid":"w%d"}', s[1], s[2], page, i % 5000))
  end
  fresh = math.random(0, 16000000 - new_count)
  for i = 1, new_count do
    news[i] = new_reader((i - 1) % #bodies + 1)
  end
end

request = function()
  n = n % #bodies + 1
  if mode == "mix" then
    local r = n % 20
    if r < 9 then return returning[n] end
    if r < 15 then return next_new_reader() end
    return pings[n]
  end
  return next_new_reader()
end
