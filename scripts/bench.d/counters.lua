-- wrk script: GET the public counters of Zipf-popular pages, as every article view does.
-- The requests are built once in init() and replayed in turn.
local sites = { "news", "ward", "hanoi", "tech" }
local requests = {}
local n = 0
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  for i = 1, 20000 do
    local page = math.floor(1 / (math.random() ^ 1.1))
    requests[i] = wrk.format("GET", string.format("/api/v1/sites/%s/counters?page=/tin-tuc/bai-%d", sites[(i % 4) + 1], page))
  end
end
request = function()
  n = n % #requests + 1
  return requests[n]
end
