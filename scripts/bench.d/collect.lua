-- wrk script: POST /collect, Zipf-like pages, client addresses in X-Forwarded-For (the
-- bench server trusts 127.0.0.1). Arguments after `--`:
--   sites=1|4     one busy site (news) or four sites, one per partition (default 4)
--   readers=new   every request a page view from a reader never seen before (default)
--   readers=mix   a realistic mix: 45 % page views by returning readers (5,000 addresses per
--                 wrk thread), 30 % by new readers, 25 % heartbeats (pings) of returning
--                 readers
-- Bodies and the returning readers' requests are built once in init(); a new reader's
-- request is formatted per request, with an address no request used before (a counter per
-- thread), so none is a reload and every one is a new visitor.
local all_sites = { {"news", "news.example"}, {"ward", "ward.example"}, {"hanoi", "hanoi.example"}, {"tech", "tech.example"} }
local sites, mode = all_sites, "new"
local bodies, returning, pings = {}, {}, {}
local n, fresh = 0, 0
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

init = function(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^(%w+)=(%w+)$")
    if k == "sites" and v == "1" then sites = { all_sites[1] } end
    if k == "readers" then mode = v end
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
end

local function new_reader(i)
  fresh = fresh + 1
  local address = string.format("%d.%d.%d.%d", 10 + thread_id,
    math.floor(fresh / 65536) % 256, math.floor(fresh / 256) % 256, fresh % 256)
  return wrk.format("POST", "/collect", headers(bodies[i][1], address), bodies[i][2])
end

request = function()
  n = n % #bodies + 1
  if mode == "mix" then
    local r = n % 20
    if r < 9 then return returning[n] end
    if r < 15 then return new_reader(n) end
    return pings[n]
  end
  return new_reader(n)
end
